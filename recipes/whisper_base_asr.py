"""Baseline: Whisper-base's own ASR on a corpus's held-out test utterances, as `zipper eval` tests a zip.

    python recipes/whisper_base_asr.py --corpus data/corpus-base --eval-utts 100
    python recipes/diagnostics/compare_asr.py runs/whisper-base-asr/hyps/corpus-base/eval-utts100/test_asr.jsonl \\
        <run>/hyps/model/<config>/eval-utts100/test_asr_fusion.jsonl --by-voice

Whisper-base (74M parameters, trained by OpenAI on 680,000 hours of transcribed speech) is the judge that scores
the TTS zips, and its encoder states are what the `whisper-*` speech units quantise and what a `speech_states` zip
reads: its own transcripts tell how hard the test voices are for the features every such zip is built on. It
transcribes the first ``--eval-utts`` utterances of ``<corpus>/test.jsonl`` (the utterances `zipper eval
--eval-utts N` tests) and the 5 LibriVox clips through `towers.judges.WhisperJudge` (faster-whisper, int8 on CPU,
temperature 0, greedy unless ``--beam``), scored by `towers.scoring.wer` / `cer` as every zip is. Writes
``<out>/hyps/<corpus name>/eval-utts<N>[-beam<B>]/{test,librivox}_asr.jsonl`` (`zipper.recipe.write_hyps`'s format,
so `compare_asr.py` pairs them with a zip's), ``results.json`` beside them, and one row in recipes/RESULTS.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from towers.audio import AudioError
from towers.corpus import read_manifest
from towers.judges import WhisperJudge
from towers.scoring import by_voice, rates
from zipper.data import librivox_examples
from zipper.recipe import write_hyps
from zipper.results import RESULTS_MD, append_row, check_results_md, git_hash, machine


def transcribe_set(judge: WhisperJudge, rows: list[dict], name: str) -> dict:
    """One set's WER, CER, WER by voice, and its utterances (``utts``, for `write_hyps`)."""
    hyps = judge.transcribe([r["audio_filepath"] for r in rows], progress=True)
    refs, voices = [r["text"] for r in rows], [r.get("voice", "?") for r in rows]
    out = {**rates(refs, hyps), "by_voice": by_voice(refs, hyps, voices)}  # as a zip's test (zipper.tasks.asr_metrics)
    print(f"[whisper-base] {name}: WER {out['wer']}%, CER {out['cer']}% ({out['n_words']} words, {out['n_utts']} "
          f"utterances)\n[whisper-base] {name} WER by voice: "
          + ", ".join(f"{v} {m['wer']:.1f}%" for v, m in out["by_voice"].items()))
    out["utts"] = [{"id": r["id"], "voice": v, "ref": t, "hyp": h} for r, v, t, h in zip(rows, voices, refs, hyps)]
    return out


def results_row(results: dict) -> str:
    """The recipes/RESULTS.md row (the recipes' columns; Whisper-base trains nothing here)."""
    shown = "; ".join(f"{k}.{m}={v[m]}" for k, v in results["metrics"].items() for m in ("wer", "cer"))
    return (f"| {results['started'][:16]} | asr_whisper_base | {shown} | pretrained (680,000 h, OpenAI) | 0 "
            f"| {results['wall_s']} | {results['machine']} | {results['git']} | `{results['command']}` |\n")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", default="data/corpus-base", help="corpus whose test.jsonl is transcribed")
    p.add_argument("--eval-utts", type=int, default=100,
                   help="the first N test utterances, as `zipper eval --eval-utts N` (0: all)")
    p.add_argument("--beam", type=int, default=1, help="Whisper's beam (default 1: greedy, as the judge decodes)")
    p.add_argument("--threads", type=int, default=0, help="CTranslate2 CPU threads (0: its default)")
    p.add_argument("--no-librivox", action="store_true", help="skip the 5 LibriVox read-speech clips")
    p.add_argument("--out", default="runs/whisper-base-asr", help="where hyps/ and results.json go")
    p.add_argument("--results-md", default=str(RESULTS_MD), help="the results table a row is appended to")
    p.add_argument("--no-results-md", action="store_true", help="append no row")
    a = p.parse_args(argv)
    if a.eval_utts < 0 or a.beam < 1:
        raise SystemExit(f"need --eval-utts >= 0 and --beam >= 1, got {a.eval_utts}, {a.beam}")
    manifest = Path(a.corpus) / "test.jsonl"
    if not manifest.exists():
        raise SystemExit(f"{manifest} does not exist: build the corpus first (zipper data build --size base "
                         f"--out {a.corpus})")
    if not a.no_results_md:
        check_results_md(a.results_md)
    test = read_manifest(manifest, require=("id", "text", "audio_filepath"))
    test = test[: a.eval_utts] if a.eval_utts else test
    if not test:
        raise SystemExit(f"{manifest} has no utterances")
    started, t0, commit = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.time(), git_hash()
    judge = WhisperJudge(beam_size=a.beam, cpu_threads=a.threads)
    try:
        metrics = {"test_asr": transcribe_set(judge, test, "test")}
        real = [] if a.no_librivox else librivox_examples(None)
        if real:
            metrics["librivox_asr"] = transcribe_set(judge, real, "librivox")
    except AudioError as e:  # names the file; nothing is written
        raise SystemExit(f"whisper_base_asr: {e}") from None
    settings = f"eval-utts{a.eval_utts or len(test)}" + (f"-beam{a.beam}" if a.beam > 1 else "")
    hyps_dir = Path(a.out) / "hyps" / Path(a.corpus).name / settings
    write_hyps(metrics, hyps_dir)
    command = " ".join(["python", "recipes/whisper_base_asr.py", *(argv if argv is not None else sys.argv[1:])])
    results = {"task": "asr_whisper_base", "corpus": a.corpus, "eval_utts": len(test), "beam": a.beam,
               "metrics": metrics, "started": started, "wall_s": round(time.time() - t0, 1), "machine": machine(),
               "git": commit, "command": command}  # the code that ran, not a commit made meanwhile
    (hyps_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if not a.no_results_md:
        append_row(Path(a.results_md), results_row(results))
    return results


if __name__ == "__main__":
    main()

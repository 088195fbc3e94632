"""Measure a speech codec's resynthesis intelligibility: judge WER of decode(encode(x)) vs of x.

    nice -n 10 .venv/bin/python recipes/eval_codec.py --codec towers/assets/codec-default \
        --manifest DATA/test.jsonl --out runs/codec_eval/default --mel-baseline --librivox

For every utterance of the manifest (held-out voices: voices the codec never saw in training) the
judge (Whisper base, offline CTranslate2; ``--judge pocketsphinx`` for a second, non-Whisper judge)
transcribes the original audio and the codec's round trip; WER is corpus-level (total word errors /
total reference words, jiwer 4) against the manifest text, both sides through
``towers.scoring.normalize_text``; Whisper decodes greedily (``towers.judges.WhisperJudge`` defaults). ``--mel-baseline`` adds the unquantised log-mel -> Griffin-Lim row (the codec's
vocoder with no units), ``--librivox`` the five real read-speech clips of pocketsphinx-testdata.
Writes ``results.json`` (per-utterance transcripts too) and the round-tripped WAVs under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from towers.audio import load_audio, save_audio  # noqa: E402
from towers.codec import SHIPPED_CODECS, load_codec  # noqa: E402
from towers.corpus import read_manifest  # noqa: E402
from towers.scoring import normalize_text as normalise  # noqa: E402
from towers.scoring import wer as judges_wer  # noqa: E402

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def make_judge(name: str, beam: int = 1):
    """``transcribe(wave float32 (n,), sample_rate) -> raw str`` with the project's judges (Whisper: ``beam``);
    the judge resamples to its own rate."""
    from towers.judges import PocketsphinxJudge, WhisperJudge

    judge = WhisperJudge(cpu_threads=2, beam_size=beam) if name == "whisper" else PocketsphinxJudge()
    return lambda w, sr: judge.transcribe_one((np.asarray(w, dtype=np.float32), sr))


def wer(refs: list[str], hyps: list[str]) -> float:
    return judges_wer(refs, hyps).wer  # towers.scoring: normalize_text on both sides, corpus-level


def load_items(manifest: str | list[str] | None, n: int, librivox: bool) -> list[dict]:
    """The rows of one or more manifests (the first ``n`` of them all; 0 = all), then the LibriVox clips."""
    if n < 0:
        raise ValueError(f"n must be >= 0 (0: all rows), got {n}")
    items = []
    for m in [manifest] if isinstance(manifest, str) else manifest or []:
        for r in read_manifest(m, require=("audio_filepath", "text")):  # OSError / ValueError on a bad manifest
            items.append({"set": "held-out voices", "path": r["audio_filepath"], "text": r["text"],
                          "voice": r.get("voice", "?")})
    items = items[: n or None]
    if librivox:
        trans = {}
        for line in (LIBRIVOX / "transcription").read_text().splitlines():
            m = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
            if m:
                trans[m.group(2)] = m.group(1)
        for fid, text in sorted(trans.items()):
            items.append({"set": "LibriVox (real human)", "path": str(LIBRIVOX / f"{fid}.wav"), "text": text,
                          "voice": "librivox"})
    return items


def set_vocoder(codec, n_iter: int | None = None, seed: int | None = None) -> None:
    """Override the Griffin-Lim iterations and phase seed of ``codec``'s vocoder (None: keep the codec's)."""
    if n_iter is not None:
        codec.vocoder.griffin_lim.n_iter = n_iter
    if seed is not None:
        codec.vocoder.seed = seed


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codec", required=True, help=f"codec directory, or a shipped codec name ({', '.join(SHIPPED_CODECS)})")
    ap.add_argument("--manifest", nargs="+", help="JSONL(s) of held-out utterances (audio_filepath, text, voice)")
    ap.add_argument("--n", type=int, default=0, help="use the first N manifest rows (0: all)")
    ap.add_argument("--librivox", action="store_true", help="also evaluate the 5 pocketsphinx-testdata LibriVox clips")
    ap.add_argument("--mel-baseline", action="store_true", help="also judge unquantised log-mel -> Griffin-Lim")
    ap.add_argument("--judge", default="whisper", choices=["whisper", "pocketsphinx"], help="ASR judge")
    ap.add_argument("--beam", type=int, default=1,
                    help="Whisper judge beam size (1: greedy, the default of every table; 5 loops less on buzzy audio)")
    ap.add_argument("--gl-iters", type=int, help="decode with this many Griffin-Lim iterations (default: the codec's)")
    ap.add_argument("--gl-seed", type=int, help="Griffin-Lim's random-phase seed (default: the codec's, 0); another "
                                                "seed shows how far the phase draw alone moves the judge")
    ap.add_argument("--out", required=True, help="output directory (results.json + round-tripped WAVs)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    if args.beam < 1:
        ap.error(f"--beam must be >= 1, got {args.beam}")
    if args.gl_iters is not None and args.gl_iters < 1:
        ap.error(f"--gl-iters must be >= 1, got {args.gl_iters}")
    if args.n < 0:
        ap.error(f"--n must be >= 0 (0: all rows), got {args.n}")
    try:  # read the manifests before loading the codec and the judge: a bad one costs nothing
        items = load_items(args.manifest, args.n, args.librivox)
    except (OSError, ValueError) as e:
        ap.error(f"--manifest: {e}")
    if not items:
        ap.error("nothing to evaluate: give --manifest and/or --librivox")
    codec = load_codec(args.codec)
    set_vocoder(codec, args.gl_iters, args.gl_seed)
    transcribe = make_judge(args.judge, args.beam)
    out = Path(args.out)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    from tqdm import tqdm

    t0 = time.time()
    for it in tqdm(items, desc="encode/decode/judge", mininterval=5):
        x, sr = load_audio(it["path"], target_sr=codec.sample_rate)
        units = codec.encode(x, sr)
        y, ysr = codec.decode(units)
        y = y.numpy()
        peak = float(np.abs(y).max())
        y = y / peak * 0.7 if peak > 0 else y
        stem = Path(it["path"]).stem
        save_audio(out / "wav" / f"{stem}.codec.wav", y, ysr, overwrite=True)
        it.update(units=len(units), seconds=len(x) / sr, ref=normalise(it["text"]),
                  hyp_original=normalise(transcribe(x, sr)), hyp_codec=normalise(transcribe(y, ysr)))
        if args.mel_baseline and hasattr(codec, "vocoder"):
            m = codec.vocoder(codec.mel(torch.from_numpy(x))).numpy()
            m = m / max(1e-6, float(np.abs(m).max())) * 0.7
            it["hyp_mel_gl"] = normalise(transcribe(m, codec.sample_rate))
    rows = []
    for set_name in dict.fromkeys(i["set"] for i in items):
        sub = [i for i in items if i["set"] == set_name]
        refs = [i["ref"] for i in sub]
        row = {"set": set_name, "utterances": len(sub), "voices": len({i["voice"] for i in sub}),
               "minutes": round(sum(i["seconds"] for i in sub) / 60, 2),
               "wer_original": wer(refs, [i["hyp_original"] for i in sub]),
               "wer_codec": wer(refs, [i["hyp_codec"] for i in sub])}
        if args.mel_baseline:
            row["wer_mel_gl"] = wer(refs, [i["hyp_mel_gl"] for i in sub])
        row["ratio"] = row["wer_codec"] / max(row["wer_original"], 1e-9)
        # robust to Whisper's repetition loops (one looping clip can add hundreds of insertions)
        row["median_utt_wer_original"] = float(np.median([wer([i["ref"]], [i["hyp_original"]]) for i in sub]))
        row["median_utt_wer_codec"] = float(np.median([wer([i["ref"]], [i["hyp_codec"]]) for i in sub]))
        rows.append(row)
        if set_name.startswith("held-out"):  # per-voice breakdown
            for v in sorted({i["voice"] for i in sub}):
                vs = [i for i in sub if i["voice"] == v]
                print(f"  {v:32s} original {wer([i['ref'] for i in vs], [i['hyp_original'] for i in vs]):6.1%}"
                      f"  codec {wer([i['ref'] for i in vs], [i['hyp_codec'] for i in vs]):6.1%}")
    result = {"command": " ".join(sys.argv), "codec": args.codec, "judge": args.judge, "judge_beam": args.beam,
              "gl_iters": codec.vocoder.griffin_lim.n_iter, "gl_seed": codec.vocoder.seed,
              "units_per_second": codec.units_per_second, "vocab_size": codec.vocab_size,
              "seconds": round(time.time() - t0, 1), "table": rows, "items": items}
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"codec {args.codec}: {codec.units_per_second:g} units/s, vocab {codec.vocab_size}, judge {args.judge}")
    print("| set | utts | voices | min | WER original | WER codec | ratio | median utt WER orig / codec |"
          + (" WER mel->GL |" if args.mel_baseline else ""))
    for r in rows:
        print(f"| {r['set']} | {r['utterances']} | {r['voices']} | {r['minutes']} | {r['wer_original']:.1%} | "
              f"{r['wer_codec']:.1%} | {r['ratio']:.2f} | {r['median_utt_wer_original']:.1%} / "
              f"{r['median_utt_wer_codec']:.1%} |" + (f" {r['wer_mel_gl']:.1%} |" if args.mel_baseline else ""))


if __name__ == "__main__":
    main()

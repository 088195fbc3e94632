"""Does a zip transcribe a recording longer than its training sentences? The 5 LibriVox clips (consecutive
sentences of one chapter, 24.7 s together) transcribed three ways by `zipper.tasks.transcribe_audio`, as
`zipper transcribe` does:

* **clips**: each clip alone, the texts joined (the reference point);
* **whole**: the clips concatenated into one recording, transcribed whole (``--chunk-seconds 0``);
* **chunked**: the same recording cut at its pauses into pieces of at most ``--chunk-seconds`` (default 10).

WER of each against the joined transcripts, and the pieces' boundaries:

    python recipes/diagnostics/long_audio.py --model runs/asr-medium-units-2100/model [--fusion]

With ``--corpus DIR``, the recordings are built from the corpus's test utterances (held-out voices; another
split by ``--split``): ``--recordings`` recordings of ``--per-recording`` consecutive utterances of one voice each,
played one after another, the voices taken in turn; WER pooled over the recordings' words, and each recording's.

``--pauses`` transcribes nothing (no model needed): the lengths of the recordings' pauses (`towers.chunking`'s quiet
runs, those inside a recording) at the utterances' boundaries and inside them, which tells whether a pause's length
could find where a sentence ends.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as `python recipes/diagnostics/long_audio.py`

from towers.audio import load_audio  # noqa: E402
from towers.chunking import CHUNK_SECONDS, FRAME_S, HOP_S, quiet_frames, quiet_runs  # noqa: E402
from towers.corpus import read_manifest  # noqa: E402
from towers.scoring import wer  # noqa: E402
from zipper.cli import _load_model, _load_model_codec  # noqa: E402
from zipper.ctc_beam import FUSION_BEAM, known_words  # noqa: E402
from zipper.data import librivox_examples  # noqa: E402
from zipper.tasks import transcribe_audio, transcribe_pieces  # noqa: E402


def test_recordings(corpus: str | Path, n: int, per: int, split: str = "test") -> list[list[dict]]:
    """``n`` lists of ``per`` consecutive rows of one voice each of the corpus's ``split``; the voices (sorted) taken
    in turn."""
    by_voice: dict[str, list[dict]] = {}
    for row in read_manifest(Path(corpus) / f"{split}.jsonl"):
        by_voice.setdefault(row["voice"], []).append(row)
    voices, recordings = sorted(by_voice), []
    for i in range(n):
        rows = by_voice[voices[i % len(voices)]][i // len(voices) * per:(i // len(voices) + 1) * per]
        if len(rows) < per:
            raise SystemExit(f"{corpus}: too few {split} utterances of {voices[i % len(voices)]} for {n} recordings "
                             f"of {per}")
        recordings.append(rows)
    return recordings


def pause_lengths(recordings: list[list[np.ndarray]], sr: int) -> dict[str, list[float]]:
    """The pauses (seconds) of each recording (its clips played one after another), as `towers.chunking.speech_chunks`
    finds them (runs of quiet frames, those touching a recording's start or end left out): ``"boundary"``, those
    within 0.05 s of where one clip ends and the next begins, and ``"inside"``, the others."""
    out: dict[str, list[float]] = {"boundary": [], "inside": []}
    for clips in recordings:
        wave = np.concatenate(clips)
        bounds = np.cumsum([len(c) for c in clips])[:-1] / sr
        _, quiet = quiet_frames(wave, sr)
        for i, j in quiet_runs(quiet):
            if i == 0 or j == len(quiet):
                continue
            start, end = i * HOP_S, (j - 1) * HOP_S + FRAME_S
            at = any(start - 0.05 <= b <= end + 0.05 for b in bounds)
            out["boundary" if at else "inside"].append(round(end - start, 3))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", help="a trained ASR zip directory (not with --pauses)")
    p.add_argument("--fusion", action="store_true", help="decode by the fused CTC search (a character CTC head)")
    p.add_argument("--chunk-seconds", type=float, default=CHUNK_SECONDS, help="longest piece of the chunked run")
    p.add_argument("--corpus", help="build the recordings from this corpus's test utterances instead of LibriVox")
    p.add_argument("--recordings", type=int, default=8, help="with --corpus: how many recordings")
    p.add_argument("--per-recording", type=int, default=7, help="with --corpus: utterances in each recording")
    p.add_argument("--split", default="test", help="with --corpus: the split whose utterances make the recordings")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--pauses", action="store_true", help="only the pauses' lengths at the clips' boundaries and inside "
                                                         "them (no model)")
    a = p.parse_args(argv)
    if a.recordings < 1 or a.per_recording < 1:
        p.error("--recordings and --per-recording must be >= 1")
    if not a.model and not a.pauses:
        p.error("--model is required (but for --pauses)")
    torch.set_num_threads(a.threads)
    codec, model = (None, None) if a.pauses else (_load_model_codec(a.model), _load_model(a.model))
    sr = codec.sample_rate if codec else 16000
    if a.corpus:
        recordings = test_recordings(a.corpus, a.recordings, a.per_recording, a.split)
    else:
        recordings = [librivox_examples(codec)]
        if not recordings[0]:
            raise SystemExit("the LibriVox clips of Debian's pocketsphinx-testdata are not installed (make setup)")
    fusion = dict(beam=FUSION_BEAM, words=known_words(a.model)) if a.fusion else None
    waves = [[load_audio(c["audio_filepath"], target_sr=sr) for c in rows] for rows in recordings]
    if a.pauses:
        lengths = pause_lengths([[w for w, _ in ws] for ws in waves], sr)
        result = {"source": a.corpus or "librivox", "recordings": len(waves), **{
            k: {"n": len(v), "percentiles_10_50_90": np.percentile(v, [10, 50, 90]).round(3).tolist() if v else [],
                "max": max(v, default=None)} for k, v in lengths.items()}}
        median = float(np.median(lengths["boundary"])) if lengths["boundary"] else float("inf")
        result["inside_at_least_the_median_boundary"] = sum(x >= median for x in lengths["inside"])
        print(json.dumps(result, indent=2))
        return result
    wholes = [(np.concatenate([w for w, _ in ws]), ws[0][1]) for ws in waves]
    refs = [" ".join(c["text"] for c in rows) for rows in recordings]
    chunked = transcribe_pieces(model, codec, wholes, chunk_seconds=a.chunk_seconds, fusion=fusion, progress=True)
    alone = iter(transcribe_audio(model, codec, [w for ws in waves for w in ws], chunk_seconds=0, fusion=fusion,
                                  progress=True))
    hyps = {"clips": [" ".join(next(alone) for _ in ws) for ws in waves],
            "whole": transcribe_audio(model, codec, wholes, chunk_seconds=0, fusion=fusion, progress=True),
            "chunked": [" ".join(p["text"] for p in ps if p["text"]) for ps in chunked]}
    per_recording = [
        {"seconds": round(len(w) / sr, 2), "clip_boundaries_s": [round(b, 2) for b in bounds],
         "pieces_s": [(p["start"], p["end"]) for p in ps], "reference": ref,
         **{f"wer_{k}": round(100 * wer([ref], [h[i]]).wer, 1) for k, h in hyps.items()},
         **{f"hyp_{k}": h[i] for k, h in hyps.items()}}
        for i, ((w, sr), ws, ps, ref) in enumerate(zip(wholes, waves, chunked, refs))
        for bounds in [np.cumsum([len(x) for x, _ in ws])[:-1] / sr]]
    result = {"model": a.model, "decoding": "fused" if a.fusion else "greedy",
              "source": a.corpus or "librivox", "recordings": len(refs), "words": sum(len(r.split()) for r in refs),
              **{f"wer_{k}": round(100 * wer(refs, h).wer, 1) for k, h in hyps.items()}}
    if len(per_recording) == 1:  # LibriVox: one recording, reported flat as before
        result.update({k: v for k, v in per_recording[0].items() if not k.startswith("wer_")})
    else:
        result["per_recording"] = per_recording
    print(json.dumps(result, indent=2))
    return result

if __name__ == "__main__":
    main()

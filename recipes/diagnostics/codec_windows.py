"""Does the unit decoder lose anything by reading a whole utterance at once? A decode-side probe.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/diagnostics/codec_windows.py --window 96 --context 16 -- \
        --codec whisper-proj-joe --manifest runs/codec_data/test.jsonl --threads 1 --out runs/codec_eval/win96

The decoder (`towers.unit_decoder.UnitToMel`) normalises with ``GroupNorm(1, C)``: statistics over all
channels *and all frames* of an utterance. It is trained on random crops of ``train.crop_units`` (96)
units, and decodes a whole utterance (2-10 s) at once, so its normalisation sees other statistics at test
time than in training. Here the Whisper-unit codec's ``decode_mel`` is replaced by one that decodes
windows of ``--window`` units, each with ``--context`` units of context on both sides (dropped after
decoding), and everything after ``--`` goes to `recipes/eval_codec.py` unchanged. Compare with the same
evaluation without this wrapper (``--window 0``) on the same utterances: `recipes/codec_groups.py A B --paired`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from towers.whisper_units import WhisperUnitCodec  # noqa: E402


def windowed(decode_mel, window: int, context: int):
    """``decode_mel`` applied to windows of ``window`` units with ``context`` units each side, concatenated."""

    @torch.no_grad()
    def run(self, units) -> torch.Tensor:
        u = self._check_units(units)  # (U,)
        if window <= 0 or len(u) <= window + 2 * context:
            return decode_mel(self, u)
        parts = []
        for s in range(0, len(u), window):
            lo, hi = max(0, s - context), min(len(u), s + window + context)
            mel = decode_mel(self, u[lo:hi])  # (F, n_mels), F = (hi - lo) * frames a unit
            per = mel.shape[0] // (hi - lo)
            n = min(window, len(u) - s)
            parts.append(mel[(s - lo) * per:(s - lo + n) * per])
        return torch.cat(parts)  # (U * frames a unit, n_mels)

    return run


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    ours, rest = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--window", type=int, default=96, help="units a window (0: the whole utterance, as shipped)")
    p.add_argument("--context", type=int, default=16, help="units of context each side of a window")
    a = p.parse_args(ours)
    WhisperUnitCodec.decode_mel = windowed(WhisperUnitCodec.decode_mel, a.window, a.context)
    import eval_codec

    eval_codec.main(rest)


if __name__ == "__main__":
    main()

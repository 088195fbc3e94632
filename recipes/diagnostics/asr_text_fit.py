"""Is an ASR zip learning to listen, or memorising its training sentences? Teacher-forced text NLL on
training and on held-out utterances, with each utterance's own speech and with another's.

    OMP_NUM_THREADS=1 .venv/bin/python recipes/diagnostics/asr_text_fit.py --codec whisper-joe \
        --model runs/asr-medium-whisper-ctc-model-step526 runs/asr-medium-whisper-ctc/model --n 100

For each ``--model`` (an ASR zip directory) and each split (``train``, ``test`` of ``--corpus``; the first
``--n`` utterances) it prints ``zipper.tasks.source_use``: ``text_nll`` (nats per token with the right
speech), ``text_nll_other_speech`` and their difference ``speech_info``. A zip that listens lowers the
held-out ``text_nll``; one that memorises lowers the training one while the held-out one rises.
``--bare`` adds a row per split for the first model with every gate set to zero: the bare text tower
(with the forced text prefix), which reads no speech.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from towers.codec import load_codec  # noqa: E402
from zipper.data import load_split  # noqa: E402
from zipper.model import ZipperModel  # noqa: E402
from zipper.tasks import source_use  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", required=True, help="trained ASR zip directories")
    ap.add_argument("--codec", required=True, help="the codec their units come from (name or directory)")
    ap.add_argument("--corpus", default="data/corpus-medium", help="corpus whose train and test splits are used")
    ap.add_argument("--n", type=int, default=100, help="utterances per split (the first N)")
    ap.add_argument("--bare", action="store_true", help="also the first model with all gates zeroed (the bare text tower)")
    args = ap.parse_args(argv)

    codec = load_codec(args.codec)
    splits = {name: load_split(args.corpus, name, codec, progress=False, keep=lambda rows: rows[: args.n])
              for name in ("train", "test")}
    print("| model | split | text_nll | text_nll_other_speech | speech_info |\n|---|---|---|---|---|")
    runs = [(path, False) for path in args.model] + ([(args.model[0], True)] if args.bare else [])
    for path, bare in runs:
        model = ZipperModel.from_pretrained(path).eval()
        with torch.no_grad():
            if bare:  # tanh(0) = 0: every zip block and input projection is the identity
                for n, p in model.named_parameters():
                    if n.endswith("gate"):
                        p.zero_()
            for name, rows in splits.items():
                m = source_use(model, rows, "asr")
                label = f"{path} (all gates zero)" if bare else path
                print(f"| {label} | {name} | {m['text_nll']:.3f} | {m['text_nll_other_speech']:.3f} | "
                      f"{m['speech_info']:.3f} |", flush=True)


if __name__ == "__main__":
    main()

"""What the zip-probing diagnostics (xattn_mass.py, gate_scale.py) share: a trained zip, the direction it
reads in, and the first N utterances of one corpus split with the units of its codec."""
from __future__ import annotations

import argparse


def probe_parser(doc: str, split: str, corpus: str, n: int) -> argparse.ArgumentParser:
    """The arguments of a probe over the first ``n`` utterances of ``split``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a trained zip directory")
    ap.add_argument("--task", choices=("asr", "tts"), required=True, help="asr: text reads speech; tts: speech reads text")
    ap.add_argument("--codec", required=True, help="the codec of the model's units (name or directory)")
    ap.add_argument("--corpus", default=corpus, help=f"corpus whose {split} split is used")
    ap.add_argument("--n", type=int, default=n, help=f"{split} utterances (the first N)")
    return ap


def load_probe(args, split: str):
    """The zip (eval mode) and the first ``args.n`` examples of ``split``, with their units."""
    from towers.codec import load_codec
    from zipper.data import load_split
    from zipper.model import ZipperModel

    model = ZipperModel.from_pretrained(args.model).eval()
    first_n = lambda rows: rows[: args.n]  # noqa: E731  (encodes only these if the split has no unit cache)
    return model, load_split(args.corpus, split, load_codec(args.codec), progress=False, keep=first_n)

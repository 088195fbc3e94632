"""How often does real speech repeat a unit n-gram? The calibration of `zipper.tasks.cut_repeat`.

    python recipes/diagnostics/unit_repeats.py --corpus data/corpus-base --split test --codec whisper-proj-joe \
        --ngrams 8 12 16 20 25 30

``speak_units(..., repeat_ngram=n)`` cuts a generated utterance at the first n-gram that it already said
(a greedy loop). On recordings, which never loop, any cut is a false alarm: this prints, for each n, how many
of the split's utterances (their units, as the recipes encode and cache them) would be cut, and what share of
their units the cuts would drop. Choose n above where that reaches 0.
"""
from __future__ import annotations

import argparse
import json

from towers.codec import load_codec
from zipper.data import load_split
from zipper.tasks import cut_repeat


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", required=True, help="corpus directory (zipper data build)")
    p.add_argument("--split", default="test", help="split whose recordings to check (default test)")
    p.add_argument("--codec", default="whisper-proj-joe", help="codec name or directory (default whisper-proj-joe)")
    p.add_argument("--n", type=int, default=0, help="check only the first N utterances (0: all)")
    p.add_argument("--ngrams", type=int, nargs="+", default=[8, 12, 16, 20, 25, 30], help="n-gram lengths to try")
    a = p.parse_args(argv)
    if any(n < 2 for n in a.ngrams):
        p.error("--ngrams must be >= 2")
    keep = (lambda rows: rows[:a.n]) if a.n else None
    units = [ex["units"] for ex in load_split(a.corpus, a.split, load_codec(a.codec), keep=keep)]
    total = sum(len(u) for u in units)
    out = []
    for n in a.ngrams:
        kept = [len(cut_repeat(u, n)) for u in units]
        row = {"ngram": n, "utterances": len(units), "cut": sum(k < len(u) for k, u in zip(kept, units)),
               "units_dropped_pct": round(100 * (total - sum(kept)) / max(1, total), 2)}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


if __name__ == "__main__":
    main()

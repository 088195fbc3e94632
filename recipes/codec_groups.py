"""Per-voice-group WER of codec evaluations (the RESULTS_codec.md columns), from their results.json.

    .venv/bin/python recipes/codec_groups.py runs/codec_eval/whisper-joe-3600 runs/codec_eval/whisper-joe-10800

Groups: all held-out voices, the ones that are not ``--voice`` (default piper:joe, the single-speaker
decoders' training voice), that voice alone, and LibriVox. Each: corpus WER of the codec round trip,
its ratio to the original's WER, and the original's WER (``towers.judges.wer``).
"""
import argparse
import json
from pathlib import Path

from towers.judges import wer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("evals", nargs="+", help="recipes/eval_codec.py --out directories")
    ap.add_argument("--voice", default="piper:joe", help="the voice split out (default piper:joe)")
    args = ap.parse_args(argv)
    for d in args.evals:
        path = Path(d) / "results.json"
        if not path.is_file():
            ap.error(f"{path} does not exist: run recipes/eval_codec.py --out {d} first")
        items = json.loads(path.read_text())["items"]
        held = [i for i in items if i["set"].startswith("held-out")]
        groups = [("all", held), (f"not {args.voice}", [i for i in held if i["voice"] != args.voice]),
                  (args.voice, [i for i in held if i["voice"] == args.voice]),
                  ("LibriVox", [i for i in items if not i["set"].startswith("held-out")])]
        cells = []
        for name, sub in groups:
            if not sub:
                continue
            refs = [i["ref"] for i in sub]
            orig, codec = wer(refs, [i["hyp_original"] for i in sub]).wer, wer(refs, [i["hyp_codec"] for i in sub]).wer
            cells.append(f"{name} {codec:.1%} ({codec / max(orig, 1e-9):.2f}x, original {orig:.1%})")
        print(f"{d} | " + " | ".join(cells))


if __name__ == "__main__":
    main()

"""Per-voice-group WER of codec evaluations (the RESULTS_codec.md columns), from their results.json.

    .venv/bin/python recipes/codec_groups.py runs/codec_eval/whisper-joe-3600 runs/codec_eval/whisper-joe-10800

Groups: all held-out voices, the ones that are not ``--voice`` (default piper:joe, the single-speaker
decoders' training voice), that voice alone, and LibriVox. Each: corpus WER of the codec round trip,
its ratio to the original's WER, and the original's WER (``towers.scoring.wer``).

``--bootstrap N``: also a 95% interval of the held-out ratio, from N resamples of the utterances
(with replacement, seed 0): how far the ratio could move on another draw of test sentences.
``--paired`` (with ``--bootstrap N``): for every evaluation after the first, a 95% interval of its held-out
codec WER minus the first's, resampling the utterances both were run on (matched by audio path): the
test for "this codec beats that one" on the same sentences, which the two unpaired intervals overstate.
``--voices PREFIX`` restricts the held-out groups to voices starting with PREFIX (``!PREFIX``: the others).

``DIR1+DIR2``: one evaluation pooled from runs of the same codec on the same utterances that differ only
in Griffin-Lim's phase seed (``eval_codec.py --gl-seed``): WERs pool both runs' transcripts, and the
bootstrap resamples utterances with all their transcripts, so a paired difference averages over the seeds
instead of depending on one phase draw (which alone moves the held-out WER by up to ~1 point).
"""
import argparse
import json
import random
from pathlib import Path

from towers.scoring import wer


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("evals", nargs="+", help="recipes/eval_codec.py --out directories")
    ap.add_argument("--voice", default="piper:joe", help="the voice split out (default piper:joe)")
    ap.add_argument("--bootstrap", type=int, default=0, help="resamples for a 95%% interval of the held-out ratio (0: off)")
    ap.add_argument("--voices", metavar="PREFIX",
                    help="keep only the held-out utterances whose voice starts with PREFIX ('!PREFIX': the others), "
                         "e.g. --voices espeak")
    ap.add_argument("--paired", action="store_true",
                    help="with --bootstrap: interval of each evaluation's held-out codec WER minus the first's")
    args = ap.parse_args(argv)
    if args.paired and not args.bootstrap:
        ap.error("--paired needs --bootstrap N")
    first = None
    for d in args.evals:
        items = []
        for part in d.split("+"):
            path = Path(part) / "results.json"
            if not path.is_file():
                ap.error(f"{path} does not exist: run recipes/eval_codec.py --out {part} first")
            items += json.loads(path.read_text())["items"]
        held = [i for i in items if i["set"].startswith("held-out") and keep_voice(i["voice"], args.voices)]
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
        if args.bootstrap and held:
            lo, hi = bootstrap_ratio(held, args.bootstrap)
            cells.append(f"held-out ratio 95% interval [{lo:.2f}, {hi:.2f}] ({args.bootstrap} resamples)")
        if args.paired and first is not None:
            diff, lo, hi, n_common = paired_difference(first, held, args.bootstrap)
            cells.append(f"minus the first: {diff:+.1%} [{lo:+.1%}, {hi:+.1%}] on {n_common} shared utterances")
        first = held if first is None else first
        print(f"{d} | " + " | ".join(cells))


def keep_voice(voice: str, rule: str | None) -> bool:
    """``rule``: None keeps every voice, ``PREFIX`` those starting with it, ``!PREFIX`` the others."""
    if not rule:
        return True
    return not voice.startswith(rule[1:]) if rule.startswith("!") else voice.startswith(rule)


def by_utterance(items: list[dict]) -> dict[str, list[dict]]:
    """Items grouped by audio path, in first-seen order: one item per utterance, or one per pooled run."""
    groups: dict[str, list[dict]] = {}
    for i in items:
        groups.setdefault(i["path"], []).append(i)
    return groups


def _wer(groups, key: str) -> float:
    """Corpus WER of the ``key`` transcripts over every item of every (possibly repeated) utterance group."""
    flat = [i for g in groups for i in g]
    return wer([i["ref"] for i in flat], [i[key] for i in flat]).wer


def paired_difference(base: list[dict], items: list[dict], n: int, seed: int = 0) -> tuple[float, float, float, int]:
    """Held-out codec WER of ``items`` minus ``base``'s on the utterances (audio paths) both have, and the
    2.5% / 97.5% quantiles of that difference over ``n`` paired resamples of the utterances (each with
    all its pooled runs) -> (diff, lo, hi, shared)."""
    theirs, ours = by_utterance(base), by_utterance(items)
    pairs = [(theirs[p], g) for p, g in ours.items() if p in theirs]
    if not pairs:
        raise SystemExit("--paired: the evaluations share no utterances")

    def diff(sample):
        return _wer([g for _, g in sample], "hyp_codec") - _wer([b for b, _ in sample], "hyp_codec")

    rng = random.Random(seed)
    ds = sorted(diff([rng.choice(pairs) for _ in pairs]) for _ in range(n))
    return diff(pairs), ds[int(0.025 * n)], ds[min(n - 1, int(0.975 * n))], len(pairs)


def bootstrap_ratio(items: list[dict], n: int, seed: int = 0) -> tuple[float, float]:
    """2.5% and 97.5% quantiles of corpus WER(codec) / WER(original) over ``n`` utterance resamples."""
    rng, ratios, groups = random.Random(seed), [], list(by_utterance(items).values())
    for _ in range(n):
        s = [rng.choice(groups) for _ in groups]
        ratios.append(_wer(s, "hyp_codec") / max(_wer(s, "hyp_original"), 1e-9))
    ratios.sort()
    return ratios[int(0.025 * n)], ratios[min(n - 1, int(0.975 * n))]


if __name__ == "__main__":
    main()

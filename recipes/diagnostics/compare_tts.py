"""Is one TTS model's judge-WER really lower than another's? A paired bootstrap over the same sentences.

    python recipes/diagnostics/tts_decoding.py ... --save runs/a.jsonl '{}'      # model a
    python recipes/diagnostics/tts_decoding.py ... --save runs/b.jsonl '{}'      # model b, same sentences
    python recipes/diagnostics/compare_tts.py --a runs/a.jsonl --b runs/b.jsonl

Each side may pool several ``--save`` files (e.g. the recipe's 50 test sentences and the next 100); every
file must hold one decoding setting. The sentences both sides spoke are paired by their text. Prints:

- both corpus judge-WERs, b minus a, and the 95% interval of that difference (points) over resamples of the
  sentences (`towers.scoring.paired_wer_difference`);
- on how many sentences each model makes fewer errors, with the sign test's p-value: a few runaway outputs
  can carry a corpus WER, and these counts are not moved by them;
- each side's runaways: sentences where the judge makes more than 2 errors per reference word (a decoder
  that does not stop, heard as a repeated phrase).

An interval that excludes 0 means the gap is larger than what resampling these sentences moves; it says
nothing about training seeds, which need their own runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from towers.scoring import paired_wer_difference, paired_wer_report, wer

RUNAWAY = 2  # a sentence whose transcript has more than this many errors per reference word


def read_side(paths: list[str], sources: list | None = None) -> dict[str, str]:
    """{sentence text: what the judge heard} over one side's files; one setting per file, no repeats. Each
    file's ``source`` lines (what produced it; None in files saved before they were written) are appended to
    ``sources``."""
    heard: dict[str, str] = {}
    for path in paths:
        try:
            raw = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
            rows = [{"setting": r["setting"], "text": r["text"], "judge_heard": r["judge_heard"]} for r in raw]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise SystemExit(f"{path}: not a readable tts_decoding.py --save file ({type(e).__name__}: {e})") from None
        if not rows:
            raise SystemExit(f"{path}: no sentences")
        if sources is not None:  # each distinct source once
            sources.extend({json.dumps(r.get("source"), sort_keys=True): r.get("source") for r in raw}.values())
        if len({json.dumps(r["setting"], sort_keys=True) for r in rows}) > 1:
            raise SystemExit(f"{path} holds several decoding settings: save one setting per file to compare")
        for r in rows:
            if r["text"] in heard:
                raise SystemExit(f"{path}: the sentence {r['text']!r} appears twice on one side")
            heard[r["text"]] = r["judge_heard"]
    return heard


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--a", nargs="+", required=True, help="model a's tts_decoding.py --save files")
    p.add_argument("--b", nargs="+", required=True, help="model b's files (the same sentences)")
    p.add_argument("--n", type=int, default=2000, help="bootstrap resamples")
    a = p.parse_args(argv)
    src_a, src_b = [], []
    side_a, side_b = read_side(a.a, src_a), read_side(a.b, src_b)
    for side, sources in (("a", src_a), ("b", src_b)):
        for s in sources:
            print(f"model {side}: " + (f"{s.get('model')} (voice {s.get('voice') or 'none'}, git {s.get('git')}): "
                                       f"{s.get('command')}" if isinstance(s, dict) else "a file saved without its source"))
    texts = [t for t in side_a if t in side_b]
    if not texts:
        raise SystemExit("the two sides share no sentences")
    out = paired_wer_difference(texts, [side_a[t] for t in texts], [side_b[t] for t in texts], n=a.n)
    out, said = paired_wer_report(out, "sentences", "judge-WER")
    for side, heard in (("a", side_a), ("b", side_b)):
        scored = [wer(t, heard[t]) for t in texts]
        out[f"runaways_{side}"] = sum(e.errors > RUNAWAY * max(1, e.n_ref) for e in scored)
    out.update(only_a=len(side_a) - len(texts), only_b=len(side_b) - len(texts))
    print(f"{said}; runaways: a {out['runaways_a']}, b {out['runaways_b']}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

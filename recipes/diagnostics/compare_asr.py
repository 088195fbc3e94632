"""Is one ASR model's WER really lower than another's? A paired bootstrap over the same utterances.

    zipper eval CONFIG_A --model runs/a/model --fusion   # writes runs/a/hyps/model/test_asr_fusion.jsonl
    zipper eval CONFIG_B --model runs/b/model --fusion   # (`zipper train` writes its test's files there too;
                                                         # --eval-utts 100: in runs/b/hyps/model/eval-utts100/)
    python recipes/diagnostics/compare_asr.py runs/a/hyps/model/test_asr_fusion.jsonl \\
        runs/b/hyps/model/test_asr_fusion.jsonl [--field ctc_hyp] [--field-b FIELD] [--by-voice]

The files are `zipper.recipe.write_hyps`'s: one utterance a line, ``{"id", "voice", "ref", "hyp"}`` (and
``ctc_hyp`` for greedy decoding with a CTC head). Utterances are paired by id; a shared id must have the
same reference on both sides. Prints both corpus WERs, b minus a with the 95% interval of that difference
over resamples of the utterances (`towers.scoring.paired_wer_difference`), and on how many utterances each
makes fewer errors with the sign test's p-value; with ``--by-voice``, both WERs and CERs on each voice's utterances
too. ``--field-b`` reads another field on b's side: a zip's CTC head (``ctc_hyp``) against another model's
transcripts (``hyp``), e.g. Whisper-base's (recipes/whisper_base_asr.py).
An interval that excludes 0 means the gap is larger than what resampling these utterances moves; it says nothing
about training seeds, which need their own runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from towers.scoring import by_voice, paired_wer_difference, paired_wer_report


def read_hyps(path: str, field: str) -> dict[str, tuple[str, str, str]]:
    """{utterance id: (reference, the ``field`` hypothesis, voice ("?" if not given))} of one write_hyps file."""
    try:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
        pairs = [(str(r["id"]), r["ref"], r[field], str(r.get("voice", "?"))) for r in rows]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise SystemExit(f"{path}: not a hypotheses file with ids, references and {field!r} "
                         f"({type(e).__name__}: {e})") from None
    out: dict[str, tuple[str, str, str]] = {}
    for uid, ref, hyp, voice in pairs:
        if uid in out:
            raise SystemExit(f"{path}: the utterance {uid!r} appears twice")
        out[uid] = (ref, hyp, voice)
    if not out:
        raise SystemExit(f"{path}: no utterances")
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="model a's hypotheses file (<run>/hyps/<model>/<metric>.jsonl)")
    p.add_argument("b", help="model b's file for the same test")
    p.add_argument("--field", default="hyp", help="the hypothesis compared: hyp (the decoder's) or ctc_hyp")
    p.add_argument("--field-b", default=None, help="the field read on b's side (default: --field's)")
    p.add_argument("--n", type=int, default=2000, help="bootstrap resamples")
    p.add_argument("--by-voice", action="store_true",
                   help="also both WERs and CERs on each voice's utterances (a's voices)")
    a = p.parse_args(argv)
    side_a, side_b = read_hyps(a.a, a.field), read_hyps(a.b, a.field_b or a.field)
    ids = [u for u in side_a if u in side_b]
    if not ids:
        raise SystemExit("the two files share no utterance ids")
    for u in ids:
        if side_a[u][0] != side_b[u][0]:
            raise SystemExit(f"utterance {u!r} has another reference in each file: {side_a[u][0]!r} / {side_b[u][0]!r}")
    out = paired_wer_difference([side_a[u][0] for u in ids], [side_a[u][1] for u in ids],
                                [side_b[u][1] for u in ids], n=a.n)
    out, said = paired_wer_report(out)
    out.update(only_a=len(side_a) - len(ids), only_b=len(side_b) - len(ids))
    if a.by_voice:
        refs, voices = [side_a[u][0] for u in ids], [side_a[u][2] for u in ids]
        per_a = by_voice(refs, [side_a[u][1] for u in ids], voices)
        per_b = by_voice(refs, [side_b[u][1] for u in ids], voices)
        out["by_voice"] = {v: {"n_utts": m["n_utts"], "n_words": m["n_words"], "wer_a": m["wer"],
                               "wer_b": per_b[v]["wer"], "cer_a": m["cer"], "cer_b": per_b[v]["cer"]}
                           for v, m in per_a.items()}
        said += "\n" + "\n".join(f"  {v}: {d['n_utts']} utterances, {d['n_words']} words: a {d['wer_a']:.2f}%, "
                                  f"b {d['wer_b']:.2f}% (CER a {d['cer_a']:.2f}%, b {d['cer_b']:.2f}%)"
                                  for v, d in out["by_voice"].items())
    print(said)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

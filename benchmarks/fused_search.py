"""How much do searching utterances together and scoring lazily save the fused CTC search?

Fused decoding (``zipper eval --fusion``, ``zipper transcribe --fusion``: zipper.tasks.fused_transcribe_units)
runs a CTC prefix beam search per utterance in which the zipped text decoder scores every text of completed
words (zipper/ctc_beam.py, zipper/text_scorer.py). Variants, timed interleaved on the same utterances, each adding
one change to the one before:

* **before**: one utterance at a time, every candidate scored, a frame's texts in one padded batch (the search
  before 2026-12-06: ``batch_size=1``, ``lazy=False``, ``spread=inf``, ``read_one_token=False``, ``bounds=False``);
* **+ lazy**: only the candidates whose upper bound reaches the beam are scored;
* **+ by suffix length**: a frame's texts batched by how many new tokens they run (``spread=1.5``), not padded to
  the longest;
* **+ one token read**: a text one token past a scored one (most one-token words, an EOS) costs no forward, its
  log-prob read off the scored text's next-token log-probs (``read_one_token``); its keys and values are computed
  only if a longer text needs them;
* **+ first-token bounds**: before a text is scored, its bound is tightened by its new word's first token's log-prob
  (no forward: ``TextScorer.bounds``), and most candidates fall out of the beam without being scored (``bounds``);
* **+ together**: ``--batch-size`` searches at once, their texts in shared forwards (the default).

Reports seconds per utterance, the ratios against **before**, texts scored, forwards run, and how many transcripts
equal **before**'s (the same search; scores differ only by float rounding between batch layouts).

    python -m benchmarks.fused_search --model runs/asr-medium-units-2100-input/model --corpus data/corpus-medium --utts 8
    python -m benchmarks.fused_search --smoke      # seconds, tiny towers with random units (CI)
"""
from __future__ import annotations

from pathlib import Path

import torch

from benchmarks import common
from benchmarks.ctc_head import RECIPE_ZIP
from benchmarks.fused_decode import _LetterTokenizer
from zipper import ZipperModel, ctc_beam
from zipper import text_scorer
from zipper.tasks import fused_transcribe_units, speech_inputs

NAME = "fused_search"
VARIANTS = {"before": (1, False, float("inf"), False, False), "+ lazy": (1, True, float("inf"), False, False),
            "+ by suffix length": (1, True, 1.5, False, False), "+ one token read": (1, True, 1.5, True, False),
            "+ first-token bounds": (1, True, 1.5, True, True),
            "+ together": (8, True, 1.5, True, True)}  # batch size, lazy, spread, read_one_token, bounds


def parse_args(argv=None, description: str | None = None, utts: int = 16):
    """The options of a benchmark of the fused search on a zip's test utterances (this one's and benchmarks/int8.py's)."""
    p = common.make_parser(description or __doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="a trained character-CTC ASR zip (required unless --smoke)")
    p.add_argument("--corpus", type=Path, help="the corpus whose first --utts test utterances are transcribed")
    p.add_argument("--utts", type=int, default=utts, help="test utterances per round")
    p.add_argument("--batch-size", type=int, default=8, help="utterances searched together (1: as one file is)")
    p.set_defaults(warmup=0, steps=1)
    args = p.parse_args(argv)
    common.setup(args, argv)
    if args.utts < 1 or args.batch_size < 1:
        p.error("--utts and --batch-size must be >= 1")
    if not args.smoke and (args.model is None or args.corpus is None):
        p.error("--model and --corpus are required (or --smoke)")
    if args.smoke:
        args.utts, args.warmup, args.steps = 4, 0, 1
    return args


def real_inputs(args) -> tuple:
    """The zip, its test utterances' units (and states), and its known words."""
    from towers.audio import load_audio
    from towers.corpus import read_manifest
    from zipper.cli import _load_model, _load_model_codec

    codec, model = _load_model_codec(str(args.model)), _load_model(str(args.model))
    rows = read_manifest(args.corpus / "test.jsonl")[: args.utts]
    units, states = speech_inputs(model, codec, [load_audio(r["audio_filepath"], target_sr=codec.sample_rate)
                                                 for r in rows])
    return model, units, states, dict(words=ctc_beam.known_words(args.model))


def tiny_inputs(args) -> tuple:
    """A tiny character-CTC zip (random weights, a letter tokenizer) and random units: the same code paths."""
    speech, text = common.speech_tower(True, seed=args.seed), common.text_tower(True)
    text.tokenizer = _LetterTokenizer()
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], ctc_directions=["speech->text"],
                                    ctc_units="chars", ctc_weight=0.5, **RECIPE_ZIP).eval()
    g = torch.Generator().manual_seed(args.seed)
    units = [torch.randint(0, 100, (40,), generator=g) for _ in range(args.utts)]
    return model, units, None, dict(unk_penalty=0.0, beam=4)  # no lexicon: the letter tokenizer has no words


def main(argv=None) -> dict:
    args = parse_args(argv)
    model, units, states, kwargs = tiny_inputs(args) if args.smoke or args.tiny else real_inputs(args)
    variants = {name: (args.batch_size if bs > 1 else 1, *rest) for name, (bs, *rest) in VARIANTS.items()}
    outputs, texts, forwards = {}, {}, {}
    search, together = ctc_beam.prefix_beam_search, text_scorer.score_together

    def run(name: str) -> None:
        batch_size, lazy, spread, read_one_token, bounds = variants[name]
        counts = {"texts": 0, "forwards": 0}

        def counted_together(requests, *a, **k):
            counts["texts"] += sum(len(t) for _, t, _ in requests)
            return together(requests, *a, **{**k, "spread": spread, "read_one_token": read_one_token})  # its batch size

        def counted_extend(jobs, _extend=text_scorer._extend):
            counts["forwards"] += 1
            return _extend(jobs)

        forced = {"lazy": lazy, "bounds": bounds}  # over zipper.tasks' own bounds=True
        patches = {(ctc_beam, "prefix_beam_search"): lambda *a, **k: search(*a, **{**k, **forced}),
                   (text_scorer, "score_together"): counted_together, (text_scorer, "_extend"): counted_extend}
        saved = {k: getattr(*k) for k in patches}
        try:
            for (mod, attr), fn in patches.items():
                setattr(mod, attr, fn)
            outputs[name] = fused_transcribe_units(model, units, states=states, batch_size=batch_size, **kwargs)
        finally:
            for (mod, attr), fn in saved.items():
                setattr(mod, attr, fn)
        texts[name], forwards[name] = counts["texts"], counts["forwards"]

    with torch.no_grad():
        times = common.interleaved({v: (lambda v=v: run(v)) for v in variants}, args.warmup, args.steps)
    base = next(iter(variants))
    per_utt = {v: [t / len(units) for t in times[v]] for v in variants}
    rows = [{"variant": v, "s_per_utterance": common.fmt_stat(common.summarize(per_utt[v]), unit=" s"),
             "speed-up": f"{common.ratios(times[base], times[v])['median']:.2f}x", "texts": texts[v],
             "forwards": forwards[v], "same_transcripts": sum(a == b for a, b in zip(outputs[v], outputs[base]))}
            for v in variants]
    common.print_table(rows, ["variant", "s_per_utterance", "speed-up", "texts", "forwards", "same_transcripts"],
                       title=f"{len(units)} utterances, batch {args.batch_size}")
    best = "+ together"
    result = {"rows": rows, "per_utterance_s": {v: common.summarize(per_utt[v]) for v in variants},
              "setup": {"utterances": len(units), "batch_size": args.batch_size, "model": str(args.model),
                        "threads": torch.get_num_threads()}}
    steps = ", ".join(f"{r['variant']} {r['speed-up']}" for r in rows[1:])
    headline = (f"fused search, {len(units)} utterances: {rows[-1]['speed-up']} faster than before "
                f"({common.summarize(per_utt[best])['median']:.2f} vs {common.summarize(per_utt[base])['median']:.2f} "
                f"s an utterance; {steps}; texts {texts[base]} -> {texts[best]}, forwards {forwards[base]} -> "
                f"{forwards[best]}; same transcripts as before {rows[-1]['same_transcripts']}/{len(units)})")
    print(headline)
    common.write_results(NAME, args, result, headline)
    return result


if __name__ == "__main__":
    main()

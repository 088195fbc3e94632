"""How much do searching utterances together and scoring lazily save the fused CTC search?

Fused decoding (``zipper eval --fusion``, ``zipper transcribe --fusion``: zipper.tasks.fused_transcribe_units)
runs a CTC prefix beam search per utterance in which the zipped text decoder scores every text of completed
words (zipper/ctc_beam.py). Each frame asks for a few texts, and a forward of SmolLM2 costs about as much for
one row as for dozens (its weights are read once), so the search is bound by the number of forwards. Variants,
timed interleaved on the same utterances:

* **one by one, every candidate**: the search before 2026-12-06 (``batch_size=1``, ``lazy=False``);
* **one by one, lazy**: only candidates whose upper bound reaches the beam are scored;
* **together, every candidate**: ``batch_size`` searches at once, their requests in shared forwards;
* **together, lazy**: both (the default).

Reports seconds per utterance, the ratios against the first, texts scored, forwards run, and how many transcripts
equal the first variant's (the same search; scores differ only by float rounding between batch layouts).

    python -m benchmarks.fused_search --model runs/asr-medium-units-2100-input/model --corpus data/corpus-medium
    python -m benchmarks.fused_search --smoke      # seconds, tiny towers with random units (CI)
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from benchmarks import common
from benchmarks.ctc_head import RECIPE_ZIP
from benchmarks.fused_decode import _LetterTokenizer
from zipper import ZipperModel, ctc_beam
from zipper import text_scorer
from zipper.tasks import fused_transcribe_units

NAME = "fused_search"
VARIANTS = {"one by one, every candidate": (1, False), "one by one, lazy": (1, True),
            "together, every candidate": (8, False), "together, lazy": (8, True)}


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.add_argument("--model", type=Path, help="a trained character-CTC ASR zip (required unless --smoke)")
    p.add_argument("--corpus", type=Path, help="the corpus whose first --utts test utterances are transcribed")
    p.add_argument("--utts", type=int, default=16, help="test utterances per round")
    p.add_argument("--batch-size", type=int, default=8, help="utterances searched together")
    p.set_defaults(warmup=0, steps=1)
    args = p.parse_args(argv)
    common.setup(args, argv)
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
    from zipper.data import reads_states, states_and_units

    codec, model = _load_model_codec(str(args.model)), _load_model(str(args.model))
    rows = read_manifest(args.corpus / "test.jsonl")[: args.utts]
    waves = [load_audio(r["audio_filepath"], target_sr=codec.sample_rate) for r in rows]
    states = None
    if reads_states(model):
        states, units = map(list, zip(*(states_and_units(codec, w, sr) for w, sr in waves)))
    else:
        units = [codec.encode(w, sr) for w, sr in waves]
    known = args.model / ctc_beam.KNOWN_WORDS_FILE
    words = ctc_beam.read_word_list(known) if known.is_file() else []
    return model, units, states, dict(words=words)


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
    variants = {name: (args.batch_size if bs > 1 else 1, lazy) for name, (bs, lazy) in VARIANTS.items()}
    outputs, texts, forwards = {}, {}, {}
    search, together = ctc_beam.prefix_beam_search, text_scorer.score_together

    def run(name: str) -> None:
        batch_size, lazy = variants[name]
        counts = {"texts": 0, "forwards": 0}

        def counted_together(requests, *a, **k):
            counts["texts"] += sum(len(t) for _, t, _ in requests)
            return together(requests, *a, **k)

        def counted_extend(jobs, _extend=text_scorer._extend):
            counts["forwards"] += 1
            return _extend(jobs)

        patches = {(ctc_beam, "prefix_beam_search"): functools.partial(search, lazy=lazy),
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
    best = "together, lazy"
    result = {"rows": rows, "per_utterance_s": {v: common.summarize(per_utt[v]) for v in variants},
              "setup": {"utterances": len(units), "batch_size": args.batch_size, "model": str(args.model),
                        "threads": torch.get_num_threads()}}
    headline = (f"fused search, {len(units)} utterances: together + lazy {rows[-1]['speed-up']} faster than one by "
                f"one scoring every candidate ({common.summarize(per_utt[best])['median']:.2f} vs "
                f"{common.summarize(per_utt[base])['median']:.2f} s an utterance; lazy alone "
                f"{rows[1]['speed-up']}, together alone {rows[2]['speed-up']}; texts {texts[base]} -> {texts[best]}, "
                f"forwards {forwards[base]} -> {forwards[best]}; same transcripts {rows[-1]['same_transcripts']}"
                f"/{len(units)})")
    print(headline)
    common.write_results(NAME, args, result, headline)
    return result


if __name__ == "__main__":
    main()

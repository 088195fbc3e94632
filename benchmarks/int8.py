"""What does running the text decoder in int8 (``zipper transcribe --int8``, zipper/quantize.py) gain in time and
cost in WER?

The same fused CTC search (``--fusion``: zipper.tasks.fused_transcribe_units) on the same test utterances, by two
copies of one zip: as saved (fp32) and with its text tower's linear layers int8. The two are timed interleaved
(``--steps`` rounds) and their transcripts scored against the corpus's texts: each WER, the paired difference with
its bootstrap interval (towers.scoring.paired_wer_difference) and how many transcripts are the same.

    python -m benchmarks.int8 --model runs/asr-medium-units-2100-input-tower/model --corpus data/corpus-medium --utts 100
    python -m benchmarks.int8 --smoke      # seconds, tiny towers with random units (CI; fp32's transcripts as references)
"""
from __future__ import annotations

import torch

from benchmarks import common
from benchmarks.fused_search import parse_args, real_inputs, tiny_inputs
from towers.scoring import paired_wer_difference, paired_wer_report
from zipper.quantize import Int8Linear, quantize_text_decoder
from zipper.tasks import fused_transcribe_units

NAME = "int8"


def main(argv=None) -> dict:
    args = parse_args(argv, __doc__.split("\n")[0], utts=100)
    if args.smoke or args.tiny:
        model, units, states, kwargs = tiny_inputs(args)
        int8, *_ = tiny_inputs(args)  # the same seed: the same weights
        refs = None
    else:
        from towers.corpus import read_manifest
        from zipper.cli import _load_model

        model, units, states, kwargs = real_inputs(args)
        int8 = _load_model(str(args.model))
        refs = [r["text"] for r in read_manifest(args.corpus / "test.jsonl")[: args.utts]]
    n_int8 = quantize_text_decoder(int8)
    assert not any(isinstance(m, Int8Linear) for m in model.modules()), "the fp32 zip shares a module with the int8 one"
    outputs = {}

    def run(name: str, m) -> None:
        outputs[name] = fused_transcribe_units(m, units, states=states, batch_size=args.batch_size, **kwargs)

    with torch.no_grad():
        times = common.interleaved({"fp32": lambda: run("fp32", model), "int8": lambda: run("int8", int8)},
                                   args.warmup, args.steps)
    per_utt = {v: [t / len(units) for t in times[v]] for v in times}
    speed_up = common.ratios(times["fp32"], times["int8"])
    same = sum(a == b for a, b in zip(outputs["fp32"], outputs["int8"]))
    wer, sentence = paired_wer_report(paired_wer_difference(refs or outputs["fp32"], outputs["fp32"], outputs["int8"]))
    wer["references"] = "the corpus's test texts" if refs else "fp32's transcripts (smoke)"
    rows = [{"variant": v, "s_per_utterance": common.fmt_stat(common.summarize(per_utt[v]), unit=" s"),
             "wer_%": wer["wer_a" if v == "fp32" else "wer_b"]} for v in per_utt]
    common.print_table(rows, ["variant", "s_per_utterance", "wer_%"],
                       title=f"{len(units)} utterances, batch {args.batch_size}, {n_int8} int8 layers")
    result = {"rows": rows, "per_utterance_s": {v: common.summarize(per_utt[v]) for v in per_utt},
              "speed_up": speed_up, "wer": wer, "same_transcripts": same,
              "setup": {"utterances": len(units), "batch_size": args.batch_size, "model": str(args.model),
                        "int8_layers": n_int8, "threads": torch.get_num_threads()}}
    headline = (f"int8 text tower, fused search of {len(units)} utterances (batch {args.batch_size}): "
                f"{speed_up['median']:.2f}x faster ({common.summarize(per_utt['int8'])['median']:.2f} vs "
                f"{common.summarize(per_utt['fp32'])['median']:.2f} s an utterance); {sentence} (a = fp32, b = int8); "
                f"same transcripts {same}/{len(units)}")
    print(headline)
    common.write_results(NAME, args, result, headline)
    return result


if __name__ == "__main__":
    main()

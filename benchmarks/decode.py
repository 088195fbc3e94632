"""How fast does a zip generate?

TTS direction, the realistic long-generation case: the prompt is a text segment (SmolLM2-135M), the
generating tower is the base speech tower (12 layers, width 512, 1024 units; 25 units/s, so 800
units = 32 s of speech), zipped at the default interval.

Forcing the length: a fresh tower would stop at a random EOS. Before zipping, the speech tower's
``lm_head`` (a bias-free Linear, tied to the embeddings) is given a bias that is 0 everywhere and
-1e9 at the EOS id; its weights are untouched, so EOS is never picked and every run generates
exactly ``max_new_tokens`` tokens (asserted).

Measured (variants interleaved, ratios within this run):
  * tokens/s with the KV cache vs without (``use_cache=False`` re-runs every segment each step,
    O(n^2)); uncached is capped at ``--uncached-max`` tokens (200 by default: 800 uncached steps on
    this CPU take tens of minutes) and the table says where it was skipped; lengths over 50 with an
    uncached run are timed in 2 rounds after a burn-in on 50-token runs, and the headline gives each
    ratio's number of rounds n;
  * per-token latency vs position with the cache: a forward hook on the speech tower timestamps
    every decoding step (one call per token), reported per position bucket;
  * batch 8 in one call vs the same 8 prompts one by one (throughput ratio);
  * beam search (4 beams) vs greedy, batch 1.

    python -m benchmarks.decode            # real towers
    python -m benchmarks.decode --smoke    # seconds, tiny towers (CI)
"""
from __future__ import annotations

import time

import torch
from torch import nn

from benchmarks import common
from zipper import Segment, ZipperModel

NAME = "decode"


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.add_argument("--lengths", default="50,200,800", help="comma-separated numbers of generated tokens")
    p.add_argument("--uncached-max", type=int, default=200,
                   help="longest generation timed without the KV cache (longer ones are skipped and reported so)")
    p.add_argument("--prompt-tokens", type=int, default=30, help="text prompt length in tokens")
    p.add_argument("--batch", type=int, default=8, help="batch size of the batched-vs-one-by-one comparison")
    p.add_argument("--batch-tokens", type=int, default=200, help="tokens generated in the batched and beam comparisons")
    p.add_argument("--beams", type=int, default=4, help="beam width compared with greedy")
    p.set_defaults(warmup=1, steps=3)
    args = p.parse_args(argv)
    common.setup(args, argv)
    if args.smoke:
        args.lengths, args.uncached_max, args.batch, args.batch_tokens, args.prompt_tokens = "5,20", 20, 4, 10, 8
    return args


def forbid_eos(tower) -> None:
    """Make EOS unreachable: a -1e9 bias at the EOS id on the (bias-free) output layer."""
    head = tower.model.get_output_embeddings()
    bias = torch.zeros(head.out_features)
    bias[tower.eos_token_id] = -1e9
    head.bias = nn.Parameter(bias, requires_grad=False)


class StepClock:
    """Timestamps each forward call of a module (one call per decoding step with the cache)."""

    def __init__(self, module: nn.Module):
        self.times: list[float] = []
        self.handle = module.register_forward_hook(lambda *a: self.times.append(time.perf_counter()))

    def reset(self) -> None:
        self.times = []

    def per_step(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]


def main(argv=None) -> dict:
    args = parse_args(argv)
    text = common.text_tower(args.tiny)
    speech = common.speech_tower(args.tiny, seed=args.seed)
    forbid_eos(speech)
    model = ZipperModel.from_towers([speech, text])
    g = torch.Generator().manual_seed(args.seed)
    prompt_ids = common.random_ids(text, args.batch, args.prompt_tokens, g)
    one = [Segment("text", prompt_ids[:1])]

    def gen(prompt, n, **kw):
        out = model.generate(prompt, ["speech"], max_new_tokens=n, **kw)
        assert out[0].input_ids.shape[1] == n, (out[0].input_ids.shape, n)  # EOS was unreachable
        return out

    lengths = [int(x) for x in args.lengths.split(",")]
    rows = []
    for n in lengths:
        fns = {"cached": lambda n=n: gen(one, n)}
        if n <= args.uncached_max:
            fns["uncached"] = lambda n=n: gen(one, n, use_cache=False)
        if "uncached" not in fns:
            warmup, times = f"{args.warmup} round(s)", common.interleaved(fns, args.warmup, args.steps)
        elif n <= 50 or args.smoke:  # every cache ratio: a burn-in and at least 2 rounds
            warmup = f"{max(1, args.warmup)} round(s)"
            times = common.interleaved(fns, max(1, args.warmup), max(2, args.steps))
        else:  # long uncached runs are minutes each: burn in on 50-token runs of both, then 2 timed rounds
            warmup = f"{max(1, args.warmup)} round(s) of 50 tokens"
            common.interleaved({"cached": lambda: gen(one, 50), "uncached": lambda: gen(one, 50, use_cache=False)},
                               max(1, args.warmup), 0)
            times = common.interleaved(fns, 0, 2)
        row = {"new_tokens": n, "batch": 1, "rounds": len(times["cached"]), "warmup": warmup,
               "cached_s": common.summarize(times["cached"]),
               "cached_tok_s": common.summarize([n / t for t in times["cached"]])}
        if "uncached" in times:
            row["uncached_s"] = common.summarize(times["uncached"])
            row["uncached_tok_s"] = common.summarize([n / t for t in times["uncached"]])
            row["cached_over_uncached_speed"] = common.ratios(times["uncached"], times["cached"])
        else:
            row["uncached_s"] = f"skipped: > --uncached-max {args.uncached_max}"
        rows.append(row)
    common.print_table([{"tokens": r["new_tokens"], "cached s": common.fmt_stat(r["cached_s"]),
                         "cached tok/s": common.fmt_stat(r["cached_tok_s"]),
                         "uncached s": common.fmt_stat(r["uncached_s"]) if isinstance(r["uncached_s"], dict) else r["uncached_s"],
                         "speed-up of cache": common.fmt_stat(r.get("cached_over_uncached_speed", {}))} for r in rows],
                       ["tokens", "cached s", "cached tok/s", "uncached s", "speed-up of cache"],
                       "Greedy decoding, batch 1: KV cache vs none (median [IQR])")

    # Per-token latency vs position, with the cache, over the longest generation.
    clock = StepClock(speech.model)
    n_long = max(lengths)
    per_step: list[list[float]] = []
    for _ in range(max(1, args.steps)):
        clock.reset()
        gen(one, n_long)
        per_step.append(clock.per_step())
    clock.handle.remove()
    edges = sorted({0, *[n for n in lengths if n < n_long], n_long})
    buckets = []
    for lo, hi in zip(edges, edges[1:]):
        vals = [t for run in per_step for t in run[lo:hi]]
        buckets.append({"positions": f"{lo}-{hi}", "per_token_s": common.summarize(vals)})
    first = buckets[0]["per_token_s"]["median"]
    for b in buckets:
        b["vs_first_bucket"] = b["per_token_s"]["median"] / first
    common.print_table([{"positions": b["positions"], "per-token ms": common.fmt_stat(b["per_token_s"], 1e3),
                         "vs first": f"{b['vs_first_bucket']:.2f}x"} for b in buckets],
                       ["positions", "per-token ms", "vs first"], "Per-token latency with the cache vs position")

    # Batched vs one by one, and beam vs greedy.
    nb = args.batch_tokens
    batched = [Segment("text", prompt_ids)]
    singles = [[Segment("text", prompt_ids[i:i + 1])] for i in range(args.batch)]
    times = common.interleaved({
        "batched": lambda: gen(batched, nb),
        "one_by_one": lambda: [gen(s, nb) for s in singles],
        "greedy": lambda: gen(one, nb),
        "beam": lambda: model.generate(one, ["speech"], max_new_tokens=nb, num_beams=args.beams),
    }, args.warmup, args.steps)
    batch_row = {"batch": args.batch, "new_tokens": nb,
                 "batched_s": common.summarize(times["batched"]), "one_by_one_s": common.summarize(times["one_by_one"]),
                 "batched_tok_s": common.summarize([args.batch * nb / t for t in times["batched"]]),
                 "one_by_one_tok_s": common.summarize([args.batch * nb / t for t in times["one_by_one"]]),
                 "throughput_gain": common.ratios(times["one_by_one"], times["batched"])}
    beam_row = {"beams": args.beams, "new_tokens": nb, "greedy_s": common.summarize(times["greedy"]),
                "beam_s": common.summarize(times["beam"]), "beam_over_greedy": common.ratios(times["beam"], times["greedy"])}
    common.print_table([
        {"comparison": f"batch {args.batch} vs one by one ({nb} tok)", "a s": common.fmt_stat(batch_row["batched_s"]),
         "b s": common.fmt_stat(batch_row["one_by_one_s"]), "ratio": "throughput x" + common.fmt_stat(batch_row["throughput_gain"])},
        {"comparison": f"beam {args.beams} vs greedy ({nb} tok)", "a s": common.fmt_stat(beam_row["beam_s"]),
         "b s": common.fmt_stat(beam_row["greedy_s"]), "ratio": "time x" + common.fmt_stat(beam_row["beam_over_greedy"])}],
        ["comparison", "a s", "b s", "ratio"], "Batching and beam search")

    sp = [f"{r['new_tokens']}: {r['cached_over_uncached_speed']['median']:.1f}x (n={r['rounds']})" for r in rows
          if "cached_over_uncached_speed" in r]
    headline = (f"cache speed-up {', '.join(sp)}; cached tok/s "
                + ", ".join(f"{r['new_tokens']}: {r['cached_tok_s']['median']:.0f}" for r in rows)
                + f"; per-token latency last/first bucket {buckets[-1]['vs_first_bucket']:.2f}x; batch {args.batch} "
                f"throughput {common.fmt_stat(batch_row['throughput_gain'])}x one-by-one; beam{args.beams}/greedy "
                f"{common.fmt_stat(beam_row['beam_over_greedy'])}")
    results = {"setup": {"prompt": f"text, {args.prompt_tokens} tokens", "generating_tower": "speech",
                         "interval": model.config.cross_attention_interval,
                         "eos": "unreachable: -1e9 lm_head bias at the EOS id"},
               "rows": rows, "per_token_latency": buckets, "batching": batch_row, "beam": beam_row}
    common.write_results(NAME, args, results, headline)
    return results


if __name__ == "__main__":
    main()

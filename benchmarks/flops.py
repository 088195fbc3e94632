"""What fraction of this machine's matmul peak does a zipped training step achieve?

FLOPs of one zipped training step (same setup as `benchmarks.train_step` at the default interval:
SmolLM2-135M + base speech tower, [speech 5 s, text 30 tokens], batch 4, frozen towers) are
counted with ``torch.utils.flop_counter.FlopCounterMode`` over forward + backward (AdamW's
elementwise update is not counted: it has no matmuls). The machine's peak is measured in the same
run, interleaved with the steps: a large fp32 ``torch.matmul`` (2048 x 2048 by default, 2 n^3
FLOPs), best of several calls per round, on the same number of threads. Utilisation =
(counted FLOPs / step time) / peak FLOP/s, per round, reported as median [IQR].

Caveat: FlopCounterMode counts matmul-like ops (mm, addmm, bmm, convolutions, the SDPA kernels it
registers); the CPU flash-attention kernel may not be registered, so attention FLOPs can be
under-counted; the table lists the counted FLOPs by op so you can see what was included.

    python -m benchmarks.flops
    python -m benchmarks.flops --smoke
"""
from __future__ import annotations

import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import common
from benchmarks.train_step import TowersOnly, build_towers, make_segments, make_step, zip_model

NAME = "flops"


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4, help="batch size")
    p.add_argument("--speech-seconds", type=float, default=5.0, help="speech segment length in seconds")
    p.add_argument("--text-tokens", type=int, default=30, help="text segment length in tokens")
    p.add_argument("--interval", default="auto", help="cross-attention interval (both towers) or 'auto'")
    p.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n fp32 matmul that measures the peak")
    p.add_argument("--matmul-reps", type=int, default=5, help="matmul calls per round; the best one counts")
    p.set_defaults(warmup=1, steps=3)
    args = p.parse_args(argv)
    common.setup(args, argv)
    if args.smoke:
        args.matmul_size, args.matmul_reps, args.batch, args.speech_seconds = 512, 3, 2, 1.0
    return args


def count_flops(step) -> tuple[int, dict]:
    """Counted FLOPs of one call of ``step`` (forward + backward); -> total, by op."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops(), {str(k): int(v) for k, v in counter.get_flop_counts().get("Global", {}).items()}


def main(argv=None) -> dict:
    args = parse_args(argv)
    towers = build_towers(args)
    segments = make_segments(towers, args.batch, int(round(args.speech_seconds * common.UNITS_PER_SECOND)),
                             args.text_tokens, args.seed)
    model = zip_model(towers, args.interval)
    step = make_step(model, lambda: model(segments).loss)
    step()  # allocate AdamW state outside the counted step
    flops, by_op = count_flops(step)
    # The same count for train_step's baselines: a noise-free view of what zipping adds.
    baselines = {}
    for label, both in (("towers_only", False), ("towers_both", True)):
        base = TowersOnly(towers, both_losses=both)
        baselines[label] = count_flops(make_step(base, lambda base=base: base(segments)))[0]
    flops_ratios = {f"zipped_over_{k}": flops / v for k, v in baselines.items()}

    n = args.matmul_size
    a, b = torch.randn(n, n), torch.randn(n, n)
    mm_best: list[float] = []

    def matmul_round():
        best = float("inf")
        for _ in range(args.matmul_reps):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - t0)
        mm_best.append(best)

    times = common.interleaved({"step": step, "matmul": matmul_round}, args.warmup, args.steps)
    mm_best = mm_best[-args.steps:]  # the timed rounds only
    peak = [2 * n**3 / t for t in mm_best]
    achieved = [flops / t for t in times["step"]]
    util = common.summarize([x / p for x, p in zip(achieved, peak)])
    result = {"step_flops": flops, "flops_by_op": by_op, "baseline_flops": baselines, "flops_ratios": flops_ratios, "step_s": common.summarize(times["step"]),
              "achieved_flop_s": common.summarize(achieved), "matmul_peak_flop_s": common.summarize(peak),
              "matmul_peak_best_flop_s": max(peak), "utilisation": util,
              "utilisation_vs_best_peak": flops / common.summarize(times["step"])["median"] / max(peak),
              "setup": {"batch": args.batch, "speech_len": segments[0].input_ids.shape[1],
                        "text_len": args.text_tokens, "interval": model.config.cross_attention_interval,
                        "matmul": f"{n}x{n} fp32, best of {args.matmul_reps} per round",
                        "threads": torch.get_num_threads()}}
    common.print_table([{"op": k, "GFLOP": f"{v / 1e9:.2f}", "share": f"{100 * v / max(flops, 1):.1f}%"}
                        for k, v in sorted(by_op.items(), key=lambda kv: -kv[1])],
                       ["op", "GFLOP", "share"], f"Counted FLOPs of one zipped step: {flops / 1e9:.1f} GFLOP")
    common.print_table([{"quantity": "step s", "median [IQR]": common.fmt_stat(result["step_s"])},
                        {"quantity": "achieved GFLOP/s", "median [IQR]": common.fmt_stat(result["achieved_flop_s"], 1e-9)},
                        {"quantity": f"matmul {n}^2 peak GFLOP/s", "median [IQR]": common.fmt_stat(result["matmul_peak_flop_s"], 1e-9)},
                        {"quantity": "utilisation (per round)", "median [IQR]": common.fmt_stat(util)}],
                       ["quantity", "median [IQR]"], "Achieved FLOP/s vs matmul peak")
    print("counted FLOPs, zipped / towers-only (text loss): %.2fx; zipped / towers-only (both losses): %.2fx"
          % (flops_ratios["zipped_over_towers_only"], flops_ratios["zipped_over_towers_both"]))
    headline = (f"{flops / 1e9:.1f} GFLOP/step (zipped/towers-only FLOPs {flops_ratios['zipped_over_towers_only']:.2f}x, "
                f"/towers-both {flops_ratios['zipped_over_towers_both']:.2f}x); achieved {result['achieved_flop_s']['median'] / 1e9:.1f} GFLOP/s vs "
                f"matmul peak {result['matmul_peak_flop_s']['median'] / 1e9:.1f} GFLOP/s "
                f"({torch.get_num_threads()} thr): utilisation {common.fmt_stat(util)}")
    common.write_results(NAME, args, result, headline)
    common.unzip(model)
    return result


if __name__ == "__main__":
    main()

"""How does a zipped training step grow with the speech length and with the number of towers?

Zipped training step (frozen towers, forward + backward + AdamW over the zip parameters, ASR
direction: [speech..., text], loss on text) at the default interval, SmolLM2-135M text tower +
base speech tower(s), batch 2 by default:

  * speech segment 5 / 10 / 30 s at 25 units/s (125 / 250 / 750 units), text 30 tokens;
  * 2 towers vs 3: the third tower is a second base speech tower (same kind, other seed, modality
    "speech2"), zipped to the text tower in both directions like the first; segments
    [speech 5 s, speech2 5 s, text];

with each configuration's step time (interleaved rounds, ratios against the 2-tower 5 s step), peak
RSS of one step in its own fresh subprocess (VmHWM reset just before the step, so tower loading does
not count; `common.step_memory`), and a torch.profiler breakdown of one step by op class:
attention (SDPA kernels and their backward), matmul (mm/addmm/bmm/...), other. Also checks that
scaled_dot_product_attention is used everywhere it can be: each tower's
``config._attn_implementation`` and the attention kernels the profiler saw (an ``aten::bmm`` +
``softmax`` pattern would mean a math fallback).

    python -m benchmarks.scaling
    python -m benchmarks.scaling --smoke
"""
from __future__ import annotations

import inspect
import json
from collections import defaultdict

import torch

from benchmarks import common
from benchmarks.train_step import make_step
from zipper import Segment, ZipperModel

NAME = "scaling"

ATTN_KEYS = ("scaled_dot_product", "flash_attention", "efficient_attention", "_attention")
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear",
              "aten::addmv", "aten::mv", "aten::dot"}


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=2, help="batch size")
    p.add_argument("--speech-seconds", default="5,10,30", help="comma-separated speech lengths in seconds (2 towers)")
    p.add_argument("--text-tokens", type=int, default=30, help="text segment length in tokens")
    p.add_argument("--no-memory", action="store_true", help="skip the subprocess peak-memory probes")
    p.add_argument("--no-profile", action="store_true", help="skip the torch.profiler op breakdown")
    p.set_defaults(warmup=1, steps=2)
    args = p.parse_args(argv)
    common.setup(args, argv)
    if args.smoke:
        args.speech_seconds, args.batch, args.no_memory = "1,2", 2, True
    return args


def configs(args) -> list[dict]:
    out = [{"name": f"2 towers, speech {s} s", "towers": 2, "speech_len": int(round(float(s) * common.UNITS_PER_SECOND))}
           for s in args.speech_seconds.split(",")]
    out.append({"name": f"3 towers, speech {args.speech_seconds.split(',')[0]} s x2", "towers": 3,
                "speech_len": out[0]["speech_len"]})
    return out


def build(args, n_towers: int, towers=None):
    """-> towers dict and the zip for 2 (speech, text) or 3 (speech, speech2, text) towers."""
    towers = dict(towers or {})
    towers.setdefault("speech", common.speech_tower(args.tiny, seed=args.seed))
    towers.setdefault("text", common.text_tower(args.tiny))
    if n_towers == 3:
        towers.setdefault("speech2", common.speech_tower(args.tiny, seed=args.seed + 1, modality="speech2"))
        mods = ["speech", "speech2", "text"]
        directions = ["speech->text", "text->speech", "speech2->text", "text->speech2"]
    else:
        mods, directions = ["speech", "text"], ["speech->text", "text->speech"]
    model = ZipperModel.from_towers([towers[m] for m in mods], directions=directions)
    return towers, model


def segments_for(towers, n_towers: int, speech_len: int, batch: int, text_len: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    segs = [Segment("speech", common.random_ids(towers["speech"], batch, speech_len, g))]
    if n_towers == 3:
        segs.append(Segment("speech2", common.random_ids(towers["speech2"], batch, speech_len, g)))
    segs.append(Segment("text", common.random_ids(towers["text"], batch, text_len, g), loss=True))
    return segs


def op_breakdown(step) -> dict:
    """Profile one call of ``step``; -> self CPU seconds per op class and the attention ops seen."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    classes: dict[str, float] = defaultdict(float)
    attn_ops, top = {}, []
    for e in prof.key_averages():
        secs = e.self_cpu_time_total / 1e6
        if any(k in e.key for k in ATTN_KEYS):
            classes["attention"] += secs
            attn_ops[e.key] = attn_ops.get(e.key, 0) + e.count
        elif e.key in MATMUL_OPS:
            classes["matmul"] += secs
        else:
            classes["other"] += secs
        top.append((secs, e.key))
    total = sum(classes.values())
    return {"self_s": dict(classes), "share": {k: v / total for k, v in classes.items()}, "total_s": total,
            "attention_ops": attn_ops, "bmm_calls": sum(e.count for e in prof.key_averages() if e.key == "aten::bmm"),
            "top_ops": [{"op": k, "self_s": s} for s, k in sorted(top, reverse=True)[:8]]}


def sdpa_check(towers: dict, breakdowns: list[dict]) -> dict:
    from zipper import fusion

    src = inspect.getsource(fusion.GatedCrossAttention.forward)
    kernels = sorted({k for b in breakdowns for k in b["attention_ops"]})
    return {"towers_attn_implementation": {m: t.config._attn_implementation for m, t in towers.items()},
            "fusion_uses_sdpa": "scaled_dot_product_attention" in src,
            "attention_kernels_seen": kernels,
            "math_fallback_suspected": any(b["bmm_calls"] > 0 for b in breakdowns)}


def run_child(args) -> None:
    spec = json.loads(args.child)
    towers, model = build(args, spec["towers"])
    segs = segments_for(towers, spec["towers"], spec["speech_len"], spec["batch"], spec["text_len"], args.seed)
    step = make_step(model, lambda: model(segs).loss)
    common.child_report(common.step_memory(step))


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return {}
    cfgs = configs(args)
    towers, models, steps = {}, {}, {}
    for c in cfgs:
        if c["towers"] not in models:
            towers, models[c["towers"]] = build(args, c["towers"], towers)
        model = models[c["towers"]]
        segs = segments_for(towers, c["towers"], c["speech_len"], args.batch, args.text_tokens, args.seed)
        steps[c["name"]] = make_step(model, lambda model=model, segs=segs: model(segs).loss)
    times = common.interleaved(steps, args.warmup, args.steps)
    ref = cfgs[0]["name"]
    rows = []
    for c in cfgs:
        row = {**c, "step_s": common.summarize(times[c["name"]]),
               "vs_first": common.ratios(times[c["name"]], times[ref]),
               "tokens": args.batch * (c["speech_len"] * (c["towers"] - 1) + args.text_tokens)}
        if not args.no_profile:
            row["profile"] = op_breakdown(steps[c["name"]])
        if not args.no_memory:
            rep = common.run_child(f"benchmarks.{NAME}", args, {"towers": c["towers"], "speech_len": c["speech_len"],
                                                              "batch": args.batch, "text_len": args.text_tokens})
            row.update(rep)
        rows.append(row)
    common.print_table([{
        "config": r["name"], "tokens/batch": r["tokens"], "step s": common.fmt_stat(r["step_s"]),
        "vs first": common.fmt_stat(r["vs_first"]),
        "attn %": f"{100 * r['profile']['share'].get('attention', 0):.1f}" if "profile" in r else "-",
        "matmul %": f"{100 * r['profile']['share'].get('matmul', 0):.1f}" if "profile" in r else "-",
        "other %": f"{100 * r['profile']['share'].get('other', 0):.1f}" if "profile" in r else "-",
        "RSS before MiB": f"{common.mib(r['rss_before_step']):.0f}" if "peak_rss" in r else "-",
        "peak RSS MiB": f"{common.mib(r['peak_rss']):.0f}" if "peak_rss" in r else "-",
        "step growth MiB": f"{common.mib(r['step_peak_growth']):.0f}" if "peak_rss" in r else "-"} for r in rows],
        ["config", "tokens/batch", "step s", "vs first", "attn %", "matmul %", "other %", "RSS before MiB",
         "peak RSS MiB", "step growth MiB"],
        "Zipped training step vs speech length and tower count (median [IQR])")
    check = sdpa_check(towers, [r["profile"] for r in rows if "profile" in r])
    print("SDPA:", json.dumps(check))
    two = [r for r in rows if r["towers"] == 2]
    curve = ", ".join(f"{r['speech_len']}u {r['vs_first']['median']:.2f}x" for r in two)
    three = [r for r in rows if r["towers"] == 3][0]
    headline = (f"step vs speech length (2 towers, batch {args.batch}): {curve}; 3 towers/2 towers "
                f"{common.fmt_stat(three['vs_first'])}")
    if "profile" in two[-1]:
        headline += (f"; attention share {100 * two[0]['profile']['share'].get('attention', 0):.0f}% -> "
                     f"{100 * two[-1]['profile']['share'].get('attention', 0):.0f}% of op time")
    if "peak_rss" in two[0]:
        headline += ("; step peak RSS MiB (growth over the RSS before the step): "
                     + ", ".join(f"{r['speech_len']}u {common.mib(r['peak_rss']):.0f} (+{common.mib(r['step_peak_growth']):.0f})"
                                 for r in two)
                     + f", 3 towers {common.mib(three['peak_rss']):.0f} (+{common.mib(three['step_peak_growth']):.0f})")
    headline += f"; towers sdpa: {set(check['towers_attn_implementation'].values())}, fusion sdpa: {check['fusion_uses_sdpa']}"
    results = {"rows": rows, "sdpa": check, "interval": models[2].config.cross_attention_interval,
               "memory_definition": "per row, one zipped step in its own fresh subprocess: peak_rss = VmHWM reset "
                                    "just before the step (peak_rss_scope 'step'), step_peak_growth = peak_rss - "
                                    "rss_before_step, load_peak_rss = VmHWM while building towers and zip"}
    common.write_results(NAME, args, results, headline)
    return results


if __name__ == "__main__":
    main()

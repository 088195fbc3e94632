"""What does zipping cost per training step?

Compares, on the same towers and the same segments ([speech, text], ASR direction, loss on text):

* **zipped**: ZipperModel with frozen towers; one step = forward + backward + AdamW step over the
  trainable zip parameters (cross-attention blocks + input projections).
* **towers-only**: the same two frozen towers run on the same segments *without* zip blocks. So that
  a backward pass exists at all, each tower gets the same trainable adapter the zip puts after its
  embeddings (`zipper.fusion.InputProjection`, a zero-gated residual ReLU MLP), and the loss is the
  text tower's next-token loss. Backward therefore runs through the text tower only (nothing links
  the speech tower to the text loss); the speech tower is forward-only. One step = forward +
  backward + AdamW step over the two adapters.
* **towers-only (both losses)**, a second baseline: as above but loss = text NLL + speech NLL, so
  backward also runs through the speech tower, as it does in the zipped step (the zipped text loss
  reaches the speech input projection through the cross-attention). zipped / this = the cost of the
  zip blocks alone.
* **zipped, input projection on some towers only** (``--input-projection-towers text``): the zip
  with ``ZipperConfig.input_projection_towers`` set, timed interleaved with the default zip (input
  projection on every tower) and the baselines. With ``text`` only, nothing trainable sits under the
  frozen speech tower in the ASR direction, so it runs forward-only, like in towers-only.

Swept over the cross-attention interval (every 1, 2, 4, 8 layers, the same interval on both towers,
capped at the tower's depth, and "auto" = ZipperConfig's default of ~8 zip points per tower:
interval ceil(L/8), i.e. 4 for SmolLM2's 30 layers and 2 for the 12-layer speech tower) and over
the speech segment length. Also: full fine-tuning (towers trainable too) vs frozen at the default
interval (step time, interleaved, and AdamW state bytes), and the peak resident memory of one step of each
variant, each measured in its own fresh subprocess (VmHWM, reset just before the step: see
``common.step_memory``).

Target: zipped step <= 1.5x the towers-only step at the default interval.

    python -m benchmarks.train_step            # SmolLM2-135M text + base speech tower, batch 4
    python -m benchmarks.train_step --intervals auto --both-baseline --input-projection-towers text
    python -m benchmarks.train_step --smoke    # seconds, tiny towers (CI)
"""
from __future__ import annotations

import json

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import common
from zipper import Segment, ZipperModel
from zipper.fusion import InputProjection

NAME = "train_step"


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4, help="batch size")
    p.add_argument("--speech-seconds", default="5", help="comma-separated speech segment lengths in seconds "
                                                         f"({common.UNITS_PER_SECOND} units/s)")
    p.add_argument("--text-tokens", type=int, default=30, help="text segment length in tokens")
    p.add_argument("--intervals", default="1,2,4,8,auto",
                   help="comma-separated cross-attention intervals (same for both towers; 'auto' = config default)")
    p.add_argument("--both-baseline", action="store_true",
                   help="also time the towers-only baseline with text + speech loss (backward through both towers)")
    p.add_argument("--input-projection-towers", default="",
                   help="comma-separated modalities (speech, text): also time a zip with the input projection on "
                        "these towers only (ZipperConfig.input_projection_towers), interleaved with the default zip "
                        "(input projection on every tower); e.g. 'text' = no backward through the frozen speech tower")
    p.add_argument("--no-memory", action="store_true", help="skip the subprocess peak-memory probes")
    p.add_argument("--no-full-ft", action="store_true", help="skip the full fine-tuning comparison")
    p.set_defaults(warmup=1, steps=4)
    args = p.parse_args(argv)
    common.setup(args, argv)
    args.proj_towers = [m.strip() for m in args.input_projection_towers.split(",") if m.strip()]
    if args.smoke:  # tiny and short, unless asked otherwise
        for name, value in (("intervals", "1,auto"), ("speech_seconds", "1"), ("batch", 2)):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    return args


class TowersOnly(nn.Module):
    """The towers without zip blocks: a trainable InputProjection per tower, frozen towers."""

    def __init__(self, towers, both_losses: bool = False):
        super().__init__()
        self.tower_objs = {t.modality: t for t in towers}
        self.adapters = nn.ModuleDict({t.modality: InputProjection(t.hidden_size) for t in towers})
        self.both_losses = both_losses
        for t in towers:
            for p in t.model.parameters():
                p.requires_grad_(False)

    def forward(self, segments):
        total, count = 0.0, 0
        for s in segments:
            tower = self.tower_objs[s.modality]
            embeds = self.adapters[s.modality](tower.model.get_input_embeddings()(s.input_ids))
            logits = tower.model(inputs_embeds=embeds, attention_mask=s.mask().long()).logits
            if s.loss or self.both_losses:
                nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), s.input_ids[:, 1:].flatten(),
                                      reduction="sum")
                total, count = total + nll, count + s.input_ids[:, 1:].numel()
        return total / count


def make_step(model: nn.Module, loss_fn):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()

    step.opt = opt  # type: ignore[attr-defined]
    step.n_params = sum(p.numel() for p in params)  # type: ignore[attr-defined]
    return step


def with_tower_grads(step, towers, trainable: bool):
    """``step`` after setting every tower parameter's requires_grad to ``trainable``, and the towers' train
    mode as ``ZipperModel.train`` would (zips over the same towers share these flags)."""
    def run():
        for t in towers:
            t.model.train(trainable)
            for p in t.model.parameters():
                p.requires_grad_(trainable)
        step()

    run.opt, run.n_params = step.opt, step.n_params  # type: ignore[attr-defined]
    return run


def build_towers(args):
    return common.speech_tower(args.tiny, seed=args.seed), common.text_tower(args.tiny)


def make_segments(towers, batch: int, speech_len: int, text_len: int, seed: int):
    speech, text = towers
    g = torch.Generator().manual_seed(seed)
    return [Segment("speech", common.random_ids(speech, batch, speech_len, g)),
            Segment("text", common.random_ids(text, batch, text_len, g), loss=True)]


def zip_model(towers, interval, frozen: bool = True, proj_towers=None) -> ZipperModel:
    """The zip at ``interval``; ``proj_towers``: input projection on these towers only (None/[] = all)."""
    speech, text = towers
    ivals = [0, 0] if interval == "auto" else [min(int(interval), t.num_layers) for t in towers]
    kwargs = {} if frozen else {"frozen": [False, False]}
    if proj_towers:
        kwargs["input_projection_towers"] = list(proj_towers)
    return ZipperModel.from_towers([speech, text], cross_attention_interval=ivals, **kwargs)


def run_child(args) -> None:
    """One step of one variant in this (fresh) process; report its peak RSS."""
    spec = json.loads(args.child)
    towers = build_towers(args)
    segments = make_segments(towers, spec["batch"], spec["speech_len"], spec["text_len"], args.seed)
    if spec["variant"] == "towers":
        model = TowersOnly(towers)
    else:
        model = zip_model(towers, spec["interval"], frozen=spec["variant"] == "zipped",
                          proj_towers=spec.get("input_projection_towers"))
    fn = (lambda: model(segments)) if isinstance(model, TowersOnly) else (lambda: model(segments).loss)
    step = make_step(model, fn)
    mem = common.step_memory(step)
    common.child_report({**mem, "opt_state_bytes": common.optimizer_state_bytes(step.opt)})


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.child:
        run_child(args)
        return {}
    towers = build_towers(args)
    speech, text = towers
    intervals = [x.strip() for x in args.intervals.split(",")]
    lengths = [int(round(float(s) * common.UNITS_PER_SECOND)) for s in args.speech_seconds.split(",")]
    rows, mem_rows = [], []
    for speech_len in lengths:
        segments = make_segments(towers, args.batch, speech_len, args.text_tokens, args.seed)
        base = TowersOnly(towers)
        base_step = make_step(base, lambda: base(segments))
        variants = {"towers_only": base_step}
        if args.both_baseline:
            both = TowersOnly(towers, both_losses=True)
            variants["towers_both"] = make_step(both, lambda: both(segments))
        for interval in intervals:
            model = zip_model(towers, interval)
            zip_step = make_step(model, lambda: model(segments).loss)
            zipped = {"zipped": zip_step}
            if args.proj_towers:  # a second zip on the same towers: its hooks ignore the other's calls
                proj_model = zip_model(towers, interval, proj_towers=args.proj_towers)
                zipped["zipped_proj"] = proj_step = make_step(proj_model, lambda: proj_model(segments).loss)
            times = common.interleaved({**zipped, **variants}, args.warmup, args.steps)
            rows.append({
                "speech_len": speech_len, "text_len": args.text_tokens, "batch": args.batch,
                "interval": interval, "intervals_used": model.config.cross_attention_interval,
                "zip_points": {m: len(v) for m, v in model.zip_layers.items()},
                "trainable_params": zip_step.n_params, "towers_only_trainable_params": base_step.n_params,
                "zipped_s": common.summarize(times["zipped"]),
                "towers_only_s": common.summarize(times["towers_only"]),
                "ratio_vs_towers_only": common.ratios(times["zipped"], times["towers_only"]),
            })
            if "towers_both" in times:
                rows[-1]["towers_both_s"] = common.summarize(times["towers_both"])
                rows[-1]["ratio_vs_towers_both"] = common.ratios(times["zipped"], times["towers_both"])
            if "zipped_proj" in times:
                t = times["zipped_proj"]
                rows[-1].update({
                    "proj_towers": list(proj_model.input_projections), "proj_trainable_params": proj_step.n_params,
                    "zipped_proj_s": common.summarize(t),
                    "proj_ratio_vs_towers_only": common.ratios(t, times["towers_only"]),
                    "proj_ratio_vs_zipped": common.ratios(t, times["zipped"])})
                if "towers_both" in times:
                    rows[-1]["proj_ratio_vs_towers_both"] = common.ratios(t, times["towers_both"])
                common.unzip(proj_model)
                common.free(proj_model, proj_step)
            common.unzip(model)
            common.free(model, zip_step)
    table = [{"speech": r["speech_len"], "interval": r["interval"], "ivals(s,t)": r["intervals_used"],
              "zip_params": f"{r['trainable_params'] / 1e6:.1f}M",
              "zipped s": common.fmt_stat(r["zipped_s"]), "towers-only s": common.fmt_stat(r["towers_only_s"]),
              "zipped/towers-only": common.fmt_stat(r["ratio_vs_towers_only"]),
              "zipped/towers(both bwd)": common.fmt_stat(r.get("ratio_vs_towers_both", {}))} for r in rows]
    if args.proj_towers:
        for t, r in zip(table, rows):
            t.update({f"proj({','.join(r['proj_towers'])}) s": common.fmt_stat(r["zipped_proj_s"]),
                      "proj/towers-only": common.fmt_stat(r["proj_ratio_vs_towers_only"]),
                      "proj/zipped": common.fmt_stat(r["proj_ratio_vs_zipped"])})
    common.print_table(table, list(table[0]), "Training step: zipped vs towers-only (median [IQR] over rounds)")

    full = None
    if not args.no_full_ft:
        segments = make_segments(towers, args.batch, lengths[0], args.text_tokens, args.seed)
        # Both zips stay live (each one's hooks ignore the other's calls); they share the towers'
        # requires_grad flags, so each step sets them before it runs.
        frozen_m = zip_model(towers, "auto")
        frozen_step = with_tower_grads(make_step(frozen_m, lambda: frozen_m(segments).loss), towers, False)
        frozen_step()  # allocate AdamW state before it is counted
        frozen_bytes = common.optimizer_state_bytes(frozen_step.opt)
        full_m = zip_model(towers, "auto", frozen=False)
        full_step = with_tower_grads(make_step(full_m, lambda: full_m(segments).loss), towers, True)
        full_step()
        full_bytes = common.optimizer_state_bytes(full_step.opt)
        times = common.interleaved({"frozen": frozen_step, "full": full_step}, args.warmup, args.steps)
        common.unzip(full_m)
        common.unzip(frozen_m)
        common.free(full_m, full_step, frozen_m)
        for t in towers:
            for p in t.model.parameters():
                p.requires_grad_(False)
        full = {"speech_len": lengths[0], "interval": "auto",
                "frozen_trainable_params": frozen_step.n_params, "full_trainable_params": full_step.n_params,
                "frozen_opt_state_bytes": frozen_bytes, "full_opt_state_bytes": full_bytes,
                "opt_state_saving": 1 - frozen_bytes / full_bytes,
                "frozen_s": common.summarize(times["frozen"]), "full_s": common.summarize(times["full"]),
                "full_over_frozen_time": common.ratios(times["full"], times["frozen"]),
                "note": "both timed after their first step (AdamW state allocated), interleaved; each step sets "
                        "the shared towers' requires_grad (frozen: False, full: True) before it runs"}
        common.print_table([{"variant": "frozen towers", "trainable": f"{full['frozen_trainable_params'] / 1e6:.1f}M",
                             "AdamW state": f"{common.mib(frozen_bytes):.0f} MiB", "step s": common.fmt_stat(full["frozen_s"])},
                            {"variant": "full fine-tune", "trainable": f"{full['full_trainable_params'] / 1e6:.1f}M",
                             "AdamW state": f"{common.mib(full_bytes):.0f} MiB", "step s": common.fmt_stat(full["full_s"])}],
                           ["variant", "trainable", "AdamW state", "step s"], "Frozen vs full fine-tuning (auto interval)")

    if not args.no_memory:
        probes = [{"variant": "towers", "interval": None}, {"variant": "zipped", "interval": "auto"},
                  {"variant": "zipped", "interval": "1"}]
        if args.proj_towers:
            probes.insert(2, {"variant": "zipped", "interval": "auto", "input_projection_towers": args.proj_towers})
        if args.smoke:
            probes = probes[1:2]
        elif not args.no_full_ft:
            probes.append({"variant": "full", "interval": "auto"})
        for spec in probes:
            spec.update(batch=args.batch, speech_len=lengths[0], text_len=args.text_tokens)
            rep = common.run_child(f"benchmarks.{NAME}", args, spec)
            mem_rows.append({**spec, **rep})
        common.print_table([{"variant": r["variant"] + (f" (proj {','.join(r['input_projection_towers'])})"
                                                        if r.get("input_projection_towers") else ""),
                             "interval": r["interval"],
                             "RSS before step MiB": f"{common.mib(r['rss_before_step']):.0f}",
                             "peak RSS MiB": f"{common.mib(r['peak_rss']):.0f} ({r['peak_rss_scope']})",
                             "step growth MiB": f"{common.mib(r['step_peak_growth']):.0f}",
                             "AdamW state MiB": f"{common.mib(r['opt_state_bytes']):.0f}"} for r in mem_rows],
                           ["variant", "interval", "RSS before step MiB", "peak RSS MiB", "step growth MiB",
                            "AdamW state MiB"], "Peak memory of one step (own fresh subprocess each)")

    auto = [r for r in rows if r["interval"] == "auto"]
    head = auto[0] if auto else rows[0]
    ratio = head["ratio_vs_towers_only"]

    def verdict(r):
        return "met" if r["median"] <= 1.5 else "NOT met"

    if "proj_ratio_vs_towers_only" in head:
        pr = head["proj_ratio_vs_towers_only"]
        headline = (f"zipped/towers-only step @interval {head['interval']} {head['intervals_used']}, speech "
                    f"{head['speech_len']}: input projection on all towers {common.fmt_stat(ratio)} "
                    f"(target <= 1.5: {verdict(ratio)}), on {','.join(head['proj_towers'])} only "
                    f"{common.fmt_stat(pr)} ({verdict(pr)}; {head['proj_ratio_vs_zipped']['median']:.2f}x the "
                    f"all-towers step)")
        if "ratio_vs_towers_both" in head:
            headline += (f"; vs towers-only with both losses: all {head['ratio_vs_towers_both']['median']:.2f}x, "
                         f"{','.join(head['proj_towers'])} only {head['proj_ratio_vs_towers_both']['median']:.2f}x")
    else:
        headline = (f"zipped/towers-only step @interval {head['interval']} {head['intervals_used']}, speech "
                    f"{head['speech_len']}: {common.fmt_stat(ratio)} (target <= 1.5: {verdict(ratio)})")
    same = [r for r in rows if r["speech_len"] == head["speech_len"]]
    if len(same) > 1:
        headline += "; all intervals: " + ", ".join(
            f"{r['interval']}: {r['ratio_vs_towers_only']['median']:.2f}x"
            + (f" / {r['proj_ratio_vs_towers_only']['median']:.2f}x" if "proj_ratio_vs_towers_only" in r else "")
            for r in same)
    if full:
        headline += f"; full FT AdamW state {full['full_opt_state_bytes'] / full['frozen_opt_state_bytes']:.1f}x frozen, step {common.fmt_stat(full['full_over_frozen_time'])}"
    if mem_rows:
        headline += "; step peak RSS MiB: " + ", ".join(
            f"{r['variant']}{'(' + ','.join(r['input_projection_towers']) + ')' if r.get('input_projection_towers') else ''}"
            f"@{r['interval']} {common.mib(r['peak_rss']):.0f}" for r in mem_rows if r["interval"] in (None, "auto"))
    results = {"definition": {
        "zipped": "ZipperModel, frozen towers, fwd+bwd+AdamW over zip params, loss on text",
        "towers_only": "same towers and segments, no zip blocks; trainable InputProjection per tower; text loss "
                       "(backward through the text tower only); fwd+bwd+AdamW over the adapters",
        "towers_both": "as towers_only but loss = text + speech NLL (backward through both towers)",
        "zipped_proj": "as zipped but the input projection only on the towers in proj_towers "
                       "(ZipperConfig.input_projection_towers; --input-projection-towers); ratios proj_ratio_*",
        "memory": "peak_rss = VmHWM of one step in a fresh subprocess, reset just before the step "
                  "(peak_rss_scope 'step'); step_peak_growth = peak_rss - rss_before_step"},
        "rows": rows, "full_finetune": full, "memory": mem_rows}
    common.write_results(NAME, args, results, headline)
    return results


if __name__ == "__main__":
    main()

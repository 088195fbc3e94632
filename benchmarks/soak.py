"""Does a long run leak? 1,000 training steps then 500 generations, memory sampled throughout.

The real loop (`zipper.train.fit`: AdamW, scheduler, grad clipping, periodic evaluation and atomic
checkpoints every ``--save-every`` steps) trains a joint zip (ASR and TTS batches in turn, random
lengths) of the tiny benchmark towers; then ``generate`` runs in both directions, cycling greedy,
sampling and beam search with and without the KV cache. Sampled: resident memory (RSS), live Python
objects, live tensors, checkpoint files on disk.

Verdict: after a burn-in (the first quarter of each phase: allocator pools and caches fill up), the
median RSS of the last quarter must not exceed that of the second quarter by more than
``--tolerance-mib`` (+ 2 %), live tensors must not grow, and the checkpoint directory must keep only
the latest two checkpoints.

    python -m benchmarks.soak            # 1,000 steps + 500 generations (minutes)
    python -m benchmarks.soak --smoke    # seconds (CI)
"""
from __future__ import annotations

import gc
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import common
from zipper import Segment, ZipperModel
from zipper.train import TrainConfig, fit

NAME = "soak"


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.add_argument("--train-steps", type=int, default=1000, help="training steps")
    p.add_argument("--generations", type=int, default=500, help="generate() calls after training")
    p.add_argument("--save-every", type=int, default=100, help="checkpoint every N steps (keeps the latest 2)")
    p.add_argument("--sample-every", type=int, default=10, help="sample memory every N steps / generations")
    p.add_argument("--tolerance-mib", type=float, default=16.0, help="allowed RSS growth beyond 2%% (MiB)")
    p.set_defaults(tiny=True)
    args = p.parse_args(argv)
    common.setup(args, argv)
    if args.smoke:
        args.train_steps, args.generations, args.save_every, args.sample_every = 40, 20, 10, 2
    return args


def _live_tensors() -> int:
    return sum(1 for o in gc.get_objects() if issubclass(type(o), torch.Tensor))  # type(): no lazy attribute hooks


def _sample(samples: list, phase: str, i: int, with_objects: bool) -> None:
    gc.collect()
    row = {"phase": phase, "i": i, "rss_mib": round(common.mib(common.rss_bytes()), 2), "t": round(time.time(), 2)}
    if with_objects:
        row.update(objects=len(gc.get_objects()), tensors=_live_tensors())
    samples.append(row)


def _verdict(rows: list[dict], tolerance_mib: float) -> dict:
    """Second-quarter vs last-quarter medians of one phase's samples."""
    n = len(rows)
    q = max(1, n // 4)
    early, late = rows[q:2 * q], rows[-q:]
    rss_early, rss_late = statistics.median(r["rss_mib"] for r in early), statistics.median(r["rss_mib"] for r in late)
    allowed = tolerance_mib + 0.02 * rss_early
    out = {"samples": n, "rss_early_mib": rss_early, "rss_late_mib": rss_late,
           "rss_growth_mib": round(rss_late - rss_early, 2), "allowed_growth_mib": round(allowed, 2),
           "rss_min_mib": min(r["rss_mib"] for r in rows), "rss_max_mib": max(r["rss_mib"] for r in rows)}
    tens = [r["tensors"] for r in rows if "tensors" in r]
    if len(tens) >= 4:
        half = len(tens) // 2
        out["tensors_early"], out["tensors_late"] = max(tens[1:half]), max(tens[half:])
    out["passed"] = rss_late - rss_early <= allowed and out.get("tensors_late", 0) <= out.get("tensors_early", 0)
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    text, speech = common.text_tower(args.tiny), common.speech_tower(args.tiny, seed=args.seed)
    model = ZipperModel.from_towers([speech, text], directions=["speech->text", "text->speech"])
    gen = torch.Generator().manual_seed(args.seed)
    samples: list[dict] = []

    def batch(k: int):  # ASR and TTS in turn; random lengths, so shapes vary as in real data
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + k)
        s = common.random_ids(speech, 4, int(torch.randint(20, 120, (1,), generator=g)), g)
        t = common.random_ids(text, 4, int(torch.randint(5, 30, (1,), generator=g)), g)
        return [Segment("speech", s), Segment("text", t, loss=True)] if k % 2 == 0 else \
            [Segment("text", t), Segment("speech", s, loss=True)]

    def stream(start: int):
        k = start
        while True:
            yield batch(k)
            k += 1

    calls = {"n": 0}

    def loss_fn(m, segments):
        if calls["n"] % args.sample_every == 0:
            _sample(samples, "train", calls["n"], with_objects=calls["n"] % (10 * args.sample_every) == 0)
        calls["n"] += 1
        return m(segments).loss

    def evaluate():
        with torch.no_grad():
            out = model.generate([Segment("speech", common.random_ids(speech, 2, 30, gen))], ["text"], max_new_tokens=8)[0]
        return {"eval_tokens": int(out.attention_mask.sum())}

    cfg = TrainConfig(steps=args.train_steps, batch_size=4, lr=1e-3, warmup_steps=10, log_every=10,
                      save_every=args.save_every, eval_every=max(1, args.train_steps // 4), seed=args.seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        res = fit(model, loss_fn, stream, cfg, tmp, eval_fn=evaluate, desc="soak train")
        ckpts = sorted(p.name for p in (Path(tmp) / "checkpoints").iterdir())
    train_s = time.time() - t0

    model.eval()
    modes = [dict(), dict(do_sample=True, temperature=1.0, top_k=20, generator=gen), dict(num_beams=2),
             dict(use_cache=False)]
    t0 = time.time()
    for i in range(args.generations):
        if i % args.sample_every == 0:
            _sample(samples, "generate", i, with_objects=i % (10 * args.sample_every) == 0)
        mode = modes[i % len(modes)]
        with torch.no_grad():
            if i % 2 == 0:  # ASR direction
                prompt = [Segment("speech", common.random_ids(speech, 1, int(torch.randint(20, 80, (1,), generator=gen)), gen))]
                model.generate(prompt, ["text"], max_new_tokens=12, **mode)
            else:
                prompt = [Segment("text", common.random_ids(text, 1, int(torch.randint(5, 20, (1,), generator=gen)), gen))]
                model.generate(prompt, ["speech"], max_new_tokens=24, **mode)
    _sample(samples, "generate", args.generations, with_objects=True)
    gen_s = time.time() - t0

    verdict = {phase: _verdict([r for r in samples if r["phase"] == phase], args.tolerance_mib)
               for phase in ("train", "generate")}
    verdict["checkpoints_kept"] = ckpts
    passed = all(v["passed"] for k, v in verdict.items() if k != "checkpoints_kept") and len(ckpts) <= 2
    rows = [{"phase": k, **{c: v[c] for c in ("samples", "rss_early_mib", "rss_late_mib", "rss_growth_mib",
                                              "allowed_growth_mib", "passed")}} for k, v in verdict.items()
            if k != "checkpoints_kept"]
    common.print_table(rows, list(rows[0]), title=f"{NAME}: memory over {args.train_steps} steps and "
                                                  f"{args.generations} generations")
    headline = (f"{args.train_steps} steps ({train_s:.0f} s) + {args.generations} generations ({gen_s:.0f} s): "
                f"RSS growth train {verdict['train']['rss_growth_mib']:+.1f} MiB, generate "
                f"{verdict['generate']['rss_growth_mib']:+.1f} MiB (allowed {verdict['train']['allowed_growth_mib']:.0f}); "
                f"live tensors train {verdict['train'].get('tensors_early')}->{verdict['train'].get('tensors_late')}; "
                f"checkpoints kept {len(ckpts)}; {'PASSED' if passed else 'FAILED'}")
    print(headline)
    results = {"verdict": verdict, "passed": passed, "samples": samples, "train_s": round(train_s, 1),
               "generate_s": round(gen_s, 1), "final_loss": res["history"][-1], "steps": res["steps"]}
    common.write_results(NAME, args, results, headline)
    return results


if __name__ == "__main__":
    main()

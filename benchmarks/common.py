"""Shared helpers for the benchmarks: timing loops, towers at benchmark sizes, subprocess memory
probes, machine/provenance info, and writing results (JSON + a row in RESULTS.md).

Timing follows nanoGPT's bench.py: a few burn-in steps, then timed steps, each timed alone with
``time.perf_counter``. When two or more variants are compared, they run *interleaved* (A, B, A, B,
...) so that the noise of a shared machine hits every variant alike, and each comparison is
reported as the median (and IQR) of the per-round ratios, measured within one run.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
CHILD_MARK = "@@BENCH_CHILD@@"  # a child process prints one line "<mark><json>"

SPEECH_UNITS = 1024  # the paper's vocabulary of speech units (w2v-BERT k-means)
UNITS_PER_SECOND = 25


# -- arguments ---------------------------------------------------------------------------------
def make_parser(description: str) -> argparse.ArgumentParser:
    """An argparse parser with the options every benchmark shares."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--smoke", action="store_true",
                   help="a seconds-long run on tiny towers with 1 burn-in and 2 timed steps (what CI runs)")
    p.add_argument("--tiny", action="store_true",
                   help="tiny towers built from configs instead of SmolLM2-135M + the base speech tower")
    p.add_argument("--warmup", type=int, default=2, help="burn-in steps per variant (not timed)")
    p.add_argument("--steps", type=int, default=5, help="timed steps (rounds) per variant")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (0 = torch's default). 1 by default: on a shared 2-core machine, "
                        "2 OpenMP threads stall at every barrier when another process holds a core (measured "
                        "10x slower tiny steps at load 9)")
    p.add_argument("--seed", type=int, default=0, help="random seed for token ids and fresh weights")
    p.add_argument("--out", type=Path, default=BENCH_DIR,
                   help="where results go: OUT/results/<name>.json and a row appended to OUT/RESULTS.md")
    p.add_argument("--tag", default="", help="results go to results/<name>-<tag>.json (keeps an earlier run's file)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: subprocess memory probe
    return p


def setup(args: argparse.Namespace, argv: Sequence[str] | None = None) -> None:
    """Apply the shared options: smoke implies tiny and the shortest loops; threads; seed."""
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.smoke:
        args.tiny, args.warmup, args.steps = True, 1, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


# -- timing ------------------------------------------------------------------------------------
def summarize(values: Sequence[float]) -> dict:
    """median, IQR (q1, q3), min, max, mean and n of a list of numbers."""
    v = sorted(float(x) for x in values)
    if not v:
        return {"n": 0}
    if len(v) >= 2:
        q = statistics.quantiles(v, n=4, method="inclusive")
        q1, q3 = q[0], q[2]
    else:
        q1 = q3 = v[0]
    return {"median": statistics.median(v), "q1": q1, "q3": q3, "min": v[0], "max": v[-1],
            "mean": statistics.fmean(v), "n": len(v)}


def time_steps(fn: Callable[[], object], warmup: int, steps: int) -> list[float]:
    """Seconds per call of ``fn`` over ``steps`` timed calls after ``warmup`` untimed ones."""
    return interleaved({"x": fn}, warmup, steps)["x"]


def interleaved(fns: Mapping[str, Callable[[], object]], warmup: int, steps: int) -> dict[str, list[float]]:
    """Run the variants round-robin (burn-in rounds first); -> seconds per step of each variant."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def ratios(num: Sequence[float], den: Sequence[float]) -> dict:
    """Summary of per-round ratios num[i] / den[i] (the rounds were interleaved)."""
    return summarize([a / b for a, b in zip(num, den)])


def fmt_stat(s: Mapping, scale: float = 1.0, unit: str = "", digits: int = 3) -> str:
    """'median [q1, q3]' of a summary."""
    if not s or not s.get("n"):
        return "-"
    f = f"{{:.{digits}g}}"
    return f"{f.format(s['median'] * scale)}{unit} [{f.format(s['q1'] * scale)}, {f.format(s['q3'] * scale)}]"


# -- towers ------------------------------------------------------------------------------------
def text_tower(tiny: bool):
    """SmolLM2-135M (30 layers, width 576) or, with ``tiny``, a 4-layer width-128 Llama over 512 ids.

    The GGUF takes ~25 s to dequantise; `load_tower` caches the dequantised weights (towers/gguf_cache.py), so
    later calls (subprocess memory probes, later runs) load them in about a second. The weights are identical.
    """
    from towers import Tower, load_tower

    if tiny:
        from transformers import LlamaConfig, LlamaForCausalLM

        with torch.random.fork_rng():
            torch.manual_seed(1)
            model = LlamaForCausalLM(LlamaConfig(
                vocab_size=512, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, bos_token_id=1, eos_token_id=2, pad_token_id=0))
        return Tower(model=model.eval(), modality="text")
    return load_tower("smollm2-135m", modality="text")


def speech_tower(tiny: bool, seed: int = 0, modality: str = "speech"):
    """A fresh Llama speech tower over 1024 units: size "base" (12 layers, width 512) or "tiny"."""
    from towers import new_speech_tower

    t = new_speech_tower(SPEECH_UNITS, size="tiny" if tiny else "base", seed=seed)
    t.modality = modality
    return t


def random_ids(tower, batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """(batch, length) random ordinary token ids (above the special ids 0..2)."""
    return torch.randint(3, tower.vocab_size, (batch, length), generator=gen)


def unzip(model) -> None:
    """Detach a ZipperModel from its (shared) towers, so the next zip starts clean; a no-op for other models."""
    if hasattr(model, "unzip"):
        model.unzip()


def free(*objs) -> None:
    del objs
    gc.collect()


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    """Bytes held in the optimizer's per-parameter state (AdamW: exp_avg, exp_avg_sq, step)."""
    total = 0
    for state in opt.state.values():
        for v in state.values():
            if torch.is_tensor(v):
                total += v.numel() * v.element_size()
    return total


# -- memory probes in a subprocess -------------------------------------------------------------
def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak resident set size of this process's own address space (VmHWM).

    Not ``ru_maxrss``: Linux carries it across fork + exec, so a probe subprocess started by a
    parent holding 6 GiB reports the parent's 6 GiB (measured: every probe read the same value).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset this process's VmHWM to its current RSS (``echo 5 > /proc/self/clear_refs``, Linux 4.0+).

    Without it a probe's VmHWM is the peak of its whole life, tower loading included (safetensors
    reads, a GGUF dequantisation), which can hide the step's own peak. -> whether it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def trim_heap() -> None:
    """gc + glibc ``malloc_trim(0)``: give freed heap back to the OS so the RSS before a probed step
    is what is live, not what loading left behind in malloc's free lists."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def step_memory(step: Callable[[], object]) -> dict:
    """Run ``step`` once in this (fresh probe) process; -> its memory, all in bytes:

    ``rss_before_step``; ``peak_rss``: the high-water mark *of the step* (VmHWM reset just before
    it; if the reset is not possible, of the whole process: ``peak_rss_scope`` says which);
    ``step_peak_growth`` = peak_rss - rss_before_step; ``load_peak_rss``: VmHWM before the step
    (building towers and zip); ``rss_after_step``.
    """
    trim_heap()
    load_peak = peak_rss_bytes()
    before = rss_bytes()
    scope = "step" if reset_peak_rss() else "process"
    step()
    peak = peak_rss_bytes()
    return {"rss_before_step": before, "peak_rss": peak, "peak_rss_scope": scope,
            "step_peak_growth": peak - before, "load_peak_rss": load_peak, "rss_after_step": rss_bytes()}


def child_report(data: dict) -> None:
    """Called in a probe subprocess: print its result for `run_child`."""
    print(CHILD_MARK + json.dumps(data), flush=True)


def run_child(module: str, args: argparse.Namespace, spec: dict, timeout: float = 900) -> dict:
    """Re-run ``python -m <module> --child <spec>`` with the parent's shared options; -> its report.

    Peak memory is per process, so each configuration whose peak we want runs in its own fresh
    process (and `step_memory` there resets the high-water mark just before the step).
    """
    cmd = [sys.executable, "-m", module, "--child", json.dumps(spec), "--seed", str(args.seed),
           "--warmup", "1", "--steps", "1"]
    if args.tiny:
        cmd.append("--tiny")
    cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith(CHILD_MARK):
            return json.loads(line[len(CHILD_MARK):])
    raise RuntimeError(f"probe {spec} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")


def mib(n: float) -> float:
    return n / 2**20


# -- provenance and results --------------------------------------------------------------------
def machine_info() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers

    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def git_hash() -> str:
    try:
        h = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                           timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "zipper", "towers", "benchmarks",
                                ":!benchmarks/results", ":!benchmarks/RESULTS.md"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (h or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def command_line(name: str, argv: Sequence[str]) -> str:
    return " ".join(["python -m benchmarks." + name, *argv])


def print_table(rows: Sequence[Mapping], columns: Sequence[str], title: str = "") -> str:
    """Print (and return) a plain-text table of ``rows`` restricted to ``columns``."""
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = [title] if title else []
    lines.append("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


RESULTS_HEADER = ("| date | benchmark | command | machine | torch / transformers | git | result: median [IQR] |\n"
                  "|---|---|---|---|---|---|---|\n")


def write_results(name: str, args: argparse.Namespace, results: dict, headline: str) -> Path:
    """Write OUT/results/<name>.json and append one row to OUT/RESULTS.md; -> the JSON path."""
    machine = machine_info()
    record = {
        "benchmark": name,
        "command": command_line(name, getattr(args, "argv", [])),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_hash(),
        "machine": machine,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in ("child", "argv")},
        "headline": headline,
        **results,
    }
    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    path = out / "results" / (f"{name}-{args.tag}.json" if getattr(args, "tag", "") else f"{name}.json")
    path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    md = out / "RESULTS.md"
    if not md.exists():
        md.write_text("# Benchmark results\n\nOne row per run, appended by `benchmarks/common.write_results`. "
                      "Timings on a shared machine are noisy: compare the ratios (measured within one run, "
                      "variants interleaved), not absolute times across rows.\n\n" + RESULTS_HEADER)
    row = (f"| {record['date'][:16]} | {name} | `{record['command']}` | {machine['cpu']}, {machine['cores']} cores "
           f"({machine['torch_threads']} threads, load {machine['load_avg_1m']:.1f}) | {machine['torch']} / "
           f"{machine['transformers']} | {record['git']} | {headline.replace('|', '/')} |\n")
    with open(md, "a") as f:
        f.write(row)
    print(f"wrote {path} and a row in {md}")
    return path

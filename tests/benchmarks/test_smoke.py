"""Every benchmark's --smoke mode runs, and writes its JSON (with the expected keys) and a RESULTS.md row
into a temporary --out directory (never the tracked benchmarks/results)."""
from __future__ import annotations

import importlib
import json

import pytest
import torch

EXPECTED = {
    "train_step": {"rows", "full_finetune", "memory", "definition"},
    "decode": {"rows", "per_token_latency", "batching", "beam", "setup"},
    "scaling": {"rows", "sdpa", "interval"},
    "soak": {"verdict", "passed", "samples", "train_s", "generate_s"},
    "flops": {"step_flops", "achieved_flop_s", "matmul_peak_flop_s", "utilisation", "flops_ratios"},
    "rtf": {"asr", "tts", "setup"},
}
COMMON = {"benchmark", "command", "date", "git", "machine", "args", "headline"}


@pytest.fixture
def isolated_torch():
    """The benchmarks set torch's thread count and seed; give them back afterwards."""
    threads = torch.get_num_threads()
    with torch.random.fork_rng():
        yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_smoke_writes_results(name, tmp_path, isolated_torch):
    module = importlib.import_module(f"benchmarks.{name}")
    module.main(["--smoke", "--out", str(tmp_path)])
    data = json.loads((tmp_path / "results" / f"{name}.json").read_text())
    assert COMMON | EXPECTED[name] <= set(data), sorted(COMMON | EXPECTED[name] - set(data))
    assert data["benchmark"] == name and data["args"]["smoke"] is True
    assert data["command"].startswith(f"python -m benchmarks.{name} --smoke")
    assert {"cpu", "cores", "torch", "transformers"} <= set(data["machine"])
    rows = (tmp_path / "RESULTS.md").read_text().splitlines()
    assert rows[-1].startswith("| ") and f"| {name} |" in rows[-1]


def test_smoke_numbers_are_sane(tmp_path, isolated_torch):
    from benchmarks import train_step

    res = train_step.main(["--smoke", "--no-memory", "--no-full-ft", "--intervals", "auto", "--out", str(tmp_path)])
    row = res["rows"][0]
    assert row["zipped_s"]["median"] > 0 and row["towers_only_s"]["median"] > 0
    assert row["trainable_params"] > row["towers_only_trainable_params"] > 0
    assert 0 < row["ratio_vs_towers_only"]["median"] < 100

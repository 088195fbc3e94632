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
    "ctc_head": {"steps", "ratios", "trainable_params", "setup"},
    "fused_decode": {"per_utterance_s", "scratch_over_cached", "max_abs_diff", "setup"},
    "tower_load": {"first_load_s", "load_s", "setup"},
    "fused_search": {"rows", "per_utterance_s", "setup"},
    "int8": {"rows", "per_utterance_s", "speed_up", "wer", "same_transcripts", "setup"},
    "data_import": {"files", "cores", "seconds", "files_per_s", "speedup"},
}
COMMON = {"benchmark", "command", "date", "git", "machine", "args", "headline"}


@pytest.fixture
def isolated_torch():
    """The benchmarks set torch's thread count and seed (rtf: the shared Whisper encoder's threads too); give
    them back afterwards."""
    from towers.whisper_units import WhisperEncoder

    threads, whisper_threads = torch.get_num_threads(), WhisperEncoder.shared_threads
    with torch.random.fork_rng():
        yield
    torch.set_num_threads(threads)
    WhisperEncoder.set_shared_threads(whisper_threads)


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

    res = train_step.main(["--smoke", "--no-memory", "--no-full-ft", "--intervals", "auto",
                           "--input-projection-towers", "text", "--out", str(tmp_path)])
    row = res["rows"][0]
    assert row["zipped_s"]["median"] > 0 and row["towers_only_s"]["median"] > 0
    assert row["trainable_params"] > row["towers_only_trainable_params"] > 0
    assert 0 < row["ratio_vs_towers_only"]["median"] < 100
    # the text-only input projection variant, timed in the same rounds: one projection fewer
    assert row["proj_towers"] == ["text"] and row["zipped_proj_s"]["n"] == row["zipped_s"]["n"]
    assert 0 < row["proj_trainable_params"] < row["trainable_params"]
    assert 0 < row["proj_ratio_vs_towers_only"]["median"] < 100
    headline = json.loads((tmp_path / "results" / "train_step.json").read_text())["headline"]
    assert "all towers" in headline and "text only" in headline


def test_step_memory_is_the_steps_own_peak():
    """The probe's peak excludes what the process touched before the step (tower loading)."""
    from benchmarks import common

    big = torch.ones(64 * 2**20)  # 256 MiB touched, then freed: a loading-time peak
    del big
    mem = common.step_memory(lambda: torch.ones(8 * 2**20).sum())  # a 32 MiB step
    assert mem["peak_rss_scope"] == "step"  # Linux: VmHWM reset through /proc/self/clear_refs
    assert mem["load_peak_rss"] - mem["rss_before_step"] > 200 * 2**20
    assert 16 * 2**20 < mem["step_peak_growth"] < 128 * 2**20
    assert mem["peak_rss"] == mem["rss_before_step"] + mem["step_peak_growth"]


def test_scaling_memory_probe_grows_with_speech_length():
    """Each probe is a fresh process measuring its own step: a longer speech segment peaks higher
    (the old probes read the parent's inherited ru_maxrss: one value for every configuration)."""
    import argparse

    from benchmarks import common

    args = argparse.Namespace(seed=0, tiny=True, threads=1)
    short, long = (common.run_child("benchmarks.scaling", args, {"towers": 2, "speech_len": n, "batch": 2,
                                                                 "text_len": 30}) for n in (25, 750))
    assert short["peak_rss_scope"] == long["peak_rss_scope"] == "step"
    assert long["step_peak_growth"] > short["step_peak_growth"] + 50 * 2**20
    assert long["peak_rss"] > short["peak_rss"]


def test_full_finetune_ratio_is_per_round(tmp_path, isolated_torch):
    """Frozen and full fine-tuning zips are live together, timed interleaved: the ratio is per round."""
    from benchmarks import train_step

    full = train_step.main(["--smoke", "--no-memory", "--intervals", "auto", "--out", str(tmp_path)])["full_finetune"]
    assert full["full_over_frozen_time"]["n"] == full["frozen_s"]["n"] == full["full_s"]["n"] == 2
    assert 0 < full["frozen_trainable_params"] < full["full_trainable_params"]
    assert full["frozen_opt_state_bytes"] < full["full_opt_state_bytes"]


def test_decode_cache_ratios_have_rounds(tmp_path, isolated_torch):
    """Every cache speed-up, the long (> 50 tokens) uncached one too, rests on >= 2 rounds, n in the headline."""
    from benchmarks import decode

    res = decode.main(["--tiny", "--warmup", "1", "--steps", "2", "--lengths", "5,60", "--uncached-max", "60",
                       "--batch", "2", "--batch-tokens", "5", "--prompt-tokens", "8", "--out", str(tmp_path)])
    assert res["rows"][1]["warmup"] == "1 round(s) of 50 tokens"
    assert [r["cached_over_uncached_speed"]["n"] for r in res["rows"]] == [2, 2]
    headline = json.loads((tmp_path / "results" / "decode.json").read_text())["headline"]
    assert "5: " in headline and "60: " in headline and headline.count("(n=2)") == 2


def test_whisper_encoder_shared_threads(monkeypatch):
    """`WhisperEncoder.shared()` keeps its default of 2 threads; `set_shared_threads` (benchmarks.rtf's
    --threads) rebuilds it with the new count."""
    from towers.whisper_units import WhisperEncoder

    def fake_init(self, model_dir=None, threads=2):
        self.threads = threads

    monkeypatch.setattr(WhisperEncoder, "__init__", fake_init)
    monkeypatch.setattr(WhisperEncoder, "_shared", None)
    monkeypatch.setattr(WhisperEncoder, "shared_threads", WhisperEncoder.shared_threads)
    enc = WhisperEncoder.shared()
    assert enc.threads == 2 and WhisperEncoder.shared() is enc
    WhisperEncoder.set_shared_threads(1)
    assert WhisperEncoder.shared().threads == 1 and WhisperEncoder.shared() is not enc

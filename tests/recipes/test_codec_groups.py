"""recipes/codec_groups.py --paired: the paired difference of two codec evaluations on shared utterances."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_recipe_script

@pytest.fixture(scope="module")
def groups():
    return load_recipe_script("codec_groups")


def items(hyps: list[str], paths: list[str]) -> list[dict]:
    return [{"set": "held-out voices", "voice": "v", "path": p, "ref": "a b c d", "hyp_original": "a b c d",
             "hyp_codec": h} for h, p in zip(hyps, paths)]


def test_paired_difference_on_shared_utterances(groups):
    paths = [f"u{i}.wav" for i in range(20)]
    base = items(["a b x d"] * 20, paths)  # one error in four words: 25%
    better = items(["a b c d"] * 10 + ["a b x d"] * 10, paths)  # half of them fixed: 12.5%
    diff, lo, hi, n = groups.paired_difference(base, better, 200)
    assert n == 20 and diff == pytest.approx(-0.125) and lo < diff < hi < 0
    assert groups.paired_difference(base, base, 50) == (0.0, 0.0, 0.0, 20)
    diff, *_, n = groups.paired_difference(base, better[:5] + items(["a"], ["other.wav"]), 50)  # matched by path
    assert n == 5 and diff == pytest.approx(-0.25)


def test_paired_needs_bootstrap_and_prints_the_difference(groups, tmp_path, capsys):
    paths = [f"u{i}.wav" for i in range(8)]
    for name, hyps in [("a", ["a b x d"] * 8), ("b", ["a b c d"] * 8)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"items": items(hyps, paths)}))
    with pytest.raises(SystemExit):
        groups.main([str(tmp_path / "a"), str(tmp_path / "b"), "--paired"])
    groups.main([str(tmp_path / "a"), str(tmp_path / "b"), "--paired", "--bootstrap", "20"])
    out = capsys.readouterr().out.splitlines()
    assert "minus the first" not in out[0] and "minus the first: -25.0% [-25.0%, -25.0%] on 8 shared" in out[1]


def test_voices_keeps_a_prefix_or_its_complement(groups):
    assert groups.keep_voice("espeak:en-us+f2", None) and groups.keep_voice("espeak:en-us+f2", "espeak")
    assert not groups.keep_voice("flite:rms", "espeak") and groups.keep_voice("flite:rms", "!espeak")
    assert not groups.keep_voice("espeak:en-us+f2", "!espeak")


def test_pooled_runs_average_over_seeds_and_resample_whole_utterances(groups, tmp_path, capsys):
    """DIR1+DIR2 pools two runs of one codec (two Griffin-Lim seeds): its WER is the runs' mean, and a paired
    difference against a single run counts each utterance once, with both of its transcripts."""
    paths = [f"u{i}.wav" for i in range(8)]
    runs = {"base": ["a b x d"] * 8, "seed0": ["a b c d"] * 8, "seed1": ["a b x d"] * 8}  # 25%, 0%, 25%
    for name, hyps in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"items": items(hyps, paths)}))
    groups.main([str(tmp_path / "base"), f"{tmp_path / 'seed0'}+{tmp_path / 'seed1'}", "--paired", "--bootstrap", "20"])
    out = capsys.readouterr().out.splitlines()
    assert "all 12.5%" in out[1] and "minus the first: -12.5% [-12.5%, -12.5%] on 8 shared" in out[1]
    pooled = items(runs["seed0"], paths) + items(runs["seed1"], paths)
    assert list(groups.by_utterance(pooled)) == paths and all(len(g) == 2 for g in groups.by_utterance(pooled).values())
    assert groups.bootstrap_ratio(pooled, 30) == groups.bootstrap_ratio(pooled, 30)  # seeded

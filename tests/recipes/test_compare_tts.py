"""recipes/diagnostics/compare_tts.py: two TTS models' judge transcripts paired by sentence."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_recipe_script
from towers.scoring import wer


@pytest.fixture(scope="module")
def compare():
    return load_recipe_script("diagnostics/compare_tts")


def save(path, pairs, setting=None):
    path.write_text("".join(json.dumps({"setting": setting or {}, "text": t, "judge_heard": h}) + "\n" for t, h in pairs))
    return str(path)


def test_pools_files_pairs_by_sentence_and_reports_the_difference(compare, tmp_path, capsys):
    texts = ["the cat sat", "a dog ran far", "hello there world", "one two three"]
    a1 = save(tmp_path / "a1.jsonl", [(texts[0], "the cat sat"), (texts[1], "a dog ran")])
    a2 = save(tmp_path / "a2.jsonl", [(texts[2], "hello world"), (texts[3], "one two three"), ("only in a", "x")])
    b = save(tmp_path / "b.jsonl", [(t, "nothing like it") for t in reversed(texts)])  # another order
    out = compare.main(["--a", a1, a2, "--b", b, "--n", "300"])
    heard_a = ["the cat sat", "a dog ran", "hello world", "one two three"]
    assert out["n_utts"] == 4 and (out["only_a"], out["only_b"]) == (1, 0)
    assert out["wer_a"] == round(100 * wer(texts, heard_a).wer, 2)
    assert out["wer_b"] == round(100 * wer(texts, ["nothing like it"] * 4).wer, 2)
    assert out["lo"] <= out["diff"] <= out["hi"] and out["lo"] > 0  # b is worse on every sentence
    assert (out["a_fewer_errors"], out["b_fewer_errors"]) == (4, 0) and (out["runaways_a"], out["runaways_b"]) == (0, 0)
    loop = save(tmp_path / "loop.jsonl", [(t, t + " and on" * 5) for t in texts[:2]] + [(t, t) for t in texts[2:]])
    assert compare.main(["--a", a1, a2, "--b", loop])["runaways_b"] == 2  # 10 inserted words on 3 or 4
    assert "b - a = +" in capsys.readouterr().out


def test_refuses_mixed_settings_repeats_and_disjoint_sides(compare, tmp_path):
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"setting": {}, "text": "a", "judge_heard": "a"}) + "\n"
                     + json.dumps({"setting": {"guidance": 1.0}, "text": "b", "judge_heard": "b"}) + "\n")
    one = save(tmp_path / "one.jsonl", [("a", "a")])
    with pytest.raises(SystemExit, match="several decoding settings"):
        compare.main(["--a", str(mixed), "--b", one])
    with pytest.raises(SystemExit, match="twice"):
        compare.main(["--a", one, one, "--b", one])
    with pytest.raises(SystemExit, match="share no sentences"):
        compare.main(["--a", one, "--b", save(tmp_path / "other.jsonl", [("b", "b")])])
    for bad in ("not json\n", json.dumps({"text": "a"}) + "\n", "[1, 2]\n"):
        (tmp_path / "bad.jsonl").write_text(bad)
        with pytest.raises(SystemExit, match="not a readable tts_decoding.py --save file"):
            compare.main(["--a", str(tmp_path / "bad.jsonl"), "--b", one])
    with pytest.raises(SystemExit, match="not a readable"):
        compare.main(["--a", str(tmp_path / "missing.jsonl"), "--b", one])
    with pytest.raises(SystemExit, match="no sentences"):
        compare.main(["--a", save(tmp_path / "empty.jsonl", []), "--b", one])


def test_prints_what_produced_each_side(compare, tmp_path, capsys):
    source = {"command": "python recipes/diagnostics/tts_decoding.py --model m1 '{}'", "model": "m1", "voice": "",
              "git": "abc1234"}
    a = tmp_path / "a.jsonl"
    a.write_text("".join(json.dumps({"setting": {}, "text": t, "judge_heard": t, "source": source}) + "\n"
                         for t in ("the cat", "a dog")))
    b = save(tmp_path / "b.jsonl", [("the cat", "the hat"), ("a dog", "a dog")])  # an older file: no source
    compare.main(["--a", str(a), "--b", b, "--n", "50"])
    out = capsys.readouterr().out
    assert "model a: m1 (voice none, git abc1234): python recipes/diagnostics/tts_decoding.py --model m1" in out
    assert "model b: a file saved without its source" in out

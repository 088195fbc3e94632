"""recipes/diagnostics/compare_asr.py: two ASR models' hypotheses files paired by utterance id."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_recipe_script
from towers.scoring import cer, wer


@pytest.fixture(scope="module")
def compare():
    return load_recipe_script("diagnostics/compare_asr")


def save(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


REFS = {"u1": "the cat sat", "u2": "a dog ran far", "u3": "hello there world", "u4": "one two three"}


def test_pairs_by_id_and_reports_the_difference(compare, tmp_path, capsys):
    hyp_a = {"u1": "the cat sat", "u2": "a dog ran", "u3": "hello world", "u4": "one two three"}
    a = save(tmp_path / "a.jsonl", [{"id": u, "ref": r, "hyp": hyp_a[u], "ctc_hyp": r} for u, r in REFS.items()]
             + [{"id": "only-a", "ref": "x", "hyp": "x", "ctc_hyp": "x"}])
    b = save(tmp_path / "b.jsonl", [{"id": u, "ref": r, "hyp": "nothing like it", "ctc_hyp": r}
                                    for u, r in reversed(REFS.items())])  # another order
    out = compare.main([a, b, "--n", "300"])
    ids = list(REFS)
    assert out["n_utts"] == 4 and (out["only_a"], out["only_b"]) == (1, 0)
    assert out["wer_a"] == round(100 * wer([REFS[u] for u in ids], [hyp_a[u] for u in ids]).wer, 2)
    assert out["wer_b"] == round(100 * wer([REFS[u] for u in ids], ["nothing like it"] * 4).wer, 2)
    assert out["lo"] <= out["diff"] <= out["hi"] and out["lo"] > 0  # b is worse on every utterance
    assert (out["a_fewer_errors"], out["b_fewer_errors"]) == (4, 0)
    assert "b - a = +" in capsys.readouterr().out
    same = compare.main([a, b, "--field", "ctc_hyp", "--n", "50"])  # the CTC heads: both exact
    assert (same["wer_a"], same["wer_b"], same["lo"], same["hi"]) == (0, 0, 0, 0)


def test_field_b_reads_another_field_on_bs_side(compare, tmp_path):
    a = save(tmp_path / "a.jsonl", [{"id": u, "ref": r, "hyp": "nothing like it"} for u, r in REFS.items()])
    b = save(tmp_path / "b.jsonl", [{"id": u, "ref": r, "hyp": "nothing like it", "ctc_hyp": r} for u, r in REFS.items()])
    out = compare.main([a, b, "--field-b", "ctc_hyp", "--n", "50"])  # a's decoder against b's exact CTC head
    assert out["wer_b"] == 0 and out["wer_a"] > 0
    with pytest.raises(SystemExit, match="'ctc_hyp'"):  # without it, both sides read --field
        compare.main([a, b, "--field", "ctc_hyp"])


def test_by_voice_gives_each_voices_wer_on_both_sides(compare, tmp_path, capsys):
    voice = {"u1": "v1", "u2": "v2", "u3": "v1", "u4": "v2"}
    hyp_b = {"u1": "the cat sat", "u2": "a dog", "u3": "hello there", "u4": "one two three"}
    a = save(tmp_path / "a.jsonl", [{"id": u, "voice": voice[u], "ref": r, "hyp": r} for u, r in REFS.items()])
    b = save(tmp_path / "b.jsonl", [{"id": u, "ref": r, "hyp": hyp_b[u]} for u, r in REFS.items()])  # no voices
    out = compare.main([a, b, "--n", "50", "--by-voice"])
    for v in ("v1", "v2"):
        ids = [u for u in REFS if voice[u] == v]
        refs, hyps = [REFS[u] for u in ids], [hyp_b[u] for u in ids]
        assert out["by_voice"][v] == {"n_utts": 2, "n_words": sum(len(r.split()) for r in refs), "wer_a": 0.0,
                                      "wer_b": round(100 * wer(refs, hyps).wer, 2), "cer_a": 0.0,
                                      "cer_b": round(100 * cer(refs, hyps).cer, 2)}
    assert "v2: 2 utterances, 7 words: a 0.00%, b 28.57% (CER a 0.00%, b " in capsys.readouterr().out
    assert "by_voice" not in compare.main([a, b, "--n", "50"])


@pytest.mark.parametrize("rows_b, message", [
    ([{"id": "u1", "ref": "the cat sat", "hyp": "x"}, {"id": "u1", "ref": "the cat sat", "hyp": "y"}], "appears twice"),
    ([{"id": "u1", "ref": "another sentence", "hyp": "x"}], "another reference"),
    ([{"id": "zz", "ref": "the cat sat", "hyp": "x"}], "share no utterance ids"),
    ([{"id": "u1", "ref": "the cat sat"}], "'hyp'"),
    ([], "no utterances"),
])
def test_refuses_files_that_cannot_be_paired(compare, tmp_path, rows_b, message):
    a = save(tmp_path / "a.jsonl", [{"id": u, "ref": r, "hyp": r} for u, r in REFS.items()])
    b = save(tmp_path / "b.jsonl", rows_b)
    with pytest.raises(SystemExit, match=message):
        compare.main([a, b])


def test_an_unreadable_file_names_itself(compare, tmp_path):
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(SystemExit, match="bad.jsonl: not a hypotheses file"):
        compare.main([str(tmp_path / "bad.jsonl"), str(tmp_path / "bad.jsonl")])

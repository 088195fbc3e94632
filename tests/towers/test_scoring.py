"""Tests for towers.scoring: the text normaliser, WER/CER arithmetic, WER by voice, the paired bootstrap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towers.scoring import (
    ErrorRate,
    by_voice,
    cer,
    normalize_text,
    number_to_words,
    paired_wer_difference,
    wer,
)


# ------------------------------------------------------------------ normalisation
@pytest.mark.parametrize(
    "raw,norm",
    [
        ("Hello,   World!", "hello world"),
        ("Mr. Smith's dog -- isn't it?", "mister smith's dog isn't it"),
        ("'Twas the night", "twas the night"),
        ("He was ill-disposed.", "he was ill disposed"),
        ("Café  naïve résumé", "cafe naive resume"),
        ("It costs 1,984 dollars & 5%", "it costs one thousand nine hundred eighty four dollars and five percent"),
        ("pi is 3.14", "pi is three point one four"),
        ("\u201cQuoted\u201d \u2018single\u2019 don\u2019t", "quoted single don't"),
        ("", ""),
        ("  ...!!  ", ""),
        # letters without an ASCII decomposition, apostrophe look-alikes, the soft hyphen
        ("Cæsar, mediæval MANŒUVRE", "caesar mediaeval manoeuvre"),
        ("Straße STRAẞE", "strasse strasse"),
        ("Søren Ørsted Łódź Đorđe", "soren orsted lodz dorde"),
        ("Þór ÞÓR Ðað", "thor thor dad"),
        ("don\u00b4t don\u02bct don\u2032t", "don't don't don't"),
        ("no\u00adbody", "nobody"),
        # digit ordinals
        ("the 1st day", "the first day"),
        ("2nd 3rd 4th 5th", "second third fourth fifth"),
        ("8th 9th 12th 19th", "eighth ninth twelfth nineteenth"),
        ("20th 21st 22nd 40th", "twentieth twenty first twenty second fortieth"),
        ("100th 101st 1,000th", "one hundredth one hundred first one thousandth"),
        ("St. Paul on the 3rd", "saint paul on the third"),
    ],
)
def test_normalize_text(raw, norm):
    assert normalize_text(raw) == norm
    assert normalize_text(norm) == norm  # a normal form: normalising it again changes nothing


def test_normalize_letter_mapping_fixes_wer():
    assert wer("Caesar came", "Cæsar came").wer == 0.0
    assert wer("nobody knows", "no\u00adbody knows").wer == 0.0


def test_normalize_ordinals_fix_wer():
    assert wer("the first day", "the 1st day").wer == 0.0
    assert wer("the nineteenth century", "the 19th century").wer == 0.0
    assert normalize_text("the 1st day", numbers_to_words=False) == "the 1st day"


def test_normalize_keeps_digits_when_asked():
    assert normalize_text("Route 66!", numbers_to_words=False) == "route 66"


def test_normalize_is_idempotent():
    s = "Dr. Who's 2nd   TARDIS, from 1963 -- 'really'?"
    once = normalize_text(s)
    assert normalize_text(once) == once


@pytest.mark.parametrize(
    "n,words",
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (101, "one hundred one"),
        (1000, "one thousand"),
        (2024, "two thousand twenty four"),
        (1_000_001, "one million one"),
        (-7, "minus seven"),
    ],
)
def test_number_to_words(n, words):
    assert number_to_words(n) == words


# ------------------------------------------------------------------ WER / CER arithmetic
def test_wer_arithmetic():
    r = wer(["a b c", "d e"], ["a x c", "d e f"], normalize=False)
    assert isinstance(r, ErrorRate)
    assert (r.substitutions, r.deletions, r.insertions, r.hits) == (1, 0, 1, 4)
    assert r.n_ref_words == 5 and r.n_utterances == 2
    assert r.wer == pytest.approx(2 / 5)


def test_wer_is_corpus_level_not_mean_of_utterances():
    # utt1: 1 error / 1 word; utt2: 0 / 9 -> corpus 1/10, not mean(1.0, 0.0)
    r = wer(["a", "b c d e f g h i j"], ["x", "b c d e f g h i j"])
    assert r.wer == pytest.approx(0.1)


def test_wer_deletions_and_insertions():
    r = wer("the cat sat", "the sat")
    assert (r.substitutions, r.deletions, r.insertions) == (0, 1, 0)
    r = wer("the cat", "the fat cat sat")
    assert r.insertions == 2 and r.wer == pytest.approx(1.0)


def test_wer_normalizes_by_default():
    assert wer("Hello, World!", "hello world").wer == 0.0
    assert wer("Hello, World!", "hello world", normalize=False).wer == 1.0


def test_wer_empty_reference():
    r = wer(["", "a b"], ["x", "a b"])
    assert r.insertions == 1 and r.n_ref == 2 and r.wer == pytest.approx(0.5)
    assert wer([""], [""]).wer == 0.0
    assert wer([""], ["x"]).wer == float("inf")


def test_wer_bad_arguments():
    with pytest.raises(ValueError):
        wer(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        wer([], [])
    with pytest.raises(TypeError):
        wer(["a"], [None])


def test_paired_wer_difference_is_the_corpus_difference_with_an_interval_around_it():
    refs = ["the cat sat on the mat", "a b c d", "hello world", "one two three four five", "", "x y"]
    a = ["the cat sat on a mat", "a b c d", "hello word", "one two three for five", "", "x y"]
    b = ["the bat sat on", "a c d e f", "hello world", "one to three four five six", "oops", "x"]
    out = paired_wer_difference(refs, a, b, n=500)
    assert out["wer_a"] == pytest.approx(wer(refs, a).wer) and out["wer_b"] == pytest.approx(wer(refs, b).wer)
    assert out["diff"] == pytest.approx(wer(refs, b).wer - wer(refs, a).wer) and out["n_utts"] == 6
    assert out["lo"] <= out["diff"] <= out["hi"] and out["lo"] < out["hi"]
    assert (out["a_fewer_errors"], out["b_fewer_errors"]) == (5, 1)  # b only on "hello world"
    assert out["sign_test_p"] == pytest.approx(2 * 7 / 64)  # P(at most 1 of 6 fair coins) = 7/64, two-sided
    same = paired_wer_difference(refs, a, a, n=100)  # a system against itself: exactly no difference
    assert same["diff"] == same["lo"] == same["hi"] == 0 and same["sign_test_p"] == 1.0
    worse = paired_wer_difference(refs[:4], a[:4], [h + " extra" for h in a[:4]], n=200)  # worse on every utterance
    assert worse["lo"] > 0
    assert paired_wer_difference(refs, a, b, n=500) == out  # seeded


_sentence = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=6).map(" ".join)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_sentence, _sentence, _sentence), min_size=1, max_size=8))
def test_paired_wer_difference_invariants(triples):
    refs, a, b = map(list, zip(*triples))
    out = paired_wer_difference(refs, a, b, n=50)
    assert out["diff"] == pytest.approx(wer(refs, b).wer - wer(refs, a).wer)
    assert out["lo"] <= out["hi"] and out["a_fewer_errors"] + out["b_fewer_errors"] <= len(refs)
    flipped = paired_wer_difference(refs, b, a, n=50)  # the same resamples, the systems swapped
    assert flipped["diff"] == pytest.approx(-out["diff"]) and flipped["sign_test_p"] == out["sign_test_p"]
    assert (flipped["a_fewer_errors"], flipped["b_fewer_errors"]) == (out["b_fewer_errors"], out["a_fewer_errors"])
    assert 0 < out["sign_test_p"] <= 1


def test_paired_wer_difference_skips_resamples_without_reference_words():
    # a resample of only the empty reference has no WER; it used to count b's error deficit (-2) as a rate
    refs, a, b = ["", "a b c d"], ["x", "a b c d"], ["", "a b c d"]
    out = paired_wer_difference(refs, a, b, n=200)
    assert out["diff"] == pytest.approx(-0.25)
    assert out["lo"] == pytest.approx(-0.25) and out["hi"] == 0.0  # the only rates a resample with words gives
    with pytest.raises(ValueError, match="no words"):
        paired_wer_difference(["", ""], ["x", ""], ["", ""], n=10)


def test_paired_wer_difference_bad_arguments():
    with pytest.raises(ValueError, match="as many"):
        paired_wer_difference(["a", "b"], ["a", "b"], ["a"])
    with pytest.raises(ValueError, match="n must be"):
        paired_wer_difference(["a"], ["a"], ["a"], n=0)
    with pytest.raises(ValueError, match="no reference"):
        paired_wer_difference([], [], [])
    with pytest.raises(ValueError):  # refs and hypotheses differ in number
        paired_wer_difference(["a", "b"], ["a"], ["a"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["v1", "v2", "v3"]), st.sampled_from(["a b c", "a b", "b c d e"]),
                          st.sampled_from(["a b c", "a", "", "x y z w"])), min_size=1, max_size=12))
def test_by_voice_is_each_voices_corpus_rates_and_adds_up_to_the_whole(rows):
    voices, refs, hyps = map(list, zip(*rows))
    per = by_voice(refs, hyps, voices)
    assert list(per) == sorted(set(voices))
    for v, m in per.items():
        idx = [i for i, x in enumerate(voices) if x == v]
        r, h = [refs[i] for i in idx], [hyps[i] for i in idx]
        assert m == {"wer": round(100 * wer(r, h).wer, 2), "cer": round(100 * cer(r, h).cer, 2), "n_utts": len(idx),
                     "n_words": wer(r, h).n_ref}
    whole = wer(refs, hyps)
    assert sum(m["n_words"] for m in per.values()) == whole.n_ref
    assert sum(wer([refs[i] for i, x in enumerate(voices) if x == v], [hyps[i] for i, x in enumerate(voices) if x == v]).errors
               for v in per) == whole.errors
    with pytest.raises(ValueError, match="voices"):
        by_voice(refs, hyps, voices[:-1])


def test_cer():
    r = cer("abc", "abd", normalize=False)
    assert r.unit == "char" and r.substitutions == 1 and r.hits == 2
    assert r.cer == pytest.approx(1 / 3)
    assert "CER" in str(r)

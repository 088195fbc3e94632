"""towers/chunking.py: long audio cut at its pauses into pieces that cover it, none longer than asked."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towers.audio import load_audio
from towers.chunking import frame_energy_db, quiet_runs, speech_chunks, text_chunks
from zipper.data import LIBRIVOX

SR = 16000


def assert_cover(chunks, n, limit):
    assert chunks[0][0] == 0 and chunks[-1][1] == n
    assert all(a < b <= a + limit for a, b in chunks)
    assert all(b == a2 for (_, b), (a2, _) in zip(chunks, chunks[1:]))


def librivox() -> list[np.ndarray]:
    if not (LIBRIVOX / "transcription").exists():
        pytest.skip("pocketsphinx-testdata (make setup) is not installed")
    return [load_audio(p, target_sr=SR)[0] for p in sorted(LIBRIVOX.glob("*.wav"))]


def test_real_read_speech_is_cut_in_its_pauses():
    """The 5 LibriVox clips one after another, 0.3 s of silence between them (26.2 s): every cut falls in a
    silence; back to back (24.7 s, only the readers' own pauses), every cut falls in a quiet frame."""
    clips = librivox()
    gap = np.zeros(int(0.3 * SR), np.float32)
    wave = np.concatenate([x for c in clips for x in (c, gap)])
    ends = np.cumsum([len(c) + len(gap) for c in clips]) - len(gap)  # where each silence starts
    chunks = speech_chunks(wave, SR, 10.0)
    assert_cover(chunks, len(wave), 10 * SR) and len(chunks) == 4
    assert all(any(e < cut < e + len(gap) for e in ends) for _, cut in chunks[:-1]), (chunks, ends)
    together = np.concatenate(clips)
    chunks = speech_chunks(together, SR, 10.0)
    assert_cover(chunks, len(together), 10 * SR)
    energy = frame_energy_db(together, SR)
    floor, loud = np.percentile(energy, [10, 95])
    hop = int(0.01 * SR)
    assert all(energy[cut // hop - 1] < floor + 0.25 * (loud - floor) for _, cut in chunks[:-1])


def test_short_audio_is_one_piece_and_bad_settings_are_refused():
    assert speech_chunks(np.ones(SR), SR, 1.0) == [(0, SR)]
    with pytest.raises(ValueError, match="max_seconds"):
        speech_chunks(np.ones(SR), SR, 0.0)
    with pytest.raises(ValueError, match="search_seconds > 0"):
        speech_chunks(np.ones(SR), SR, 1.0, search_seconds=0.0)


@settings(max_examples=40, deadline=None)
@given(seconds=st.floats(0.01, 40), max_seconds=st.floats(0.05, 12), search=st.floats(0.001, 1.5), seed=st.integers(0, 99),
       pauses=st.integers(0, 6))
def test_pieces_cover_any_audio_in_order_none_too_long(seconds, max_seconds, search, seed, pauses):
    rng = np.random.default_rng(seed)
    wave = rng.standard_normal(int(seconds * SR)).astype(np.float32)
    for start in rng.integers(0, max(1, len(wave)), pauses):  # some silent stretches
        wave[start:start + int(rng.uniform(0.05, 1.0) * SR)] = 0
    chunks = speech_chunks(wave, SR, max_seconds, search_seconds=search * max_seconds)
    assert_cover(chunks, len(wave), int(max_seconds * SR))


def test_long_text_is_cut_at_sentence_ends_then_commas_then_between_words():
    text = ("He was not an ill disposed young man, unless to be rather cold hearted and rather selfish is to be ill "
            "disposed. Had he married a more amiable woman, he might have been made still more respectable than he "
            "was; he might even have been made amiable himself. Hello!")
    assert text_chunks(text, 120) == [
        "He was not an ill disposed young man, unless to be rather cold hearted and rather selfish is to be ill disposed.",
        "Had he married a more amiable woman, he might have been made still more respectable than he was;",
        "he might even have been made amiable himself. Hello!"]
    assert text_chunks(text, 60)[:2] == ["He was not an ill disposed young man,",
                                         "unless to be rather cold hearted and rather selfish is to be"]
    assert text_chunks("  short.  text ", 120) == ["short. text"] and text_chunks(" \n ", 5) == []
    assert text_chunks("a " + "x" * 30 + " b", 10) == ["a", "x" * 30, "b"]  # a word longer than the limit: alone
    with pytest.raises(ValueError, match="max_chars"):
        text_chunks("a", 0)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.sampled_from(list("ab ,.;!?\n")), max_size=300), max_chars=st.integers(1, 80))
def test_text_pieces_join_to_the_text_and_fit(text, max_chars):
    pieces = text_chunks(text, max_chars)
    assert " ".join(pieces) == " ".join(text.split())
    assert all(p and p == p.strip() and (len(p) <= max_chars or " " not in p) for p in pieces)


@given(st.lists(st.booleans(), max_size=40))
def test_quiet_runs_are_the_maximal_runs_of_quiet_frames(flags):
    quiet = np.array(flags, dtype=bool)
    runs = quiet_runs(quiet)
    assert all(quiet[i:j].all() and (i == 0 or not quiet[i - 1]) and (j == len(quiet) or not quiet[j]) for i, j in runs)
    assert sum(j - i for i, j in runs) == int(quiet.sum())


def test_pause_lengths_tell_the_clips_boundaries_from_the_pauses_inside_them():
    """long_audio.py --pauses: tone clips, one with a 0.1 s pause inside and 0.4 s of silence at its end: one pause
    at the boundary (~0.4 s long), one inside (~0.1 s); the recording's own edges are no pauses."""
    from tests.conftest import load_recipe_script

    tone = lambda s: (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(s * SR)) / SR)).astype(np.float32)  # noqa: E731
    silence = lambda s: np.zeros(int(s * SR), np.float32)  # noqa: E731
    first = np.concatenate([tone(0.5), silence(0.1), tone(0.5), silence(0.4)])
    got = load_recipe_script("diagnostics/long_audio").pause_lengths([[first, tone(0.6)]], SR)
    assert len(got["boundary"]) == 1 and abs(got["boundary"][0] - 0.4) < 0.04
    assert len(got["inside"]) == 1 and abs(got["inside"][0] - 0.1) < 0.04

"""Split long audio at its pauses, and long text at its sentence ends, into pieces a zip handles one by one.

The ASR zips are trained on single sentences of 2-10 s: given a whole paragraph they write one sentence and
stop (recipes/diagnostics/long_audio.py measures it). `speech_chunks` cuts a recording into pieces of at most
``max_seconds``, each cut at the quietest point of the longest pause found in the last part of the piece (frame
energy, 25 ms frames every 10 ms; in a digitally silent pause, its middle), so that words are not cut; with no
pause there, at its quietest frame. `zipper transcribe` transcribes the pieces and joins their texts.
`text_chunks` does the same for `zipper speak`: the TTS zips are trained on sentences too.
"""
from __future__ import annotations

import re

import numpy as np

FRAME_S, HOP_S = 0.025, 0.010
CHUNK_SECONDS = 10.0  # `zipper transcribe`'s longest piece (the zips are trained on sentences of 2-10 s)
CHUNK_CHARS = 120  # `zipper speak`'s longest piece (the training sentences have 6-18 words, up to ~110 characters)


def frame_energy_db(wave: np.ndarray, sr: int) -> np.ndarray:
    """Energy (dB) of each 25 ms frame, every 10 ms; frame i starts at sample i * hop."""
    frame, hop = int(round(FRAME_S * sr)), int(round(HOP_S * sr))
    n = 1 + max(0, len(wave) - frame) // hop  # a wave shorter than a frame: one, zero-padded
    padded = np.pad(wave.astype(np.float64), (0, max(0, (n - 1) * hop + frame - len(wave))))
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]  # (n, frame)
    return 10 * np.log10(np.mean(padded[idx] ** 2, axis=1) + 1e-10)


def quiet_frames(wave: np.ndarray, sr: int, quiet_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """(energy (dB) of each frame, which frames are quiet): below ``quiet_fraction`` of the way from the
    recording's noise floor (its 10th percentile) to its loud frames (the 95th), so pauses above a recording's
    own noise floor count."""
    energy = frame_energy_db(wave, sr)
    floor, loud = np.percentile(energy, [10, 95])
    return energy, energy < floor + quiet_fraction * (loud - floor)


def quiet_runs(quiet: np.ndarray) -> list[tuple[int, int]]:
    """The runs of consecutive quiet frames: (first frame, one past the last)."""
    edges = np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def speech_chunks(wave: np.ndarray, sr: int, max_seconds: float = CHUNK_SECONDS, search_seconds: float = 4.0,
                  quiet_fraction: float = 0.25) -> list[tuple[int, int]]:
    """Contiguous (start, end) sample ranges covering ``wave``, each at most ``max_seconds`` long.

    Each cut lies in the last ``search_seconds`` (at most ``max_seconds``) of a chunk: in the longest run of quiet
    frames there (energy below ``quiet_fraction`` of the way from the recording's noise floor, its 10th percentile,
    to its loud frames, the 95th), at that run's quietest frame; with no such run, at the quietest frame of that
    stretch. A wave of at most ``max_seconds`` is one chunk.
    """
    if not (max_seconds > 0 and search_seconds > 0):
        raise ValueError(f"need max_seconds > 0 and search_seconds > 0, got {max_seconds}, {search_seconds}")
    search_seconds = min(search_seconds, max_seconds)
    limit = int(max_seconds * sr)
    if len(wave) <= limit:
        return [(0, len(wave))]
    hop = int(round(HOP_S * sr))
    energy, quiet = quiet_frames(wave, sr, quiet_fraction)
    chunks, start = [], 0
    while len(wave) - start > limit:
        lo = (start + limit - int(search_seconds * sr)) // hop + 1  # frames starting in the search stretch
        hi = min(len(energy), (start + limit) // hop + 1)  # ... and no later than the chunk's end
        if lo >= hi:  # a stretch shorter than a frame hop: cut at the limit
            chunks.append((start, start + limit))
            start += limit
            continue
        best = None  # the longest quiet run in [lo, hi): (length, first frame)
        i = lo
        while i < hi:
            if quiet[i]:
                j = i
                while j < hi and quiet[j]:
                    j += 1
                if best is None or j - i > best[0]:
                    best = (j - i, i)
                i = j
            else:
                i += 1
        frames = range(best[1], best[1] + best[0]) if best is not None else range(lo, hi)
        mid = (frames[0] + frames[-1]) / 2  # among frames equally quiet to 0.1 dB (digital silence), the middlemost
        cut_frame = min(frames, key=lambda f: (round(float(energy[f]), 1), abs(f - mid)))
        cut = min(start + limit, max(start + 1, cut_frame * hop + int(round(FRAME_S * sr)) // 2))  # frame centre
        chunks.append((start, cut))
        start = cut
    chunks.append((start, len(wave)))
    return chunks


def text_chunks(text: str, max_chars: int = CHUNK_CHARS) -> list[str]:
    """``text`` (whitespace collapsed) as pieces of at most ``max_chars`` characters whose join by spaces is the
    text: whole sentences (ended by . ! ? ; or :) packed while they fit; a longer sentence is cut after its commas,
    then between words; a single word longer than ``max_chars`` is a piece of its own. Empty text: no pieces."""
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    words = text.split()
    if not words:
        return []
    # units that a piece never splits: words, grouped into clauses (after commas), grouped into sentences
    sentences = re.split(r"(?<=[.!?;:])\s+", " ".join(words))
    pieces: list[str] = []
    for sentence in sentences:
        for clause in _pack(re.split(r"(?<=,)\s+", sentence), max_chars, split=True):
            pieces.append(clause)
    return _pack(pieces, max_chars, split=False)


def _pack(parts: list[str], max_chars: int, split: bool) -> list[str]:
    """Join consecutive ``parts`` while they fit in ``max_chars``; with ``split``, a part that does not fit alone
    is cut between its words first."""
    out: list[str] = []
    for part in parts:
        subparts = _pack(part.split(), max_chars, split=False) if split and len(part) > max_chars else [part]
        for sub in subparts:
            if out and len(out[-1]) + 1 + len(sub) <= max_chars:
                out[-1] += " " + sub
            else:
                out.append(sub)
    return out

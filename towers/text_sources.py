"""Where the corpus's sentences come from, and how they are cleaned: Debian text packages, offline.

``fortunes`` records and the literary quotations of the GCIDE dictionary (Webster 1913) are the default; the
computing definitions of FOLDOC make a corpus of one domain. :func:`clean_sentences` keeps plain-English sentences of
4-20 words that a TTS voice reads unambiguously and deduplicates them; `towers.corpus` caches, cuts and speaks them.
"""

from __future__ import annotations

import gzip
import itertools
import os
import re
import unicodedata
from pathlib import Path
from typing import Iterable, Iterator

from towers.scoring import normalize_text

__all__ = ["TEXT_SOURCES", "SOURCE_PACKAGES", "clean_sentences", "fortune_texts", "gcide_quotations", "foldoc_texts"]

FORTUNES_DIR = Path("/usr/share/games/fortunes")
GCIDE_PATH = Path("/usr/share/dictd/gcide.dict.dz")
FOLDOC_PATH = Path("/usr/share/dictd/foldoc.dict.dz")


def fortune_texts(root: str | os.PathLike = FORTUNES_DIR) -> Iterator[str]:
    """Records of every plain fortune file under ``root`` (the ``%``-separated format),
    attribution lines (``-- Author``) removed."""
    root = Path(root)
    if not root.is_dir():
        return
    for f in sorted(root.iterdir()):
        if not f.is_file() or "." in f.name:  # skip .dat indexes and .u8 links
            continue
        text = f.read_text(encoding="utf-8", errors="replace")
        for rec in re.split(r"\n%\n", text):
            lines = [ln for ln in rec.splitlines() if not re.match(r"^\s*(--|~~|\u2014)\s*\S", ln)]
            yield " ".join(lines)


def _blocks(path: Path, inside) -> Iterator[str]:
    """The runs of consecutive lines of a dictd file (dictzip/gzip or plain) for which ``inside(line)`` holds,
    each stripped and joined by spaces; nothing if the file is missing."""
    if not path.is_file():
        return
    opener = gzip.open if path.suffix in (".dz", ".gz") else open
    block: list[str] = []
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in itertools.chain(f, [""]):  # a last empty line ends the last block
            if inside(line):
                block.append(line.strip())
            elif block:
                yield " ".join(block)
                block = []


def gcide_quotations(path: str | os.PathLike = GCIDE_PATH) -> Iterator[str]:
    """Literary quotations from the GCIDE (Webster 1913) dictionary: the indented blocks that end
    with an ``--Author.`` attribution, the attribution removed."""
    quoted = lambda line: len(line) - len(line.lstrip(" ")) >= 12 and line.strip() and not line.strip().startswith("[")  # noqa: E731
    for joined in _blocks(Path(path), quoted):
        m = re.search(r"\s--\s?[A-Z][^-]*$", joined)
        if m:
            yield joined[: m.start()]


def foldoc_texts(path: str | os.PathLike = FOLDOC_PATH) -> Iterator[str]:
    """The paragraphs of FOLDOC's definitions (the Free On-line Dictionary of Computing, Debian's
    ``dict-foldoc``): a domain of its own, computing prose. Category tags (``<programming>``), cross-reference
    braces (``{stack}`` -> ``stack``), URLs, dates and other parentheticals are removed."""
    for t in _blocks(Path(path), lambda line: line.startswith("   ") and line.strip()):  # headwords: not indented
        t = re.sub(r"^<[^>]*>\s*", "", t)  # the category tag
        t = re.sub(r"\{([^{}|]*)(\|[^{}]*)?\}", r"\1", t)  # {link} or {link|shown}: the text
        t = " ".join(re.sub(r"\s*\([^()]*\)", "", re.sub(r"<[^>]*>", "", t)).split())  # parentheticals: URLs, dates
        if t:
            yield t


TEXT_SOURCES = {"fortunes": fortune_texts, "gcide": gcide_quotations, "foldoc": foldoc_texts}
SOURCE_PACKAGES = {"fortunes": "fortunes", "gcide": "dict-gcide", "foldoc": "dict-foldoc"}


_ALLOWED = re.compile(r"^[A-Za-z ,.;:!?'\-]+$")
_SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_ABBREV = {"mr", "mrs", "ms", "dr", "st", "jr", "sr", "gen", "col", "capt", "lt", "rev", "prof",
           "vs", "etc", "no", "vol", "ch", "fig", "mt", "ft", "co", "inc", "ltd", "esq", "hon"}


def _split_sentences(text: str) -> list[str]:
    """Split at ``.!?`` + space + capital, but not after abbreviations / initials (``Mr.``,
    ``J.``), so those stay inside one (then rejected) sentence instead of leaving a fragment."""
    out, start = [], 0
    for m in _SENT_SPLIT.finditer(text):
        prev = text[start : m.start()].split()
        last = prev[-1].rstrip(".").lower() if prev else ""
        if last in _ABBREV or (len(last) == 1 and last.isalpha()):
            continue
        out.append(text[start : m.start()])
        start = m.end()
    out.append(text[start:])
    return out


def _ascii(s: str) -> str:
    s = s.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    s = s.replace("\u2014", " -- ").replace("\u2013", "-")
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c))


def clean_sentences(texts: Iterable[str], min_words: int = 4, max_words: int = 20) -> list[str]:
    """Raw passages -> unique plain-English sentences of ``min_words``..``max_words`` words.

    A sentence is kept when it starts with a capital letter, ends with ``.``, ``!`` or ``?``,
    contains only letters, spaces and ``, . ; : ! ? ' -`` (double quotes are dropped, ``--`` becomes
    a comma), has no digits, no abbreviation-like inner words ending in ``.``, no all-caps words of
    two or more letters (acronyms, shouting), no leading ``Name:`` dialogue label, and no
    single-letter words except ``a``/``I``/``O``.
    Duplicates (by :func:`towers.scoring.normalize_text`) are dropped; order is first-seen.
    """
    seen: set[str] = set()
    out: list[str] = []
    for raw in texts:
        t = _ascii(raw).replace('"', " ").replace("--", ", ")
        t = " ".join(t.split())
        t = re.sub(r"(\w) '(re|s|ll|ve|d|t|m)\b", r"\1'\2", t)  # GCIDE's "you 're"
        for s in _split_sentences(t):
            s = re.sub(r"\s+([,.;:!?])", r"\1", s.strip(" ,;:"))
            s = re.sub(r",\s*,", ",", s)
            if not s or not s[0].isupper() or s[-1] not in ".!?":
                continue
            if not _ALLOWED.match(s) or re.search(r"\.\.|!!|\?\?|''|--|-\s|\s-|^-", s):
                continue
            words = s.split()
            if words[0].endswith(":"):  # dialogue speaker labels ("Sam: ...")
                continue
            if not min_words <= len(words) <= max_words:
                continue
            if any(w.endswith(".") for w in words[:-1]):
                continue
            core = [w.strip(",.;:!?'") for w in words]
            if any(len(w) >= 2 and w.isupper() for w in core):
                continue
            if any(len(w) == 1 and w not in ("a", "A", "I", "O") for w in core):
                continue
            if any(not w for w in core):
                continue
            key = normalize_text(s)
            if key in seen:
                continue
            seen.add(key)
            out.append(s)
    return out

"""CTC prefix beam search over characters, with the zip's text decoder scoring every completed word.

A character CTC head (``ctc_units: "chars"``, zipper/ctc.py) hears the sounds but spells them by ear
("trito cral vom" for "try to crawl home"); the zipped text tower knows words and reads the same
speech through cross-attention. This search lets the CTC head propose the spellings and the decoder
choose among them, the way CTC acoustic models are decoded with a word-level LM (Hannun et al., 2014,
"First-pass large vocabulary continuous speech recognition using bi-directional recurrent DNNs";
pyctcdecode with KenLM), except that here the "LM" is the speech-conditioned decoder itself:

    score(prefix) = log p_ctc(prefix | x) + alpha * log p_dec(completed words | x) + beta * n_words

Frame by frame, each beam's prefix (characters) is extended by blank, by a repeat of its last symbol,
or by a new symbol whose log-prob passes ``prune``; p_ctc is tracked as (ends in blank, ends in a
symbol), as in the standard prefix search. Word scores are cached by text, so the decoder runs once
per distinct word sequence, batched per frame (and across utterances: the search is a generator that yields
the texts it needs scored), and only for the candidates that may enter the beam (``lazy``), each first priced by
its new word's first token, read off a scored text without running the decoder (``bounds``). A completed word
pays its decoder score at once, a growing unknown word only its letters, so a narrow beam can fill with run-ons
("delegedchildren") and
drop the spaced texts that would have scored better; the CTC best path joins the final texts, so the
answer never scores below it. (Label-synchronous joint decoding,
zipper/ctc_prefix.py, lets the decoder propose tokens instead; with a decoder that drifts from the
speech it is the wrong one to propose: recipes/diagnostics/README.md.)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Generator, Iterable, Sequence

import numpy as np

NEG = -np.inf
# Defaults, tuned on the first 20 dev utterances of the 2,400-step character zip
# (recipes/diagnostics/README.md, "Decoding with the CTC head"): WER 79.0% by best path, 53.8% fused; the word
# bonus lowered from 3 to 2 on 60 dev utterances of the states zip once the training text's words were known
# ("Search errors and model errors"): 36.2% -> 33.7% there, 30.4% -> 30.1% on test.
FUSION_BEAM, FUSION_ALPHA, FUSION_BETA = 32, 0.7, 2.0
# In a model directory: the words of its training corpus's text, which `zipper transcribe --fusion` takes as known
KNOWN_WORDS_FILE = "known_words.txt"


def ctc_prefix_beam_search(log_probs: np.ndarray, symbols: str,
                           score_texts: Callable[[Sequence[str], bool], Sequence[float]],
                           bound_texts: Callable[[Sequence[str], bool], Sequence[float]] | None = None,
                           **kwargs) -> str:
    """The best text of `prefix_beam_search` (its keyword arguments), each request of texts answered by
    ``score_texts(texts, ended)``, and with ``bound_texts`` (upper bounds of those scores, cheaper to get:
    `zipper.text_scorer.TextScorer.bounds`) its requests of bounds by that."""
    search = prefix_beam_search(log_probs, symbols, bounds=bound_texts is not None, **kwargs)
    try:
        texts, ended, exact = next(search)
        while True:
            texts, ended, exact = search.send((score_texts if exact else bound_texts)(texts, ended))
    except StopIteration as done:
        return done.value


def prefix_beam_search(log_probs: np.ndarray, symbols: str, beam: int = FUSION_BEAM, alpha: float = FUSION_ALPHA,
                       beta: float = FUSION_BETA, prune: float = -8.0, lexicon: "Lexicon | None" = None,
                       unk_penalty: float = -10.0, unk_letter_penalty: float = -2.0,
                       lazy: bool = True, bounds: bool = False) -> Generator[tuple[list[str], bool, bool],
                                                                             Sequence[float], str]:
    """log_probs (T, len(symbols) + 1) over ``symbols`` (space = word boundary) + blank last. A generator: it
    yields ``(texts, ended, True)`` and is sent the decoder's log-prob of each text (with EOS if ``ended``), so that
    the searches of several utterances can share the decoder's batches (`zipper.tasks.fused_transcribe_units`);
    it returns the best text (StopIteration.value; `ctc_prefix_beam_search` runs one with a scoring function).
    With a ``lexicon``, every word that is not in it, and a last partial word that starts none of its
    words, adds ``unk_penalty`` (pyctcdecode's ``unk_score_offset``), and each of its letters past its
    longest lexicon prefix adds ``unk_letter_penalty``: without that a run of unknown letters
    ("actoprombesbroin") costs one penalty however long it grows, and beats splitting it into words
    that the decoder would score.

    ``lazy`` (with ``alpha >= 0``): a candidate that completes a new word is first ranked by an upper bound, its
    completed words' score taken as that of its first words (a log-prob never rises as the text grows by a word),
    and the decoder scores only the candidates whose bound reaches the beam, until the beam holds scored texts
    alone: the same beams as scoring every candidate, for a fraction of the decoder's work. ``lazy=False`` scores
    every candidate (a ``score_texts`` that is not a log-prob). With ``bounds`` (and ``lazy``), before asking for
    a text's score the search asks for a tighter upper bound of it, yielding ``(texts, False, False)``: most
    candidates fall out of the beam once their new word's first token is priced, and a bound costs no forward of
    the decoder (the log-prob of a text's first new token, read off its kept prefix: `TextScorer.bounds`)."""
    x = np.asarray(log_probs, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(symbols) + 1:
        raise ValueError(f"log_probs must be (T, {len(symbols) + 1}), got {x.shape}")
    blank = len(symbols)
    cache: dict[tuple[str, bool], float] = {("", False): 0.0}
    tight: dict[str, float] = {}  # completed words -> an upper bound of their score, from the scorer (``bounds``)

    def words_score(texts: list[str], ended: bool):
        todo = sorted({t for t in texts if (t, ended) not in cache})
        if todo:
            scores = yield todo, ended, True
            for t, sc in zip(todo, scores, strict=True):
                cache[(t, ended)] = float(sc)
        return [cache[(t, ended)] for t in texts]

    def rank(prefixes: list[str], ctc: list[float]):
        """Each prefix's score; with ``lazy``, candidates outside the beam may keep their upper bound."""
        done = [_first_words(p) for p in prefixes]  # the completed words
        rest = [c + beta * len(d.split()) + _unknown(p, lexicon, unk_penalty, unk_letter_penalty)
                for c, d, p in zip(ctc, done, prefixes)]
        if not lazy or alpha < 0:
            return [r + alpha * s for r, s in zip(rest, (yield from words_score(done, False)))]
        while True:
            lm = [cache[(d, False)] if (d, False) in cache else  # exact, or the tightest bound known
                  min(tight.get(d, 0.0), cache.get((_first_words(d), False), 0.0)) for d in done]
            totals = [r + alpha * s for r, s in zip(rest, lm)]
            todo = [done[i] for i in np.argsort(totals)[::-1][:beam] if (done[i], False) not in cache]
            if not todo:
                return totals
            loose = sorted({d for d in todo if d not in tight}) if bounds else []
            if loose:
                got = yield loose, False, False
                tight.update(zip(loose, map(float, got), strict=True))
            else:
                yield from words_score(todo, False)

    beams: dict[str, tuple[float, float]] = {"": (0.0, NEG)}  # prefix -> (log p ending in blank, in a symbol)
    for t in range(len(x)):
        row = x[t]
        cands = [c for c in np.flatnonzero(row[:blank] > prune)]
        nxt: dict[str, list[float]] = {}

        def add(prefix: str, i: int, value: float) -> None:
            cur = nxt.setdefault(prefix, [NEG, NEG])
            cur[i] = np.logaddexp(cur[i], value)

        for prefix, (pb, pn) in beams.items():
            add(prefix, 0, np.logaddexp(pb, pn) + row[blank])
            for c in cands:
                ch, lp = symbols[c], row[c]
                if ch == " " and (not prefix or prefix[-1] == " "):
                    add(prefix, 1, np.logaddexp(pb, pn) + lp)  # leading or doubled spaces add nothing
                elif prefix and ch == prefix[-1]:
                    add(prefix, 1, pn + lp)  # the same symbol held: no new character
                    add(prefix + ch, 1, pb + lp)  # a doubled letter, with a blank between
                else:
                    add(prefix + ch, 1, np.logaddexp(pb, pn) + lp)
        prefixes = list(nxt)
        scores = yield from rank(prefixes, [float(np.logaddexp(*nxt[p])) for p in prefixes])
        keep = np.argsort(scores)[::-1][:beam]
        beams = {prefixes[i]: tuple(nxt[prefixes[i]]) for i in keep}
    merged: dict[str, float] = {}  # "ab" and "ab " are one text: add their CTC probabilities
    for prefix, (pb, pn) in beams.items():
        merged[prefix.strip()] = float(np.logaddexp(merged.get(prefix.strip(), NEG), np.logaddexp(pb, pn)))
    path = best_path_text(x, symbols)  # a narrow beam can lose it ("deleged children" to a run-on "delegedchildren")
    if path not in merged:
        merged[path] = ctc_text_log_prob(x, symbols, path)
    finals = list(merged)
    lm = yield from words_score(finals, True)
    totals = [_text_score(merged[f], s, f, alpha, beta, lexicon, unk_penalty, unk_letter_penalty)
              for f, s in zip(finals, lm)]
    return finals[int(np.argmax(totals))]


def ctc_text_log_prob(log_probs: np.ndarray, symbols: str, text: str) -> float:
    """log p_ctc(text | x), summed over every alignment whose symbols, collapsed (repeats merged, blanks
    dropped) and with spaces at the ends and doubled spaces dropped, spell ``text``: what the prefix search
    counts for a text, without its pruning. log_probs (T, len(symbols) + 1), blank last."""
    x = np.asarray(log_probs, dtype=np.float64)
    blank, space = len(symbols), symbols.index(" ")
    text = " ".join(text.split())
    if set(text) - set(symbols):
        raise ValueError(f"the text has characters the CTC head cannot spell: {sorted(set(text) - set(symbols))}")
    target = text + " " if text else ""  # states: its prefixes, the last one the text and a space after it
    ids = np.array([symbols.index(c) for c in target], dtype=int)  # (L,)
    last = np.concatenate([[-1], ids])  # (L + 1,) the last symbol of each prefix, -1 for the empty one
    free_space = (last == -1) | (last == space)  # a space here adds nothing to the text
    pb, pn = np.full(len(last), NEG), np.full(len(last), NEG)  # log p ending in blank / in a symbol
    pb[0] = 0.0
    for row in x:
        tot = np.logaddexp(pb, pn)
        nn = np.where(free_space, tot + row[space], pn + row[np.maximum(last, 0)])  # a space or the symbol held
        step = np.where(ids == last[:-1], pb[:-1], tot[:-1]) + row[ids]  # the next symbol (a doubled one after a blank)
        pb, pn = tot + row[blank], np.concatenate([nn[:1], np.logaddexp(nn[1:], step)])
    ends = np.logaddexp(pb, pn)[-2:] if text else np.logaddexp(pb, pn)  # the text, with or without a space after
    return float(np.logaddexp.reduce(ends))


def fused_text_score(log_probs: np.ndarray, symbols: str, text: str,
                     score_texts: Callable[[Sequence[str], bool], Sequence[float]], alpha: float = FUSION_ALPHA,
                     beta: float = FUSION_BETA, lexicon: "Lexicon | None" = None, unk_penalty: float = -10.0,
                     unk_letter_penalty: float = -2.0) -> float:
    """What `ctc_prefix_beam_search` maximises, for a whole text, with its exact CTC probability: a reference
    that scores above the search's answer shows a search error, one below it a model error."""
    text = " ".join(text.split())
    return _text_score(ctc_text_log_prob(log_probs, symbols, text), float(score_texts([text], True)[0]), text,
                       alpha, beta, lexicon, unk_penalty, unk_letter_penalty)


def _text_score(ctc: float, decoder: float, text: str, alpha: float, beta: float, lexicon: "Lexicon | None",
                unk_penalty: float, unk_letter_penalty: float) -> float:
    """The search's objective for a whole text, from its CTC and decoder log-probs."""
    return ctc + alpha * decoder + beta * len(text.split()) + _unknown(text + " ", lexicon, unk_penalty, unk_letter_penalty)


def best_path_text(log_probs: np.ndarray, symbols: str) -> str:
    """The CTC best path (zipper.ctc.ctc_greedy, as `ctc_transcribe_units` reads it) spelled in ``symbols``, extra
    spaces dropped."""
    import torch

    from zipper.ctc import ctc_greedy

    x = torch.from_numpy(np.asarray(log_probs))[None]  # (1, T, S + 1)
    ids = ctc_greedy(x, torch.ones(x.shape[:2], dtype=torch.bool))[0]
    return " ".join("".join(symbols[i] for i in ids).split())


class Lexicon:
    """Known words, and every prefix of one, for the search's unknown-word penalty. A known word with a
    clitic ("don't", "it's", "we'll") is known too."""

    CLITICS = ("s", "t", "re", "ll", "ve", "d", "m")

    def __init__(self, words):
        self.words = {w for w in words if w}
        self.prefixes = {w[:i] for w in self.words for i in range(len(w) + 1)}
        self._past: dict[tuple[str, bool], int | None] = {}

    @classmethod
    def from_tokenizer(cls, tokenizer, symbols: str, extra_words: Iterable[str] = ()) -> "Lexicon":
        """The whole-word tokens of a byte-level BPE vocabulary ("\u0120word") or a SentencePiece one
        ("\u2581word"), lower-cased and made only of ``symbols``: about the commonest words of the tower's
        training data; and ``extra_words`` (the words of the training transcripts, a domain's terms), the
        same way."""
        allowed = set(symbols) - {" "}
        words = {tok[1:].lower() for tok in tokenizer.get_vocab() if tok[:1] in ("\u0120", "\u2581") and len(tok) > 1}
        lexicon = cls(w for w in words | {w.lower() for w in extra_words} if set(w) <= allowed)
        if not lexicon.words:
            raise ValueError("the text tower's vocabulary has no whole-word tokens to make a lexicon of; "
                             "decode with unk_penalty=0 (no lexicon)")
        return lexicon

    def known_word(self, w: str) -> bool:
        head, _, clitic = w.partition("'")
        return w in self.words or (head in self.words and clitic in self.CLITICS)

    def known_prefix(self, p: str) -> bool:
        head, apostrophe, clitic = p.partition("'")
        return p in self.prefixes or (bool(apostrophe) and head in self.words
                                      and any(c.startswith(clitic) for c in self.CLITICS))

    def letters_past(self, w: str, complete: bool) -> int | None:
        """None if ``w`` is known (a word, or while not ``complete`` the start of one); else how many of
        its letters come after its longest lexicon prefix."""
        key = (w, complete)
        if key not in self._past:
            if self.known_word(w) if complete else self.known_prefix(w):
                self._past[key] = None
            else:
                self._past[key] = len(w) - max((i for i in range(len(w) + 1) if self.known_prefix(w[:i])), default=0)
        return self._past[key]


def read_word_list(path: str | os.PathLike) -> list[str]:
    """The words of a word-list file (one or more a line, UTF-8; ``#`` starts a comment), spelled as the CTC
    head spells them (towers.scoring.normalize_text: "COVID-19" -> "covid nineteen"), for
    `Lexicon.from_tokenizer`'s ``extra_words``: a domain's terms, a dictionary."""
    from towers.scoring import normalize_text

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"word list {path}: no such file") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"word list {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    words = [w for line in text.splitlines() for w in normalize_text(line.partition("#")[0]).split()]
    if not words:
        raise ValueError(f"word list {path}: no words in it")
    return words


def known_words(model_dir: str | os.PathLike) -> list[str]:
    """The words a model directory's fused search knows beside its tower's: its `KNOWN_WORDS_FILE` (written by the
    recipes: the training text's words, as `zipper eval` knows them), or none."""
    path = Path(model_dir) / KNOWN_WORDS_FILE
    return read_word_list(path) if path.is_file() else []


def write_word_list(path: str | os.PathLike, words: Iterable[str], comment: str = "") -> Path:
    """Write ``words`` sorted, one a line, after a ``#`` comment line: what `read_word_list` reads back."""
    path = Path(path)
    header = "".join(f"# {line}\n" for line in comment.splitlines())
    path.write_text(header + "".join(f"{w}\n" for w in sorted(set(words))), encoding="utf-8")
    return path


def _first_words(text: str) -> str:
    """The text before its last space: a prefix's completed words, or a text of words without its last."""
    return text.rsplit(" ", 1)[0] if " " in text else ""


def _unknown(prefix: str, lexicon: Lexicon | None, per_word: float, per_letter: float) -> float:
    """The unknown-word penalty of ``prefix``: ``per_word`` for each completed word not in the lexicon
    and for a last partial word that starts none of its words, ``per_letter`` for each letter past a
    word's longest lexicon prefix."""
    if lexicon is None:
        return 0.0
    *done, partial = prefix.split(" ")
    total = 0.0
    for w, complete in [(w, True) for w in done if w] + [(partial, False)]:
        past = lexicon.letters_past(w, complete)
        if past is not None:
            total += per_word + per_letter * past
    return total

"""CTC prefix scores for joint CTC/attention decoding (Watanabe et al., 2017, section 3.2; ESPnet's
``CTCPrefixScore``).

Beam search with the attention decoder alone can drift from the speech: a strong text tower writes
a fluent sentence that the audio does not contain. The zip's auxiliary CTC head (zipper/ctc.py)
reads the same speech with a monotonic alignment. Joint decoding ranks each hypothesis h by

    (1 - w) * log p_att(h | x) + w * log p_ctc(h... | x)

where p_ctc(h... | x) is the probability that the CTC output *starts with* h (the prefix score,
``prefix``), and, once h ends with EOS, that it *is* h (``full``). The CTC head may emit other
symbols than the decoder (characters under ``ctc_units: "chars"``): a ``to_symbols`` function maps
the decoder's tokens to CTC symbols, and scores are cached by symbol prefix, so a token whose
symbols (or a rewritten normalisation) share a prefix with an earlier hypothesis costs only its
new symbols.

Forward variables of a prefix g over frames t (log domain, float64):
    r_n[t]: all of g emitted by frame t, the last frame emitting g's last symbol;
    r_b[t]: all of g emitted by frame t, the last frame blank.
Extending g by symbol c (phi = r_b + r_n, or only r_b when c repeats g's last symbol):
    r_n'[t] = (r_n'[t-1] + phi[t-1]) * x_c[t]      r_b'[t] = (r_b'[t-1] + r_n'[t-1]) * x_blank[t]
    prefix(g + c) = sum_t phi[t-1] * x_c[t]        full(g) = r_n[T-1] + r_b[T-1]
Both recurrences are linear, so each is solved for all t at once with cumulative sums in the log
domain (no Python loop over frames).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

# A log-prob of -inf is read as this: the recurrences subtract cumulative sums, and -inf - -inf is NaN.
# Small enough that a path through it never counts, large enough to keep float64 precision.
LOG_ZERO = -1e4


def _linear_recurrence(inputs: np.ndarray, log_x: np.ndarray) -> np.ndarray:
    """y[0] = -inf, y[t] = (y[t-1] + inputs[t-1]) * x[t] in the log domain, for all t at once."""
    cum = np.cumsum(log_x)  # (T,): log prod_{u<=t} x[u]
    y = np.full(len(log_x), -np.inf)
    with np.errstate(invalid="ignore"):  # -inf inputs stay -inf
        y[1:] = cum[1:] + np.logaddexp.accumulate(inputs[:-1] - cum[:-1])
    return y


class CTCPrefixScorer:
    """Prefix and full-sequence CTC log-probabilities of symbol sequences for one utterance.

    log_probs: (T, S + 1) log-softmax output of a CTC head over the utterance's real frames, blank last.
    """

    def __init__(self, log_probs: np.ndarray):
        x = np.asarray(log_probs, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"CTCPrefixScorer wants (T, S + 1) log-probs with T > 0, got shape {x.shape}")
        x = np.maximum(x, LOG_ZERO)  # -inf would make the cumulative sums' differences NaN
        self.x, self.blank = x, x.shape[1] - 1
        r_b = np.cumsum(x[:, self.blank])  # the empty prefix: blanks only
        self._cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, float]] = {
            (): (np.full(len(x), -np.inf), r_b, 0.0)}

    def _state(self, symbols: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, float]:
        """(r_n, r_b, prefix score) of ``symbols``, extended from its longest cached prefix."""
        n = len(symbols)
        while symbols[:n] not in self._cache:
            n -= 1
        r_n, r_b, psi = self._cache[symbols[:n]]
        for i in range(n, len(symbols)):
            c = symbols[i]
            if not 0 <= c < self.blank:
                raise ValueError(f"CTC symbol {c} out of range [0, {self.blank})")
            phi = r_b if i and symbols[i - 1] == c else np.logaddexp(r_b, r_n)  # (T,)
            xc = self.x[:, c]
            new_n = _linear_recurrence(phi, xc)
            if i == 0:  # the first symbol may also start at frame 0
                new_n = np.logaddexp(new_n, np.cumsum(xc))
            new_b = _linear_recurrence(new_n, self.x[:, self.blank])
            terms = phi[:-1] + xc[1:]
            psi = float(np.logaddexp.reduce(np.append(terms, xc[0] if i == 0 else -np.inf)))
            r_n, r_b = new_n, new_b
            self._cache[symbols[: i + 1]] = (r_n, r_b, psi)
        return r_n, r_b, psi

    def prefix(self, symbols: Sequence[int]) -> float:
        """log P(the CTC output starts with ``symbols`` | x)."""
        return self._state(tuple(symbols))[2]

    def full(self, symbols: Sequence[int]) -> float:
        """log P(the CTC output is exactly ``symbols`` | x)."""
        r_n, r_b, _ = self._state(tuple(symbols))
        return float(np.logaddexp(r_n[-1], r_b[-1]))


class JointCTCScorer:
    """The CTC term of joint decoding for a batch: one CTCPrefixScorer per utterance, and the map from
    the decoder's generated tokens to CTC symbols.

    A token that adds no CTC symbol (punctuation, under a character head) leaves the prefix score
    unchanged, so it is free for the CTC term; a decoder that likes to repeat itself then fills its
    hypotheses with "!!!!" instead of the words the speech holds. Such a token may therefore not follow
    another one (scored -inf): single punctuation marks stay, runs of them do not."""

    def __init__(self, log_probs, mask, to_symbols: Callable[[list[int]], list[int]], weight: float,
                 running: Callable[[list[int]], tuple[list[int], bool]] | None = None):
        """log_probs (B, M, S + 1) torch, mask (B, M) bool; weight in (0, 1]. ``to_symbols`` maps a finished
        hypothesis; ``running`` (default: ``to_symbols``, nothing pending) one still being written, to its
        symbols so far and whether some are held back (`zipper.ctc.running_char_targets`)."""
        self.scorers = [CTCPrefixScorer(lp[m.bool()].detach().double().cpu().numpy()) for lp, m in zip(log_probs, mask)]
        self._to_symbols, self.weight = to_symbols, weight
        self._running = running or (lambda tokens: (to_symbols(tokens), False))
        self._symbols: dict[tuple, tuple] = {}

    def symbols(self, tokens: Sequence[int], ended: bool = True) -> tuple[tuple[int, ...], bool]:
        """(symbols, pending) of a finished (``ended``) or running hypothesis; cached."""
        key = (tuple(tokens), ended)
        if key not in self._symbols:
            symbols, pending = (self._to_symbols(list(key[0])), False) if ended else self._running(list(key[0]))
            self._symbols[key] = (tuple(symbols), pending)
        return self._symbols[key]

    def score(self, b: int, tokens: list[int], ended: bool) -> float:
        """The CTC log-prob of item b's hypothesis ``tokens`` (generated tokens, no start, no EOS):
        the prefix score while it runs, the full score once it ``ended`` with EOS."""
        symbols, pending = self.symbols(tokens, ended)
        if ended:
            return self.scorers[b].full(symbols)
        if not pending and len(tokens) >= 2 and symbols == self.symbols(tokens[:-1], False)[0] \
                == self.symbols(tokens[:-2], False)[0]:
            return -np.inf  # a second symbol-less token in a row (a number being written is not one)
        return self.scorers[b].prefix(symbols)

"""Auxiliary CTC loss on a zip's source memory: hybrid CTC/attention training (ESPnet's ``ctc_weight``).

In ASR the text tower must learn, through cross-attention alone, *where* in the speech the next
word is. With little paired data an attention decoder on a strong LM tends not to learn that
alignment and memorises sentences instead (recipes/diagnostics/README.md). CTC supplies the
monotonic alignment signal directly (Watanabe et al., 2017, "Hybrid CTC/attention"):

    m      = mem_proj(mem_norm(states))        # the source memory exactly as the last zip block reads it
    logits = [W m @ E_dst^T ; blank(m)]        # (B, M, V_dst + 1): the destination's own output
                                               # embeddings E_dst (frozen), plus a learned blank
    loss   = (1 - w) * attention NLL + w * CTC(logits, destination tokens)

The head shares the last zip block's memory projection, so the CTC signal shapes what the
cross-attention reads even when both towers are frozen; with a trainable source tower (or LoRA) it
trains that tower into an aligned encoder too. Only edges listed in ``ZipperConfig.ctc_directions``
get a head (speech->text; CTC needs the source to be at least as long as the target).

``ZipperConfig.ctc_units = "chars"`` swaps the scoring against E_dst for a small linear layer over the
28 characters of normalised text (``CTC_CHARS``; targets are the destination tokens decoded and passed
through ``towers.scoring.normalize_text``). On a CPU that saves much of an ASR step: with the 49k-token
head a step is 1.8x the plain zip's, with characters 1.04x (``python -m benchmarks.ctc_head``).
"""
from __future__ import annotations

import re
import unicodedata
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


CTC_CHARS = " 'abcdefghijklmnopqrstuvwxyz"  # what normalize_text leaves of English (numbers spelled out)


class CTCHead(nn.Module):
    """Maps projected source memory (B, M, D) to log-probs over the destination vocabulary + blank, or,
    with ``n_symbols``, over that many symbols of its own (characters) + blank."""

    def __init__(self, dim: int, n_symbols: int = 0):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.blank = nn.Linear(dim, 1)
        self.symbols = nn.Linear(dim, n_symbols) if n_symbols else None  # None: score out_embeddings

    def forward(self, memory: torch.Tensor, out_embeddings: torch.Tensor | None = None) -> torch.Tensor:
        """memory (B, M, D), out_embeddings (V, D) (token heads only) -> log-probs (B, M, V + 1); blank = V."""
        h = self.proj(memory)  # (B, M, D)
        scores = self.symbols(h) if self.symbols is not None else h @ out_embeddings.to(h.dtype).T  # (B, M, V)
        return torch.cat([scores, self.blank(h)], dim=-1).float().log_softmax(-1)  # (B, M, V + 1)


def ctc_text(text: str) -> str:
    """A text as the character head spells it: normalised, characters outside CTC_CHARS dropped, spaces collapsed."""
    from towers.scoring import normalize_text

    return " ".join("".join(c for c in normalize_text(text) if c in CTC_CHARS).split())


def char_targets(texts: Sequence[str]) -> list[torch.Tensor]:
    """Texts -> CTC_CHARS ids per row, of their `ctc_text`."""
    return [torch.tensor([CTC_CHARS.index(c) for c in ctc_text(t)], dtype=torch.long) for t in texts]


def running_char_targets(text: str) -> tuple[list[int], bool]:
    """The CTC_CHARS ids of a text still being written, and whether its last word is held back (pending).

    The words before the last whitespace are normalised as in `char_targets`. The last word may still grow,
    so it is only lowercased and cut to CTC_CHARS: normalised, a word start that looks like an abbreviation
    ("st" of "stumped" -> "saint") or an unfinished number ("18" of "1865" -> "eighteen") is spelled out,
    and the hypothesis stops being a prefix of its own final spelling. A last word holding a digit is held
    back until it ends (numbers are spelled out whole)."""
    head, last = re.match(r"(.*?)(\S*)$", text, re.S).groups()
    ids = char_targets([head])[0].tolist()
    if any(c.isdigit() for c in last):
        return ids, True
    tail = [CTC_CHARS.index(c) for c in unicodedata.normalize("NFKD", last.lower()) if c in CTC_CHARS[1:]]
    return ids + [CTC_CHARS.index(" ")] * bool(ids and tail) + tail, False


def chars_text(ids: Sequence[int]) -> str:
    """CTC_CHARS ids -> text, spaces collapsed."""
    return " ".join("".join(CTC_CHARS[i] for i in ids).split())


def ctc_targets(input_ids: torch.Tensor, keep: torch.Tensor, eos_token_id: int | None) -> list[torch.Tensor]:
    """Per row, the destination tokens CTC must emit: the loss targets (input_ids[:, 1:] where ``keep``),
    without EOS."""
    ids = input_ids[:, 1:]  # (B, T-1)
    keep = keep & (ids != eos_token_id) if eos_token_id is not None else keep
    return [row[k] for row, k in zip(ids, keep)]


def ctc_loss(log_probs: torch.Tensor, mask: torch.Tensor, targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over rows of the per-target-token CTC loss. log_probs (B, M, V + 1), mask (B, M) bool.

    A row whose speech is too short for its text (e.g. cropped in training) contributes zero rather
    than infinity."""
    blank = log_probs.shape[-1] - 1
    lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    flat = torch.cat(list(targets)) if len(targets) else torch.zeros(0, dtype=torch.long)
    flat = flat.to(log_probs.device)  # character targets are built on the CPU
    return F.ctc_loss(log_probs.transpose(0, 1), flat, mask.sum(-1).long().cpu(), lengths, blank=blank,
                      reduction="mean", zero_infinity=True)


def ctc_greedy(log_probs: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
    """Best-path decoding: argmax per frame, merge repeats, drop blanks and padding. -> token ids per row."""
    blank = log_probs.shape[-1] - 1
    out = []
    for best, m in zip(log_probs.argmax(-1), mask.bool()):  # (M,), (M,)
        best = best[m]
        merged = torch.unique_consecutive(best)
        out.append([int(t) for t in merged if t != blank])
    return out

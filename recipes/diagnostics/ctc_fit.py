"""What ctc_head_refit.py and units_ceiling.py share: fitting a character CTC head on per-utterance inputs
held in memory, and scoring its best path. Not a script."""
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from towers.scoring import cer, wer
from zipper.ctc import CTC_CHARS, char_targets, chars_text, ctc_greedy


def context_encoder(d: int = 192) -> nn.TransformerEncoder:
    """2 bidirectional (non-causal) pre-norm transformer layers, 4 heads: the heads' context over a whole utterance."""
    return nn.TransformerEncoder(nn.TransformerEncoderLayer(d, 4, 4 * d, 0.1, batch_first=True, norm_first=True), 2,
                                 enable_nested_tensor=False)


Batch = tuple[list[int], torch.Tensor, torch.Tensor]


def batches(xs: Sequence[torch.Tensor], size: int, shuffle: bool) -> Iterator[Batch]:
    """Length-sorted batches of ``xs`` (ids (M,) or features (M, D), float16 cast to float), in random order
    when ``shuffle`` -> (row indices, x (B, M) or (B, M, D) right-padded, mask (B, M) bool)."""
    order = sorted(range(len(xs)), key=lambda i: len(xs[i]))
    chunks = [order[i:i + size] for i in range(0, len(order), size)]
    if shuffle:
        chunks = [chunks[i] for i in torch.randperm(len(chunks)).tolist()]
    for idx in chunks:
        rows = [xs[i] if xs[i].dtype == torch.long else xs[i].float() for i in idx]
        x = nn.utils.rnn.pad_sequence(rows, batch_first=True)  # (B, M) or (B, M, D)
        mask = torch.arange(x.shape[1])[None] < torch.tensor([len(r) for r in rows])[:, None]  # (B, M)
        yield idx, x, mask


def fit(head: nn.Module, xs: Sequence[torch.Tensor], texts: Sequence[str], epochs: int,
        batch_size: int) -> Iterator[float]:
    """Train ``head``'s trainable parameters (``head(x, mask)`` -> log-probs (B, M, 29), blank last) by CTC over
    CTC_CHARS (AdamW 1e-3, loss per target character); yields each epoch's mean training loss."""
    opt = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01)
    for _ in range(epochs):
        head.train()
        total = n = 0
        for idx, x, mask in batches(xs, batch_size, True):
            targets = char_targets([texts[i] for i in idx])
            loss = F.ctc_loss(head(x, mask).transpose(0, 1), torch.cat(targets), mask.sum(-1),
                              torch.tensor([len(t) for t in targets]), blank=len(CTC_CHARS),
                              reduction="sum", zero_infinity=True) / sum(len(t) for t in targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        yield total / n


@torch.no_grad()
def best_paths(log_probs: Callable, xs: Sequence[torch.Tensor]) -> list[str]:
    """Greedy CTC transcripts of ``xs`` in their order; ``log_probs(x, mask)`` -> (B, M, 29), blank last
    (a head is put in eval mode first)."""
    if isinstance(log_probs, nn.Module):
        log_probs.eval()
    hyps = [""] * len(xs)
    for idx, x, mask in batches(xs, 50, False):
        for j, row in zip(idx, ctc_greedy(log_probs(x, mask), mask)):
            hyps[j] = chars_text(row)
    return hyps


def score(name: str, refs: Sequence[str], hyps: Sequence[str]) -> str:
    return f"{name} WER {100 * wer(refs, hyps).wer:.1f} CER {100 * cer(refs, hyps).cer:.1f}"

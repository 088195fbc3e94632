"""The zipped text decoder's log-prob of many texts on one utterance, each reusing the KV cache of a text
already scored that starts it.

The fused CTC search (zipper/ctc_beam.py) asks, frame after frame, for the decoder's score of word
sequences that grow one word at a time: "the", "the cat", "the cat sat". Run from scratch, every text
costs its whole length; here each text's token ids are matched against the longest already-scored
prefix of them, and only the new tokens go through the tower, attending to that prefix's cached keys
and values. Byte-level BPE splits at spaces, so "the cat" starts with the ids of "the" and a text
usually costs the tokens of its last word (and EOS when ``ended``). A text one token past a kept one costs
no forward at all: its log-prob is read off the kept text's next-token log-probs, and its keys and values
are computed only if a longer text asks for them (most candidates of the search are never extended).

Rows with prefixes of different lengths share one batch: each past is left-padded to the longest, its
padding masked out (positions come from the mask, so they are the same as unpadded). Rows of different
utterances share one too (`score_together`), each reading its own speech, padded and masked the same way.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import torch

from towers.speech_lm import pad_rows
from zipper.data import text_ids
from zipper.model import memory_rows, repeat_memory


class _State:
    """A scored token sequence: its keys and values, one tensor (L, 2, H, n, d) for all L layers (so a batch is
    assembled by one copy per row, not one per layer), the log-probs of the next token (V,), and the sum of
    log-probs of its tokens after the forced start."""

    __slots__ = ("kv", "next_logp", "score")

    def __init__(self, kv: torch.Tensor, next_logp: torch.Tensor, score: float):
        self.kv, self.next_logp, self.score = kv, next_logp, score


class TextScorer:
    """``scorer(texts, ended)`` -> the decoder's log p(text | speech) of each text (after the forced
    start, with EOS if ``ended``). ``memory``: ``model.memory_for("text", history)`` of one utterance.
    At most ``max_states`` scored sequences keep their caches (least recently used dropped; a text
    whose prefix was dropped is scored from the longest prefix still kept, the same number either way)."""

    @torch.no_grad()
    def __init__(self, model, memory: dict, batch_size: int = 32, max_states: int = 256):
        from transformers import DynamicCache

        self.model, self.tower = model, model.tower("text")
        self.memory, self.batch_size, self.max_states = memory, batch_size, max(2, max_states)
        self.device = self.tower.device
        self.start = model.start_ids("text")  # (S,) BOS + the forced prefix: costs every text the same
        self.root = tuple(self.start.tolist())
        cache = DynamicCache()
        logits, _ = model.tower_forward("text", self.start[None].to(self.device),
                                        torch.ones(1, len(self.start), dtype=torch.bool, device=self.device),
                                        memory, cache, record=False)
        kv = _stacked(cache)[:, :, 0]  # (L, 2, H, S, d)
        self.states: OrderedDict[tuple[int, ...], _State] = OrderedDict()
        self.states[self.root] = _State(kv, logits[0, -1].float().log_softmax(-1), 0.0)

    def ids(self, text: str, ended: bool) -> list[int]:
        return sentence_ids(self.tower, text, self.start, ended).tolist()

    def __call__(self, texts: Sequence[str], ended: bool) -> list[float]:
        return score_together([(self, texts, ended)], self.batch_size)[0]

    def bounds(self, texts: Sequence[str], ended: bool) -> list[float]:
        """An upper bound of each ``self(texts, ended)``, without a forward: the score of its longest kept prefix plus
        the log-prob of its next token, read off that prefix's state (the tokens after it can only lower the score;
        a text one token past a kept one gets its exact score). The fused search asks for these before it asks for
        scores (zipper/ctc_beam.py, ``bounds``)."""
        rows = [tuple(self.ids(t, ended)) for t in texts]
        return [self.states[r].score if r in self.states else self._read_next(r)[1] for r in rows]

    def _read_next(self, row: tuple[int, ...]) -> tuple[tuple[int, ...], float]:
        """The longest kept prefix of ``row`` (refreshed as recently used), and its score plus the log-prob of the
        token after it in ``row``: ``row``'s score if that is its last token, else an upper bound of it."""
        prefix = self._longest_prefix(row)
        self.states.move_to_end(prefix)
        state = self.states[prefix]
        return prefix, state.score + float(state.next_logp[row[len(prefix)]])

    def _longest_prefix(self, row: tuple[int, ...]) -> tuple[int, ...]:
        for n in range(len(row) - 1, len(self.root) - 1, -1):
            if row[:n] in self.states:
                return row[:n]
        raise ValueError(f"token ids {row} do not start with the forced start {self.root}")

    def _evict(self) -> None:
        self.states.move_to_end(self.root, last=False)  # the root is never dropped
        while len(self.states) > self.max_states:
            keys = iter(self.states)
            next(keys)
            del self.states[next(keys)]


@torch.no_grad()
def score_together(requests: Sequence[tuple[TextScorer, Sequence[str], bool]], batch_size: int = 64,
                   spread: float = 1.5, read_one_token: bool = True) -> list[list[float]]:
    """``[(scorer, texts, ended), ...]`` -> each scorer's ``scorer(texts, ended)``, the texts of all of them run in
    shared batches of up to ``batch_size`` rows (`_by_suffix_length` with ``spread``): one scorer per utterance
    (each its own speech), one zip. The fused searches of several utterances ask for a few texts each per frame,
    and a forward of a dozen rows costs far less than a dozen forwards of one (the tower's weights are read once
    per forward), so asking together saves most of the forwards. ``read_one_token`` False runs the texts one token
    past a kept one through the tower too (as before it was read off; benchmarks/fused_search.py)."""
    if len({id(sc.model) for sc, _, _ in requests}) > 1:
        raise ValueError("score_together: every scorer must score with the same zip")
    rows = [[tuple(sc.ids(t, ended)) for t in texts] for sc, texts, ended in requests]
    todo: dict[tuple[int, tuple[int, ...]], TextScorer] = {}  # (scorer, row) -> scorer, in order, once each
    for (sc, _, _), rs in zip(requests, rows):
        todo.update({(id(sc), r): sc for r in rs if r not in sc.states})
    free: dict[tuple[int, tuple[int, ...]], float] = {}
    jobs = []
    for key, sc in todo.items():
        row = key[1]
        parent, read = sc._read_next(row)
        # one new token (most words, an EOS): its log-prob is the parent's to read, so no forward; its keys and
        # values are computed with a longer text's, if one asks
        if read_one_token and len(row) - len(parent) == 1:
            free[key] = read
        else:
            jobs.append((sc, parent, row))
    for chunk in _by_suffix_length(jobs, batch_size, spread):
        _extend(chunk)
    out = []
    for (sc, _, _), rs in zip(requests, rows):
        for r in rs:
            if r in sc.states:
                sc.states.move_to_end(r)
        out.append([sc.states[r].score if r in sc.states else free[(id(sc), r)] for r in rs])
    for sc in {id(sc): sc for sc, _, _ in requests}.values():
        sc._evict()
    return out


def _by_suffix_length(jobs: list[tuple[TextScorer, tuple[int, ...], tuple[int, ...]]], batch_size: int,
                      spread: float = 1.5) -> list[list[tuple[TextScorer, tuple[int, ...], tuple[int, ...]]]]:
    """`_extend`'s jobs (scorer, the longest kept prefix of row, row) in batches of rows whose new tokens number
    about the same: a batch runs every row to its longest suffix, and most suffixes are two or three tokens (a word
    after one scored for free) beside a few of 10-20 (texts none of whose first words are kept scored), so mixing
    them would run mostly padding. Sorted by suffix length, a batch ends at ``batch_size`` rows or at a suffix
    ``spread`` times its first's."""
    out: list[list] = []
    first = 0
    for m, _, job in sorted((len(r) - len(p), i, (sc, p, r)) for i, (sc, p, r) in enumerate(jobs)):
        if not out or len(out[-1]) == batch_size or m > spread * first:
            out.append([])
            first = m
        out[-1].append(job)
    return out


def _extend(jobs: list[tuple[TextScorer, tuple[int, ...], tuple[int, ...]]]) -> None:
    """Score each ``row`` from its scorer's cached state of ``parent`` (a prefix of it) and keep its state there."""
    from transformers import DynamicCache

    scorers = [sc for sc, _, _ in jobs]
    model, tower, device = scorers[0].model, scorers[0].tower, scorers[0].device
    parents = [sc.states[p] for sc, p, _ in jobs]
    past = [len(p) for _, p, _ in jobs]
    ids, mask = pad_rows([torch.tensor(r[n:]) for (_, _, r), n in zip(jobs, past)], tower.pad_token_id)  # (B, M)
    ids, mask = ids.to(device), mask.to(device)
    width = max(past)
    n_layers, _, heads, _, dim = parents[0].kv.shape
    kv = parents[0].kv.new_zeros(n_layers, 2, len(jobs), heads, width, dim)  # (L, 2, B, H, width, d)
    for b, (parent, n) in enumerate(zip(parents, past)):
        kv[:, :, b, :, width - n:] = parent.kv  # left-padded; the padding is masked out
    cache = DynamicCache()
    for layer in range(n_layers):
        cache.update(kv[layer, 0], kv[layer, 1], layer)
    past_mask = torch.tensor([[0] * (width - n) + [1] * n for n in past], dtype=torch.bool, device=device)  # (B, width)
    uniq = list({id(sc): sc for sc in scorers}.values())  # rows of one utterance share its memory
    which = {id(sc): i for i, sc in enumerate(uniq)}
    memory = memory_rows(_stack_memories([sc.memory for sc in uniq]),
                          torch.tensor([which[id(sc)] for sc in scorers], device=device))
    logits, _ = model.tower_forward("text", ids, mask.bool(), memory, cache, past_mask, record=False)
    logp = logits.float().log_softmax(-1)  # (B, M, V)
    kv = _stacked(cache)  # (L, 2, B, H, width + M, d)
    for b, ((sc, _, row), parent, n) in enumerate(zip(jobs, parents, past)):
        m = len(row) - n
        new = ids[b, :m]  # (m,) the suffix: its first token is predicted by the parent's last position
        score = parent.score + float(parent.next_logp[new[0]]) + float(logp[b, : m - 1].gather(-1, new[1:, None]).sum())
        # copies, not views: a view would keep the whole batch's cache and (B, M, V) log-probs alive
        sc.states[row] = _State(kv[:, :, b, :, width - n: width + m].clone(), logp[b, m - 1].clone(), score)


def _stacked(cache) -> torch.Tensor:
    """A DynamicCache's keys and values as one tensor (L, 2, B, H, n, d)."""
    return torch.stack([torch.stack((layer.keys, layer.values)) for layer in cache.layers])


def _stack_memories(memories: Sequence[dict]) -> dict:
    """One-row ``memory_for`` results (of different utterances) -> one memory with a row each, every source padded
    to the longest and the padding masked out."""
    if len(memories) == 1:
        return memories[0]

    def pad(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
        return torch.nn.functional.pad(x, (0, 0) * (x.dim() - 1 - dim) + (0, width - x.shape[dim]))

    out = {}
    for layer, entries in memories[0].items():
        out[layer] = []
        for j, (block, *_) in enumerate(entries):
            ks, vs, masks = zip(*[m[layer][j][1:] for m in memories])  # (1, H, M_i, d), ..., (1, M_i)
            width = max(mk.shape[1] for mk in masks)
            out[layer].append((block, torch.cat([pad(k, width, 2) for k in ks]), torch.cat([pad(v, width, 2) for v in vs]),
                               torch.cat([pad(mk, width, 1) for mk in masks])))
    return out


def sentence_ids(tower, text: str, start: torch.Tensor, ended: bool) -> torch.Tensor:
    """``start`` + the tokens of ``text`` in sentence case (as the decoder was trained) + EOS if ``ended``:
    the whole text, however long (a cut would give hypotheses that differ past it the same score)."""
    row = text_ids(tower, text[:1].upper() + text[1:], max_tokens=None, start=start)  # ends with EOS
    return row if ended else row[:-1]


@torch.no_grad()
def scores_from_scratch(model, memory: dict, texts: Sequence[str], ended: bool) -> list[float]:
    """What ``TextScorer`` computes, with every text run whole and no cache (each costs its full
    length): the reference the scorer is tested and benchmarked against."""
    tx, start = model.tower("text"), model.start_ids("text")
    ids, mask = pad_rows([sentence_ids(tx, t, start, ended) for t in texts], tx.pad_token_id)  # (n, L)
    ids, mask = ids.to(tx.device), mask.to(tx.device)
    logits, _ = model.tower_forward("text", ids, mask.bool(), repeat_memory(memory, len(texts)), record=False)
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]  # (n, L - 1)
    keep = mask[:, 1:].bool()
    keep[:, : len(start) - 1] = False  # the forced start costs every text the same
    return (logp * keep).sum(-1).tolist()

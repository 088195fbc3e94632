"""A fresh speech tower: an HF LlamaForCausalLM over speech units, in three sizes.

Pretraining it (next-unit prediction on unpaired speech) is a recipe (`recipes/`); this file only
builds the architecture so that a pretrained one can be saved and loaded like any HF checkpoint.
"""
from __future__ import annotations

import torch

from towers.tower import Tower
from towers.units import UnitTokenizer

SIZES: dict[str, dict[str, int]] = {
    #            width, depth, heads, ffn
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
    "small": dict(hidden_size=256, num_hidden_layers=8, num_attention_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=512, num_hidden_layers=12, num_attention_heads=8, intermediate_size=2048),
}


def new_speech_tower(n_units: int, size: str = "small", max_positions: int = 4096, seed: int = 0) -> Tower:
    """A randomly initialised speech tower (Llama architecture) for ``n_units`` discrete units."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    tok = UnitTokenizer(n_units)
    config = LlamaConfig(
        vocab_size=tok.vocab_size, max_position_embeddings=max_positions, num_key_value_heads=None,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True, **SIZES[size],
    )
    config.num_key_value_heads = config.num_attention_heads
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.eval()
    return Tower(model=model, modality="speech", tokenizer=tok)


def pad_rows(rows: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad 1-D id sequences -> ids (B, T), mask (B, T)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for k, r in enumerate(rows):
        ids[k, : len(r)], mask[k, : len(r)] = r, 1
    return ids, mask


def lm_batches(sequences: list[torch.Tensor], tok: UnitTokenizer, batch_size: int, seed: int, start_step: int = 0,
               max_len: int = 512):
    """Endless seeded batches of BOS+units+EOS token windows (random crops of long utterances), resumable."""
    import random

    if not sequences:
        raise ValueError("no utterances to make batches of")
    batch_size = min(batch_size, len(sequences))  # fewer utterances than a batch: every batch holds them all

    step = 0
    epoch = 0
    while True:
        rng = random.Random(seed * 7919 + epoch)
        order = list(range(len(sequences)))
        rng.shuffle(order)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            rows = []
            for j in order[i:i + batch_size]:
                ids = tok.encode(sequences[j])
                if len(ids) > max_len:
                    a = rng.randrange(len(ids) - max_len + 1)
                    ids = ids[a:a + max_len]
                rows.append(ids)
            if step >= start_step:
                yield pad_rows(rows, tok.pad_token_id)
            step += 1
        epoch += 1


def lm_loss(model, batch) -> torch.Tensor:
    """Next-unit cross-entropy over real tokens."""
    dev = model.get_input_embeddings().weight.device  # batches are made on the CPU
    ids, mask = batch[0].to(dev), batch[1].to(dev)
    labels = ids.masked_fill(mask == 0, -100)
    return model(input_ids=ids, attention_mask=mask, labels=labels).loss


@torch.no_grad()
def unit_perplexity(model, sequences: list[torch.Tensor], tok: UnitTokenizer, batch_size: int = 16,
                    max_len: int = 512) -> float:
    """exp(mean next-unit NLL) over held-out utterances (each cropped to its first ``max_len`` tokens)."""
    import math

    import torch.nn.functional as F

    model.eval()
    total, count = 0.0, 0
    dev = model.get_input_embeddings().weight.device  # the model may be on a GPU; batches are made on the CPU
    for i in range(0, len(sequences), batch_size):
        ids, mask = pad_rows([tok.encode(s)[:max_len] for s in sequences[i:i + batch_size]], tok.pad_token_id)
        ids, mask = ids.to(dev), mask.to(dev)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        nll = F.cross_entropy(logits.flatten(0, 1).float(), ids[:, 1:].flatten(), reduction="none")
        m = mask[:, 1:].flatten().float()
        total += float((nll * m).sum())
        count += int(m.sum())
    return math.exp(total / max(count, 1))

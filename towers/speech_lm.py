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

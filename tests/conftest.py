"""Shared fixtures: tiny towers built offline from configs (no weights are downloaded)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from towers import Tower

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def load_recipe_script(name: str):
    """A recipes/ script (not a package module) imported from its file, e.g. ``load_recipe_script("eval_codec")``."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_tower(kind: str, modality: str, vocab: int = 48, hidden: int = 32, layers: int = 2, seed: int = 0,
               init_std: float = 0.02) -> Tower:
    """A random tiny HF causal LM of one architecture; ids 0 = pad, 1 = bos, 2 = eos.

    A large ``init_std`` gives peaky, input-dependent outputs (the default 0.02 repeats one token).
    """
    from transformers import (GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig,
                              LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM)

    special = dict(bos_token_id=1, eos_token_id=2, pad_token_id=0, initializer_range=init_std)
    torch.manual_seed(seed)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                             num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                             **special))
    elif kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                             num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                             **special))
    elif kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=4, **special))
    elif kind == "gpt_neox":
        model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                                 num_hidden_layers=layers, num_attention_heads=4, **special))
    else:
        raise ValueError(kind)
    return Tower(model=model.eval(), modality=modality)


def open_gates(model, value: float = 0.7, block_scale: float = 1.0) -> None:
    """Open every zero-initialised gate so the cross-attention path actually changes outputs.

    ``block_scale`` also scales the blocks' output projections, for towers whose states are large.
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gate"):
                p.fill_(value)
            elif name.startswith("blocks.") and (".out." in name or ".ff.2." in name):
                p.mul_(block_scale)


def train_steps(model, segments, steps: int = 3, lr: float = 1e-2) -> list[float]:
    """A few AdamW steps on one batch of segments (trainable tensors only); -> the losses."""
    model.train()  # first: a ZipperModel re-applies its own trainability (towers may be shared)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model(segments).loss
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.fixture
def pair():
    """A llama speech tower (4 layers, width 32) and a gpt_neox text tower (3 layers, width 48)."""
    return tiny_tower("llama", "speech", vocab=40, hidden=32, layers=4, seed=1), \
        tiny_tower("gpt_neox", "text", vocab=56, hidden=48, layers=3, seed=2)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M's real tokenizer, loaded once per test session (~25 s: it comes out of the GGUF file)."""
    from towers import load_tower

    return load_tower("smollm2-135m").tokenizer


def tiny_text_tower(tokenizer, seed: int = 0, layers: int = 2) -> Tower:
    """A tiny random Llama carrying a real tokenizer: real tokenisation and text handling at test speed."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=4, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return Tower(LlamaForCausalLM(config).eval(), "text", tokenizer)

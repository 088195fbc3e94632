"""towers/gguf_cache.py: a GGUF tower (the real SmolLM2-135M) loads from its cache of dequantised weights with the
same tensors, tokenizer and special ids as from the GGUF; a damaged entry is reloaded from the GGUF and rewritten."""
from __future__ import annotations

import pytest
import torch

from towers import gguf_cache, load_tower

TEXTS = ["The quick brown fox jumps over the lazy dog.", "<|im_start|>user\nZipper, 1913: naïve café!<|im_end|>", ""]


def assert_same_tower(a, b) -> None:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert all(a.tokenizer(t).input_ids == b.tokenizer(t).input_ids for t in TEXTS)
    assert a.special_ids() == b.special_ids() and a.pinned_ids == b.pinned_ids and a.vocab_size == b.vocab_size
    assert b.source == a.source == "smollm2-135m"  # a zip records the name, not the cache's path


def test_a_gguf_tower_loads_from_its_cache_as_from_the_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("ZIPPER_CACHE", str(tmp_path))
    from_gguf = load_tower("smollm2-135m")  # dequantised from the GGUF; writes the entry
    (entry,) = (tmp_path / "gguf").iterdir()
    assert (entry / gguf_cache.COMPLETE).exists() and entry.name.endswith("-float32")
    cached = load_tower("smollm2-135m")
    assert_same_tower(from_gguf, cached)
    assert "quantization_config" not in cached.model.config.to_dict()  # plain weights
    assert cached.model.lm_head.weight.data_ptr() == cached.model.model.embed_tokens.weight.data_ptr()  # still tied

    (entry / "model.safetensors").write_bytes(b"\x80\x04 a pickle or a truncated file")  # damage: never unpickled
    with pytest.warns(UserWarning, match="does not load .*not safetensors.*loading the GGUF again"):
        again = load_tower("smollm2-135m")
    assert_same_tower(from_gguf, again)
    assert (entry / gguf_cache.COMPLETE).exists() and not list((tmp_path / "gguf").glob(".tmp-*"))  # rewritten
    assert_same_tower(from_gguf, load_tower("smollm2-135m"))


def test_the_cache_location_and_switch(tmp_path, monkeypatch):
    monkeypatch.setenv("ZIPPER_GGUF_CACHE", "0")
    assert gguf_cache.cache_root() is None
    monkeypatch.delenv("ZIPPER_GGUF_CACHE")
    monkeypatch.setenv("ZIPPER_CACHE", str(tmp_path))  # the cache the Whisper judge is assembled in
    assert gguf_cache.cache_root() == tmp_path / "gguf"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"one")
    first = gguf_cache.entry_dir(gguf, torch.float32)
    assert first.parent == tmp_path / "gguf" and first != gguf_cache.entry_dir(gguf, torch.bfloat16)
    gguf.write_bytes(b"two")  # another file's content (size and mtime change with it) is another entry
    assert gguf_cache.entry_dir(gguf, torch.float32) != first

"""A local cache of GGUF towers, dequantised: the weights as a safetensors checkpoint directory.

transformers dequantises a GGUF file tensor by tensor on every load: ~25 CPU-seconds for SmolLM2-135M's 272
tensors, paid by every `zipper transcribe`, `speak` and `eval`. The first load writes the result (config,
``model.safetensors``, tokenizer) to ``$ZIPPER_CACHE/gguf/<file>-<sha256>-<transformers version>-<dtype>/``
(default ``~/.cache/zipper``); later loads read that directory in about a second, with
the same tensors bit for bit (tests/towers/test_gguf_cache.py). The key names the file's content (a changed file is
a new entry), the transformers version (its dequantisation and tokenizer conversion) and the dtype. An entry is
published by renaming a complete temporary directory, so a killed write leaves nothing that is read.
``ZIPPER_GGUF_CACHE=0`` turns the cache off; delete the directory to reclaim the space (~540 MB for SmolLM2 in fp32).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

COMPLETE = "COMPLETE"


def cache_root() -> Path | None:
    """``$ZIPPER_CACHE/gguf`` (default ``~/.cache/zipper/gguf``, beside the assembled Whisper judge), or None when
    ``ZIPPER_GGUF_CACHE=0``."""
    from towers.judges import default_cache_dir

    if os.environ.get("ZIPPER_GGUF_CACHE", "1") == "0":
        return None
    return default_cache_dir() / "gguf"


@functools.lru_cache(maxsize=16)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    """The file's sha256 (first 16 hex digits), computed once per process for a given size and mtime."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()[:16]


def entry_dir(gguf_path: Path, dtype: torch.dtype) -> Path | None:
    """The cache entry of ``gguf_path`` loaded as ``dtype`` (None: the cache is off)."""
    root = cache_root()
    if root is None:
        return None
    import transformers

    st = gguf_path.stat()
    digest = _digest(str(gguf_path.resolve()), st.st_size, st.st_mtime_ns)
    dtype_name = str(dtype).removeprefix("torch.")
    return root / f"{gguf_path.stem}-{digest}-transformers{transformers.__version__}-{dtype_name}"


def read_model(entry: Path, dtype: torch.dtype):
    """The model of a complete entry (``entry_dir``'s for this dtype; its tokenizer files load as any checkpoint's)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(entry), dtype=dtype, local_files_only=True, use_safetensors=True)


def write(entry: Path | None, model, tokenizer, source: Path, dtype: torch.dtype) -> None:
    """Publish ``model`` (as dequantised from ``source``) and its tokenizer as ``entry``. A failure (a full or
    read-only disk) is reported and skipped: the cache only saves time."""
    if entry is None or (entry / COMPLETE).exists():
        return
    from safetensors.torch import save_model

    tmp = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the entry holds plain (dequantised) weights
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        save_model(model, str(tmp / "model.safetensors"), metadata={"format": "pt"})  # tied weights stored once
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        meta = {"source": str(source), "dtype": str(dtype).removeprefix("torch.")}
        (tmp / COMPLETE).write_text(json.dumps(meta) + "\n")  # last: the rename below publishes a whole entry
        if entry.exists() and not (entry / COMPLETE).exists():
            shutil.rmtree(entry)  # a damaged entry (entries are published whole, with their marker)
        try:
            tmp.rename(entry)
            tmp = None
        except OSError:  # another process published the same entry first
            if not (entry / COMPLETE).exists():
                raise
    except OSError as e:
        print(f"[zipper] could not cache the dequantised {source.name} in {entry} ({e}); loading it from the GGUF "
              "each time (ZIPPER_GGUF_CACHE=0 does so quietly)", file=sys.stderr)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

"""Tell a safetensors file from a pickle before any loader touches it (we never unpickle)."""
from __future__ import annotations

import os
from pathlib import Path


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """None if ``path`` is laid out as safetensors (8-byte little-endian header size, then a JSON
    object that fits in the file); otherwise a one-line reason, naming pickle / torch.save archives."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
    if len(head) == 9:
        n = int.from_bytes(head[:8], "little")
        if 2 <= n <= size - 8 and head[8:9] == b"{":
            return None
    if head[:1] == b"\x80" or head[:2] == b"PK":  # pickle protocol 2+ / torch.save zip archive
        return f"{path} is a pickle / torch.save file, not safetensors; refusing to load it (never unpickled)"
    return f"{path} is not a valid safetensors file"

"""The tokenizer of a speech tower: discrete units 0..n_units-1 shifted past three special ids.

id 0 = pad, 1 = bos, 2 = eos, unit u = u + 3. Saved as ``unit_tokenizer.json`` in the tower directory.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch


class UnitTokenizer:
    FILE = "unit_tokenizer.json"
    pad_token_id, bos_token_id, eos_token_id = 0, 1, 2
    OFFSET = 3

    def __init__(self, n_units: int):
        if not isinstance(n_units, int) or n_units < 1:
            raise ValueError(f"n_units must be a positive int, got {n_units!r}")
        self.n_units = n_units

    @property
    def vocab_size(self) -> int:
        return self.n_units + self.OFFSET

    def __len__(self) -> int:
        return self.vocab_size

    def encode(self, units: torch.Tensor, add_bos: bool = True, add_eos: bool = True) -> torch.Tensor:
        """(T,) unit ids in [0, n_units) -> (T [+2],) token ids."""
        units = torch.as_tensor(units)
        if units.dtype.is_floating_point or units.dtype.is_complex or units.dtype == torch.bool:
            raise ValueError(f"unit ids must be integers, got dtype {units.dtype}")
        units = units.long()
        if units.ndim != 1:
            raise ValueError(f"units must be 1-D, got shape {tuple(units.shape)}")
        if units.numel() and (units.min() < 0 or units.max() >= self.n_units):
            raise ValueError(f"unit ids must lie in [0, {self.n_units}), got [{units.min()}, {units.max()}]")
        parts = [torch.tensor([self.bos_token_id])] if add_bos else []
        parts.append(units + self.OFFSET)
        if add_eos:
            parts.append(torch.tensor([self.eos_token_id]))
        return torch.cat(parts)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> unit ids, dropping specials and stopping at the first eos."""
        ids = torch.as_tensor(ids)
        if ids.ndim != 1 or ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"token ids must be a 1-D integer tensor, got shape {tuple(ids.shape)}, dtype {ids.dtype}")
        ids = ids.long()
        eos = (ids == self.eos_token_id).nonzero()
        if len(eos):
            ids = ids[: int(eos[0])]
        ids = ids[ids >= self.OFFSET]
        return ids - self.OFFSET

    def save_pretrained(self, path: str | os.PathLike) -> None:
        Path(path, self.FILE).write_text(json.dumps({"n_units": self.n_units}) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike) -> "UnitTokenizer":
        data = json.loads(Path(path, cls.FILE).read_text())
        return cls(int(data["n_units"]))

    def __repr__(self) -> str:
        return f"UnitTokenizer(n_units={self.n_units})"

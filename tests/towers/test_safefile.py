"""safetensors vs pickle detection: no real safetensors file is refused, whatever its header length."""
from __future__ import annotations

import pickle

import torch
from safetensors.torch import save_file

from towers.safefile import safetensors_problem


def test_every_header_length_residue_accepted(tmp_path):
    # The 8-byte little-endian header size can start with any byte, 0x80 (pickle's magic) included.
    first_bytes = set()
    for pad in range(0, 300):
        path = tmp_path / "w.safetensors"
        save_file({"x": torch.zeros(2)}, str(path), metadata={"p": "a" * pad})
        first_bytes.add(path.read_bytes()[0])
        assert safetensors_problem(path) is None, pad
    assert 0x80 in first_bytes and ord("(") in first_bytes  # headers are padded to 8 bytes: never "c"


def test_pickles_and_garbage_refused(tmp_path):
    for name, data in [("p", pickle.dumps({"a": 1})), ("p0", pickle.dumps([1], protocol=0)),
                       ("zip", b"PK\x03\x04rest"), ("junk", b"hello world, not tensors"), ("empty", b"")]:
        path = tmp_path / name
        path.write_bytes(data)
        assert safetensors_problem(path) is not None
    torch.save({"a": torch.zeros(1)}, tmp_path / "t.pt")
    assert "pickle" in safetensors_problem(tmp_path / "t.pt")

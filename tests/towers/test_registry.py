"""Tests for towers.registry: registered tower paths."""
from __future__ import annotations

from towers import registry


def test_register_tower_stores_the_path_absolute(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_USER", {})
    (tmp_path / "t").mkdir()
    monkeypatch.chdir(tmp_path)
    registry.register_tower("rel-tower", "t", modality="text")
    monkeypatch.chdir("/")  # the name still points at the same directory
    assert registry.resolve("rel-tower").path == str((tmp_path / "t").resolve())

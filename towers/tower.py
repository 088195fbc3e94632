"""A Tower: one pretrained unimodal decoder (an HF causal LM), its tokenizer and its modality.

Zipper never copies a tower's layers. It finds them through one small table of model types
(``DECODER_LAYERS``) and hooks into them in place, so every original parameter keeps its name and
a frozen tower still saves as itself.

Loading (`load_tower`) accepts:
  * a registered name (`towers.registry`: ``smollm2-135m``, ``gemma3-270m`` or one you register),
  * a local HF checkpoint directory with safetensors weights (pickle ``*.bin`` files are refused),
  * a GGUF file, or a directory holding exactly one, loaded through transformers' GGUF support.
Nothing is downloaded: hub ids that are not local paths fail with a clear error.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from towers.safefile import safetensors_problem
from towers.units import UnitTokenizer

# model_type -> dotted path of the decoder-layer ModuleList inside the *ForCausalLM model.
DECODER_LAYERS: dict[str, str] = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "phi3": "model.layers",
    "olmo2": "model.layers",
    "gpt2": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
}

# model_type -> default LoRA target modules. PEFT matches a target against the last part of a module's name,
# so these are the attention projections, and for GPT-2 also the MLP's output projection (``c_proj`` names
# both ``attn.c_proj`` and ``mlp.c_proj``). Kept as they are: saved zips name these adapters.
LORA_TARGETS: dict[str, list[str]] = {
    "gpt2": ["c_attn", "c_proj"],
    "gpt_neox": ["query_key_value", "dense"],
}
_DEFAULT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]

TOWER_META = "zipper_tower.json"  # written beside a tower checkpoint: {"modality": ...}


def cache_kwargs(model: nn.Module, cache) -> dict[str, Any]:
    """The keyword arguments that hand a KV cache to an HF causal LM's forward: ``cache`` since
    transformers 5.2x, ``past_key_values`` before (deprecated, removed in 5.40)."""
    return {_cache_arg(type(model)): cache, "use_cache": cache is not None}


@functools.lru_cache(maxsize=None)
def _cache_arg(model_class: type) -> str:
    """Looked up once per model class: every decoding step calls ``cache_kwargs``."""
    import inspect

    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


class TowerError(ValueError):
    """A tower cannot be loaded or used as asked (bad path, unsupported model type, unsafe weights)."""


@dataclass(eq=False)
class Tower:
    """A causal LM over one modality's tokens.

    Attributes:
        model: the HF ``*ForCausalLM`` module (its parameters keep their original names).
        modality: e.g. ``"text"`` or ``"speech"``.
        tokenizer: an HF tokenizer, a `UnitTokenizer` for speech units, or None (ids only).
        source: how to load it again (a path or a registered name); None for in-memory towers.
        pinned_ids: BOS / EOS / PAD ids that override the tokenizer's and the config's (`pin_special_ids`).
    """

    model: nn.Module
    modality: str
    tokenizer: Any = None
    source: str | None = None
    pinned_ids: dict[str, int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        mt = self.model_type
        if mt not in DECODER_LAYERS:
            raise TowerError(
                f"model type {mt!r} is not in the decoder-layer table; supported: {sorted(DECODER_LAYERS)}. "
                "Add it to towers.tower.DECODER_LAYERS (the dotted path of its decoder-layer list)."
            )
        if not self.modality or not isinstance(self.modality, str):
            raise TowerError(f"modality must be a non-empty string, got {self.modality!r}")

    @property
    def config(self):
        return self.model.config

    @property
    def model_type(self) -> str:
        return self.model.config.model_type

    @property
    def layers(self) -> nn.ModuleList:
        obj = self.model
        for part in DECODER_LAYERS[self.model_type].split("."):
            obj = getattr(obj, part)
        return obj

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return int(self.config.hidden_size)

    @property
    def num_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def device(self) -> torch.device:
        """Where the tower runs (its input embeddings' device): tensors fed to it are made there."""
        return self.model.get_input_embeddings().weight.device

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_input_embeddings().num_embeddings)

    @property
    def lora_targets(self) -> list[str]:
        return LORA_TARGETS.get(self.model_type, _DEFAULT_LORA_TARGETS)

    def special_ids(self) -> dict[str, int | None]:
        """``{"bos": .., "eos": .., "pad": ..}``: the ids a zip's segments start, end and pad with."""
        return {"bos": self.bos_token_id, "eos": self.eos_token_id, "pad": self.pad_token_id}

    def pin_special_ids(self, ids: dict[str, int | None]) -> None:
        """Use these BOS / EOS / PAD ids from now on, whatever the tokenizer says: a saved zip was trained
        with its towers' ids, and a tokenizer loaded by another transformers version may name others
        (transformers 5.17 reads SmolLM2's GGUF with EOS <|im_start|>, 5.25 with <|im_end|>)."""
        unknown = sorted(set(ids) - {"bos", "eos", "pad"})
        if unknown:
            raise TowerError(f"special ids are bos, eos and pad; got {unknown}")
        for name, value in ids.items():
            if value is not None and not (isinstance(value, int) and 0 <= value < self.vocab_size):
                raise TowerError(f"{name} id {value!r} is not in the {self.modality} tower's vocabulary "
                                 f"(size {self.vocab_size})")
        self.pinned_ids = {f"{k}_token_id": v for k, v in ids.items()}

    def keep_special_ids(self, saved: dict[str, int | None] | None, owner: str) -> None:
        """Pin ``saved``, the ids a saved model was built with, if this tokenizer names others, and warn.
        ``owner`` ends the sentence, e.g. "this zip was built with"."""
        here = self.special_ids()
        if saved and saved != here:
            self.pin_special_ids(saved)
            warnings.warn(f"the {self.modality} tower's tokenizer gives special ids {here} here, but {owner} {saved} "
                          "(another tokenizer or transformers version); using those", stacklevel=3)

    def _special(self, name: str) -> int | None:
        if name in self.pinned_ids:
            return self.pinned_ids[name]
        for obj in (self.tokenizer, self.config):
            value = _first(getattr(obj, name, None) if obj is not None else None)
            if value is not None:
                return int(value)
        return None

    @property
    def bos_token_id(self) -> int | None:
        return self._special("bos_token_id")

    @property
    def eos_token_id(self) -> int | None:
        return self._special("eos_token_id")

    @property
    def pad_token_id(self) -> int:
        pad = self._special("pad_token_id")
        return pad if pad is not None else (self.eos_token_id or 0)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Save as a local tower directory: config, ``model.safetensors``, tokenizer, modality."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.config.save_pretrained(path)
        # Clone so tied weights (shared storage) save as plain tensors; transformers re-ties on load.
        state = {k: v.detach().clone().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(path)
        (path / TOWER_META).write_text(json.dumps({"modality": self.modality}, indent=2) + "\n")

    def __repr__(self) -> str:
        return (
            f"Tower(modality={self.modality!r}, model_type={self.model_type!r}, layers={self.num_layers}, "
            f"hidden={self.hidden_size}, vocab={self.vocab_size}, params={self.num_parameters() / 1e6:.1f}M, "
            f"source={self.source!r})"
        )


def load_tower(
    path_or_name: str | os.PathLike,
    modality: str | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
) -> Tower:
    """Load a tower from a registered name, a local HF checkpoint directory or a GGUF file.

    Args:
        path_or_name: a name from `towers.registry.list_towers()`, a directory, or a ``.gguf`` path.
        modality: the tower's modality; defaults to the registry entry or the directory's
            ``zipper_tower.json``. Required otherwise.
        dtype: parameter dtype (GGUF weights are dequantised to it).
        gguf_file: the GGUF file name inside the directory, if it holds several.
        trust_remote_code: passed to transformers; never on unless you ask.
    """
    from towers import registry

    ref = str(path_or_name)
    if registry.is_registered(ref) and not Path(ref).exists():
        entry = registry.resolve(ref)
        path, gguf_file = entry.path, entry.gguf_file or gguf_file
        modality = modality or entry.modality
        if not Path(path).exists():
            raise TowerError(f"tower {ref!r} is registered at {path}, which does not exist")
    else:
        path = Path(ref).expanduser()
        if not path.exists():
            raise TowerError(
                f"no tower at {ref!r}: not a local path and not a registered name "
                f"(registered: {', '.join(registry.list_towers())}). Model hubs are not contacted; "
                "download a checkpoint yourself and pass its directory."
            )
        if path.is_file():
            if path.suffix != ".gguf":
                raise TowerError(f"{ref!r} is a file; pass a checkpoint directory or a .gguf file")
            path, gguf_file = path.parent, path.name
    path = Path(path)
    if gguf_file is not None and not (path / gguf_file).is_file():
        # (transformers would take the directory for a Hub repo id and try to download it)
        raise TowerError(f"no GGUF file {gguf_file!r} in {path}")
    if gguf_file is None:
        _check_safe_checkpoint(path)
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if not (path / "config.json").exists():
            if len(ggufs) != 1:
                raise TowerError(f"{path} has no config.json and {len(ggufs)} .gguf files; pass gguf_file=")
            gguf_file = ggufs[0]
    meta = path / TOWER_META
    if modality is None and meta.exists():
        modality = json.loads(meta.read_text()).get("modality")
    if modality is None:
        raise TowerError(f"modality unknown for {ref!r}: pass modality='text' (or 'speech', ...)")

    if gguf_file is not None:
        model, tokenizer = _load_gguf(path, gguf_file, dtype, trust_remote_code)
    else:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, trust_remote_code=trust_remote_code,
                                                     local_files_only=True, use_safetensors=True)
        tokenizer = _load_tokenizer(path, None, trust_remote_code)
    model.eval()
    tower = Tower(model=model, modality=modality, tokenizer=tokenizer, source=ref)
    if gguf_file is not None:  # the file's own BOS / EOS (in the config) over what the tokenizer conversion
        # made of them: transformers 5.17 gives SmolLM2's GGUF tokenizer EOS <|im_start|>, which is its BOS
        ids = tower.special_ids()
        own = {**ids, **{k: v for k in ("bos", "eos") if (v := _first(getattr(model.config, f"{k}_token_id", None)))
                         is not None}}
        if own != ids:
            tower.pin_special_ids(own)
    return tower


def _first(value):
    """A special-token id as configs give it: an int, None, or a list of ids (the first is used)."""
    return (value[0] if value else None) if isinstance(value, (list, tuple)) else value


def tower_exists(ref: str) -> bool:
    """``ref`` is something :func:`load_tower` can find: a registered name, a ``.gguf`` file, or a directory
    holding a config.json or a ``.gguf`` (nothing is downloaded; "" would be the working directory)."""
    from towers import registry

    if not ref:
        return False
    path = Path(ref).expanduser()
    if path.is_file():
        return path.suffix == ".gguf"
    if path.is_dir():
        return (path / "config.json").is_file() or any(path.glob("*.gguf"))
    return registry.is_registered(ref)


def portable_ref(ref: str | None, model_dir: str | os.PathLike) -> str | None:
    """How a saved model records a tower reference: a local path relative to the model's directory (so the
    model loads from any working directory, and moves together with its towers), or absolute when the two
    share no directory but the root; a registered name, or ``None`` (in-memory), as is. :func:`resolve_ref`
    reads it back."""
    if ref is None or not Path(ref).expanduser().exists():
        return ref
    tower, model = Path(ref).expanduser().resolve(), Path(model_dir).resolve()
    if Path(os.path.commonpath([tower, model])) == Path(tower.anchor):
        return str(tower)
    return os.path.relpath(tower, model)


def resolve_ref(ref: str | None, model_dir: str | os.PathLike) -> str | None:
    """A saved model's tower reference -> a reference :func:`load_tower` takes. A relative path found next
    to the model directory wins; otherwise the reference is returned as given: a registered name, an
    absolute path, or a path relative to the working directory (models saved before references were
    made portable)."""
    if ref is None or Path(ref).expanduser().is_absolute():
        return ref
    near = Path(model_dir) / ref
    return str(near.resolve()) if near.exists() else ref


def _check_safe_checkpoint(path: Path) -> None:
    """Refuse directories whose weights exist only as pickle files, or whose ``*.safetensors`` are not
    safetensors (a pickle renamed), before transformers touches them (we never unpickle)."""
    safetensors = sorted(path.glob("*.safetensors"))
    for f in safetensors:
        problem = safetensors_problem(f)
        if problem:
            raise TowerError(problem)
    if safetensors or any(path.glob("*.gguf")):
        return
    pickles = [p.name for p in path.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".ckpt"}]
    if pickles:
        raise TowerError(
            f"{path} holds only pickle weights ({', '.join(pickles)}); zipper loads safetensors only. "
            "Convert them once in a trusted environment (model.save_pretrained(..., safe_serialization=True))."
        )
    raise TowerError(f"{path} holds no weights (*.safetensors or *.gguf)")


def _load_gguf(path: Path, gguf_file: str, dtype: torch.dtype, trust_remote_code: bool):
    """(model, tokenizer) of a GGUF file, dequantised to ``dtype``: from the local cache of dequantised weights
    (towers/gguf_cache.py) after the first load, which writes it."""
    from transformers import AutoModelForCausalLM

    from towers import gguf_cache

    entry = gguf_cache.entry_dir(path / gguf_file, dtype)
    if entry is not None and (entry / gguf_cache.COMPLETE).exists():
        try:
            _check_safe_checkpoint(entry)
            return gguf_cache.read_model(entry, dtype), _load_tokenizer(entry, None, False)
        except Exception as e:  # noqa: BLE001 -- any damage: the GGUF itself is still there, and rewrites the entry
            why = (str(e).splitlines() or [type(e).__name__])[0]
            warnings.warn(f"the cached dequantised {gguf_file} in {entry} does not load ({why}); "
                          "loading the GGUF again and rewriting the cache", stacklevel=3)
            shutil.rmtree(entry, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(str(path), gguf_file=gguf_file, dtype=dtype, local_files_only=True,
                                                 trust_remote_code=trust_remote_code)
    tokenizer = _load_tokenizer(path, gguf_file, trust_remote_code)
    gguf_cache.write(entry, model, tokenizer, path / gguf_file, dtype)
    return model, tokenizer


def _load_tokenizer(path: Path, gguf_file: str | None, trust_remote_code: bool):
    if (path / UnitTokenizer.FILE).exists():
        return UnitTokenizer.from_pretrained(path)
    has_tok = gguf_file is not None or any(
        (path / f).exists() for f in ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")
    )
    if not has_tok:
        return None
    from transformers import AutoTokenizer

    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "local_files_only": True}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    return AutoTokenizer.from_pretrained(str(path), **kwargs)

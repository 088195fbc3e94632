"""ZipperConfig: one flat dataclass, serialised to JSON, validated on construction and on load.

A config never executes code: it is plain JSON, read with `json.loads`, with unknown keys and wrong
types refused.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from towers.typed_config import check_field_types


class ConfigError(ValueError):
    """A zipper config is malformed (unknown key, wrong type, inconsistent values)."""


# marks the fields a zip records from its towers: a training checkpoint written before one existed is not
# checked against it on resume (zipper.train.load_checkpoint), rather than against the field's empty default
RECORDED = {"recorded_from_towers": True}
CTC_UNITS = ("tokens", "chars")  # what an auxiliary CTC head emits (zipper/ctc.py)


def check_ctc_units(value) -> None:
    """The one check of a ``ctc_units`` setting, for ZipperConfig and the recipes' config alike."""
    if value not in CTC_UNITS:
        raise ConfigError(f"ctc_units must be one of {CTC_UNITS}, got {value!r}")


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """``json.loads(object_pairs_hook=...)``: a key given twice is refused, not silently the last value."""
    seen = [k for k, _ in pairs]
    repeated = sorted({k for k in seen if seen.count(k) > 1})
    if repeated:
        raise ConfigError(f"duplicate keys {repeated}: each setting may be given once")
    return dict(pairs)


def check_modality_name(name: str) -> None:
    """A modality names its zip blocks, ``<src>_to_<dst>`` (module names: no dots). Two edges could give one
    name if a modality contained "_to_", began with "to_" or ended with "_to" ("a_to"->"b" and "a"->"to_b")."""
    if not name or "." in name or "->" in name or "_to_" in name or name.startswith("to_") or name.endswith("_to"):
        raise ConfigError(f"modality name {name!r} must be non-empty, without '.', '->' or '_to_', and neither "
                          "begin with 'to_' nor end with '_to' (zip block names '<a>_to_<b>' must not collide)")


@dataclass
class ZipperConfig:
    # One entry per tower, in the same order.
    modalities: list[str] = field(default_factory=lambda: ["speech", "text"])
    towers: list[str | None] = field(default_factory=list)  # load references (path / registered name)
    # Cross-attention every i-th layer of each tower; 0 = auto (about 8 zip points per tower).
    cross_attention_interval: list[int] = field(default_factory=list)
    # "a->b": tower b cross-attends to tower a. Both "a->b" and "b->a" = the paper's bidirectional zip.
    directions: list[str] = field(default_factory=lambda: ["speech->text", "text->speech"])
    num_heads: int = 0  # 0 = the attending tower's own head count
    projection_layers: int = 3  # depth of the ReLU MLP mapping one tower's states to another's width
    ffn_mult: int = 4  # gated feed-forward width, as a multiple of the attending tower's width; 0 = none
    input_projection: bool = True  # gated ReLU MLP after each tower's embeddings
    # Which towers get it (empty = all). Leaving it off a frozen *source* tower (speech in ASR) saves
    # the whole backward pass through that tower: ~1.8x -> ~1.2x the towers-only step (benchmarks/).
    input_projection_towers: list[str] = field(default_factory=list)
    input_projection_layers: int = 2
    dropout: float = 0.0
    frozen: list[bool] = field(default_factory=list)  # per tower; empty = all frozen
    lora_rank: int = 0  # 0 = no LoRA
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_towers: list[str] = field(default_factory=list)  # modalities that get LoRA adapters
    # Token ids forced after BOS in every segment of a tower (training and generation); empty = none.
    # A text tower's first word is then predicted from an ordinary position, not from BOS: in SmolLM2
    # the BOS position is a massive-activation attention sink (state norm ~25,000 vs ~600) that a zip
    # update cannot steer (recipes/diagnostics/README.md). E.g. [[], ids of "Text:"] for [speech, text].
    prefix_ids: list[list[int]] = field(default_factory=list)
    # Auxiliary CTC loss (zipper/ctc.py) on these edges, e.g. ["speech->text"] for ASR: loss =
    # (1 - ctc_weight) * attention NLL + ctc_weight * CTC. Empty / 0.0 = off (the paper's plain zip).
    ctc_directions: list[str] = field(default_factory=list)
    ctc_weight: float = 0.0
    # What the CTC head emits: "tokens" = the destination tower's vocabulary (scored through its frozen
    # output embeddings), "chars" = the 28 characters of normalised text (zipper/ctc.py CTC_CHARS) through
    # a small head of its own: far cheaper per step (a 49k-way softmax per speech frame makes an ASR step
    # 1.8x the plain zip's, characters 1.04x: benchmarks/ctc_head.py) and an easier alignment target.
    ctc_units: str = "tokens"
    # > 0: loss += guided_attention x the mean share of each zip block's attention that falls off the
    # diagonal of the two segments (zipper/fusion.py, diagonal_guide; DC-TTS's guided attention), a
    # monotonic-alignment prior for ASR and TTS. 0.0 = off (the paper's plain zip).
    guided_attention: float = 0.0
    guided_attention_sigma: float = 0.2  # width of the diagonal band, as a share of the segment lengths
    # Continuous input features beside the tokens of these towers (zipper/features.py), e.g. ["speech"] with
    # feature_dim 512: the Whisper-base encoder states the speech units quantise, added to the unit embeddings
    # through a zero-initialised projection. Empty / 0 = tokens only (the paper's zip).
    feature_towers: list[str] = field(default_factory=list)
    feature_dim: int = 0
    # Recorded from the towers when the model is built; checked when a saved zip is loaded (a mismatch in
    # the sizes is an error; the special ids of the saved zip are pinned on the towers, with a warning).
    tower_hidden_sizes: list[int] = field(default_factory=list, metadata=RECORDED)
    tower_num_layers: list[int] = field(default_factory=list, metadata=RECORDED)
    tower_vocab_sizes: list[int] = field(default_factory=list, metadata=RECORDED)
    tower_special_ids: list[dict] = field(default_factory=list, metadata=RECORDED)  # {"bos", "eos", "pad"} each

    def __post_init__(self) -> None:
        self._check_types()
        n = len(self.modalities)
        if n < 2:
            raise ConfigError(f"a zip needs at least 2 towers, got modalities={self.modalities}")
        if len(set(self.modalities)) != n:
            raise ConfigError(f"modalities must be distinct, got {self.modalities}")
        for m in self.modalities:
            check_modality_name(m)
        for name in ("towers", "cross_attention_interval", "frozen", "prefix_ids", "tower_hidden_sizes",
                     "tower_num_layers", "tower_vocab_sizes", "tower_special_ids"):
            value = getattr(self, name)
            if value and len(value) != n:
                raise ConfigError(f"{name} has {len(value)} entries but there are {n} towers ({self.modalities})")
        for ids in self.tower_special_ids:
            if sorted(ids) != ["bos", "eos", "pad"] or not all(
                    v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0) for v in ids.values()):
                raise ConfigError(f"tower_special_ids entries must map bos, eos and pad to ids >= 0 (or null), got {ids}")
        if any(i < 0 for i in self.cross_attention_interval):
            raise ConfigError(f"cross_attention_interval entries must be >= 0, got {self.cross_attention_interval}")
        if not self.directions:
            raise ConfigError("directions is empty: nothing would be zipped")
        for d in self.directions:
            src, sep, dst = d.partition("->")
            if not sep or src not in self.modalities or dst not in self.modalities or src == dst:
                raise ConfigError(f"direction {d!r} must be 'a->b' with a != b among {self.modalities}")
        if len(set(self.directions)) != len(self.directions):
            raise ConfigError(f"duplicate directions in {self.directions}")
        for name in ("lora_towers", "input_projection_towers", "feature_towers"):
            for m in getattr(self, name):
                if m not in self.modalities:
                    raise ConfigError(f"{name} names {m!r}, not one of {self.modalities}")
            if len(set(getattr(self, name))) != len(getattr(self, name)):
                raise ConfigError(f"duplicate entries in {name} {getattr(self, name)}")
        if self.input_projection_towers and not self.input_projection:  # would silently build none
            raise ConfigError(f"input_projection_towers {self.input_projection_towers} needs input_projection=True")
        for d in self.ctc_directions:
            if d not in self.directions:
                raise ConfigError(f"ctc_directions entry {d!r} is not one of the zip's directions {self.directions}")
        check_ctc_units(self.ctc_units)
        if self.guided_attention < 0 or self.guided_attention_sigma <= 0:
            raise ConfigError(f"guided_attention must be >= 0 and guided_attention_sigma > 0, got "
                              f"{self.guided_attention}, {self.guided_attention_sigma}")
        if not 0.0 <= self.ctc_weight < 1.0 or bool(self.ctc_directions) != (self.ctc_weight > 0):
            raise ConfigError(f"ctc_weight must be in (0, 1) when ctc_directions is given and 0 otherwise, got "
                              f"ctc_weight={self.ctc_weight}, ctc_directions={self.ctc_directions}")
        if any(i < 0 for ids in self.prefix_ids for i in ids):
            raise ConfigError(f"prefix_ids must be token ids >= 0, got {self.prefix_ids}")
        if self.projection_layers < 1 or self.input_projection_layers < 1 or self.ffn_mult < 0:
            raise ConfigError("projection_layers and input_projection_layers must be >= 1, ffn_mult >= 0")
        if self.num_heads < 0 or self.lora_rank < 0 or not 0.0 <= self.dropout < 1.0:
            raise ConfigError("num_heads and lora_rank must be >= 0 and dropout in [0, 1)")
        if not 0.0 <= self.lora_dropout < 1.0 or self.lora_alpha <= 0:
            raise ConfigError(f"lora_dropout must be in [0, 1) and lora_alpha > 0, got lora_dropout={self.lora_dropout}, "
                              f"lora_alpha={self.lora_alpha}")
        if self.feature_dim < 0 or bool(self.feature_dim) != bool(self.feature_towers):
            raise ConfigError(f"feature_dim > 0 and feature_towers go together, got feature_dim={self.feature_dim}, "
                              f"feature_towers={self.feature_towers}")
        if bool(self.lora_rank) != bool(self.lora_towers):  # either alone would silently add no adapters
            raise ConfigError(f"lora_rank > 0 and lora_towers go together, got lora_rank={self.lora_rank}, "
                              f"lora_towers={self.lora_towers}")

    def _check_types(self) -> None:
        check_field_types(self, ConfigError)

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(source, destination) pairs: the destination tower cross-attends to the source."""
        return [tuple(d.split("->")) for d in self.directions]  # type: ignore[misc]

    def is_frozen(self, modality: str) -> bool:
        return self.frozen[self.modalities.index(modality)] if self.frozen else True

    # -- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_dict(cls, data: dict) -> "ZipperConfig":
        if not isinstance(data, dict):
            raise ConfigError(f"a zipper config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "ZipperConfig":
        try:
            data = json.loads(Path(path).read_text(), object_pairs_hook=unique_keys)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        return cls.from_dict(data)

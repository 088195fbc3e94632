"""ZipperModel: two or more pretrained decoder towers zipped by gated cross-attention.

How it runs. A sample is a list of *segments*, each a run of tokens of one modality, in their
interleaved order (ASR: [speech, text]; TTS: [text, speech]). Segments run one after another,
each through its own tower's ordinary HF forward. At every i-th layer of a tower, a hook on that
(unchanged, in-place) decoder layer applies the zip block, which cross-attends to the aligned
layer's states of every *earlier* segment of the other towers. That is exactly the paper's causal
cross-modal mask: a position sees only other-modality positions that precede it. A tower that
appears again later continues from its own KV cache.

The per-call memory reaches the hooks explicitly, as the ``zipper_call`` keyword that every
supported HF model forwards to its decoder layers; nothing is left stored on a module between
calls, and a tower called on its own (without that keyword) behaves exactly as before zipping.

Alignment: a tower with L layers and interval i has zip points after layers i, 2i, ... (N = L // i
of them). Zip point n of the attending tower reads zip point ceil(n * N_src / N_dst) of the source,
which is the paper's "layer n*i_A attends to layer n*i_B" when both have the same N.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from towers.safefile import safetensors_problem
from towers.tower import Tower, cache_kwargs, load_tower, portable_ref, resolve_ref, tower_exists
from zipper.config import ConfigError, ZipperConfig
from zipper.ctc import CTC_CHARS, CTCHead, char_targets, ctc_loss, ctc_targets
from zipper.fusion import GatedCrossAttention, InputProjection, diagonal_guide
from zipper.features import FeatureInput

logger = logging.getLogger("zipper")

CONFIG_NAME = "zipper_config.json"
WEIGHTS_NAME = "zipper.safetensors"
_PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".ckpt"}


class CheckpointError(ValueError):
    """A saved zip cannot be loaded safely (missing, pickle, or not matching the towers)."""


def read_weights(file: Path) -> dict[str, torch.Tensor]:
    """The tensors of a saved model's safetensors file; a missing (a hint names pickle files beside it, which
    we never load), unsafe or damaged file is a CheckpointError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not file.is_file():
        pickles = [p.name for p in file.parent.iterdir() if p.suffix in _PICKLE_SUFFIXES] if file.parent.is_dir() else []
        hint = f" (found pickle files {pickles}; zipper never unpickles)" if pickles else ""
        raise CheckpointError(f"{file.parent} has no {file.name}{hint}")
    problem = safetensors_problem(file)
    if problem:
        raise CheckpointError(problem)
    try:
        return load_file(str(file))
    except SafetensorError as e:
        raise CheckpointError(f"{file} is not a valid safetensors file: {e}") from None


def load_checked(params: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], what: str) -> None:
    """Copy ``state`` into ``params`` (name -> tensor), after checking that it holds exactly those names with
    their shapes; else a CheckpointError and nothing is copied. ``what`` names the weights in the message."""
    missing, unexpected = sorted(set(params) - set(state)), sorted(set(state) - set(params))
    if missing or unexpected:
        raise CheckpointError(f"{what} weights do not match this model: missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]}")
    for name, value in state.items():
        if params[name].shape != value.shape:
            raise CheckpointError(f"{name}: saved shape {tuple(value.shape)} != model {tuple(params[name].shape)}")
    with torch.no_grad():
        for name, value in state.items():
            params[name].copy_(value)


@dataclass
class Segment:
    """A run of tokens of one modality. ``attention_mask`` (B, T): 1 = real token (right padding)."""

    modality: str
    input_ids: torch.Tensor  # (B, T) long
    attention_mask: torch.Tensor | None = None  # (B, T)
    loss: bool = False  # next-token loss on this segment's tokens
    # continuous input beside the tokens (zipper/features.py), for a tower in the config's feature_towers
    features: torch.Tensor | None = None  # (B, T, F) float
    feature_mask: torch.Tensor | None = None  # (B, T) bool: the positions that have features

    def mask(self) -> torch.Tensor:
        if self.attention_mask is None:
            return torch.ones_like(self.input_ids, dtype=torch.bool)
        return self.attention_mask.bool()

    def to(self, device: torch.device | str) -> "Segment":
        """This segment with its tensors on ``device``."""
        mask = None if self.attention_mask is None else self.attention_mask.to(device)
        feats = None if self.features is None else self.features.to(device)
        fmask = None if self.feature_mask is None else self.feature_mask.to(device)
        return replace(self, input_ids=self.input_ids.to(device), attention_mask=mask, features=feats, feature_mask=fmask)


@dataclass
class ZipperOutput:
    loss: torch.Tensor | None
    logits: list[torch.Tensor]  # one (B, T, V_modality) per segment
    num_loss_tokens: int = 0
    ctc_loss: torch.Tensor | None = None  # the auxiliary CTC term (already mixed into ``loss``)
    guide_loss: torch.Tensor | None = None  # the guided-attention term (already added to ``loss``)
    row_nll: torch.Tensor | None = None  # (B,) next-token NLL summed over each row's loss tokens (no CTC)
    row_loss_tokens: torch.Tensor | None = None  # (B,) each row's loss tokens


@dataclass
class _Done:
    """A segment already run: its zip-point states (for later segments to attend to) and mask."""

    modality: str
    states: dict[int, torch.Tensor]  # layer index -> (B, T, D)
    mask: torch.Tensor  # (B, T) bool


@dataclass
class _ZipCall:
    """What one tower forward hands its layer hooks: blocks with precomputed memory, and a record."""

    owner: object
    blocks: dict[int, list[tuple[GatedCrossAttention, torch.Tensor, torch.Tensor, torch.Tensor]]]
    states: dict[int, torch.Tensor] | None = field(default_factory=dict)
    # guided attention: (query mask (B, T), sigma, list the blocks append their penalties to)
    guide: tuple[torch.Tensor, float, list] | None = None


def _zip_hook(owner: object, layer_idx: int, module, args, kwargs, output):
    call = kwargs.get("zipper_call")
    if call is None or call.owner is not owner:
        return None  # a plain tower forward: untouched
    h = output[0] if isinstance(output, tuple) else output  # (B, T, D)
    for block, k, v, key_mask in call.blocks.get(layer_idx, ()):
        if call.guide is None:
            h = block(h, k, v, key_mask)
        else:
            query_mask, sigma, penalties = call.guide
            h = block(h, k, v, key_mask, diagonal_guide(query_mask, key_mask, sigma), penalties)
    if call.states is not None:
        call.states[layer_idx] = h
    return (h, *output[1:]) if isinstance(output, tuple) else h


def _lora_layers(model: nn.Module) -> list[tuple[nn.Module, str, nn.Module]]:
    """(parent, attribute name, layer) of every peft LoRA layer in a model."""
    from peft.tuners.lora import LoraLayer

    return [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
            if isinstance(child, LoraLayer)]


def _unzip(handles, injected) -> None:
    """Undo what a zip did to its towers: remove its layer hooks, and put each tower's own module back in
    place of every LoRA layer injected into it (peft keeps that module, untouched, as ``base_layer``).
    ``injected``: (tower model, its `_lora_layers`) pairs. Never given the zip itself (a weakref finalizer)."""
    for h in handles:
        h.remove()
    for model, layers in injected:
        for parent, name, layer in layers:
            setattr(parent, name, layer.base_layer)
        model.__dict__.pop("peft_config", None)  # the one attribute inject_adapter_in_model adds
    injected.clear()


def repeat_memory(memory: dict, n: int) -> dict:
    """A ``ZipperModel.memory_for`` result with each batch row repeated n times (beam search; scoring n
    texts against one utterance), without projecting the source states again."""
    if n == 1:
        return memory
    if not memory:
        return memory
    k = next(iter(memory.values()))[0][1]  # (B, H, M, d): every source has the same B rows
    return memory_rows(memory, torch.arange(k.shape[0], device=k.device).repeat_interleave(n))


def memory_rows(memory: dict, rows: torch.Tensor) -> dict:
    """A ``ZipperModel.memory_for`` result with the batch rows ``rows`` (indices on its device, repeats allowed) of
    each source."""
    return {layer: [(block, k[rows], v[rows], mask[rows]) for block, k, v, mask in entries]
            for layer, entries in memory.items()}


def check_prefix_ids(tower: Tower, ids: Sequence[int]) -> None:
    """Forced prefix ids must be tokens of the tower and never its EOS, which would end the segment
    before it starts."""
    if any(not 0 <= i < tower.vocab_size for i in ids) or tower.eos_token_id in ids:
        raise ConfigError(f"prefix_ids {list(ids)} of tower {tower.modality!r} must be ids below its vocabulary "
                          f"size {tower.vocab_size}, without its EOS {tower.eos_token_id}")


def loss_targets(seg: Segment, start: torch.Tensor) -> torch.Tensor:
    """(B, T-1) which next-token targets of a segment count in the loss: real tokens, except the forced
    start (BOS + prefix) of rows that begin with it, like labels of -100 on an HF prompt."""
    mask = seg.mask()
    targets = mask[:, 1:] & mask[:, :-1]
    n = len(start)
    if n > 1 and seg.input_ids.shape[1] >= n:
        forced = (seg.input_ids[:, :n] == start.to(seg.input_ids.device)).all(-1)  # (B,)
        targets[:, :n - 1] &= ~forced[:, None]
    return targets


def segment_nll(logits: torch.Tensor, input_ids: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token NLL of a segment from its (B, T, V) logits and (B, T) ids: per row, the sum over the
    targets ``keep`` (B, T-1) marks (its `loss_targets`) and their number, both (B,)."""
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), input_ids[:, 1:], reduction="none")  # (B, T-1)
    return (nll * keep).sum(-1), keep.sum(-1)


def _check_window(tower, full_mask: torch.Tensor) -> None:
    """A sliding-window tower (gemma2/3, mistral, qwen2 with use_sliding_window) windows its KV cache by
    cache position, so the padding a right-padded earlier segment left in the cache takes window room from
    its row alone: that row's logits would differ from the same row unpadded. Refused where it matters."""
    config = tower.model.config
    window = getattr(config, "sliding_window", None)
    if not window or getattr(config, "use_sliding_window", True) is False:
        return
    # a hole: padding followed by real tokens in a row (a finished row's trailing padding is harmless)
    if full_mask.shape[1] > window and bool((full_mask[:, 1:].long() > full_mask[:, :-1].long()).any()):
        raise NotImplementedError(
            f"tower {tower.modality!r} has a {window}-token sliding window, and a repeated segment of it continues "
            f"after a padded one over {full_mask.shape[1]} cache positions: the padding would shift the window. "
            "Run such prompts one by one (batch size 1), or keep the repeated segments under the window")


class ZipperModel(nn.Module):
    """Towers (frozen per config) + zip blocks. Build with `ZipperModel(config, towers)` or `from_towers`."""

    def __init__(self, config: ZipperConfig, towers: Sequence[Tower] | Mapping[str, Tower]):
        super().__init__()
        config = copy.deepcopy(config)  # filled in below: the caller's config stays as it was
        towers = self._order_towers(config, towers)
        self._fill_and_check_config(config, towers)
        self.config = config
        self.tower_objs = {t.modality: t for t in towers}  # Tower wrappers (tokenizers, specials)
        self.towers = nn.ModuleDict({t.modality: t.model for t in towers})  # registered, names kept
        self.zip_layers = {
            t.modality: [n * i - 1 for n in range(1, t.num_layers // i + 1)]
            for t, i in zip(towers, config.cross_attention_interval)
        }
        # The hooks key on a private token (never id(self), which Python reuses). Hooks and LoRA adapters
        # are removed when this model is garbage-collected or unzipped, so towers can be zipped again and again.
        self._token, self._hooks, injected = object(), [], []
        self._finalizer = weakref.finalize(self, _unzip, self._hooks, injected)
        if config.lora_rank:
            injected.extend(self._inject_lora())
        self.blocks = nn.ModuleDict()
        for src, dst in config.edges:
            t_src, t_dst = self.tower_objs[src], self.tower_objs[dst]
            heads = config.num_heads or t_dst.num_heads
            self.blocks[f"{src}_to_{dst}"] = nn.ModuleList(
                GatedCrossAttention(t_dst.hidden_size, t_src.hidden_size, heads, config.projection_layers,
                                    config.ffn_mult, config.dropout)
                for _ in self.zip_layers[dst]
            )
        n_symbols = len(CTC_CHARS) if config.ctc_units == "chars" else 0
        self.ctc_heads = nn.ModuleDict({f"{src}_to_{dst}": CTCHead(self.tower_objs[dst].hidden_size, n_symbols)
                                        for src, dst in (d.split("->") for d in config.ctc_directions)})
        projected = (config.input_projection_towers or config.modalities) if config.input_projection else []
        self.input_projections = nn.ModuleDict(
            {m: InputProjection(self.tower_objs[m].hidden_size, config.input_projection_layers) for m in projected})
        self.feature_inputs = nn.ModuleDict(
            {m: FeatureInput(config.feature_dim, self.tower_objs[m].hidden_size) for m in config.feature_towers})
        self._hooks.extend(
            t.layers[j].register_forward_hook(partial(_zip_hook, self._token, j), with_kwargs=True)
            for m, t in self.tower_objs.items() for j in self.zip_layers[m]
        )
        self._set_trainability()
        self.eval()  # like a freshly loaded HF model; call .train() to train
        counts = self.parameter_counts()
        logger.info("zipper: %s trainable / %s frozen parameters", f"{counts['trainable']:,}", f"{counts['frozen']:,}")

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_towers(cls, towers: Sequence[Tower], **config_kwargs) -> "ZipperModel":
        """Zip towers with a config built from keyword arguments (modalities taken from the towers)."""
        config = ZipperConfig(modalities=[t.modality for t in towers], **config_kwargs)
        return cls(config, towers)

    @staticmethod
    def _order_towers(config: ZipperConfig, towers) -> list[Tower]:
        by_modality = dict(towers) if isinstance(towers, Mapping) else {t.modality: t for t in towers}
        if sorted(by_modality) != sorted(config.modalities):
            raise ConfigError(f"towers have modalities {sorted(by_modality)}, the config expects {config.modalities}")
        for m, t in by_modality.items():
            if t.modality != m:
                raise ConfigError(f"tower given for {m!r} has modality {t.modality!r}")
        return [by_modality[m] for m in config.modalities]

    @staticmethod
    def _fill_and_check_config(config: ZipperConfig, towers: list[Tower]) -> None:
        if not config.towers:
            config.towers = [t.source for t in towers]
        if not config.cross_attention_interval or 0 in config.cross_attention_interval:
            given = config.cross_attention_interval or [0] * len(towers)
            config.cross_attention_interval = [i or math.ceil(t.num_layers / 8) for i, t in zip(given, towers)]
        for t, i in zip(towers, config.cross_attention_interval):
            if i > t.num_layers:
                raise ConfigError(f"cross_attention_interval {i} exceeds the {t.num_layers} layers of tower {t.modality!r}")
        for name, attr in (("tower_hidden_sizes", "hidden_size"), ("tower_num_layers", "num_layers"),
                           ("tower_vocab_sizes", "vocab_size")):
            actual = [getattr(t, attr) for t in towers]
            saved = getattr(config, name)
            if saved and saved != actual:
                bad = [f"{t.modality}: {attr} {a} but the zip was built for {s}"
                       for t, a, s in zip(towers, actual, saved) if a != s]
                raise ConfigError("towers do not match this zip: " + "; ".join(bad))
            setattr(config, name, actual)
        for t, s in zip(towers, config.tower_special_ids):  # the zip learned to start and stop with these
            t.keep_special_ids(s, "this zip was built with")
        config.tower_special_ids = config.tower_special_ids or [t.special_ids() for t in towers]
        for t, ids in zip(towers, config.prefix_ids):
            check_prefix_ids(t, ids)
        for t in towers:
            if any("lora_" in n for n, _ in t.model.named_parameters()):
                raise ConfigError(f"tower {t.modality!r} already carries LoRA adapters (another zip's): unzip that "
                                  "zip first (ZipperModel.unzip, or drop it), or load the tower afresh")
        if config.ctc_units == "chars":  # character targets come from decoded tokens
            for d in config.ctc_directions:
                if towers[config.modalities.index(d.split("->")[1])].tokenizer is None:
                    raise ConfigError(f"ctc_units 'chars' on {d!r} needs a tokenizer on the {d.split('->')[1]!r} tower")
        for m in config.modalities:
            if config.num_heads and config.edges and any(dst == m for _, dst in config.edges):
                width = towers[config.modalities.index(m)].hidden_size
                if width % config.num_heads:
                    raise ConfigError(f"num_heads {config.num_heads} does not divide width {width} of tower {m!r}")

    def _inject_lora(self) -> list[tuple[nn.Module, list]]:
        """Add LoRA adapters to the ``lora_towers`` -> (tower model, its `_lora_layers`) for `_unzip`."""
        from peft import LoraConfig, inject_adapter_in_model

        injected = []
        for m in self.config.lora_towers:
            tower = self.tower_objs[m]
            lora = LoraConfig(r=self.config.lora_rank, lora_alpha=self.config.lora_alpha,
                              lora_dropout=self.config.lora_dropout, target_modules=tower.lora_targets)
            inject_adapter_in_model(lora, tower.model)  # in place: base weights keep their tensors
            injected.append((tower.model, _lora_layers(tower.model)))
        return injected

    def _expected_trainable(self) -> set[str]:
        names = set()
        for name, _ in self.named_parameters():
            head, _, rest = name.partition(".")
            if head in ("blocks", "input_projections", "ctc_heads", "feature_inputs"):
                names.add(name)
            elif head == "towers":
                modality = rest.partition(".")[0]
                if not self.config.is_frozen(modality) or (modality in self.config.lora_towers and "lora_" in name):
                    names.add(name)
        return names

    def _set_trainability(self) -> None:
        """Trainability follows the config (`_expected_trainable`): set here, on construction and again by
        every ``train()``, then asserted. Towers can be shared with another zip whose config sets their
        ``requires_grad`` otherwise; ``zip_state_dict`` never reads the flags."""
        expected = self._expected_trainable()
        for name, p in self.named_parameters():
            p.requires_grad_(name in expected)
        actual = {n for n, p in self.named_parameters() if p.requires_grad}
        assert actual == expected, f"trainability mismatch: {sorted(actual ^ expected)[:5]}"

    def unzip(self) -> None:
        """Detach this zip from its towers (remove the layer hooks and the LoRA adapters it added); the
        towers work alone, bit for bit, as before."""
        self._finalizer()

    def parameter_counts(self) -> dict[str, int]:
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        return {"trainable": trainable, "frozen": total - trainable, "total": total}

    def train(self, mode: bool = True) -> "ZipperModel":
        if mode:  # another zip over the same towers may have set their requires_grad since
            self._set_trainability()
        super().train(mode)
        for m, model in self.towers.items():  # frozen towers stay in eval mode (no dropout) ...
            if self.config.is_frozen(m):
                model.eval()
                if m in self.config.lora_towers:  # ... but their (trained) LoRA adapters' lora_dropout follows mode
                    for name, module in model.named_modules():
                        if name.rpartition(".")[2] == "lora_dropout":
                            module.train(mode)
        return self

    def tower(self, modality: str) -> Tower:
        if modality not in self.tower_objs:
            raise KeyError(f"no tower for modality {modality!r}; towers: {list(self.tower_objs)}")
        return self.tower_objs[modality]

    def config_dict(self) -> dict:
        """The zip's config as plain JSON data (recorded in training checkpoints, checked on resume)."""
        return self.config.to_dict()

    def start_ids(self, modality: str, device: torch.device | str | None = None) -> torch.Tensor:
        """(S,) what every segment of this tower starts with: BOS (if the tower has one), then the config's
        ``prefix_ids``; on ``device`` (default: the CPU)."""
        prefix = self.config.prefix_ids[self.config.modalities.index(modality)] if self.config.prefix_ids else []
        bos = self.tower(modality).bos_token_id
        bos = [] if bos is None else [bos]  # a tower without BOS (generation refuses it) starts with the prefix
        return torch.tensor([*bos, *prefix], dtype=torch.long, device=device)

    # -- running -------------------------------------------------------------------------------
    def _sources(self, dst: str) -> list[str]:
        return [src for src, d in self.config.edges if d == dst]

    def _aligned_layer(self, src: str, dst: str, n: int) -> int:
        """The source layer that zip point n (0-based) of ``dst`` reads."""
        n_src, n_dst = len(self.zip_layers[src]), len(self.zip_layers[dst])
        return self.zip_layers[src][math.ceil((n + 1) * n_src / n_dst) - 1]

    def memory_for(self, dst: str, history: Sequence[_Done], repeat: int = 1):
        """Blocks of ``dst`` with keys/values of all earlier segments of its sources, computed once."""
        blocks: dict[int, list] = {}
        for src in self._sources(dst):
            done = [d for d in history if d.modality == src]
            if not done:
                continue
            key_mask = torch.cat([d.mask for d in done], dim=1)  # (B, M)
            for n, layer in enumerate(self.zip_layers[dst]):
                states = torch.cat([d.states[self._aligned_layer(src, dst, n)] for d in done], dim=1)  # (B, M, D_src)
                block = self.blocks[f"{src}_to_{dst}"][n]
                k, v = block.memory(states)
                blocks.setdefault(layer, []).append((block, k, v, key_mask))
        return repeat_memory(blocks, repeat)

    def ctc_log_probs(self, src: str, dst: str, done: _Done) -> torch.Tensor:
        """(B, M, V + 1) CTC log-probs of a finished ``src`` segment, read through the last zip block's
        memory projection of the edge (zipper/ctc.py); V = the destination's vocabulary or CTC_CHARS."""
        block, n = self.blocks[f"{src}_to_{dst}"][-1], len(self.zip_layers[dst]) - 1
        states = done.states[self._aligned_layer(src, dst, n)]  # (B, M, D_src)
        memory = block.mem_proj(block.mem_norm(states.to(block.q.weight.dtype)))  # (B, M, D_dst)
        if self.config.ctc_units == "chars":
            return self.ctc_heads[f"{src}_to_{dst}"](memory)
        out_emb = self.tower_objs[dst].model.get_output_embeddings().weight  # (V_dst, D_dst)
        return self.ctc_heads[f"{src}_to_{dst}"](memory, out_emb)

    def tower_forward(self, modality: str, input_ids: torch.Tensor, mask: torch.Tensor, memory: dict,
                      cache=None, past_mask: torch.Tensor | None = None, record: bool = True,
                      penalties: list | None = None, alone: bool = False,
                      features: tuple[torch.Tensor, torch.Tensor] | None = None):
        """One tower over (B, T) tokens, zip blocks reading ``memory``; -> logits (B, T, V), states.
        With ``penalties``, each block appends its guided-attention penalty to it. ``alone``: the bare
        tower, with neither its input projection nor its zip blocks (pass ``memory={}``). ``features``:
        (B, T, F) features and their (B, T) mask, added through the tower's feature input."""
        tower = self.tower_objs[modality]
        embeds = tower.model.get_input_embeddings()(input_ids)  # (B, T, D)
        if alone and (memory or features is not None):
            raise ValueError("alone=True runs the tower without its zip blocks and feature input: pass memory={} "
                             "and no features")
        if features is not None:
            embeds = embeds + self.feature_inputs[modality](*features).to(embeds.dtype)
        if modality in self.input_projections and not alone:
            embeds = self.input_projections[modality](embeds)
        full_mask = mask if past_mask is None else torch.cat([past_mask, mask], dim=1)  # (B, P + T)
        if past_mask is not None:
            _check_window(tower, full_mask)
        position_ids = (full_mask.long().cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1]:]
        if not self._finalizer.alive:
            raise RuntimeError("this ZipperModel was unzipped from its towers")
        guide = None if penalties is None else (mask, self.config.guided_attention_sigma, penalties)
        call = _ZipCall(self._token, memory, {} if record else None, guide)
        out = tower.model(inputs_embeds=embeds, attention_mask=full_mask.long(), position_ids=position_ids,
                          zipper_call=call, **cache_kwargs(tower.model, cache))
        return out.logits, call.states

    def check_segments(self, segments: Sequence[Segment]) -> None:
        if not segments:
            raise ValueError("no segments given")
        batch = segments[0].input_ids.shape[0]
        for s in segments:
            if s.modality not in self.tower_objs:
                raise ValueError(f"segment modality {s.modality!r} has no tower; towers: {list(self.tower_objs)}")
            if s.input_ids.ndim != 2 or s.input_ids.shape[0] != batch or s.input_ids.shape[1] == 0:
                raise ValueError(f"segment {s.modality!r}: input_ids must be (B={batch}, T>0), got {tuple(s.input_ids.shape)}")
            if s.input_ids.dtype != torch.long:  # embeddings take int32 too, but the loss and cache code do not
                raise ValueError(f"segment {s.modality!r}: input_ids must be integer token ids of dtype torch.long "
                                 f"(int64), got {s.input_ids.dtype}")
            if s.attention_mask is not None and s.attention_mask.shape != s.input_ids.shape:
                raise ValueError(f"segment {s.modality!r}: attention_mask shape {tuple(s.attention_mask.shape)} "
                                 f"!= input_ids shape {tuple(s.input_ids.shape)}")
            if s.attention_mask is not None and not ((s.attention_mask == 0) | (s.attention_mask == 1)).all():
                raise ValueError(f"segment {s.modality!r}: attention_mask must hold only 0 and 1 (or booleans)")
            self._check_features(s)
            vocab = self.tower_objs[s.modality].vocab_size
            if s.input_ids.min() < 0 or s.input_ids.max() >= vocab:
                raise ValueError(f"segment {s.modality!r}: token ids must lie in [0, {vocab})")

    def _check_features(self, s: Segment) -> None:
        if s.features is None and s.feature_mask is None:
            return  # tokens alone (a tower with feature input then reads its embeddings only, as at init)
        if s.modality not in self.feature_inputs:
            raise ValueError(f"segment {s.modality!r} carries features but the zip has feature input only for "
                             f"{list(self.feature_inputs) or 'no tower'} (ZipperConfig.feature_towers)")
        b, t = s.input_ids.shape
        if s.features is None or s.feature_mask is None:
            raise ValueError(f"segment {s.modality!r}: features and feature_mask go together")
        if tuple(s.features.shape) != (b, t, self.config.feature_dim) or not s.features.is_floating_point():
            raise ValueError(f"segment {s.modality!r}: features must be float ({b}, {t}, {self.config.feature_dim}), "
                             f"got {s.features.dtype} {tuple(s.features.shape)}")
        if tuple(s.feature_mask.shape) != (b, t) or s.feature_mask.dtype != torch.bool:
            raise ValueError(f"segment {s.modality!r}: feature_mask must be bool ({b}, {t}), "
                             f"got {s.feature_mask.dtype} {tuple(s.feature_mask.shape)}")
        if not torch.isfinite(s.features[s.feature_mask]).all():
            raise ValueError(f"segment {s.modality!r}: features hold NaN or infinite values")

    def place(self, segments: Sequence[Segment]) -> list[Segment]:
        """The segments on their towers' devices: data is made on the CPU, the towers may be on a GPU."""
        return [s.to(self.tower(s.modality).device) for s in segments]

    def run_segments(self, segments: Sequence[Segment], cache_all: bool = False, penalties: list | None = None):
        """Run segments in order -> (logits per segment, history of states, per-tower (cache, mask)).

        A tower that appears again continues from its KV cache; ``cache_all`` keeps a cache for every
        tower (generation continues after the last segment). With ``penalties``, the zip blocks of
        loss segments append their guided-attention penalties to it."""
        from transformers import DynamicCache

        segments = self.place(segments)
        repeats = {m: sum(s.modality == m for s in segments) for m in self.tower_objs}
        history: list[_Done] = []
        tower_state: dict[str, tuple] = {}
        logits_out = []
        for s in segments:
            mask = s.mask()
            fresh = DynamicCache() if cache_all or repeats[s.modality] > 1 else None
            cache, past_mask = tower_state.get(s.modality, (fresh, None))
            feats = None if s.features is None else (s.features, s.feature_mask)
            logits, states = self.tower_forward(s.modality, s.input_ids, mask, self.memory_for(s.modality, history),
                                                cache, past_mask, penalties=penalties if s.loss else None,
                                                features=feats)
            tower_state[s.modality] = (cache, mask if past_mask is None else torch.cat([past_mask, mask], 1))
            history.append(_Done(s.modality, states, mask))
            logits_out.append(logits)
        return logits_out, history, tower_state

    def forward(self, segments: Sequence[Segment]) -> ZipperOutput:
        """Run the segments in order; loss = mean next-token NLL over the segments marked ``loss``."""
        self.check_segments(segments)
        segments = self.place(segments)
        penalties = [] if self.config.guided_attention > 0 else None
        logits_out, history, _ = self.run_segments(segments, penalties=penalties)
        row_nll, row_count, ctc_terms = None, None, []
        for i, (s, logits) in enumerate(zip(segments, logits_out)):
            if s.loss:
                keep = loss_targets(s, self.start_ids(s.modality, s.input_ids.device))  # (B, T-1)
                nll, n = segment_nll(logits, s.input_ids, keep)
                row_nll, row_count = (nll, n) if row_nll is None else (row_nll + nll, row_count + n)
                for src in self._ctc_sources(s.modality):
                    done = [d for d in history[:i] if d.modality == src]
                    if done:  # CTC from the latest earlier segment of the source to this one
                        dst = self.tower_objs[s.modality]
                        targets = ctc_targets(s.input_ids, keep, dst.eos_token_id)
                        if self.config.ctc_units == "chars":
                            targets = char_targets([dst.tokenizer.decode(t, skip_special_tokens=True) for t in targets])
                        ctc_terms.append(ctc_loss(self.ctc_log_probs(src, s.modality, done[-1]), done[-1].mask,
                                                  targets))
        count = int(row_count.sum()) if row_count is not None else 0
        loss = row_nll.sum() / max(count, 1) if row_nll is not None else None
        ctc = torch.stack(ctc_terms).mean() if ctc_terms else None
        if ctc is not None and loss is not None:
            loss = (1 - self.config.ctc_weight) * loss + self.config.ctc_weight * ctc
        guide = torch.stack(penalties).mean() if penalties else None  # mean over the zip blocks
        if guide is not None and loss is not None:
            loss = loss + self.config.guided_attention * guide
        return ZipperOutput(loss=loss, logits=logits_out, num_loss_tokens=count, ctc_loss=ctc, guide_loss=guide,
                            row_nll=row_nll, row_loss_tokens=row_count)

    def _ctc_sources(self, dst: str) -> list[str]:
        return [src for src, d in (e.split("->") for e in self.config.ctc_directions) if d == dst]

    def generate(self, prompt: Sequence[Segment], output_modalities: Sequence[str] = ("text",), **kwargs):
        """Generate the output modalities in turn after the prompt segments; see `zipper.generation`."""
        from zipper.generation import generate

        return generate(self, prompt, output_modalities, **kwargs)

    # -- saving / loading ----------------------------------------------------------------------
    def zip_state_dict(self) -> dict[str, torch.Tensor]:
        """Only what training changes: zip blocks, input projections, LoRA and unfrozen tower weights, as the
        config says (`_expected_trainable`), whatever ``requires_grad`` another zip left on shared towers."""
        if not self._finalizer.alive:  # its LoRA adapters have left the towers (another zip's may be there now)
            raise RuntimeError("this ZipperModel was unzipped from its towers: save it before unzip()")
        expected = self._expected_trainable()
        return {n: p.detach().clone().contiguous() for n, p in self.named_parameters() if n in expected}

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write ``zipper_config.json`` + ``zipper.safetensors`` atomically (temp dir, fsync, rename)."""
        from safetensors.torch import save_file

        path = Path(path)
        if any(r is None for r in self.config.towers):
            logger.warning("some towers have no load reference (in-memory); pass towers= to from_pretrained")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        try:
            # tower paths are recorded relative to this directory, so the zip loads from any working directory
            replace(self.config, towers=[portable_ref(r, path) for r in self.config.towers]).save(tmp / CONFIG_NAME)
            save_file(self.zip_state_dict(), str(tmp / WEIGHTS_NAME), metadata={"format": "zipper"})
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old-{os.getpid()}")
                path.rename(old)
            tmp.rename(path)
            if old is not None:  # what else the directory held (a recipe's codec/, a tower) stays in it
                for entry in old.iterdir():
                    if entry.name not in (CONFIG_NAME, WEIGHTS_NAME):
                        entry.rename(path / entry.name)
                shutil.rmtree(old)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike,
                        towers: Sequence[Tower] | Mapping[str, Tower] | None = None) -> "ZipperModel":
        """Load a saved zip; towers are loaded from the config's references unless given. A mapping may give some
        of them (``{"text": domain_tower}``: another tower of the same sizes read in place of the one the zip was
        trained with, e.g. one fine-tuned on a domain's text); the others are loaded from their references."""
        path = Path(path)
        if not (path / CONFIG_NAME).exists():
            raise CheckpointError(f"{path} has no {CONFIG_NAME}: not a saved zip")
        state = read_weights(path / WEIGHTS_NAME)
        config = ZipperConfig.from_json(path / CONFIG_NAME)
        config.towers = [resolve_ref(r, path) for r in config.towers]
        if towers is None or isinstance(towers, Mapping):
            given = dict(towers or {})
            unknown = sorted(set(given) - set(config.modalities))
            if unknown:
                raise ConfigError(f"{path} zips {', '.join(config.modalities)} towers; no {', '.join(unknown)} tower")
            for r, m in zip(config.towers, config.modalities):
                if m in given:
                    continue
                if r is None:
                    raise CheckpointError(f"{path}: the config has in-memory towers without references; pass towers=")
                if not tower_exists(r):
                    raise CheckpointError(f"{path}: its {m} tower {r!r} is neither next to the model "
                                          f"({(path / r).resolve()}) nor a registered name; restore it there "
                                          "or pass towers=")
            towers = [given[m] if m in given else load_tower(r, modality=m)
                      for r, m in zip(config.towers, config.modalities)]
            # a tower given in place of the saved one is what this zip now refers to (and saves)
            config.towers = [given[m].source if m in given else r for r, m in zip(config.towers, config.modalities)]
        model = cls(config, towers)
        model.load_zip_state_dict(state)
        return model

    def load_zip_state_dict(self, state: Mapping[str, torch.Tensor]) -> None:
        expected = self._expected_trainable()
        load_checked({n: p for n, p in self.named_parameters() if n in expected}, state, "zip")

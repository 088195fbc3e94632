"""The paper's "Single Decoder" baseline: the text LM with its vocabulary expanded by the speech units.

Speech token ``i`` of the speech tower's vocabulary (units + its pad/bos/eos) becomes text-LM token
``V_text + i``; the new embedding rows start at the mean of the old ones, and the whole model is
fine-tuned. It speaks the same interface as `ZipperModel` (``forward(segments)``, ``generate``,
``tower(modality)``), so recipes, metrics and the training loop treat both models identically:
segments are concatenated into one sequence, and generation is restricted to the output modality's
part of the vocabulary (as Zipper's per-tower heads are).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from towers.tower import Tower, cache_kwargs, portable_ref, resolve_ref
from towers.units import UnitTokenizer
from zipper.model import (CheckpointError, Segment, ZipperOutput, check_prefix_ids, load_checked, loss_targets,
                          read_weights, segment_nll)

META_NAME, WEIGHTS_NAME = "single_decoder.json", "single_decoder.safetensors"


@dataclass
class SpeechVocab:
    """What recipes need of the speech side when there is no speech tower."""

    tokenizer: UnitTokenizer
    modality: str = "speech"

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    bos_token_id, eos_token_id, pad_token_id = UnitTokenizer.bos_token_id, UnitTokenizer.eos_token_id, UnitTokenizer.pad_token_id


class SingleDecoder(nn.Module):
    # config_dict keys read from the text tower: a training checkpoint that predates one is not checked on it
    RECORDED_FROM_TOWERS = ("text_special_ids",)

    def __init__(self, text: Tower, n_units: int, text_prefix_ids: Sequence[int] = (),
                 text_special_ids: dict | None = None):
        super().__init__()
        self.text = text
        text.keep_special_ids(text_special_ids, "this single decoder was trained with")  # as ZipperModel
        self.text_prefix_ids = [int(i) for i in text_prefix_ids]  # forced after the text BOS, as ZipperConfig.prefix_ids
        check_prefix_ids(text, self.text_prefix_ids)
        self.speech = SpeechVocab(UnitTokenizer(n_units))
        self.text_vocab = text.vocab_size
        self.lm = text.model
        old = self.lm.get_input_embeddings().weight.detach()
        self.lm.resize_token_embeddings(self.text_vocab + self.speech.vocab_size, mean_resizing=False)
        with torch.no_grad():
            self.lm.get_input_embeddings().weight[self.text_vocab:] = old.mean(0)
            out = self.lm.get_output_embeddings()
            if out.weight.data_ptr() != self.lm.get_input_embeddings().weight.data_ptr():
                out.weight[self.text_vocab:] = out.weight[: self.text_vocab].mean(0)
        for p in self.lm.parameters():
            p.requires_grad_(True)  # fully tuned, as in the paper
        self.eval()

    def tower(self, modality: str):
        return {"text": self.text, "speech": self.speech}[modality]

    def config_dict(self) -> dict:
        """What save_pretrained records (and training checkpoints check on resume)."""
        return {"text_tower": self.text.source, "n_units": self.speech.tokenizer.n_units,
                "text_prefix_ids": self.text_prefix_ids, "text_special_ids": self.text.special_ids()}

    def start_ids(self, modality: str, device: torch.device | str | None = None) -> torch.Tensor:
        """(S,) BOS (+ the text prefix for text), in the modality's own ids: what ZipperModel.start_ids is."""
        prefix = self.text_prefix_ids if modality == "text" else []
        return torch.tensor([self.tower(modality).bos_token_id, *prefix], dtype=torch.long, device=device)

    def parameter_counts(self) -> dict[str, int]:
        n = sum(p.numel() for p in self.parameters())
        return {"trainable": n, "frozen": 0, "total": n}

    def _offset(self, modality: str) -> int:
        return 0 if modality == "text" else self.text_vocab

    def _vocab(self, modality: str) -> int:  # the text Tower now reports the expanded size
        return self.text_vocab if modality == "text" else self.speech.vocab_size

    def place(self, segments: Sequence[Segment]) -> list[Segment]:
        """The segments on the model's device: data is made on the CPU, the model may be on a GPU."""
        return [s.to(self.lm.get_input_embeddings().weight.device) for s in segments]

    def _join(self, segments: Sequence[Segment]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.cat([s.input_ids + self._offset(s.modality) for s in segments], 1)  # (B, sum T)
        mask = torch.cat([s.mask() for s in segments], 1)  # holes where a segment was padded
        return ids, mask

    def _run(self, ids, mask, cache=None, past_mask=None):
        full = mask if past_mask is None else torch.cat([past_mask, mask], 1)
        pos = (full.long().cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1]:]
        return self.lm(input_ids=ids, attention_mask=full.long(), position_ids=pos,
                       **cache_kwargs(self.lm, cache)).logits

    def forward(self, segments: Sequence[Segment]) -> ZipperOutput:
        segments = self.place(segments)
        ids, mask = self._join(segments)
        logits = self._run(ids, mask)
        out, start, row_nll, row_count = [], 0, None, None
        for s in segments:
            t = s.input_ids.shape[1]
            off, v = self._offset(s.modality), self._vocab(s.modality)
            seg_logits = logits[:, start:start + t, off:off + v]  # this modality's head
            out.append(seg_logits)
            if s.loss:
                keep = loss_targets(s, self.start_ids(s.modality, s.input_ids.device))
                nll, n = segment_nll(seg_logits, s.input_ids, keep)
                row_nll, row_count = (nll, n) if row_nll is None else (row_nll + nll, row_count + n)
            start += t
        count = int(row_count.sum()) if row_count is not None else 0
        return ZipperOutput(loss=row_nll.sum() / max(count, 1) if row_nll is not None else None, logits=out,
                            num_loss_tokens=count, row_nll=row_nll, row_loss_tokens=row_count)

    @torch.no_grad()
    def generate(self, prompt: Sequence[Segment], output_modalities: Sequence[str] = ("text",),
                 max_new_tokens: int = 128, do_sample: bool = False, temperature: float = 1.0, top_k: int = 0,
                 top_p: float = 1.0, num_beams: int = 1, generator: torch.Generator | None = None,
                 guidance: float = 0.0, **_) -> list[Segment]:
        from transformers import DynamicCache

        from zipper.generation import check_generation_args, pick_next

        if guidance:
            raise ValueError("guidance needs a zipped model: the single decoder has no tower of its own to guide "
                             "against")

        max_new_tokens = check_generation_args(output_modalities, max_new_tokens, do_sample, temperature, top_k,
                                               top_p, num_beams)[0]
        if len(output_modalities) != 1 or num_beams != 1:
            raise ValueError("the single-decoder baseline generates one modality, without beam search")
        m = output_modalities[0]
        tower, off = self.tower(m), self._offset(m)
        ids, mask = self._join(self.place(prompt))
        batch = ids.shape[0]
        step = (self.start_ids(m, ids.device) + off).expand(batch, -1)  # (B, S)
        step_mask = torch.ones_like(step, dtype=torch.bool)
        cache = DynamicCache()
        logits = self._run(torch.cat([ids, step], 1), torch.cat([mask, step_mask], 1), cache)
        past = torch.cat([mask, step_mask], 1)
        tokens, finished = [], torch.zeros(batch, dtype=torch.bool, device=ids.device)
        for _ in range(max_new_tokens):
            head = logits[:, -1, off:off + self._vocab(m)]
            nxt = pick_next(head, do_sample, temperature, top_k, top_p, generator).masked_fill(finished, tower.pad_token_id)
            real = ~finished
            finished = finished | (nxt == tower.eos_token_id)
            tokens.append(torch.where(real & (nxt != tower.eos_token_id), nxt, -1))
            if finished.all():
                break
            logits = self._run((nxt + off)[:, None], real[:, None], cache, past)
            past = torch.cat([past, real[:, None]], 1)
        gen = torch.stack(tokens, 1) if tokens else torch.zeros(batch, 0, dtype=torch.long, device=ids.device)
        keep = gen >= 0
        return [Segment(m, gen.masked_fill(~keep, tower.pad_token_id), keep.long())]

    def save_pretrained(self, path: str | os.PathLike) -> None:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().clone().contiguous() for k, v in self.lm.state_dict().items()}
        save_file(state, str(path / WEIGHTS_NAME))
        meta = self.config_dict()  # the text tower's path relative to this directory (towers.tower.portable_ref)
        meta["text_tower"] = portable_ref(meta["text_tower"], path)
        (path / META_NAME).write_text(json.dumps(meta) + "\n")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, text: Tower | None = None) -> "SingleDecoder":
        """Load a saved single decoder. A missing, damaged or mismatched file is a CheckpointError."""
        from towers import load_tower

        path = Path(path)
        meta = _read_meta(path)
        state = read_weights(path / WEIGHTS_NAME)
        model = cls(text or load_tower(resolve_ref(meta["text_tower"], path), modality="text"), meta["n_units"],
                    meta.get("text_prefix_ids", []), meta.get("text_special_ids"))
        load_checked(model.lm.state_dict(), state, "single-decoder")  # every weight, with its shape
        return model


def _read_meta(path: Path) -> dict:
    """single_decoder.json of a saved single decoder, with the keys from_pretrained needs."""
    file = path / META_NAME
    if not file.is_file():
        raise CheckpointError(f"{path} has no {META_NAME}: not a saved single decoder")
    try:
        meta = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file} is not valid JSON: {e}") from None
    missing = [k for k in ("text_tower", "n_units") if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise CheckpointError(f"{file} lacks {', '.join(missing)}: not a single decoder's config")
    return meta

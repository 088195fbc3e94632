"""Continuous input features beside a tower's tokens: the Whisper encoder states a speech tower's units quantise.

The speech units are k-means ids of Whisper-base encoder states; quantising to 1,024 ids keeps what
decoding audio and next-unit prediction need, but drops much of what ASR reads: a character CTC head on
the states themselves beats the best head on the units or on the zip's speech tower
(recipes/diagnostics/README.md, "What limits the character CTC head?"). A `FeatureInput` gives the
tower the states back, added to the embedding of the unit each state was quantised to:

    e_t = Embed(unit_t) + W LayerNorm(state_t)          # (B, T, D)

at the positions that have a state (not BOS, a prefix, EOS or padding). W starts at exactly zero, so a zip
with feature input computes what the same zip without it computes, bit for bit: a trained unit zip can be
extended and fine-tuned (recipes/asr_states.py), and training moves W only as far as the states help.
Generated tokens (a TTS continuation) have no states and read their embeddings alone.
"""
from __future__ import annotations

import torch
from torch import nn

WHISPER_STATE_DIM = 512  # Whisper-base's encoder states (towers/whisper_units.py), what the speech units quantise


class FeatureInput(nn.Module):
    """``(B, T, F)`` features + ``(B, T)`` bool mask -> ``(B, T, D)`` additions to a tower's input embeddings."""

    def __init__(self, feature_dim: int, hidden_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(feature_dim)  # Whisper's states: a few of the 512 dimensions have 5-8x the spread
        self.proj = nn.Linear(feature_dim, hidden_size)
        nn.init.zeros_(self.proj.weight)  # zero: at init the tower reads its token embeddings exactly as before
        nn.init.zeros_(self.proj.bias)

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.norm(features.to(self.proj.weight.dtype)))  # (B, T, D)
        return x * mask[..., None].to(x.dtype)  # positions without a state get nothing


def feature_rows(states, token_mask: torch.Tensor, n_start: int, feature_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row states ``(M_i, F)`` of ``speech_ids`` rows (start tokens, units, EOS; right-padded, ``token_mask``
    (B, T)) -> features ``(B, T, F)`` and their mask ``(B, T)`` on the unit positions. A row's states beyond its
    units (units cropped to a maximum length) are dropped; fewer states than units is an error."""
    feats = torch.zeros(*token_mask.shape, feature_dim)
    mask = torch.zeros(token_mask.shape, dtype=torch.bool)
    for row, s in enumerate(states):
        n = int(token_mask[row].sum()) - n_start - 1  # the row's units: all but the start tokens and EOS
        if s.ndim != 2 or s.shape[1] != feature_dim or len(s) < n:
            raise ValueError(f"row {row}: states must be (frames >= its {n} units, {feature_dim}), got {tuple(s.shape)}")
        feats[row, n_start:n_start + n] = s[:n].float()
        mask[row, n_start:n_start + n] = True
    return feats, mask

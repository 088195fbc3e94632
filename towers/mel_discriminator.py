"""Losses against the over-smoothed mel of an L1-trained unit -> mel decoder.

An L1 (or L2) regression of log-mel from units predicts the conditional median (mean) spectrum: formant
and harmonic detail that varies from one realisation of a unit to the next is averaged away, and
Griffin-Lim turns the flat spectrum into buzzy audio (decoded per-bin std 2.87 against 3.19 for real
speech, recipes/RESULTS_codec.md). Two remedies, both optional terms of
:func:`towers.codec_train.train_unit_decoder`:

- :func:`delta_l1`: L1 between the time and frequency differences of the decoded and the real mel,
  which penalises a smooth output where the real one has edges (onsets, harmonics, formant peaks).
- :class:`MelDiscriminator`: a small 2-D conv patch discriminator on log-mel (least-squares GAN, as in
  MelGAN / HiFi-GAN) with a feature-matching loss; the decoder is pushed towards mels that look like
  real ones patch by patch, not towards their average.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MelDiscriminator", "delta_l1", "lsgan_d_loss", "lsgan_g_loss", "feature_matching"]


def delta_l1(pred: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """L1 of the first differences along time and along mel bins; ``(B, T, n_mels)`` each."""
    dt = (pred.diff(dim=1) - real.diff(dim=1)).abs().mean()
    df = (pred.diff(dim=2) - real.diff(dim=2)).abs().mean()
    return dt + df


class MelDiscriminator(nn.Module):
    """``(B, T, n_mels)`` log-mel -> patch scores ``(B, 1, T', n_mels')`` and the hidden feature maps.

    Four 3x3 conv layers (channels ``ch, 2ch, 2ch``, stride 2 on both axes in the middle two), leaky
    ReLU, spectral norm; about 0.1M parameters with ``ch=32``, so a training step costs well under
    the decoder's.
    """

    def __init__(self, ch: int = 32):
        super().__init__()
        sn = nn.utils.parametrizations.spectral_norm
        self.layers = nn.ModuleList([
            sn(nn.Conv2d(1, ch, 3, padding=1)),
            sn(nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1)),
            sn(nn.Conv2d(2 * ch, 2 * ch, 3, stride=2, padding=1)),
            sn(nn.Conv2d(2 * ch, 2 * ch, 3, padding=1)),
        ])
        self.head = sn(nn.Conv2d(2 * ch, 1, 3, padding=1))

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = mel.unsqueeze(1)  # (B, 1, T, n_mels)
        feats = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            feats.append(x)
        return self.head(x), feats


def lsgan_d_loss(d_real: torch.Tensor, d_fake: torch.Tensor) -> torch.Tensor:
    return ((d_real - 1) ** 2).mean() + (d_fake**2).mean()


def lsgan_g_loss(d_fake: torch.Tensor) -> torch.Tensor:
    return ((d_fake - 1) ** 2).mean()


def feature_matching(f_real: list[torch.Tensor], f_fake: list[torch.Tensor]) -> torch.Tensor:
    """Mean L1 between the discriminator's feature maps of real and decoded mels (real detached)."""
    return sum((a.detach() - b).abs().mean() for a, b in zip(f_real, f_fake)) / len(f_real)

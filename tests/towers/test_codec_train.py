"""Tests for towers.codec_train: the unit->mel decoder's training crops."""
from __future__ import annotations

import torch

from towers.codec_train import train_unit_decoder


class _CropRecorder(torch.nn.Module):
    """A stand-in decoder (stride 2, 3 mels) that records the crop length of every batch."""

    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(8, 3)
        self.crops: list[int] = []

    def forward(self, u):  # (B, crop) -> (B, 2 * crop, 3)
        self.crops.append(u.shape[1])
        return self.emb(u).repeat_interleave(2, dim=1)


def _train(lengths, crop_units):
    dec = _CropRecorder()
    units = [torch.arange(n) % 8 for n in lengths]
    mels = [torch.randn(2 * n, 3) for n in lengths]
    train_unit_decoder(dec, units, mels, stride=2, dec_steps=3, batch_size=4, crop_units=crop_units,
                       progress=False)
    return dec.crops


def test_a_short_clip_does_not_shrink_the_decoder_crops():
    assert _train([200, 2], crop_units=48) == [48, 48, 48]  # the 2-unit clip is left out, not the crop cut


def test_crop_falls_back_to_the_longest_clip_when_none_is_long_enough(capsys):
    assert _train([10, 5], crop_units=48) == [10, 10, 10]
    assert "no clip has 48 units; training the decoder on 10-unit crops" in capsys.readouterr().out

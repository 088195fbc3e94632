"""zipper.data.codec_id: unit caches follow what the units depend on, not the decoder."""

import torch

from towers.codec_train import synthetic_babble, train_mel_unit_codec, train_tiny_codec
from zipper.data import codec_id


def test_codec_id_ignores_the_decoder_but_not_the_unit_encoder():
    base = train_tiny_codec(seed=0)
    waves = synthetic_babble(seconds=1.0, n=2, seed=3)
    redecoded = train_mel_unit_codec(waves, 16_000, base.config, dec_steps=2, batch_size=2, crop_units=8, seed=5,
                                     progress=False, units_from=base)
    assert not torch.equal(redecoded.decoder.out[-1].weight, base.decoder.out[-1].weight)
    assert torch.equal(redecoded.encode(waves[0], 16_000), base.encode(waves[0], 16_000))
    assert codec_id(redecoded) == codec_id(base)  # same units -> same cache

    other = train_tiny_codec(seed=1)  # other k-means centroids
    assert codec_id(other) != codec_id(base)
    nudged = train_tiny_codec(seed=0)
    nudged.centroids[-1, -1] += 1e-3  # a change in the last centroid value is seen too
    assert codec_id(nudged) != codec_id(base)

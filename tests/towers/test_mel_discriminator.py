"""Anti-over-smoothing terms of the unit -> mel decoder trainer (towers/mel_discriminator.py)."""
import pytest
import torch

from towers.codec_train import synthetic_babble, train_whisper_unit_codec
from towers.mel_discriminator import MelDiscriminator, delta_l1, feature_matching, lsgan_d_loss, lsgan_g_loss
from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig

SR = 16_000


def test_delta_l1_is_zero_for_a_shifted_copy_and_penalises_smoothing():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(2, 40, 20, generator=g)
    assert delta_l1(real + 3.0, real) < 1e-5  # a constant offset has the same edges (up to rounding)
    smooth = torch.nn.functional.avg_pool1d(real.transpose(1, 2), 5, 1, 2).transpose(1, 2)
    assert delta_l1(smooth, real) > 0.5 * delta_l1(torch.zeros_like(real), real)


def test_discriminator_shapes_and_losses():
    d = MelDiscriminator(ch=8)
    mel = torch.randn(3, 48, 20)
    score, feats = d(mel)
    assert score.shape[:2] == (3, 1) and len(feats) == 4 and all(f.shape[0] == 3 for f in feats)
    ones, zeros = torch.ones(3, 1, 4, 4), torch.zeros(3, 1, 4, 4)
    assert lsgan_d_loss(ones, zeros) == 0 and lsgan_g_loss(ones) == 0 and lsgan_g_loss(zeros) == 1
    assert feature_matching(feats, feats) == 0


def _tiny(seed=0):
    cfg = WhisperUnitCodecConfig(vocab_size=16, n_mels=20, dec_channels=8, dec_unit_dilations=[1], dec_kernel=3,
                                 gl_iters=2)
    g = torch.Generator().manual_seed(seed)
    src = WhisperUnitCodec(cfg, torch.randn(16, 512, generator=g))
    waves = synthetic_babble(seconds=1.0, n=2, seed=3)
    states = [torch.randn(-(-len(w) // 320), 512, generator=g) for w in waves]  # no Whisper run
    return cfg, src, waves, states


def test_init_decoder_starts_from_the_given_weights():
    cfg, src, waves, states = _tiny()
    with torch.no_grad():
        for p in src.decoder.parameters():
            p.add_(1.0)  # differs from any fresh initialisation
    c = train_whisper_unit_codec(waves, SR, cfg, dec_steps=1, batch_size=2, crop_units=8, lr=0.0, progress=False,
                                 units_from=src, states=states, init_decoder=src.decoder.state_dict())
    for (name, a), b in zip(c.decoder.state_dict().items(), src.decoder.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("terms", [dict(delta_weight=1.0), dict(adv_weight=0.1, fm_weight=0.1)])
def test_extra_loss_terms_train_and_change_the_decoder(terms):
    cfg, src, waves, states = _tiny()
    kw = dict(dec_steps=3, batch_size=2, crop_units=8, progress=False, units_from=src, states=states)
    plain = train_whisper_unit_codec(waves, SR, cfg, **kw)
    extra = train_whisper_unit_codec(waves, SR, cfg, **kw, **terms)
    w_plain, w_extra = plain.decoder.out[2].weight, extra.decoder.out[2].weight
    assert torch.isfinite(w_extra).all() and not torch.equal(w_plain, w_extra)

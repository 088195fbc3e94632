"""The Griffin-Lim vocoder's output level, and the log-mel post-filter (towers.vocoder.expand_variance)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from towers.audio import AudioTooShortError, EmptyAudioError
from towers.vocoder import GriffinLimVocoder, LogMel, expand_variance


@settings(max_examples=30, deadline=None)
@given(t=st.integers(1, 40), n_mels=st.integers(1, 16), scale=st.floats(0.0, 3.0), mode=st.sampled_from(["time", "freq"]))
def test_expand_variance_scales_deviations_and_keeps_means(t, n_mels, scale, mode):
    m = torch.randn(t, n_mels, generator=torch.Generator().manual_seed(t * 17 + n_mels)) * 3 - 5  # (T, n_mels)
    y = expand_variance(m, scale, mode)
    dim = 0 if mode == "time" else 1
    assert y.shape == m.shape
    torch.testing.assert_close(y.mean(dim), m.mean(dim), atol=1e-4, rtol=1e-4)  # means unchanged
    dev_in, dev_out = m - m.mean(dim, keepdim=True), y - y.mean(dim, keepdim=True)
    torch.testing.assert_close(dev_out, scale * dev_in, atol=1e-4, rtol=1e-4)  # deviations scaled


def test_expand_variance_identity_and_bad_mode():
    m = torch.randn(5, 8)
    assert expand_variance(m, 1.0, "freq") is m
    with pytest.raises(ValueError, match="mode"):
        expand_variance(m, 1.2, "both")


def test_griffin_lim_keeps_quiet_waves_and_scales_loud_ones_below_full_scale():
    t = torch.arange(16_000) / 16_000
    tone = torch.sin(2 * torch.pi * 220 * t)  # (n,) peak 1.0
    mel, vocoder = LogMel(), GriffinLimVocoder()
    quiet = vocoder(mel(0.3 * tone))
    assert 0.1 < quiet.abs().max() < 0.99  # about the input's level, untouched
    loud = vocoder(mel(0.3 * tone) + 4.0)  # log power +4: amplitude x e^2 ~ 7.4, peaks far above 1
    assert loud.abs().max() == pytest.approx(0.99, abs=1e-6)
    assert loud.dtype == torch.float32 and torch.isfinite(loud).all()


@pytest.mark.parametrize("frames", [1, 2, 3, 10])
def test_griffin_lim_decodes_a_mel_of_a_frame_or_two(frames):
    """Griffin-Lim's STFT needs a wave longer than n_fft // 2: a mel shorter than that is padded with
    silence (it used to fail inside torch.stft); longer mels give (T - 1) * hop samples, as before."""
    vocoder = GriffinLimVocoder()  # n_fft 1024, hop 320: at least 3 frames
    log_mel = torch.randn(frames, 80, generator=torch.Generator().manual_seed(frames)) - 4  # (T, n_mels)
    wave = vocoder(log_mel)
    assert wave.shape == (320 * (max(frames, 3) - 1),) and torch.isfinite(wave).all()


def test_log_mel_refuses_waves_shorter_than_half_a_window_with_an_audio_error():
    mel = LogMel(n_fft=1024, hop_length=320)
    for shape in ((1,), (512,), (2, 512)):
        with pytest.raises(AudioTooShortError, match="at least 513 samples"):
            mel(torch.zeros(shape))
    with pytest.raises(EmptyAudioError):
        mel(torch.zeros(0))
    assert mel(torch.zeros(513)).shape == (513 // 320 + 1, 80)
    assert mel.min_samples == 513


def test_griffin_lim_seeds_only_the_cpu_generator_and_restores_it(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: calls.append(seed))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: calls.append(seed))
    voc = GriffinLimVocoder(n_iter=4, seed=5)
    mel = torch.linspace(-9, -4, 12 * 80).reshape(12, 80)  # quiet: no peak scaling
    state = torch.random.get_rng_state()
    wave = voc(mel)
    assert calls == [] and torch.equal(torch.random.get_rng_state(), state)  # CUDA untouched, CPU restored
    torch.manual_seed(5)  # the phases torch.manual_seed(seed) gave before: output unchanged
    magnitude = (torch.exp(mel) @ voc.pinv).clamp_min(0.0).sqrt().T
    assert torch.equal(wave, voc.griffin_lim(magnitude).float()) and torch.equal(wave, voc(mel))

"""Speech unit codec: shapes, rates, persistence (safetensors only), input validation."""

from __future__ import annotations

import json
import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from towers.audio import AudioTooShortError, EmptyAudioError, NonFiniteAudioError
from towers.codec import (
    CONFIG_NAME,
    DEFAULT_CODEC_DIR,
    WEIGHTS_NAME,
    CodecFormatError,
    MelUnitCodec,
    SpeechCodec,
)
from towers.codec_train import synthetic_babble, train_tiny_codec

SR = 16_000


@pytest.fixture(scope="module")
def codec() -> MelUnitCodec:
    torch.manual_seed(0)
    return train_tiny_codec()


@pytest.fixture(scope="module")
def wave() -> np.ndarray:
    return synthetic_babble(seconds=3.0, n=1, seed=7)[0]  # (48000,)


def test_encode_shape_dtype_range_and_rate(codec, wave):
    units = codec.encode(wave, SR)
    assert units.dtype == torch.int64 and units.ndim == 1
    assert 0 <= int(units.min()) and int(units.max()) < codec.vocab_size
    expected = len(wave) / SR * codec.units_per_second
    assert abs(units.numel() - expected) <= 2


def test_encode_resamples_and_accepts_tensor_and_int16(codec, wave):
    import torchaudio.functional as AF

    w22 = AF.resample(torch.from_numpy(wave), SR, 22_050)  # (n * 22050/16000,)
    units = codec.encode(w22, 22_050)
    assert abs(units.numel() - 3.0 * codec.units_per_second) <= 2
    pcm = (wave * 32767).astype(np.int16)
    assert torch.equal(codec.encode(pcm, SR), codec.encode(pcm.astype(np.float32) / 32768, SR))


def test_decode_length_matches_duration(codec, wave):
    units = codec.encode(wave, SR)
    out, sr = codec.decode(units)
    assert sr == codec.sample_rate
    assert out.dtype == torch.float32 and out.ndim == 1
    assert torch.isfinite(out).all()
    assert abs(out.numel() / sr - len(wave) / SR) < 0.1  # within 100 ms


def test_batch_variants_match_single(codec, wave):
    waves = [wave, wave[: SR]]
    units = codec.encode_batch(waves, SR)
    assert [u.numel() for u in units] == [codec.encode(w, SR).numel() for w in waves]
    decoded = codec.decode_batch(units)
    assert torch.equal(decoded[1][0], codec.decode(units[1])[0])


def test_save_load_roundtrip_identical(codec, wave, tmp_path):
    codec.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    cfg = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert cfg["codec_type"] == "mel_kmeans" and cfg["vocab_size"] == codec.vocab_size
    loaded = SpeechCodec.from_pretrained(tmp_path)
    assert isinstance(loaded, MelUnitCodec)
    u1, u2 = codec.encode(wave, SR), loaded.encode(wave, SR)
    assert torch.equal(u1, u2)
    assert torch.equal(codec.decode(u1)[0], loaded.decode(u2)[0])


def test_half_precision_save_is_stable(codec, wave, tmp_path):
    codec.save_pretrained(tmp_path / "a", dtype=torch.float16)
    a = SpeechCodec.from_pretrained(tmp_path / "a")
    assert a.centroids.dtype == torch.float32
    a.save_pretrained(tmp_path / "b", dtype=torch.float16)
    b = SpeechCodec.from_pretrained(tmp_path / "b")
    u = a.encode(wave, SR)
    assert torch.equal(u, b.encode(wave, SR))
    assert torch.equal(a.decode(u)[0], b.decode(u)[0])


def test_half_precision_save_can_keep_the_unit_encoder_exact(codec, tmp_path):
    codec.save_pretrained(tmp_path / "k", dtype=torch.float16, keep=("centroids", "feat_std"))
    k = SpeechCodec.from_pretrained(tmp_path / "k")
    assert torch.equal(k.centroids, codec.centroids) and torch.equal(k.feat_std, codec.feat_std)
    w = next(iter(k.decoder.state_dict().values()))
    assert torch.equal(w, w.half().float())  # the decoder was stored in float16


def test_load_codec_by_name_or_directory(codec, tmp_path):
    from towers.codec import load_codec

    codec.save_pretrained(tmp_path / "c")
    assert torch.equal(load_codec(tmp_path / "c").centroids, codec.centroids)
    with pytest.raises(FileNotFoundError, match="neither a shipped codec name"):
        load_codec("no-such-codec")


class _Boom:
    """Unpickling this writes a marker file: proof that someone unpickled it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", [WEIGHTS_NAME, "pytorch_model.bin", "codec.pt"])
def test_refuses_pickle_checkpoints(codec, tmp_path, name):
    codec.save_pretrained(tmp_path)
    marker = tmp_path / "UNPICKLED"
    (tmp_path / WEIGHTS_NAME).unlink()
    with open(tmp_path / name, "wb") as f:
        pickle.dump(_Boom(marker), f)
    with pytest.raises(CodecFormatError, match="pickle"):
        SpeechCodec.from_pretrained(tmp_path)
    assert not marker.exists()


def test_refuses_torch_save_archive(codec, tmp_path):
    codec.save_pretrained(tmp_path)
    torch.save({"centroids": codec.centroids}, tmp_path / WEIGHTS_NAME)  # zip archive of pickles
    with pytest.raises(CodecFormatError, match="pickle"):
        SpeechCodec.from_pretrained(tmp_path)


def test_refuses_saved_configs_with_bad_values(codec, tmp_path):
    """A codec_config.json edited by hand (a string for a number, a zero, a list for the object) is a
    CodecFormatError naming the problem, not a failure later inside the decoder."""
    codec.save_pretrained(tmp_path)
    good = json.loads((tmp_path / "codec_config.json").read_text())
    for change, message in [({"gl_iters": "64"}, "gl_iters must be int"), ({"n_mels": 0}, "n_mels must be > 0"),
                            ({"dec_unit_dilations": [1, -2]}, "list of integers >= 1")]:
        (tmp_path / "codec_config.json").write_text(json.dumps({**good, **change}))
        with pytest.raises(CodecFormatError, match=message):
            SpeechCodec.from_pretrained(tmp_path)
    (tmp_path / "codec_config.json").write_text("[1]")
    with pytest.raises(CodecFormatError, match="JSON object"):
        SpeechCodec.from_pretrained(tmp_path)


def test_refuses_missing_and_unknown(tmp_path):
    with pytest.raises(CodecFormatError):
        SpeechCodec.from_pretrained(tmp_path / "nope")
    with pytest.raises(CodecFormatError):
        SpeechCodec.from_pretrained(tmp_path)  # empty directory


def test_bad_audio_raises_audio_errors(codec):
    with pytest.raises(EmptyAudioError):
        codec.encode(np.zeros(0, dtype=np.float32), SR)
    bad = np.zeros(SR, dtype=np.float32)
    bad[100] = np.nan
    with pytest.raises(NonFiniteAudioError):
        codec.encode(bad, SR)
    with pytest.raises(NonFiniteAudioError):
        codec.encode(torch.full((SR,), float("inf")), SR)


def test_too_short_audio_raises_an_audio_error(codec):
    # the centred STFT reflect-pads n_fft // 2 = 512 samples: 512 or fewer failed inside torch with a RuntimeError
    rng = np.random.default_rng(0)
    for n in (1, 100, 512):
        with pytest.raises(AudioTooShortError, match="at least 513 samples") as e:
            codec.encode((0.1 * rng.standard_normal(n)).astype(np.float32), SR)
        assert isinstance(e.value, EmptyAudioError)
    with pytest.raises(AudioTooShortError, match="48000 Hz"):  # 1500 samples at 48 kHz: 500 at 16 kHz
        codec.encode(np.full(1500, 0.01, np.float32), 48_000)
    with pytest.raises(AudioTooShortError):
        codec.mel(torch.zeros(512))
    assert codec.encode((0.1 * rng.standard_normal(513)).astype(np.float32), SR).shape == (1,)
    assert codec.min_samples == codec.config.n_fft // 2 + 1 == 513


def test_bad_units_raise(codec):
    with pytest.raises(EmptyAudioError):
        codec.decode(torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError):
        codec.decode(torch.tensor([0, codec.vocab_size]))
    with pytest.raises(TypeError):
        codec.decode(torch.tensor([0.5, 1.0]))


def test_silence_encodes(codec):
    units = codec.encode(np.zeros(SR, dtype=np.float32), SR)
    assert units.numel() == pytest.approx(codec.units_per_second, abs=2)


@pytest.mark.skipif(not (DEFAULT_CODEC_DIR / WEIGHTS_NAME).exists(), reason="default codec not shipped yet")
def test_shipped_default_codec_loads_and_roundtrips(wave):
    from towers.codec import load_default_codec

    c = load_default_codec()
    units = c.encode(wave, SR)
    assert 20 <= c.units_per_second <= 50 and c.vocab_size >= 256
    assert abs(units.numel() - 3.0 * c.units_per_second) <= 2
    out, sr = c.decode(units[:25])  # one second is enough to exercise the decoder + vocoder
    assert torch.isfinite(out).all() and abs(out.numel() / sr - 25 / c.units_per_second) < 0.1


@pytest.mark.parametrize("name,standardised,projected", [("whisper-joe", False, False), ("whisper-std-joe", True, False),
                                                          ("whisper-proj-joe", False, True)])
def test_shipped_whisper_codecs_load_by_name_and_decode(name, standardised, projected):
    from towers.codec import load_codec

    c = load_codec(name)
    assert c.codec_type == "whisper_kmeans" and c.vocab_size == 1024 and c.units_per_second == 50
    assert not torch.equal(c.centroids, c.centroids.half().float())  # centroids kept at full precision
    assert c.config.standardise == standardised and (c.state_scale is not None) == standardised
    assert c.config.project == projected and (c.state_proj is not None) == projected
    # the unit encoder is exact too (same unit ids, same cache key as the float32 original)
    for t in ([c.state_scale] if standardised else []) + (list(c.state_proj) if projected else []):
        assert t.dtype == torch.float32 and not torch.equal(t, t.half().float())
    out, sr = c.decode(torch.arange(3, 53))  # one second of units: decoder + Griffin-Lim, no Whisper needed
    assert sr == 16_000 and torch.isfinite(out).all() and abs(out.numel() / sr - 1.0) < 0.05


def test_units_from_reuses_the_unit_encoder_and_trains_only_the_decoder(codec):
    from towers.codec_train import train_mel_unit_codec

    other = synthetic_babble(seconds=2.0, n=3, seed=11)
    c2 = train_mel_unit_codec(other, SR, codec.config, dec_steps=3, batch_size=2, crop_units=8, seed=1,
                              progress=False, units_from=codec)
    assert torch.equal(c2.centroids, codec.centroids) and torch.equal(c2.feat_std, codec.feat_std)
    assert torch.equal(c2.encode(other[0], SR), codec.encode(other[0], SR))
    assert not torch.equal(c2.decoder.out[2].weight, codec.decoder.out[2].weight)
    bad = MelUnitCodec(codec.config, codec.centroids, codec.feat_std)
    bad.config = type(codec.config)(**{**codec.config.__dict__, "stride": 1})
    with pytest.raises(ValueError, match="stride"):
        train_mel_unit_codec(other, SR, codec.config, dec_steps=1, progress=False, units_from=bad)


def test_whisper_codec_units_from_and_given_states_skip_kmeans_and_encoder():
    from towers.codec_train import train_whisper_unit_codec
    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig

    cfg = WhisperUnitCodecConfig(vocab_size=16, n_mels=20, dec_channels=8, dec_unit_dilations=[1], dec_kernel=3,
                                 gl_iters=2)
    g = torch.Generator().manual_seed(0)
    src = WhisperUnitCodec(cfg, torch.randn(16, 512, generator=g))
    waves = synthetic_babble(seconds=1.0, n=2, seed=3)
    states = [torch.randn(-(-len(w) // 320), 512, generator=g) for w in waves]  # no Whisper run
    c = train_whisper_unit_codec(waves, SR, cfg, dec_steps=2, batch_size=2, crop_units=8, progress=False,
                                 units_from=src, states=states)
    assert torch.equal(c.centroids, src.centroids)
    with pytest.raises(ValueError, match="state tensors"):
        train_whisper_unit_codec(waves, SR, cfg, dec_steps=1, progress=False, units_from=src, states=states[:1])


def test_whisper_codec_parallel_examples_train_the_decoder_on_the_target_waves_mel(monkeypatch):
    """parallel=[(k, states)]: another voice's states (already warped to wave k's frames) are quantised
    with the codec's units and paired with wave k's mel; bad pairs are refused before any training."""
    import towers.codec_train as ct
    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig

    cfg = WhisperUnitCodecConfig(vocab_size=16, n_mels=20, dec_channels=8, dec_unit_dilations=[1], dec_kernel=3,
                                 gl_iters=2)
    g = torch.Generator().manual_seed(0)
    src = WhisperUnitCodec(cfg, torch.randn(16, 512, generator=g))
    waves = synthetic_babble(seconds=1.0, n=2, seed=3)
    states = [torch.randn(-(-len(w) // 320), 512, generator=g) for w in waves]
    other = torch.randn(len(states[1]), 512, generator=g)  # "another voice", in wave 1's timing
    seen = {}
    monkeypatch.setattr(ct, "train_unit_decoder", lambda dec, units, mels, *a, **k: seen.update(units=units, mels=mels))
    ct.train_whisper_unit_codec(waves, SR, cfg, dec_steps=1, progress=False, units_from=src, states=states,
                                parallel=[(1, other)])
    assert len(seen["units"]) == 3 and torch.equal(seen["units"][2], src.units_of_states(other))
    assert seen["mels"][2] is seen["mels"][1]
    for bad, message in [([(2, other)], "names wave 2"), ([(0, other[:-1])], "frames")]:
        seen.clear()
        with pytest.raises(ValueError, match=message):
            ct.train_whisper_unit_codec(waves, SR, cfg, dec_steps=1, progress=False, units_from=src, states=states,
                                        parallel=bad)
        assert not seen


def test_whisper_codec_standardise_fits_on_scaled_states_and_round_trips(tmp_path):
    from towers.codec import SpeechCodec
    from towers.codec_train import train_whisper_unit_codec
    from towers.kmeans import assign
    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig
    from zipper.data import codec_id

    cfg = WhisperUnitCodecConfig(vocab_size=8, n_mels=20, dec_channels=8, dec_unit_dilations=[1], dec_kernel=3,
                                 gl_iters=2, standardise=True)
    g = torch.Generator().manual_seed(0)
    waves = synthetic_babble(seconds=1.0, n=2, seed=3)
    spread = torch.ones(512)
    spread[:4] = 50.0  # a few wide dimensions, as in Whisper's states
    states = [torch.randn(-(-len(w) // 320), 512, generator=g) * spread for w in waves]
    c = train_whisper_unit_codec(waves, SR, cfg, kmeans_iters=3, dec_steps=1, batch_size=2, crop_units=8,
                                 progress=False, states=states)
    assert torch.allclose(c.state_scale, torch.cat(states).std(0))
    s = states[0]
    assert torch.equal(c.units_of_states(s), assign(s / c.state_scale, c.centroids))
    again = SpeechCodec.from_pretrained(c.save_pretrained(tmp_path / "std"))
    assert torch.equal(again.state_scale, c.state_scale) and torch.equal(again.units_of_states(s), c.units_of_states(s))
    plain = WhisperUnitCodec(WhisperUnitCodecConfig(vocab_size=8, n_mels=20, dec_channels=8, dec_unit_dilations=[1],
                                                    dec_kernel=3), c.centroids, c.decoder)
    assert codec_id(plain) != codec_id(c)  # the scale is part of the unit encoder (cache key)
    with pytest.raises(CodecFormatError, match="state_scale"):
        WhisperUnitCodec(cfg, c.centroids)
    with pytest.raises(CodecFormatError, match="positive"):
        WhisperUnitCodec(cfg, c.centroids, state_scale=-torch.ones(512))


def test_train_codec_script_refuses_mismatched_codecs_with_a_usage_error(tmp_path, codec, capsys):
    """recipes/train_codec.py: --decoder-from of another decoder shape, or --units-from with other unit
    settings, end in one usage error (exit 2), before any training or output."""
    from tests.conftest import RECIPES, load_recipe_script
    from towers.audio import save_audio

    script = load_recipe_script("train_codec")
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for i, w in enumerate(synthetic_babble(seconds=1.0, n=2, seed=5)):
        save_audio(wavs / f"{i}.wav", w, SR)
    src = codec.save_pretrained(tmp_path / "src")
    parallel = tmp_path / "parallel.jsonl"  # its target is not among the training files
    parallel.write_text(json.dumps({"audio_filepath": str(wavs / "0.wav"), "target_filepath": str(tmp_path / "x.wav")}))
    not_json = tmp_path / "not_json.jsonl"
    not_json.write_text(json.dumps({"audio_filepath": str(wavs / "0.wav")}) + "\n{audio_filepath: 1.wav\n")
    no_path = tmp_path / "no_path.jsonl"
    no_path.write_text(json.dumps({"text": "hello"}) + "\n")
    base = ["--config", str(RECIPES / "configs" / "codec_default.json"), "--wav-dir", str(wavs), "--out", str(tmp_path / "out")]
    cases = [(["--decoder-from", str(src), "--set", "codec.dec_channels=7"], "another decoder shape"),
             (["--units-from", str(src), "--set", "codec.stride=1"], "other unit settings"),
             (["--kmeans-manifest", str(tmp_path / "m.jsonl")], "is for codec_type whisper_kmeans"),
             (["--parallel-manifest", str(tmp_path / "m.jsonl")], "is for codec_type whisper_kmeans"),
             (["--config", str(RECIPES / "configs" / "codec_whisper.json"), "--parallel-manifest", str(parallel)],
              "1 of 1 rows lack a target_filepath"),
             (["--manifest", str(not_json)], "not_json.jsonl:2: not JSON"),
             (["--set", "codec.vocab_size"], "expected SECTION.KEY=JSON"),
             (["--set", "nosection.x=1"], "expected SECTION.KEY=JSON"),
             (["--set", "codec.vocab_size=[oops"], "--config / --set"),
             (["--set", 'codec.vocab_size="512"'], "vocab_size must be int"),
             (["--set", "codec.gl_iters=0"], "gl_iters must be > 0"),
             (["--set", "codec.no_such_key=1"], "unknown MelUnitCodec config keys"),
             (["--manifest", str(no_path)], "no_path.jsonl:1: no 'audio_filepath'"),
             (["--manifest", str(tmp_path / "absent.jsonl")], "absent.jsonl"),
             (["--config", str(RECIPES / "configs" / "codec_whisper.json"), "--parallel-manifest", str(not_json)],
              "--parallel-manifest: " + str(not_json) + ":2: not JSON")]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exc:
            script.main(base + extra)
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_whisper_codec_projected_units_fit_in_the_state_decoders_space_and_round_trip(tmp_path):
    """config.project: a decoder is trained on the unquantised states, k-means runs after its first layer
    (on kmeans_states when given), the projection is saved with the codec, and warm_start starts the
    unit decoder from that decoder with each unit's embedding = its centroid."""
    from towers.codec import SpeechCodec
    from towers.codec_train import fit_state_kmeans, train_whisper_unit_codec
    from towers.kmeans import assign
    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig
    from zipper.data import codec_id

    cfg = WhisperUnitCodecConfig(vocab_size=8, n_mels=20, dec_channels=6, dec_unit_dilations=[1], dec_kernel=3,
                                 gl_iters=2, project=True)
    g = torch.Generator().manual_seed(0)
    waves = synthetic_babble(seconds=1.0, n=2, seed=3)
    states = [torch.randn(-(-len(w) // 320), 512, generator=g) for w in waves]
    km_states = [torch.randn(40, 512, generator=g) + 3.0]  # other audio for k-means
    c = train_whisper_unit_codec(waves, SR, cfg, kmeans_iters=3, dec_steps=0, batch_size=2, crop_units=8,
                                 progress=False, states=states, project_steps=2, warm_start=True,
                                 kmeans_states=km_states)
    w, b = c.state_proj
    assert w.shape == (6, 512) and b.shape == (6,) and c.centroids.shape == (8, 6)
    lin = torch.nn.functional.linear
    assert torch.equal(c.centroids, fit_state_kmeans([lin(km_states[0], w, b)], 8, False, 3, 200_000, 0, False)[0])
    s = states[0]
    assert torch.equal(c.units_of_states(s), assign(lin(s, w, b), c.centroids))
    assert torch.equal(c.decoder.embed.weight, c.centroids)  # warm start, 0 unit-decoder steps
    again = SpeechCodec.from_pretrained(c.save_pretrained(tmp_path / "proj"))
    assert torch.equal(again.units_of_states(s), c.units_of_states(s)) and codec_id(again) == codec_id(c)
    with pytest.raises(ValueError, match="project_steps"):
        train_whisper_unit_codec(waves, SR, cfg, dec_steps=1, progress=False, states=states)
    with pytest.raises(ValueError, match="warm_start"):
        train_whisper_unit_codec(waves, SR, replace(cfg, project=False), dec_steps=1, progress=False, states=states,
                                 warm_start=True)
    with pytest.raises(CodecFormatError, match="state_proj"):
        WhisperUnitCodec(cfg, c.centroids)
    with pytest.raises(CodecFormatError, match="state_proj"):
        WhisperUnitCodec(cfg, c.centroids, state_proj=(w[:, :10], b))
    with pytest.raises(CodecFormatError, match="512"):
        WhisperUnitCodec(replace(cfg, project=False), c.centroids)


@pytest.mark.parametrize("kind", ["mel", "whisper"])
def test_configs_refuse_even_kernel_hop_above_n_fft_and_f_max_above_nyquist(kind):
    """An even dec_kernel (the decoder's convolutions would change the length), hop_length > n_fft (Griffin-Lim's
    inverse STFT fails) and f_max above half the sample rate are CodecFormatErrors when the config is made, not
    failures at decode time."""
    from towers.codec import MelUnitCodecConfig
    from towers.whisper_units import WhisperUnitCodecConfig

    make = MelUnitCodecConfig if kind == "mel" else WhisperUnitCodecConfig
    small = dict(vocab_size=8, n_mels=40, dec_channels=16, dec_unit_dilations=[1], gl_iters=2)
    for change, message in [({"dec_kernel": 4}, "dec_kernel must be odd"), ({"dec_kernel": 2}, "dec_kernel must be odd"),
                            ({"n_fft": 256}, "hop_length must be <= n_fft"),
                            ({"f_max": 8_001.0}, "f_max must be <= sample_rate / 2")]:
        with pytest.raises(CodecFormatError, match=message):
            make(**small, **change)
    if kind == "mel":
        with pytest.raises(CodecFormatError, match=r"f_max must be <= sample_rate / 2 \(4000 Hz\)"):
            make(**small, sample_rate=8_000)
        with pytest.raises(CodecFormatError, match="hop_length must be <= n_fft"):
            make(**small, hop_length=2048)
    c = make(**small, dec_kernel=3, n_fft=320, f_max=8_000.0)  # the limits themselves are fine
    assert c.dec_kernel == 3 and c.hop_length == c.n_fft == 320


def test_whisper_codec_config_refuses_a_hop_other_than_the_encoders_state_hop():
    """Whisper units come 50/s (320 samples at 16 kHz); a mel hop of 160 or 640 would decode 50 units into 0.5 s
    or 2 s of audio and pair each unit with the wrong mel frame."""
    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig

    small = dict(vocab_size=8, dec_channels=16, dec_unit_dilations=[1], gl_iters=2)
    for hop in (160, 640):
        with pytest.raises(CodecFormatError, match=f"hop_length must be 320 .* got {hop}"):
            WhisperUnitCodecConfig(**small, hop_length=hop)
    codec = WhisperUnitCodec(WhisperUnitCodecConfig(**small), torch.randn(8, 512))
    y, sr = codec.decode(torch.zeros(50, dtype=torch.long))
    assert abs(len(y) / sr - 50 / codec.units_per_second) < 0.05


def test_refuses_a_bad_feature_scale(codec, tmp_path):
    """feat_std (mel) and state_scale (whisper) are divided by: a wrong shape, a zero, a negative, NaN or inf value
    is a CodecFormatError when the codec is built or loaded, not wrong units later."""
    from safetensors.torch import load_file, save_file

    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig

    n = codec.config.n_mels
    bad = {"shape (1,)": torch.ones(1), "shape (n+1,)": torch.ones(n + 1), "zeros": torch.zeros(n),
           "negative": -torch.ones(n), "nan": torch.ones(n).index_fill(0, torch.tensor([3]), float("nan")),
           "inf": torch.ones(n).index_fill(0, torch.tensor([3]), float("inf"))}
    codec.save_pretrained(tmp_path)
    good = load_file(str(tmp_path / WEIGHTS_NAME))
    for label, scale in bad.items():
        with pytest.raises(CodecFormatError, match=f"feat_std must be {n} finite positive values"):
            MelUnitCodec(codec.config, codec.centroids, scale)
        save_file({**good, "feat_std": scale}, str(tmp_path / WEIGHTS_NAME), metadata={"codec_type": "mel_kmeans"})
        with pytest.raises(CodecFormatError, match="feat_std"):
            SpeechCodec.from_pretrained(tmp_path)
    cfg = WhisperUnitCodecConfig(vocab_size=8, dec_channels=16, dec_unit_dilations=[1], gl_iters=2, standardise=True)
    with pytest.raises(CodecFormatError, match="state_scale must be 512 finite positive values"):
        WhisperUnitCodec(cfg, torch.randn(8, 512), state_scale=torch.ones(512).index_fill(0, torch.tensor([0]), float("inf")))
    WhisperUnitCodec(cfg, torch.randn(8, 512), state_scale=torch.ones(512))


def test_fit_kmeans_refuses_non_finite_features():
    from towers.kmeans import fit_kmeans

    x = torch.randn(50, 4)
    assert fit_kmeans(x, 3, n_iter=2).shape == (3, 4)
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="k-means features must be finite: 1 of 50 points"):
            fit_kmeans(x.index_fill(0, torch.tensor([7]), value), 3, n_iter=2)


def test_the_whisper_encoder_keeps_torchs_thread_count():
    """CTranslate2, building the Whisper encoder, set the OpenMP threads torch shares to its own 2: a run asked
    for 1 thread (a benchmark, an eval beside training) ran on 2 from then on. The count is put back, and the
    encoder's states do not depend on it."""
    import numpy as np

    from towers.whisper_units import WhisperEncoder

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.ones(64, 64) @ torch.ones(64, 64)  # torch's OpenMP pool in use, as in a run that has computed
        encoder = WhisperEncoder(threads=2)
        assert torch.get_num_threads() == 1
        clip = np.random.default_rng(0).standard_normal(16_000).astype(np.float32) * 0.1
        states = encoder.encode_clip(clip)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        np.testing.assert_array_equal(encoder.encode_clip(clip), states)
    finally:
        torch.set_num_threads(before)

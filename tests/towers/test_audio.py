"""Tests for towers.audio: property tests over random waves + one explicit test per bad case."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from towers.audio import (
    AudioError,
    AudioFileExistsError,
    AudioFileNotFoundError,
    AudioTooLongError,
    CorruptAudioError,
    EmptyAudioError,
    NonFiniteAudioError,
    SampleRateError,
    UnsupportedFormatError,
    audio_info,
    check_wav_complete,
    load_audio,
    preprocess,
    save_audio,
    to_float32,
)

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CLIP = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav"


def _wav_bytes(x: np.ndarray, sr: int = 16000, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    b = io.BytesIO()
    sf.write(b, x, sr, format=fmt, subtype=subtype)
    return b.getvalue()


def _sine(n: int, sr: int = 16000, f: float = 440.0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


# ------------------------------------------------------------------ property tests
DTYPES = ["int16", "int32", "float32", "float64"]


@st.composite
def waves(draw):
    n = draw(st.integers(1, 4000))
    ch = draw(st.sampled_from([1, 2]))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    shape = (n,) if ch == 1 and draw(st.booleans()) else (n, ch)
    if dtype.startswith("int"):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    else:
        x = rng.uniform(-1, 1, size=shape).astype(dtype)
    return x


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    x=waves(),
    sr=st.one_of(st.integers(8000, 48000), st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000])),
    target=st.sampled_from([8000, 16000, 22050, 24000]),
    max_seconds=st.one_of(st.none(), st.floats(0.01, 1.0)),
)
def test_preprocess_property(x, sr, target, max_seconds):
    n = x.shape[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            y, out_sr = preprocess(x, sr, target, max_seconds=max_seconds, channels_first=False)
        except AudioTooLongError:
            assert max_seconds is not None and n / sr > max_seconds
            return
        except AudioError as e:  # any other documented error must still be the documented kind
            pytest.fail(f"valid input rejected: {e!r}")
    assert out_sr == target
    assert y.dtype == np.float32 and y.ndim == 1
    assert np.all(np.isfinite(y)) and np.max(np.abs(y)) <= 1.0
    assert abs(len(y) - round(n * target / sr)) <= 1


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(0, 50),
    sr=st.one_of(st.integers(-10, 10**7), st.floats(allow_nan=True, allow_infinity=True)),
    fill=st.sampled_from([0.0, 0.1, np.nan, np.inf, -np.inf, 5.0]),
    ndim=st.integers(0, 3),
)
def test_preprocess_any_input_only_documented_errors(n, sr, fill, ndim):
    shape = {0: (), 1: (n,), 2: (n, 2), 3: (n, 2, 2)}[ndim]
    x = np.full(shape, fill, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            y, _ = preprocess(x, sr)
        except AudioError as e:
            assert "\n" not in str(e)
            return
    assert np.all(np.isfinite(y))


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0, max_size=3000))
def test_random_bytes_are_rejected(data):
    with pytest.raises((CorruptAudioError, UnsupportedFormatError, EmptyAudioError)):
        load_audio(data)


# ------------------------------------------------------------------ explicit bad cases
def test_empty_array():
    with pytest.raises(EmptyAudioError):
        preprocess(np.zeros(0, np.float32), 16000)
    with pytest.raises(EmptyAudioError):
        preprocess(np.zeros((0, 2), np.float32), 16000)


def test_empty_bytes_and_empty_file(tmp_path):
    with pytest.raises(EmptyAudioError):
        load_audio(b"")
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    with pytest.raises(EmptyAudioError):
        load_audio(p)


def test_header_only_wav_is_empty():
    data = _wav_bytes(_sine(100))[:44]
    with pytest.raises(EmptyAudioError):
        load_audio(data)


def test_garbage_bytes():
    with pytest.raises(UnsupportedFormatError):
        load_audio(b"this is certainly not audio, just some text" * 20)


def test_riff_with_garbage_is_corrupt():
    with pytest.raises((CorruptAudioError, UnsupportedFormatError)):
        load_audio(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_wav(keep):
    data = _wav_bytes(_sine(16000))
    with pytest.raises(CorruptAudioError, match="truncated"):
        load_audio(data[: int(len(data) * keep)])


def _wav_with_list_chunk(x: np.ndarray, comment: bytes) -> bytes:
    """A 16 kHz PCM_16 WAV with a LIST/INFO comment chunk before its data chunk."""
    import struct

    pcm = (x * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 16000, 32000, 2, 16)
    comment = comment + b"\0" * (len(comment) % 2)
    lst = b"INFO" + b"ICMT" + struct.pack("<I", len(comment)) + comment
    chunks = fmt + b"LIST" + struct.pack("<I", len(lst)) + lst + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


@pytest.mark.parametrize(
    "comment,cut",
    [(b"metadata: " + b"x" * 2990, 2000),  # "data" inside the LIST chunk, before the real data chunk
     (b"z" * 5000, 8000)],  # the data chunk starts after the first 4 KiB
)
def test_truncated_wav_found_by_walking_the_chunks(tmp_path, comment, cut):
    full = _wav_with_list_chunk(_sine(16000), comment)
    assert load_audio(full)[0].shape == (16000,)  # the complete file loads
    offset, declared = check_wav_complete(full)
    assert declared == 32000 and full[offset - 8 : offset - 4] == b"data"
    (tmp_path / "cut.wav").write_bytes(full[:-cut])
    for src in (full[:-cut], tmp_path / "cut.wav"):
        with pytest.raises(CorruptAudioError, match="truncated"):
            load_audio(src)
        with pytest.raises(CorruptAudioError, match="truncated"):
            check_wav_complete(src)


def test_truncated_flac():
    data = _wav_bytes(_sine(16000), fmt="FLAC")
    with pytest.raises(CorruptAudioError):
        load_audio(data[: len(data) // 2])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite(bad):
    x = _sine(1000).astype(np.float64)
    x[17] = bad
    with pytest.raises(NonFiniteAudioError):
        preprocess(x, 16000)


def test_non_finite_float_wav_file():
    x = _sine(1000)
    x[5] = np.nan
    with pytest.raises(NonFiniteAudioError):
        load_audio(_wav_bytes(x, subtype="FLOAT"))


def test_too_long():
    with pytest.raises(AudioTooLongError):
        preprocess(np.zeros(16001, np.float32), 16000, max_seconds=1.0)
    with pytest.raises(AudioTooLongError):
        load_audio(_wav_bytes(_sine(32000)), max_seconds=1.5)
    y, _ = preprocess(np.zeros(16000, np.float32), 16000, max_seconds=1.0)  # exactly 1 s is fine
    assert len(y) == 16000


@pytest.mark.parametrize("sr", [0, -16000, 10, 999, 10**7, 16000.5, float("nan"), "16000", None, True])
def test_absurd_sample_rates(sr):
    with pytest.raises(SampleRateError):
        preprocess(np.zeros(100, np.float32), sr)
    with pytest.raises(SampleRateError):
        preprocess(np.zeros(100, np.float32), 16000, target_sr=sr if sr is not None else 0)


def test_file_with_absurd_rate():
    data = _wav_bytes(_sine(100), sr=500)  # libsndfile writes it; we refuse to load it
    with pytest.raises(SampleRateError):
        load_audio(data)


@pytest.mark.parametrize("dtype", [bool, np.complex64, object])
def test_unsupported_dtypes(dtype):
    with pytest.raises(UnsupportedFormatError):
        preprocess(np.zeros(100, dtype=dtype), 16000)


def test_unsupported_shapes_and_sources():
    with pytest.raises(UnsupportedFormatError):
        preprocess(np.zeros((10, 2, 2), np.float32), 16000)
    with pytest.raises(UnsupportedFormatError):
        preprocess(np.float32(0.3), 16000)
    with pytest.raises(UnsupportedFormatError):
        preprocess(np.zeros((100, 100), np.float32), 16000)  # 100 "channels"
    with pytest.raises(UnsupportedFormatError):
        load_audio(12345)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(AudioFileNotFoundError) as ei:
        load_audio(tmp_path / "nope.wav")
    assert isinstance(ei.value, FileNotFoundError) and isinstance(ei.value, ValueError)
    with pytest.raises(UnsupportedFormatError):
        load_audio(tmp_path)


def test_text_file_with_wav_extension(tmp_path):
    p = tmp_path / "fake.wav"
    p.write_text("hello " * 100)
    with pytest.raises(UnsupportedFormatError):
        load_audio(p)


# ------------------------------------------------------------------ good behaviour
@pytest.mark.parametrize(
    "dtype,scale", [("int16", 2**15), ("int32", 2**31), ("float64", 1.0), ("uint8", None)]
)
def test_dtype_conversion(dtype, scale):
    if dtype == "uint8":
        x = np.array([0, 128, 255], np.uint8)
        y, _ = preprocess(x, 16000)
        np.testing.assert_allclose(y, [-1.0, 0.0, 127 / 128], atol=1e-6)
        return
    x = np.array([0, scale // 2 if scale > 1 else 0.5, -(scale // 2) if scale > 1 else -0.5]).astype(dtype)
    y, _ = preprocess(x, 16000)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0, 0.5, -0.5], atol=1e-6)


def test_stereo_downmix_warns_both_layouts():
    left, right = _sine(800), np.zeros(800, np.float32)
    for x in (np.stack([left, right], 1), np.stack([left, right], 0)):
        with pytest.warns(UserWarning, match="downmix"):
            y, _ = preprocess(x, 16000)
        np.testing.assert_allclose(y, left / 2, atol=1e-6)


def test_keep_channels():
    x = np.stack([_sine(800), -_sine(800)], 1)  # (n, 2)
    y, sr = preprocess(x, 16000, 8000, mono=False)
    assert y.shape == (2, 400) and sr == 8000


def test_float_clipping_warns():
    with pytest.warns(UserWarning, match="clipping"):
        y, _ = preprocess(np.array([2.0, -3.0, 0.5]), 16000)
    np.testing.assert_allclose(y, [1.0, -1.0, 0.5])


@pytest.mark.parametrize("src_sr", [48000, 44100, 8000, 44101])  # 44101: coprime -> FFT path
def test_resample_preserves_a_tone(src_sr):
    x = _sine(src_sr, sr=src_sr, f=440.0)  # 1 s
    y, sr = preprocess(x, src_sr, 16000)
    assert sr == 16000 and len(y) == 16000
    spec = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spec) * 16000 / len(y) - 440.0) < 2.0
    ref = _sine(16000, sr=16000, f=440.0)
    assert np.sqrt(np.mean((y[200:-200] - ref[200:-200]) ** 2)) < 0.02


def test_resample_length_is_exactly_the_ceiling():
    # torchaudio computes the length in float32 and came out one sample short for the first three
    for sr, n in [(44100, 441102), (22050, 220551), (22050, 220664), (44100, 441000)]:
        y, out_sr = preprocess(np.zeros(n, np.float32), sr, 16000, max_seconds=None)
        assert out_sr == 16000 and y.shape == (-(-n * 16000 // sr),), (sr, n)


def test_half_precision_torch_tensors(tmp_path):
    import torch

    x = torch.from_numpy(_sine(1600))
    for dtype in (torch.bfloat16, torch.float16):
        t = x.to(dtype)
        assert to_float32(t).dtype == np.float32
        np.testing.assert_array_equal(to_float32(t), t.float().numpy())
        y, sr = preprocess(t, 16000)
        assert y.dtype == np.float32 and y.shape == (1600,) and sr == 16000
    p = save_audio(tmp_path / "bf16.wav", x.bfloat16(), 16000)
    assert load_audio(p)[0].shape == (1600,)


def test_torch_in_and_out():
    import torch

    t = torch.from_numpy(_sine(1600))
    y, sr = preprocess(t, 16000, 8000, return_tensor=True)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == (800,)


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg"])
def test_save_load_round_trip(tmp_path, ext):
    x = _sine(8000, sr=16000)
    p = save_audio(tmp_path / "sub" / f"a.{ext}", x, 16000)
    assert p.exists() and not [f for f in p.parent.iterdir() if f.name.startswith(".")]
    y, sr = load_audio(p)
    assert sr == 16000 and len(y) == len(x)
    tol = 2e-4 if ext in ("wav", "flac") else 0.1
    assert np.max(np.abs(y - x)) < tol
    assert audio_info(p) == (8000, 16000, 1)


def test_save_float_wav_is_lossless(tmp_path):
    x = np.random.default_rng(0).uniform(-1, 1, 1000).astype(np.float32)
    p = save_audio(tmp_path / "f.wav", x, 22050, subtype="FLOAT")
    y, sr = load_audio(p, target_sr=None)
    assert sr == 22050 and np.array_equal(x, y)


def test_save_refuses_overwrite(tmp_path):
    p = save_audio(tmp_path / "a.wav", _sine(100), 16000)
    before = p.read_bytes()
    with pytest.raises(AudioFileExistsError):
        save_audio(p, _sine(200), 16000)
    assert p.read_bytes() == before
    save_audio(p, _sine(200), 16000, overwrite=True)
    assert audio_info(p)[0] == 200


def test_save_bad_inputs(tmp_path):
    with pytest.raises(UnsupportedFormatError):
        save_audio(tmp_path / "a.xyz", _sine(100), 16000)
    with pytest.raises(UnsupportedFormatError):
        save_audio(tmp_path / "a.wav", _sine(100), 16000, subtype="VORBIS")
    with pytest.raises(EmptyAudioError):
        save_audio(tmp_path / "a.wav", np.zeros(0), 16000)
    with pytest.raises(NonFiniteAudioError):
        save_audio(tmp_path / "a.wav", np.array([0.0, np.nan]), 16000)
    with pytest.raises(SampleRateError):
        save_audio(tmp_path / "a.wav", _sine(100), 0)
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_load_bytes_and_resample():
    y, sr = load_audio(_wav_bytes(_sine(22050, sr=22050), sr=22050))
    assert sr == 16000 and len(y) == 16000


def test_load_stereo_file_warns(tmp_path):
    x = np.stack([_sine(1000), _sine(1000)], 1)
    p = tmp_path / "st.wav"
    sf.write(p, x, 16000)
    with pytest.warns(UserWarning, match="downmix"):
        y, _ = load_audio(p)
    assert y.shape == (1000,)


@pytest.mark.skipif(not CLIP.exists(), reason="pocketsphinx-testdata not installed")
def test_real_librivox_clip():
    y, sr = load_audio(CLIP)
    assert sr == 16000 and y.dtype == np.float32
    assert abs(len(y) / sr - 2.99) < 0.01  # `soxi` says 47840 samples
    rms = float(np.sqrt(np.mean(y**2)))
    assert 0.005 < rms < 0.5
    y8, sr8 = load_audio(CLIP, target_sr=8000)
    assert sr8 == 8000 and abs(len(y8) - len(y) / 2) <= 1
    with pytest.raises(AudioTooLongError):
        load_audio(CLIP, max_seconds=1.0)


def test_fft_resampling_splits_and_folds_the_nyquist_bin():
    """A tone exactly at Nyquist, upsampled 2x band-limited, keeps its amplitude (it was doubled); an
    fs/4 tone halved in rate lands on the new Nyquist with its amplitude (it was halved)."""
    from towers.audio import _fft_resample

    up = _fft_resample(np.tile([0.5, -0.5], 500).astype(np.float32), 2000)
    assert np.allclose(up, 0.5 * np.cos(np.pi * np.arange(2000) / 2), atol=1e-5)
    down = _fft_resample(np.cos(np.pi / 2 * np.arange(1000)).astype(np.float32), 500)
    assert np.allclose(down, np.cos(np.pi * np.arange(500)), atol=1e-5)


def test_save_audio_gives_the_umask_mode_not_0600(tmp_path, monkeypatch):
    import towers.audio

    monkeypatch.setattr(towers.audio, "_UMASK", None, raising=False)  # read afresh under the umask set here
    old = os.umask(0o027)
    try:
        p = save_audio(tmp_path / "a.wav", np.zeros(160, np.float32), 16000)
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o640


def test_replaced_atomically_renames_a_whole_file_or_leaves_the_old_one(tmp_path):
    from towers.audio import replaced_atomically

    path = tmp_path / "sub" / "out.bin"
    with replaced_atomically(path) as a, replaced_atomically(path) as b:  # two writers of one path at once
        assert a != b and Path(a).parent == path.parent and not path.exists()
        Path(a).write_bytes(b"first")
        Path(b).write_bytes(b"second")
    assert path.read_bytes() == b"first"  # the outer block ends last: its rename wins
    with pytest.raises(RuntimeError), replaced_atomically(path) as tmp:
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("the writer failed")
    assert path.read_bytes() == b"first" and sorted(p.name for p in path.parent.iterdir()) == ["out.bin"]

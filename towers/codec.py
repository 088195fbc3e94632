"""Speech unit codecs: audio -> discrete units -> audio.

A speech tower is a causal LM over discrete speech units; a :class:`SpeechCodec` is what turns a
waveform into those units (``encode``) and units back into a waveform (``decode``).

The interface
-------------
``codec.encode(wave, sample_rate) -> LongTensor (T_units,)``
    ``wave`` is a numpy array or tensor, ``(n,)`` mono or ``(n, c)``/``(c, n)``, any dtype that
    :func:`towers.audio.preprocess` accepts; it is validated (empty / NaN / Inf input raise the
    :class:`towers.audio.AudioError` subclasses) and resampled to ``codec.sample_rate``. A wave
    shorter than ``codec.min_samples`` after resampling (the mel codec's centred STFT needs more than
    ``n_fft // 2`` = 512 samples, 32 ms at 16 kHz) raises :class:`towers.audio.AudioTooShortError`,
    an ``EmptyAudioError``.
    Units are ints in ``[0, codec.vocab_size)``, about ``duration * codec.units_per_second`` of them.
``codec.decode(units) -> (wave float32 tensor (n,), sample_rate)``
``codec.encode_batch(waves, sample_rate)`` / ``codec.decode_batch(list_of_units)``
``codec.save_pretrained(dir)`` / ``SpeechCodec.from_pretrained(dir)``
    A directory with ``codec_config.json`` (``codec_type`` + the subclass's hyper-parameters) and
    ``codec.safetensors`` (all tensors). Nothing is ever unpickled: a directory holding only
    ``.bin``/``.pt``/``.pth``/``.ckpt``/``.pkl`` files, or a ``codec.safetensors`` that is really a
    pickle / ``torch.save`` archive, raises :class:`CodecFormatError`.

The default codec (:class:`MelUnitCodec`, ``codec_type="mel_kmeans"``)
----------------------------------------------------------------------
16 kHz -> 80-bin log-mel every 20 ms -> per-utterance mean removed, scaled by a global std ->
``context`` consecutive frames stacked every ``stride`` frames (stride 2: 25 units/s) -> nearest of
``vocab_size`` k-means centroids. Decoding runs a learned context-seeing conv decoder
(:class:`towers.unit_decoder.UnitToMel`) to predict the log-mel, then Griffin-Lim
(:class:`towers.vocoder.GriffinLimVocoder`). Train one with ``recipes/train_codec.py`` or, in
seconds for tests, :func:`towers.codec_train.train_tiny_codec`.

Plugging in another unit source
-------------------------------
Subclass :class:`SpeechCodec`, register it, and implement five methods::

    @register_codec("whisper_kmeans")
    class WhisperKMeansCodec(SpeechCodec):
        sample_rate = 16_000
        def __init__(self, centroids, decoder_state, ...): ...
        @property
        def vocab_size(self): return self.centroids.shape[0]
        @property
        def units_per_second(self): return 50.0
        def _encode_wave(self, wave):            # wave: float32 (n,) at self.sample_rate
            states = whisper_encoder(wave)       # (T, 512), e.g. CTranslate2 Whisper base
            return assign(states, self.centroids)  # towers.kmeans.assign -> (T,) int64
        def decode(self, units): ...             # -> (wave (n,), self.sample_rate)
        def config_dict(self): return {...}      # JSON-able hyper-parameters
        def state_tensors(self): return {"centroids": self.centroids, ...}
        @classmethod
        def from_config_and_tensors(cls, config, tensors): return cls(...)

HuBERT / w2v-BERT units work the same way (features from the pretrained encoder, k-means with
:func:`towers.kmeans.fit_kmeans`); a neural codec with its own quantiser (EnCodec, Mimi) only needs
``_encode_wave``/``decode`` to call it. ``save_pretrained``/``from_pretrained`` then work unchanged.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Sequence

import torch
from safetensors.torch import load_file, save_file

from towers.audio import AudioTooShortError, EmptyAudioError, preprocess
from towers.safefile import safetensors_problem
from towers.typed_config import check_field_types
from towers.kmeans import assign
from towers.unit_decoder import UnitToMel
from towers.vocoder import GriffinLimVocoder, LogMel

__all__ = [
    "SpeechCodec",
    "MelUnitCodec",
    "MelUnitCodecConfig",
    "CodecFormatError",
    "register_codec",
    "CODEC_TYPES",
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "DEFAULT_CODEC_DIR",
    "SHIPPED_CODECS",
    "load_default_codec",
    "load_codec",
]

CONFIG_NAME = "codec_config.json"
WEIGHTS_NAME = "codec.safetensors"
FORMAT_VERSION = 1
DEFAULT_CODEC_DIR = Path(__file__).parent / "assets" / "codec-default"
# Codecs shipped in towers/assets, by the name configs and the CLI accept in place of a directory.
# "whisper-joe": k-means over Whisper-base encoder states (50 units/s, needs the offline Whisper-base
# files at encode time) with a decoder trained on one voice (piper joe); "whisper-std-joe": the same on
# per-dimension standardised states (far more intelligible: 2.2x the originals' judge-WER against 3.9x);
# "whisper-proj-joe": k-means in the space of the first layer of a decoder trained on the unquantised
# states, the unit decoder warm-started from that decoder (1.7x); see recipes/RESULTS_codec.md.
SHIPPED_CODECS = {"default": DEFAULT_CODEC_DIR, "whisper-joe": DEFAULT_CODEC_DIR.parent / "codec-whisper-joe",
                  "whisper-std-joe": DEFAULT_CODEC_DIR.parent / "codec-whisper-std-joe",
                  "whisper-proj-joe": DEFAULT_CODEC_DIR.parent / "codec-whisper-proj-joe"}
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".npy", ".npz", ".joblib")

CODEC_TYPES: dict[str, type["SpeechCodec"]] = {}
# codec types defined in other modules of this package, imported on first use
_LAZY_CODEC_MODULES = {"whisper_kmeans": "towers.whisper_units"}


class CodecFormatError(ValueError):
    """A codec directory that is missing, malformed, or in a format we refuse to load (pickle)."""


def check_codec_config(config, sample_rate: int | None = None) -> None:
    """A codec config dataclass (read from JSON: a ``--set`` or a saved ``codec_config.json``) has its fields'
    types, positive integers and frequencies, and dilation lists of positive integers; an odd ``dec_kernel``
    (the decoder's same-length convolutions), ``hop_length <= n_fft`` (Griffin-Lim's inverse STFT) and
    ``f_max <= sample_rate / 2``; else CodecFormatError. ``sample_rate``: the audio rate of a config without
    a ``sample_rate`` field."""
    check_field_types(config, CodecFormatError)
    for f in fields(config):
        value = getattr(config, f.name)
        if isinstance(value, list) and not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
            raise CodecFormatError(f"{f.name} must be a list of integers >= 1, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
            raise CodecFormatError(f"{f.name} must be > 0, got {value!r}")
    if config.vocab_size < 2:
        raise CodecFormatError(f"vocab_size must be >= 2, got {config.vocab_size}")
    if config.dec_kernel % 2 == 0:
        raise CodecFormatError(f"dec_kernel must be odd (the decoder's convolutions keep the length), "
                               f"got {config.dec_kernel}")
    if config.hop_length > config.n_fft:
        raise CodecFormatError(f"hop_length must be <= n_fft ({config.n_fft}), got {config.hop_length}")
    sr = getattr(config, "sample_rate", sample_rate)
    if sr is not None and config.f_max > sr / 2:
        raise CodecFormatError(f"f_max must be <= sample_rate / 2 ({sr / 2:g} Hz), got {config.f_max:g}")


def check_scale(name: str, scale: torch.Tensor, size: int) -> None:
    """A per-dimension feature scale (divided by) is ``(size,)`` finite values > 0; else CodecFormatError."""
    if tuple(scale.shape) != (size,) or not (torch.isfinite(scale).all() and (scale > 0).all()):
        raise CodecFormatError(f"{name} must be {size} finite positive values, got shape {tuple(scale.shape)}"
                               + ("" if tuple(scale.shape) != (size,) else f", min {float(scale.min()):g}"))


def register_codec(name: str):
    """Class decorator: make ``SpeechCodec.from_pretrained`` able to build ``codec_type=name``."""

    def deco(cls):
        cls.codec_type = name
        CODEC_TYPES[name] = cls
        return cls

    return deco


def _check_safetensors_bytes(path: Path) -> None:
    """Refuse anything that is not a safetensors file before any loader touches it."""
    problem = safetensors_problem(path)
    if problem:
        raise CodecFormatError(problem + " (codecs load from safetensors only)")


class SpeechCodec(ABC):
    """Abstract audio <-> discrete-unit codec. See the module docstring for the contract."""

    codec_type: str = "abstract"
    sample_rate: int = 16_000

    # ---- what a subclass implements -------------------------------------------------------
    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct unit ids; units are in ``[0, vocab_size)``."""

    @property
    @abstractmethod
    def units_per_second(self) -> float:
        """Units per second of audio (the speech LM's token rate)."""

    @abstractmethod
    def _encode_wave(self, wave: torch.Tensor) -> torch.Tensor:
        """float32 ``(n,)`` at ``self.sample_rate``, validated -> int64 ``(T_units,)``."""

    @abstractmethod
    def decode(self, units: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, int]:
        """``(T_units,)`` ids -> (float32 wave ``(n,)``, sample rate)."""

    @abstractmethod
    def config_dict(self) -> dict:
        """JSON-able hyper-parameters that, with :meth:`state_tensors`, rebuild the codec."""

    @abstractmethod
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """All tensors of the codec (saved to safetensors)."""

    @classmethod
    @abstractmethod
    def from_config_and_tensors(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "SpeechCodec":
        """Inverse of :meth:`config_dict` + :meth:`state_tensors`."""

    def unit_encoder_state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        """What :meth:`encode` depends on: (config entries, tensors). Codecs of one type with equal
        unit-encoder state give equal units, so unit caches are keyed on it
        (:func:`zipper.data.codec_id`). The default is the whole codec. A subclass with a separate
        decoder returns only the encoder's part, so a codec with a retrained decoder keeps the caches."""
        return self.config_dict(), self.state_tensors()

    @property
    def min_samples(self) -> int:
        """Fewest samples (at :attr:`sample_rate`) :meth:`encode` accepts; override when ``_encode_wave`` needs more."""
        return 1

    # ---- shared behaviour -----------------------------------------------------------------
    def encode(self, wave, sample_rate: int) -> torch.Tensor:
        """Waveform (any rate/layout :func:`towers.audio.preprocess` takes) -> int64 ``(T_units,)``.

        Raises the :class:`towers.audio.AudioError` subclasses for empty / non-finite / bad input,
        :class:`towers.audio.AudioTooShortError` for fewer than :attr:`min_samples` samples.
        """
        x, _ = preprocess(wave, sample_rate, target_sr=self.sample_rate, max_seconds=None, return_tensor=True)
        if x.shape[-1] < self.min_samples:
            raise AudioTooShortError(
                f"{self.codec_type} codec needs at least {self.min_samples} samples at {self.sample_rate} Hz "
                f"({1000 * self.min_samples / self.sample_rate:.1f} ms), got {x.shape[-1]}"
                + (f" (after resampling from {sample_rate} Hz)" if sample_rate != self.sample_rate else "")
            )
        with torch.no_grad():
            return self._encode_wave(x).long()

    def encode_batch(self, waves: Sequence, sample_rate: int) -> list[torch.Tensor]:
        """Encode several waveforms (same rate); returns one ``(T_i,)`` tensor each."""
        return [self.encode(w, sample_rate) for w in waves]

    def decode_batch(self, units: Sequence) -> list[tuple[torch.Tensor, int]]:
        """Decode several unit sequences; returns one ``(wave, sample_rate)`` each."""
        return [self.decode(u) for u in units]

    def _check_units(self, units) -> torch.Tensor:
        u = torch.as_tensor(units).cpu()  # codecs run on the CPU; units may come from a tower on a GPU
        if u.ndim != 1:
            raise ValueError(f"units must be 1-D (T_units,), got shape {tuple(u.shape)}")
        if u.numel() == 0:
            raise EmptyAudioError("cannot decode an empty unit sequence")
        if u.is_floating_point() or u.is_complex() or u.dtype == torch.bool:
            raise TypeError(f"units must be integers, got {u.dtype}")
        u = u.long()
        lo, hi = int(u.min()), int(u.max())
        if lo < 0 or hi >= self.vocab_size:
            raise ValueError(f"unit ids must be in [0, {self.vocab_size}), got range [{lo}, {hi}]")
        return u

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None,
                        keep: Sequence[str] = ()) -> Path:
        """Write ``codec_config.json`` + ``codec.safetensors`` into ``directory`` (created).

        ``dtype=torch.float16`` stores floating tensors at half size (they load back as float32;
        a reloaded codec then equals itself across further save/load cycles). Tensors named in
        ``keep`` stay at full precision, e.g. ``keep=("centroids",)`` so the units are unchanged.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        config = {"codec_type": self.codec_type, "format_version": FORMAT_VERSION, **self.config_dict()}
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_tensors().items()}
        if dtype is not None:
            tensors = {k: v.to(dtype) if v.is_floating_point() and k not in keep else v for k, v in tensors.items()}
        save_file(tensors, str(d / WEIGHTS_NAME), metadata={"codec_type": self.codec_type})
        (d / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return d

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> "SpeechCodec":
        """Load a codec saved by :meth:`save_pretrained` (safetensors only; never unpickles).

        Called on :class:`SpeechCodec` it builds whichever registered class ``codec_type`` names;
        called on a subclass it also checks the type matches.
        """
        d = Path(directory)
        if not d.is_dir():
            raise CodecFormatError(f"codec directory {d} does not exist")
        cfg_path, w_path = d / CONFIG_NAME, d / WEIGHTS_NAME
        if not w_path.exists():
            unsafe = sorted(p.name for p in d.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES)
            if unsafe:
                raise CodecFormatError(
                    f"{d} has no {WEIGHTS_NAME} but {unsafe}: pickle-based checkpoints are refused; "
                    "convert the tensors to safetensors"
                )
            raise CodecFormatError(f"{d} has no {WEIGHTS_NAME}")
        if not cfg_path.exists():
            raise CodecFormatError(f"{d} has no {CONFIG_NAME}")
        _check_safetensors_bytes(w_path)
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise CodecFormatError(f"{cfg_path} is not valid JSON: {e}") from None
        if not isinstance(config, dict):
            raise CodecFormatError(f"{cfg_path} must hold a JSON object, got {type(config).__name__}")
        ctype = config.pop("codec_type", None)
        version = config.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise CodecFormatError(f"{cfg_path}: format_version {version!r}, expected {FORMAT_VERSION}")
        if ctype not in CODEC_TYPES and ctype in _LAZY_CODEC_MODULES:
            import importlib

            importlib.import_module(_LAZY_CODEC_MODULES[ctype])
        if ctype not in CODEC_TYPES:
            raise CodecFormatError(f"{cfg_path}: unknown codec_type {ctype!r} (known: {sorted(CODEC_TYPES)})")
        target = CODEC_TYPES[ctype]
        if cls is not SpeechCodec and not issubclass(target, cls):
            raise CodecFormatError(f"{d} holds a {ctype!r} codec, not a {cls.__name__}")
        try:
            tensors = load_file(str(w_path))
        except Exception as e:  # SafetensorError etc.
            raise CodecFormatError(f"{w_path}: cannot read safetensors ({e})") from None
        tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
        return target.from_config_and_tensors(config, tensors)


# --------------------------------------------------------------------------------------------
# The default codec: k-means over stacked log-mel frames + context-seeing decoder + Griffin-Lim
# --------------------------------------------------------------------------------------------
@dataclass
class MelUnitCodecConfig:
    """Hyper-parameters of :class:`MelUnitCodec` (stored in ``codec_config.json``)."""

    # the fields the units depend on (the rest configure the decoder and vocoder)
    UNIT_FIELDS: ClassVar[tuple[str, ...]] = ("sample_rate", "n_fft", "hop_length", "n_mels", "f_max", "stride",
                                              "context", "mean_norm", "vocab_size")

    sample_rate: int = 16_000
    n_fft: int = 1024
    hop_length: int = 320  # 20 ms -> 50 mel frames/s
    n_mels: int = 80
    f_max: float = 8_000.0
    stride: int = 2  # mel frames per unit: 50 / 2 = 25 units/s
    context: int = 4  # mel frames stacked into one unit's feature, centred on the unit
    mean_norm: bool = True  # subtract the utterance's mean log-mel before k-means (else global scale only)
    vocab_size: int = 1024
    dec_channels: int = 192
    dec_unit_dilations: list = field(default_factory=lambda: [1, 2, 4, 8, 1, 2])
    dec_frame_dilations: list = field(default_factory=lambda: [1, 2])
    dec_kernel: int = 5
    gl_iters: int = 64

    def __post_init__(self) -> None:
        check_codec_config(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MelUnitCodecConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise CodecFormatError(f"unknown MelUnitCodec config keys: {sorted(unknown)}")
        return cls(**d)


@register_codec("mel_kmeans")
class MelUnitCodec(SpeechCodec):
    """The default codec: units = k-means ids of stacked, mean-normalised log-mel frames.

    Tensors: ``centroids (V, context * n_mels)``, ``feat_std (n_mels,)`` (global scale of the
    mean-removed log-mel), ``decoder.*`` (:class:`UnitToMel`).
    """

    def __init__(self, config: MelUnitCodecConfig, centroids: torch.Tensor, feat_std: torch.Tensor,
                 decoder: UnitToMel | None = None):
        self.config = config
        self.sample_rate = config.sample_rate
        c = config
        if centroids.shape != (c.vocab_size, c.context * c.n_mels):
            raise CodecFormatError(
                f"centroids shape {tuple(centroids.shape)} != ({c.vocab_size}, {c.context * c.n_mels})"
            )
        check_scale("feat_std", feat_std, c.n_mels)
        self.centroids = centroids.float()
        self.feat_std = feat_std.float()
        self.logmel = LogMel(c.sample_rate, c.n_fft, c.hop_length, c.n_mels, f_max=c.f_max)
        self.vocoder = GriffinLimVocoder(c.sample_rate, c.n_fft, c.hop_length, c.n_mels, f_max=c.f_max,
                                         n_iter=c.gl_iters)
        self.decoder = decoder if decoder is not None else self.new_decoder(c)
        self.decoder.eval()

    @staticmethod
    def new_decoder(c: MelUnitCodecConfig) -> UnitToMel:
        return UnitToMel(c.vocab_size, c.n_mels, c.stride, c.dec_channels, tuple(c.dec_unit_dilations),
                         tuple(c.dec_frame_dilations), c.dec_kernel)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def units_per_second(self) -> float:
        return self.config.sample_rate / (self.config.hop_length * self.config.stride)

    @property
    def min_samples(self) -> int:
        """``n_fft // 2 + 1``: the centred STFT reflect-pads ``n_fft // 2`` samples on each side."""
        return self.logmel.min_samples

    # ---- features -------------------------------------------------------------------------
    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """float32 ``(n,)`` at the codec rate -> log-mel ``(T, n_mels)``, ``T = n // hop + 1``.

        Raises :class:`towers.audio.AudioTooShortError` for fewer than :attr:`min_samples` samples."""
        return self.logmel(wave)

    def unit_features(self, log_mel: torch.Tensor) -> torch.Tensor:
        """``(T, n_mels)`` log-mel -> ``(ceil(T / stride), context * n_mels)`` k-means features."""
        c = self.config
        centre = log_mel.mean(0, keepdim=True) if c.mean_norm else 0.0
        x = (log_mel - centre) / self.feat_std  # (T, n_mels)
        n_units = -(-x.shape[0] // c.stride)
        left = (c.context - c.stride) // 2
        # frame index of each (unit, context slot), clamped at the edges (edge replication)
        idx = torch.arange(n_units)[:, None] * c.stride - left + torch.arange(c.context)[None]  # (U, context)
        idx = idx.clamp(0, x.shape[0] - 1)
        return x[idx].reshape(n_units, c.context * c.n_mels)  # (U, context * n_mels)

    def _encode_wave(self, wave: torch.Tensor) -> torch.Tensor:
        return assign(self.unit_features(self.mel(wave)), self.centroids)  # (U,)

    # ---- decoding -------------------------------------------------------------------------
    @torch.no_grad()
    def decode_mel(self, units) -> torch.Tensor:
        """``(U,)`` ids -> predicted log-mel ``(U * stride, n_mels)``."""
        u = self._check_units(units)
        return self.decoder(u[None])[0]

    def decode(self, units) -> tuple[torch.Tensor, int]:
        return self.vocoder(self.decode_mel(units)), self.sample_rate

    # ---- persistence ----------------------------------------------------------------------
    def config_dict(self) -> dict:
        return asdict(self.config)

    def unit_encoder_state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        return ({k: getattr(self.config, k) for k in MelUnitCodecConfig.UNIT_FIELDS},
                {"centroids": self.centroids, "feat_std": self.feat_std})

    def state_tensors(self) -> dict[str, torch.Tensor]:
        t = {"centroids": self.centroids, "feat_std": self.feat_std}
        t.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
        return t

    @classmethod
    def from_config_and_tensors(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "MelUnitCodec":
        c = MelUnitCodecConfig.from_dict(config)
        for key in ("centroids", "feat_std"):
            if key not in tensors:
                raise CodecFormatError(f"codec tensors lack {key!r}")
        dec = cls.new_decoder(c)
        dec_state = {k[len("decoder."):]: v for k, v in tensors.items() if k.startswith("decoder.")}
        try:
            dec.load_state_dict(dec_state, strict=True)
        except RuntimeError as e:
            raise CodecFormatError(f"decoder weights do not match the config: {e}") from None
        return cls(c, tensors["centroids"], tensors["feat_std"], dec)


def load_default_codec() -> SpeechCodec:
    """The codec shipped in ``towers/assets/codec-default`` (trained by ``recipes/train_codec.py``)."""
    return SpeechCodec.from_pretrained(DEFAULT_CODEC_DIR)


def load_codec(ref: str | os.PathLike) -> SpeechCodec:
    """A shipped codec by name (:data:`SHIPPED_CODECS`: ``"default"``, ``"whisper-joe"``, ``"whisper-std-joe"``,
    ``"whisper-proj-joe"``) or a codec directory."""
    if not codec_exists(ref):
        raise FileNotFoundError(f"codec {str(ref)!r} is neither a shipped codec name ({sorted(SHIPPED_CODECS)}) "
                                f"nor a directory")
    if isinstance(ref, str) and ref in SHIPPED_CODECS:
        return SpeechCodec.from_pretrained(SHIPPED_CODECS[ref])
    return SpeechCodec.from_pretrained(ref)


def codec_exists(ref: str | os.PathLike) -> bool:
    """``ref`` is something :func:`load_codec` can find: a shipped codec name or a directory holding
    :data:`WEIGHTS_NAME` (not "", which would be the working directory)."""
    if isinstance(ref, str) and ref in SHIPPED_CODECS:
        return True
    return str(ref) != "" and (Path(ref) / WEIGHTS_NAME).is_file()

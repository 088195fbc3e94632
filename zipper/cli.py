"""The `zipper` command line: demo, train, eval, transcribe, speak, towers, data build.

Bad input (missing or corrupt audio, bad configs, unsafe checkpoints, unwritable outputs) ends with
one ``zipper: error: ...`` line and exit status 2, never a traceback, and nothing is overwritten
unless ``--overwrite`` is given.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

from towers.chunking import CHUNK_CHARS, CHUNK_SECONDS
from zipper.ctc_beam import FUSION_ALPHA, FUSION_BEAM, FUSION_BETA, KNOWN_WORDS_FILE, known_words, read_word_list


def _load_model(path: str, towers: Sequence[str] = ()):
    """The zip (or single decoder) saved in ``path``; ``towers``: ``MODALITY=TOWER`` swaps, each tower (a registered
    name or a path) read by the zip in place of the one it was trained with (``text=runs/text-tower-foldoc/tower``)."""
    from towers import load_tower
    from zipper.model import ZipperModel

    if not Path(path).is_dir():
        raise FileNotFoundError(f"no trained model directory at {path}")
    swaps = dict(_tower_swap(t) for t in towers)
    if (Path(path) / "single_decoder.json").exists():
        from zipper.baseline import SingleDecoder

        if swaps:
            raise ValueError(f"{path} is a single decoder, one tower fine-tuned whole: it has no tower to swap")
        return SingleDecoder.from_pretrained(path)
    return ZipperModel.from_pretrained(path, towers={m: load_tower(r, modality=m) for m, r in swaps.items()})


def _tower_swap(text: str) -> tuple[str, str]:
    modality, sep, ref = text.partition("=")
    if not (sep and modality and ref):
        raise ValueError(f"--tower takes MODALITY=TOWER (e.g. text=runs/text-tower-foldoc/tower), got {text!r}")
    return modality, ref


def _check_direction(model, direction: str, path: str) -> None:
    """A zip trained only for the other direction would ignore its input and write its own text or
    speech: refuse it. (The single decoder records no direction: its recipe's task is not saved.)"""
    config = getattr(model, "config", None)
    if config is not None and direction not in config.directions:
        raise ValueError(f"the model at {path} was zipped for {', '.join(config.directions)}, not {direction}")


def _load_model_codec(path: str, default: str | None = None):
    """The codec saved in the model directory; else ``default`` (a codec name or directory, e.g. a recipe's),
    else the shipped default codec, with a warning."""
    from towers.codec import SpeechCodec, load_codec, load_default_codec

    if not Path(path).is_dir():
        raise FileNotFoundError(f"no trained model directory at {path}")
    codec_dir = Path(path) / "codec"
    if codec_dir.is_dir():
        return SpeechCodec.from_pretrained(codec_dir)
    if default is not None:
        return load_codec(default)
    # a model saved before models carried their codec, or copied without it: units of another codec would
    # be read as these, and the transcripts would be fluent nonsense
    warnings.warn(f"{path} has no codec/ folder: using the default codec (towers/assets/codec-default); if the "
                  "model was trained on another codec, copy it there (SpeechCodec.save_pretrained)", stacklevel=2)
    return load_default_codec()


def _check_output(path: str, overwrite: bool) -> Path:
    """An audio output path that can be written, checked before any model work."""
    from towers.audio import writable_format

    out = Path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"output folder {out.parent} of {path} does not exist or is not a folder")
    writable_format(out)
    try:  # write a file (os.access says yes to root): refused here, not after the model work
        with tempfile.NamedTemporaryFile(dir=out.parent):
            pass
    except OSError as e:
        raise PermissionError(f"cannot write {path}: its folder {out.parent} is not writable "
                              f"({e.strerror or e})") from None
    return out


def cmd_transcribe(a) -> int:
    from towers.audio import load_audio
    from zipper.tasks import transcribe_pieces

    # every input is read and checked before any model work
    words = read_word_list(a.fusion_words) if a.fusion_words else []
    if a.fusion:
        words += known_words(a.model)
    codec = _load_model_codec(a.model)
    waves = [load_audio(f, target_sr=codec.sample_rate, max_seconds=a.max_seconds) for f in a.audio]
    model = _load_model(a.model, a.tower)
    _check_direction(model, "speech->text", a.model)
    if a.int8:
        from zipper.quantize import quantize_text_decoder

        quantize_text_decoder(model)
    fusion = dict(beam=a.fusion_beam or FUSION_BEAM, words=words, **_fusion_weights(a)) if a.fusion else None
    long = sum(len(w) / sr > a.chunk_seconds for w, sr in waves) if a.chunk_seconds else 0
    pieces = transcribe_pieces(model, codec, waves, chunk_seconds=a.chunk_seconds, fusion=fusion,
                               num_beams=a.beams or 1, progress=len(waves) > 1 or long > 0)
    for f, ps in zip(a.audio, pieces):
        text = " ".join(p["text"] for p in ps if p["text"])
        if a.json:
            print(json.dumps({"audio": f, "text": text, "pieces": ps}, ensure_ascii=False))
        else:
            print(f"{f}\t{text}" if len(a.audio) > 1 else text)
    return 0


def cmd_speak(a) -> int:
    from towers.audio import save_audio
    from zipper.data import speaking_voice, voice_text_prompt
    from zipper.tasks import speak_text

    text = " ".join(a.text.split())
    if not text:
        raise ValueError("nothing to speak: the text is empty")
    if len(text) > a.max_chars:
        raise ValueError(f"text is {len(text)} characters, more than --max-chars {a.max_chars}")
    out = _check_output(a.output, a.overwrite)
    codec = _load_model_codec(a.model)
    voice = speaking_voice(a.model, a.voice)  # a model trained with a recipe's voice_prompt: a voice it knows
    model = _load_model(a.model, a.tower)
    _check_direction(model, "text->speech", a.model)
    prompt = voice_text_prompt(voice) if voice else ""
    wave, sr, units = speak_text(model, codec, text, chunk_chars=a.chunk_chars, prompt=prompt)
    if len(wave) == 0:
        raise RuntimeError("the model generated no speech units for this text")
    save_audio(out, wave.numpy(), sr, overwrite=a.overwrite)
    pieces = f" in {len(units)} pieces" if len(units) > 1 else ""
    print(f"wrote {out} ({sum(len(u) for u in units)} units{pieces}, {len(wave) / sr:.2f} s"
          f"{f', voice {voice}' if voice else ''})")
    return 0


def cmd_train(a) -> int:
    from zipper.recipe import train_from_args

    return train_from_args(a)


def cmd_eval(a) -> int:
    import datetime

    from zipper.recipe import RecipeConfig, _number, read_split, splits_used, test_metrics
    from zipper.results import RESULTS_MD, append_results_row, check_results_md, git_hash, machine

    cfg = RecipeConfig.from_json(a.config)
    if cfg.task in ("pretrain_speech", "adapt_text"):
        what = "pretrains a speech tower" if cfg.task == "pretrain_speech" else "adapts a text tower"
        raise ValueError(f"zipper eval evaluates asr, tts and joint recipes; {a.config} {what}, "
                         f"whose held-out perplexity is in {Path(cfg.out) / 'results.json'}")
    if a.beams and (cfg.task == "tts" or cfg.model == "single_decoder"):
        raise ValueError(f"--beams sets the attention beams of a zipper ASR or joint recipe; {a.config} is a "
                         f"{cfg.model} {cfg.task} recipe, which has none")
    if a.int8 and cfg.task == "tts":
        raise ValueError(f"--int8 runs the text decoder in int8, for an ASR or joint recipe; {a.config} is a tts "
                         "recipe, whose decoder is the speech tower")
    if a.fusion and cfg.task == "tts":
        raise ValueError(f"--fusion decodes speech to text, for an ASR or joint recipe; {a.config} is a tts recipe, "
                         "which runs no ASR evaluation")
    trained = cfg
    if a.fusion or a.beams or a.fusion_beam:  # validated again: fusion needs a character CTC head
        cfg = dataclasses.replace(cfg, eval_fusion=cfg.eval_fusion or a.fusion, eval_beams=a.beams or cfg.eval_beams,
                                  fusion_beam=a.fusion_beam or cfg.fusion_beam,
                                  **{f"fusion_{k}": v for k, v in _fusion_weights(a).items()})
    if a.eval_utts:
        cfg = dataclasses.replace(cfg, eval_utts=a.eval_utts)
    if a.corpus and not (Path(a.corpus) / "test.jsonl").is_file():  # before loading the model
        raise ValueError(f"--corpus {a.corpus} has no test.jsonl (make one from your recordings with `zipper data "
                         "import --folder DIR --split test --out CORPUS`)")
    model_dir = Path(a.model or Path(cfg.out) / "model")
    record = model_dir.parent / "results.json"  # the training run's, which --results-md completes
    md = None if a.results_md is None else RESULTS_MD if a.results_md is True else Path(a.results_md)
    if md is not None:  # before loading and testing
        if not record.is_file():
            raise ValueError(f"--results-md appends the training run's row with these test numbers, but {record} "
                             "(written by `zipper train`) is missing")
        check_results_md(md)
    model = _load_model(str(model_dir))
    if a.int8:
        from zipper.quantize import quantize_text_decoder

        quantize_text_decoder(model)
    codec = _load_model_codec(str(model_dir), default=cfg.codec)
    test_corpus = Path(a.corpus or cfg.corpus)
    test = read_split(cfg, test_corpus, "test", codec, splits_used(cfg)["test"])  # a speech_states recipe's: states
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    commit = git_hash()  # the code that tests, not a commit made while it ran
    hyps = _eval_hyps_dir(model_dir, trained, cfg, a.config, int8=a.int8, corpus=a.corpus)
    # int8 numbers are named so (test_asr_fusion_int8): in the row, and beside the fp32 ones in results.json
    results = test_metrics(model, cfg, test, codec, hyps_dir=hyps, tag="_int8" if a.int8 else "",
                           test_corpus=test_corpus)
    print(json.dumps(results, indent=2))
    if md is not None:
        run = json.loads(record.read_text())
        command = " ".join(["zipper eval", a.config, *(["--model", a.model] if a.model else []),
                            *(["--beams", *map(str, a.beams)] if a.beams else []), *(["--fusion"] if a.fusion else []),
                            *(["--fusion-beam", str(a.fusion_beam)] if a.fusion_beam else []),
                            *(["--eval-utts", str(a.eval_utts)] if a.eval_utts else []),
                            *(["--corpus", a.corpus] if a.corpus else []),
                            *(["--int8"] if a.int8 else []),
                            *[f"--fusion-{k} {_number(v)}" for k, v in _fusion_weights(a).items()], "--results-md",
                            *([] if a.results_md is True else [a.results_md])])
        run["metrics"] = {**run.get("metrics", {}), **results}
        run["tested"] = {"date": started, "machine": machine(), "git": commit, "command": command}
        # "metrics" and "tested" hold the latest test; each test (config, settings) also keeps its own record,
        # keyed by its hypotheses' folder, so a second config's test of one model loses nothing of the first's
        run.setdefault("tests", {})[hyps.relative_to(record.parent).as_posix()] = {**run["tested"], "metrics": results}
        record.write_text(json.dumps(run, indent=2) + "\n")
        append_results_row(cfg, run, md)
        print(f"[zipper] {record} updated; row appended to {md}")
    return 0


# the settings of `zipper eval` that change what an already named metric's hypotheses are (the beam sizes and
# --fusion each have their own metric, test_asr_beam<N> and test_asr_fusion)
_HYPS_SETTINGS = ("eval_utts", "fusion_beam", "fusion_alpha", "fusion_beta")


def _eval_hyps_dir(model_dir: Path, trained, cfg, config: str, int8: bool = False, corpus: str | None = None) -> Path:
    """Where `zipper eval` writes each utterance's hypotheses: ``<run>/hyps/<model dir name>`` (as the training
    run's test), in a subfolder named by the settings that differ from the config's (``eval-utts100``,
    ``fusion-beam64_fusion-alpha0.5``, ``int8``), so that an evaluation with other settings keeps the files of the
    first; a test on another corpus (``--corpus``) is named by that corpus's folder first (``corpus-librivox``).
    A model of another run than the config's ``out`` (``--model``) may be tested with several configs (their
    corpora give other test rows and known words), so its files go to a subfolder named by the config file first
    (``hyps/model/asr_base/eval-utts100``)."""
    from zipper.recipe import _number, hyps_dir_of

    changed = [f"{name.replace('_', '-')}{_number(getattr(cfg, name))}" for name in _HYPS_SETTINGS
               if getattr(cfg, name) != getattr(trained, name)] + (["int8"] if int8 else [])
    if corpus:
        changed.insert(0, f"corpus-{Path(corpus).resolve().name}")
    own = hyps_dir_of(model_dir)  # the training run's test writes here
    if model_dir.resolve().parent != Path(cfg.out).resolve():
        own = own / Path(config).stem
    return own / "_".join(changed) if changed else own


def cmd_towers(a) -> int:
    from towers.registry import list_towers, resolve

    for name in list_towers():
        try:
            entry = resolve(name)
            print(f"{name:16s} {entry.modality:7s} {entry.description or entry.path}")
        except LookupError as e:
            print(f"{name:16s} (not installed: {e})")
    return 0


def cmd_data_build(a) -> int:
    from towers.corpus import run_build

    return run_build(a)


def cmd_data_import(a) -> int:
    from towers.corpus_import import run_import

    return run_import(a)


def cmd_data_pack(a) -> int:
    from zipper.data import pack_units

    rep = pack_units(a.configs, a.out, overwrite=a.overwrite)
    print(f"[zipper] {rep['out']}: {rep['bytes'] / 2**20:.1f} MiB, {len(rep['files'])} files")
    for f in rep["files"]:
        print(f"  {f}")
    return 0


def cmd_codec_roundtrip(a) -> int:
    from towers.audio import load_audio, save_audio
    from towers.codec import load_codec

    out = _check_output(a.output, a.overwrite)
    codec = load_codec(a.codec)
    wave, sr = load_audio(a.audio, target_sr=codec.sample_rate, max_seconds=a.max_seconds)
    units = codec.encode(wave, sr)
    rebuilt, rate = codec.decode(units)
    save_audio(out, rebuilt.numpy(), rate, overwrite=a.overwrite)
    print(f"{a.audio}: {len(wave) / sr:.2f} s -> {len(units)} units ({len(units) / (len(wave) / sr):.1f}/s, "
          f"vocabulary {codec.vocab_size}) -> {out}")
    return 0


def cmd_demo(a) -> int:
    from zipper.demo import run_demo

    return run_demo(out=a.out, minutes=a.minutes)


def _fusion_weights(a) -> dict[str, float]:
    """--fusion-alpha / --fusion-beta as given (None: the config's, or zipper.ctc_beam's defaults)."""
    return {k: v for k, v in (("alpha", a.fusion_alpha), ("beta", a.fusion_beta)) if v is not None}


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _weight(text: str) -> float:
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


_TOWER_HELP = ("MODALITY=TOWER: the zip reads this tower (a registered name or a path) in place of the one it was "
               "trained with, the zip's own weights unchanged: e.g. text=DIR, a text tower adapted to a domain (an "
               "adapt_text recipe's <out>/tower); repeatable")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zipper", description="Zip pretrained unimodal decoders (text + speech).")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="end-to-end demo on the built-in towers and data (CPU, ~15 min)")
    d.add_argument("--out", default="runs/demo", help="working directory (reused: cached stages are skipped)")
    d.add_argument("--minutes", type=float, default=5.0, help="training time budget for the zip, in minutes")
    d.set_defaults(fn=cmd_demo)

    t = sub.add_parser("transcribe", help="speech -> text with a trained ASR (or joint) zip")
    t.add_argument("audio", nargs="+", help="audio files (wav/flac/ogg/mp3)")
    t.add_argument("--model", required=True, help="a trained model directory (e.g. runs/asr/model)")
    t.add_argument("--beams", type=_positive_int, help="beam size of the attention decoder (default 1: greedy; "
                                                        "not with --fusion)")
    t.add_argument("--max-seconds", type=float, default=600.0, help="refuse longer audio (default 600)")
    t.add_argument("--chunk-seconds", type=_weight, default=CHUNK_SECONDS,
                   help=f"cut longer audio at its pauses into pieces of at most this many seconds (default "
                        f"{CHUNK_SECONDS:g}), transcribed one by one: the zips are trained on single sentences; "
                        "0: transcribe each file whole")
    t.add_argument("--json", action="store_true",
                   help='one JSON line per file: {"audio", "text", "pieces": [{"start", "end", "text"}, ...]} '
                        "(seconds: where each piece was cut)")
    t.add_argument("--fusion", action="store_true",
                   help="decode with the character CTC head, the decoder scoring words (zipper/ctc_beam.py)")
    t.add_argument("--fusion-beam", type=_positive_int,
                   help=f"beam of the --fusion search (default {FUSION_BEAM}; larger: slower, and better on the dev "
                        "set it was tuned on)")
    t.add_argument("--fusion-alpha", type=_weight,
                   help=f"weight of the decoder's word scores in the --fusion search (default {FUSION_ALPHA})")
    t.add_argument("--fusion-beta", type=_finite, help=f"bonus per word in the --fusion search (default {FUSION_BETA})")
    t.add_argument("--fusion-words", metavar="FILE",
                   help="a word list (UTF-8, words split by spaces or lines, '#' comments): words the --fusion search "
                        "takes as known beside the text tower's whole-word tokens and the model directory's "
                        f"{KNOWN_WORDS_FILE} (its training text's words, written by the recipes): domain terms, names")
    t.add_argument("--tower", action="append", default=[], metavar="MODALITY=TOWER",
                   help=_TOWER_HELP)
    t.add_argument("--int8", action="store_true",
                   help="run the text decoder's linear layers in int8 (CPU; zipper/quantize.py): ~1.4x faster --fusion, "
                        "transcripts may differ (WER unchanged within its interval on 100 test utterances: "
                        "python -m benchmarks.int8)")
    t.set_defaults(fn=cmd_transcribe)

    s = sub.add_parser("speak", help="text -> speech with a trained TTS (or joint) zip")
    s.add_argument("text", help="the sentence to speak")
    s.add_argument("--model", required=True, help="a trained model directory (e.g. runs/tts/model)")
    s.add_argument("-o", "--output", required=True, help="output .wav path")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    s.add_argument("--max-chars", type=int, default=5000, help="refuse longer text (default 5000)")
    s.add_argument("--chunk-chars", type=_nonnegative_int, default=CHUNK_CHARS,
                   help=f"speak longer text in pieces of at most this many characters (default {CHUNK_CHARS}), whole "
                        "sentences while they fit, joined by short pauses: the zips are trained on single "
                        "sentences; 0: speak it whole")
    s.add_argument("--voice", default="", help="the training voice to speak in, for a model trained with a "
                                               "recipe's voice_prompt (e.g. piper-joe; default: the voice its "
                                               "recipe tested, from the model's voices.json)")
    s.add_argument("--tower", action="append", default=[], metavar="MODALITY=TOWER",
                   help=_TOWER_HELP)
    s.set_defaults(fn=cmd_speak)

    tr = sub.add_parser("train", help="run a recipe config (recipes/configs/*.json)")
    tr.add_argument("config", help="recipe JSON")
    tr.add_argument("--steps", type=int, help="override the number of steps")
    tr.add_argument("--out", help="override the output directory")
    tr.add_argument("--max-minutes", type=float, help="override the config's wall-time budget in minutes (0 = none; "
                                                      "a resumed run gets a fresh one)")
    tr.add_argument("--stop-step", type=int,
                    help="stop after this step as a time budget would, keeping the schedule of --steps: the step a "
                         "--max-minutes run reached on another machine (0 = none; resume without it to go on)")
    tr.add_argument("--seed", type=int, help="override the config's seed (weight init, training data order and subset)")
    tr.add_argument("--results-md", help="append the results row to this file instead of recipes/RESULTS.md "
                                         "('none': no row)")
    tr.set_defaults(fn=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a trained recipe on held-out voices (and real speech); every "
                                     "utterance's hypothesis goes to <run>/hyps/<model dir name>/<metric>.jsonl, "
                                     "in a subfolder named by the settings changed from the config's, e.g. "
                                     "eval-utts100/")
    ev.add_argument("config", help="the recipe JSON it was trained with")
    ev.add_argument("--model", help="model directory (default: <out>/model from the config)")
    ev.add_argument("--beams", type=int, nargs="+", help="beam sizes of the attention decoder, for a zipper ASR or "
                                                        "joint recipe (default: the config's eval_beams)")
    ev.add_argument("--fusion", action="store_true",
                    help="also decode by CTC prefix beam search + decoder word scores (the config's eval_fusion)")
    ev.add_argument("--fusion-beam", type=_positive_int, help="beam of that search, with --fusion (default: the "
                                                               "config's fusion_beam)")
    ev.add_argument("--fusion-alpha", type=_weight, help="weight of the decoder's word scores in that search (default: "
                                                         "the config's fusion_alpha)")
    ev.add_argument("--fusion-beta", type=_finite, help="bonus per word in that search (default: the config's "
                                                        "fusion_beta)")
    ev.add_argument("--eval-utts", type=_positive_int, metavar="N",
                    help="test on the first N held-out test utterances (default: the config's eval_utts)")
    ev.add_argument("--corpus", help="test on this corpus's test split (its first --eval-utts rows) instead of the "
                                     "config's, e.g. your recordings imported by `zipper data import --split test`; "
                                     "the fused search's known words stay the config corpus's training text")
    ev.add_argument("--int8", action="store_true",
                    help="run the text decoder's linear layers in int8 (CPU), as `zipper transcribe --int8`: its "
                         "metrics are named so (test_asr_fusion_int8) and its hypotheses go to a subfolder named so "
                         "(int8/, fusion-beam8_int8/)")
    ev.add_argument("--results-md", nargs="?", const=True, metavar="PATH",
                    help="add these test numbers to the training run's results.json and append its row to PATH "
                         "(default: recipes/RESULTS.md), for a recipe trained with eval_test false")
    ev.set_defaults(fn=cmd_eval)

    tw = sub.add_parser("towers", help="list registered towers")
    tw.set_defaults(fn=cmd_towers)

    c = sub.add_parser("codec", help="speech codec tools")
    csub = c.add_subparsers(dest="codec_command", required=True)
    rt = csub.add_parser("roundtrip", help="audio -> units -> audio, to hear what the codec keeps")
    rt.add_argument("audio", help="input audio file")
    rt.add_argument("-o", "--output", required=True, help="output .wav path")
    rt.add_argument("--codec", default="default",
                    help="a shipped codec name (default, whisper-joe, whisper-std-joe, whisper-proj-joe) or a codec directory (default: default)")
    rt.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    rt.add_argument("--max-seconds", type=float, default=60.0, help="refuse longer audio")
    rt.set_defaults(fn=cmd_codec_roundtrip)

    data = sub.add_parser("data", help="corpus tools")
    dsub = data.add_subparsers(dest="data_command", required=True)
    from towers.corpus import add_build_arguments

    b = dsub.add_parser("build", help="build, resume or verify an offline paired speech/text corpus")
    add_build_arguments(b)  # the same options as `python -m towers.corpus build`
    b.set_defaults(fn=cmd_data_build)
    from towers.corpus_import import add_import_arguments

    im = dsub.add_parser("import", help="your own recordings and transcripts as a corpus the recipes read (16 kHz "
                                        "WAV, held-out test and dev speakers)")
    add_import_arguments(im)
    im.set_defaults(fn=cmd_data_import)
    pk = dsub.add_parser("pack", help="the manifests and unit caches some recipes read, as one .tar.xz for a "
                                      "machine without the audio (e.g. a GPU machine)")
    pk.add_argument("configs", nargs="+", help="recipe JSONs (their corpus, codec and the rows they use)")
    pk.add_argument("-o", "--out", required=True, help="the .tar.xz to write; unpack it where the configs' "
                                                       "corpus paths are relative to")
    pk.add_argument("--overwrite", action="store_true", help="replace an existing pack")
    pk.set_defaults(fn=cmd_data_pack)
    return p


def _check_options(parser: argparse.ArgumentParser, a) -> None:
    """Options that would be accepted and then ignored are usage errors."""
    if a.command not in ("transcribe", "eval"):
        return
    for name in ("beam", "alpha", "beta"):
        if getattr(a, f"fusion_{name}") is not None and not a.fusion:
            parser.error(f"--fusion-{name} sets the {name} of the --fusion search; pass --fusion too")
    if a.command == "transcribe" and a.fusion_words and not a.fusion:
        parser.error("--fusion-words adds known words to the --fusion search; pass --fusion too")
    if a.command == "transcribe" and a.fusion and a.beams is not None:
        parser.error("--beams sets the attention decoder's beam, which --fusion does not use (see --fusion-beam)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_options(parser, args)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    from towers.audio import AudioError
    from towers.codec import CodecFormatError
    from towers.tower import TowerError
    from zipper.config import ConfigError
    from zipper.model import CheckpointError

    expected = (AudioError, CodecFormatError, TowerError, ConfigError, CheckpointError, FileNotFoundError,
                FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError, ValueError, RuntimeError)
    try:
        return args.fn(args)
    except expected as e:
        notes = "".join(f" ({n})" for n in getattr(e, "__notes__", []))  # e.g. which row a unit encoding failed on
        print(f"zipper: error: {e}{notes}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # zipper.train.TrainingInterrupted says where its checkpoint is
        notes = "".join(f" ({n})" for n in getattr(e, "__notes__", []))  # e.g. where an import's work is kept
        print(f"zipper: interrupted{': ' + str(e) if str(e) else ''}{notes}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

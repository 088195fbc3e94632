"""Paired speech/text examples for the recipes: audio -> units once (cached), text -> token ids, batches of Segments.

An example is ``{"id", "text", "voice", "units": LongTensor (U,)}``. Units of a corpus split are
computed once per codec and cached beside the corpus as safetensors (``units-<codec>/<split>.safetensors``,
or ``<split>-<key>.safetensors`` for a subset: ``load_split(..., keep=...)``), so every later run reads them
in milliseconds. The Whisper encoder states a zip with feature input reads (`attach_states`) are cached the same
way, on request (``states-<codec>/``). Each cache file (written since 2026-12-07) names the rows it holds, so a new
slice of a split (another seed's 10%, the first 500 test utterances) reads the rows other files of its folder hold
and encodes only the rest.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from towers.audio import replaced_atomically
from towers.speech_lm import pad_rows
from zipper.features import feature_rows
from zipper.model import Segment

TASKS = ("asr", "tts")  # asr: [speech] -> [text]; tts: [text] -> [speech]


def codec_id(codec) -> str:
    """A short id of what a codec's units depend on (its type and ``unit_encoder_state()``; not its
    decoder), naming its unit cache: a codec with a retrained decoder reuses the cached units."""
    config, tensors = codec.unit_encoder_state()
    h = hashlib.sha256(json.dumps([codec.codec_type, config], sort_keys=True, default=str).encode())
    for k, v in sorted(tensors.items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def load_split(corpus: str | Path, split: str, codec, progress: bool = True,
               keep: Callable[[list[dict]], list[dict]] | None = None, sources: list[Path] | None = None) -> list[dict]:
    """Rows of ``<corpus>/<split>.jsonl`` with their units, encoding (and caching) what is missing.

    ``keep`` selects the rows a run uses (a 1% sweep's training subset, the first N test utterances)
    *before* any audio is encoded: a complete cache of the split is read if there is one, otherwise
    only the kept rows are encoded and cached on their own (``<split>-<key>.safetensors``, keyed by
    their ids); rows that another cache file of the codec holds (an overlapping slice) are read from it, not
    encoded again. Encoding is the slow part (Whisper units: ~6 utterances a second on 2 cores); a stopped
    encoding keeps what it did (`_reused_or_encoded`), so the same call again encodes only the rest.
    ``sources``, if given, gets the cache file the rows came from (what `pack_units` sends elsewhere).
    """
    from towers.corpus import read_manifest

    corpus = Path(corpus)
    rows = read_manifest(corpus / f"{split}.jsonl")
    root = corpus.resolve()
    cache_dir = corpus / f"units-{codec_id(codec)}"
    sources = [] if sources is None else sources
    whole = cache_dir / f"{split}.safetensors"
    full = _read_unit_cache(whole, rows, root)
    if full is not None:
        sources.append(whole)
        return keep(full) if keep else full
    kept = rows if keep is None else keep(rows)
    if len(kept) == len(rows) and {r["id"] for r in kept} == {r["id"] for r in rows}:  # all of it, maybe reordered
        full = _encode_and_cache(rows, codec, whole, split, progress, root)
        sources.append(whole)
        return keep(full) if keep else full
    path = cache_dir / f"{split}-{_ids_key(kept, root)}.safetensors"
    old_name = cache_dir / f"{split}-{_ids_key(kept)}.safetensors"  # named before keys were corpus-relative
    for name in (path, old_name):
        cached = _read_unit_cache(name, kept, root)
        if cached is not None:
            sources.append(name)
            return cached
    sources.append(path)
    return _encode_and_cache(kept, codec, path, split, progress, root)


def _row_keys(rows: Sequence[dict], root: Path | None = None) -> list[str]:
    """Each row as a cache knows it: its id and audio file, the file named relative to the corpus folder ``root``
    when inside it, so that a corpus moved or copied elsewhere (onto a GPU machine, say) keeps its caches.
    Without ``root``: absolute paths, as the caches written before named them."""
    def where(p: str) -> str:
        if root is not None:
            rel = os.path.relpath(p, root)
            if not rel.startswith(os.pardir):
                return Path(rel).as_posix()
        return p

    return [f"{r['id']}\t{where(r['audio_filepath'])}" for r in rows]


def _ids_key(rows: Sequence[dict], root: Path | None = None) -> str:
    """The key of the rows a cache holds, in their order (`_row_keys`)."""
    return hashlib.sha256("\n".join(_row_keys(rows, root)).encode()).hexdigest()[:16]


def _audio_stamps(rows: Sequence[dict]) -> torch.Tensor:
    """(N, 2) each audio file's size and mtime in ns; -1 for a file that is gone (its cached units still serve)."""
    from towers.journal import file_stamp

    return torch.tensor([file_stamp(r["audio_filepath"]) or (-1, -1) for r in rows], dtype=torch.long).reshape(-1, 2)


def _read_unit_cache(path: Path, rows: list[dict], root: Path) -> list[dict] | None:
    """The rows with their cached units, or None if ``path`` holds no units of these rows (`_read_cache`)."""
    cached = _read_cache(path, rows, root)
    if cached is None or "units" not in cached:
        return None
    return [dict(r, units=u.clone()) for r, u in zip(rows, cached["units"])]


def _read_cache(path: Path, rows: Sequence[dict], root: Path) -> dict[str, list[torch.Tensor]] | None:
    """Each cached field (``units``, ``states``) as one tensor a row (views into one flat tensor), or None if
    ``path`` is missing, unreadable (it is then written again), caches other rows or not whole ones, or an audio
    file changed. The key, stamps and offsets are checked before the fields (gigabytes of states) are read."""
    from safetensors import SafetensorError, safe_open

    if not path.exists():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            if not _LAYOUT <= names or \
                    bytes(f.get_tensor("key").tolist()).decode() not in (_ids_key(rows, root), _ids_key(rows)):
                return None  # other rows, or a cache from before the audio files' stamps were kept
            stamps, offsets, fields = f.get_tensor("stamps"), f.get_tensor("offsets"), sorted(names - _LAYOUT)
            if not _whole_layout(len(rows), offsets, stamps, [f.get_slice(name).get_shape() for name in fields]):
                print(f"[zipper] cache {path} does not hold whole rows: encoding again", flush=True)
                return None
            now = _audio_stamps(rows)
            here = now[:, 0] >= 0
            if not torch.equal(now[here], stamps[here]):  # an audio file was rewritten since: encode again
                return None
            flat = {name: f.get_tensor(name) for name in fields}
    except (SafetensorError, OSError, ValueError) as e:
        print(f"[zipper] unreadable cache {path} ({e}): encoding again", flush=True)
        return None
    offsets = offsets.tolist()
    return {name: [x[a:b] for a, b in zip(offsets[:-1], offsets[1:])] for name, x in flat.items()}


_LAYOUT = {"key", "stamps", "offsets"}  # a cache file's tensors that are not fields


def _write_cache(path: Path, rows: Sequence[dict], root: Path, **fields: list[torch.Tensor]) -> None:
    """One safetensors file: each field's rows (equal lengths along dim 0 across fields) concatenated, their
    offsets, the rows' key and their audio files' stamps, and each row's `_row_keys` in the header (what `_reuse`
    finds them by); written whole or not at all (a temporary, renamed)."""
    from safetensors.torch import save_file

    first = next(iter(fields.values()))
    offsets = torch.tensor([0] + [len(x) for x in first]).cumsum(0)
    tensors = {name: torch.cat(xs) if xs else torch.zeros(0, dtype=torch.long) for name, xs in fields.items()}
    with replaced_atomically(path) as tmp:  # each writer its own temporary: two runs may cache one set at once
        save_file({**tensors, "offsets": offsets, "stamps": _audio_stamps(rows),
                   "key": torch.tensor(list(_ids_key(rows, root).encode()), dtype=torch.uint8)}, tmp,
                  metadata={"rows": json.dumps(_row_keys(rows, root))})


def _whole_layout(n: int, offsets: torch.Tensor, stamps: torch.Tensor, shapes: list[list[int]]) -> bool:
    """Whether a cache file's offsets and stamps fit the ``n`` rows it holds and its fields' lengths."""
    return (offsets.dtype == torch.long and tuple(offsets.shape) == (n + 1,) and tuple(stamps.shape) == (n, 2)
            and offsets[0].item() == 0 and bool((offsets.diff() >= 0).all())
            and all(len(shape) >= 1 and shape[0] == offsets[-1].item() for shape in shapes))


def _reuse(folder: Path, rows: Sequence[dict], root: Path, fields: Sequence[str]) -> dict[int, dict[str, torch.Tensor]]:
    """The rows (by index) that cache files in ``folder`` hold with ``fields``, each with its cached fields: the
    same id and audio file with the stamps it has now. A row whose audio file is gone (a corpus moved without its
    audio) takes the copy made from the file's latest version (the newest mtime among the stamps stored with it), as
    a copy of a version rewritten since may sit in another cache. Only those rows are read, not whole files. Files
    that do not name their rows (written before 2026-12-07) and unreadable ones are passed over."""
    import contextlib

    from safetensors import SafetensorError, safe_open

    want: dict[str, list[int]] = {}  # a row may come twice in a slice
    for i, k in enumerate(_row_keys(rows, root)):
        want.setdefault(k, []).append(i)
    now = _audio_stamps(rows)
    gone = {k for k, (i, *_) in want.items() if now[i, 0] < 0}
    best: dict[str, tuple[int, object, int, int]] = {}  # row -> (its stored mtime, open file, start, end)
    with contextlib.ExitStack() as files:  # kept open until read: a file renamed over meanwhile is not mixed in
        for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
            if len(best) == len(want) and not gone:
                break
            try:
                f = files.enter_context(safe_open(str(path), framework="pt"))
                held = json.loads((f.metadata() or {}).get("rows", "[]"))
                if not isinstance(held, list) or not set(fields) <= set(f.keys()):
                    continue
                hits = [(j, k) for j, k in enumerate(held) if isinstance(k, str) and k in want
                        and (k in gone or k not in best)]
                if not hits:
                    continue
                offsets, stamps = f.get_tensor("offsets"), f.get_tensor("stamps")
                if not _whole_layout(len(held), offsets, stamps, [f.get_slice(name).get_shape() for name in fields]):
                    continue  # a slice past a field's end would come back short, not fail: pass the file over
                offsets = offsets.tolist()
                for j, k in hits:
                    mtime = int(stamps[j, 1])
                    if (k in gone and (k not in best or mtime > best[k][0])) or \
                            (k not in gone and torch.equal(now[want[k][0]], stamps[j])):
                        best[k] = (mtime, f, offsets[j], offsets[j + 1])
            except (SafetensorError, OSError, ValueError, KeyError, IndexError):
                continue  # an unreadable or foreign file: its rows are encoded again
        found = {}
        for k, (_, f, a, b) in best.items():
            try:
                got = {name: f.get_slice(name)[a:b] for name in fields}
            except (SafetensorError, OSError):
                continue
            for n, i in enumerate(want[k]):
                found[i] = got if n == 0 else {name: x.clone() for name, x in got.items()}
    return found


PARTIAL_SECONDS = 120.0  # an encoding writes what it has every this many seconds: a stop loses at most that much
PARTIAL = "partial-"  # those files' names; the complete cache replaces them


def _reused_or_encoded(rows: Sequence[dict], root: Path | None, folder: Path | None, fields: Sequence[str],
                       encode: Callable[[dict], dict[str, torch.Tensor]], progress: bool, said: str,
                       **bar) -> list[dict[str, torch.Tensor]]:
    """Each row's ``fields``: read from the cache files in ``folder`` that hold it (`_reuse`; none without a
    folder), else ``encode(row)``, with a progress bar (``bar``: tqdm's arguments) over those encoded. ``said``
    names what was read, with two ``{}`` for how many of how many rows. The rows encoded are written to a
    ``partial-*`` cache file in ``folder`` every `PARTIAL_SECONDS` and when the encoding stops early (Ctrl-C, a
    row that fails), so the same call after a stop or a kill encodes only the rest; the caller's complete cache
    then removes them (`_drop_partials`)."""
    from tqdm.auto import tqdm

    got = {} if folder is None else _reuse(folder, rows, root, fields)
    if got and progress:
        print(f"[zipper] {said.format(len(got), len(rows))} read from other caches in {folder}", flush=True)
    todo = [i for i in range(len(rows)) if i not in got]
    pending, last = [], time.monotonic()

    def write_partial() -> None:
        nonlocal pending, last
        if folder is not None and pending:
            part = [rows[i] for i in pending]
            try:
                _write_cache(folder / f"{PARTIAL}{_ids_key(part, root)}.safetensors", part, root,
                             **{name: [got[i][name] for i in pending] for name in fields})
            except OSError:  # a read-only corpus, a full disk: the complete cache's write says so
                pass
        pending, last = [], time.monotonic()

    try:
        for i in tqdm(todo, disable=not progress or not todo, **bar):
            got[i] = encode(rows[i])
            pending.append(i)
            if time.monotonic() - last >= PARTIAL_SECONDS:
                write_partial()
    except BaseException:  # Ctrl-C, a row that cannot be encoded: what was encoded is kept for the next call
        write_partial()
        raise
    return [got[i] for i in range(len(rows))]


def _drop_partials(folder: Path, rows: Sequence[dict], root: Path | None) -> None:
    """Remove the ``partial-*`` cache files in ``folder`` whose rows are all in ``rows``, which a complete cache
    file now holds."""
    from safetensors import SafetensorError, safe_open

    keys = set(_row_keys(rows, root))
    for path in folder.glob(f"{PARTIAL}*.safetensors"):
        try:
            with safe_open(str(path), framework="pt") as f:
                held = json.loads((f.metadata() or {}).get("rows", "null"))
            if isinstance(held, list) and set(held) <= keys:
                path.unlink()
        except (SafetensorError, OSError, ValueError, TypeError):  # unreadable: `_reuse` passes it over
            continue


def _encode_and_cache(rows: list[dict], codec, path: Path, split: str, progress: bool, root: Path) -> list[dict]:
    from towers.audio import load_audio

    def encode(r: dict) -> dict[str, torch.Tensor]:
        try:
            wave, sr = load_audio(r["audio_filepath"], target_sr=codec.sample_rate)
            return {"units": codec.encode(wave, sr).long()}
        except Exception as e:  # say which row of which split (the audio errors name no file)
            e.add_note(f"while encoding {split} row {r['id']!r} ({r['audio_filepath']})")
            raise

    units = [got["units"] for got in _reused_or_encoded(rows, root, path.parent, ["units"], encode, progress,
                                                         f"units of {{}} of {{}} {split} utterances",
                                                         desc=f"encoding {split} audio -> units", unit="utt")]
    _write_cache(path, rows, root, units=units)
    _drop_partials(path.parent, rows, root)
    return [dict(r, units=u) for r, u in zip(rows, units)]


def corpus_words(corpus: str | Path) -> set[str]:
    """The words of a corpus's training text (``train.jsonl``, and ``unpaired_text.jsonl`` where there is one),
    spelled as the CTC head spells them (towers.scoring.normalize_text): known words for the fused search
    (zipper/ctc_beam.py), beside the text tower's whole-word tokens. Never the dev or test text."""
    from towers.corpus import read_manifest
    from towers.scoring import normalize_text

    corpus = Path(corpus)
    files = [corpus / "train.jsonl"] + [f for f in [corpus / "unpaired_text.jsonl"] if f.exists()]
    return {w for f in files for row in read_manifest(f, absolute=False, require=("text",))
            for w in normalize_text(row["text"]).split()}


def subset(examples: Sequence[dict], fraction: float, seed: int = 0) -> list[dict]:
    """A seeded random fraction of the examples (at least one): the limited-aligned-data sweeps."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n = max(1, round(len(examples) * fraction))
    return random.Random(seed).sample(list(examples), n)


def text_ids(tower, text: str, max_tokens: int | None = 128,
             start: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """start (default BOS; a model's ``start_ids("text")`` adds its forced prefix) + tokens + EOS, at most
    ``max_tokens`` ids in all (None: the whole text)."""
    start = [tower.bos_token_id] if start is None else [int(i) for i in start]
    ids = tower.tokenizer(text, add_special_tokens=False).input_ids
    if max_tokens is not None:
        ids = ids[: max_tokens - len(start) - 1]
    return torch.tensor([*start, *ids, tower.eos_token_id])


def speech_ids(tower, units: torch.Tensor, max_units: int = 1500,
               start: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """start (default BOS) + units (shifted past the specials) + EOS of a speech tower."""
    if start is None:
        return tower.tokenizer.encode(units[: max_units - 2])
    start = torch.as_tensor(start, dtype=torch.long)
    return torch.cat([start, tower.tokenizer.encode(units[: max_units - len(start) - 1], add_bos=False)])


VOICES_FILE = "voices.json"  # in a model directory: {"voice_prompt", "voices"} of a zip trained with voice prompts


def voice_text_prompt(voice: str) -> str:
    """The ``text_prompt`` that names a voice (a recipe's ``voice_prompt``): ``"piper-joe: "``."""
    return f"{voice}: "


def speaking_voice(model_dir: str | Path, voice: str = "") -> str:
    """The voice `zipper speak` names to a model: ``voice`` if the model was taught to name it (its `VOICES_FILE`,
    written by the recipes), or, without one, the voice its recipe tested in; ``""`` for a model trained without
    voice prompts. A voice the model does not know is a ValueError listing those it does."""
    path = Path(model_dir) / VOICES_FILE
    if not path.is_file():
        if voice:
            warnings.warn(f"{model_dir} names no voices ({VOICES_FILE}): it was trained without a recipe's "
                          f"voice_prompt, or before models recorded them, so --voice {voice} is not checked",
                          stacklevel=2)
        return voice
    try:
        known = json.loads(path.read_text())
    except ValueError:
        known = None
    if not (isinstance(known, dict) and isinstance(known.get("voices"), list) and known.get("voice_prompt")):
        raise ValueError(f"{path} is not a voices file, which the recipes write as "
                         '{"voice_prompt": NAME, "voices": [NAME, ...]}')
    if voice and voice not in known["voices"]:
        raise ValueError(f"{model_dir} was not trained to speak in voice {voice!r}; its voices: "
                         f"{', '.join(known['voices'])}")
    return voice or known["voice_prompt"]


def tts_text(example: dict) -> str:
    """What TTS reads for an example: its ``text_prompt`` (if any), then its text."""
    return example.get("text_prompt", "") + example["text"]


def reads_states(model) -> bool:
    """Whether a zip reads encoder states beside its speech units (ZipperConfig.feature_towers, zipper/features.py)."""
    return "speech" in getattr(getattr(model, "config", None), "feature_towers", [])


def speech_segment(model, units: Sequence[torch.Tensor], states: Sequence[torch.Tensor | None] | None = None,
                   loss: bool = False) -> Segment:
    """Speech units, one LongTensor per utterance -> one right-padded speech Segment. A source segment (no
    ``loss``) of a zip that reads states gets each utterance's encoder states as features; a loss segment (TTS's
    target) never does: its states are the answer."""
    sp, start = model.tower("speech"), model.start_ids("speech")
    ids, mask = pad_rows([speech_ids(sp, u, start=start) for u in units], sp.pad_token_id)
    if loss or not reads_states(model):
        return Segment("speech", ids, mask, loss=loss)
    if states is None or len(states) != len(units) or any(s is None for s in states):
        raise ValueError("this zip reads encoder states beside the speech units (feature_towers ['speech']): give "
                         "each utterance's states (zipper.data.attach_states)")
    feats, fmask = feature_rows(states, mask, len(start), model.config.feature_dim)
    return Segment("speech", ids, mask, features=feats, feature_mask=fmask)


def attach_states(examples: Sequence[dict], codec, progress: bool = True,
                  corpus: str | Path | None = None, sources: list[Path] | None = None) -> list[dict]:
    """Examples with their audio's encoder states (``"states"``, float16) and the units of those very states
    (``"units"``: one encoder run gives both, where a cache's units may come from a run with another thread
    count). Needs a codec over encoder states (``whisper_kmeans``) and each example's ``audio_filepath``.

    With ``corpus`` (the folder of the examples' manifest) both are cached there, as the units of `load_split`
    are (``states-<codec>/<key>.safetensors``, keyed by the examples' ids and audio files in any order, so that runs
    with other seeds, which shuffle the training rows otherwise, share one; ~175 kB an utterance, ~3.9 GB for the
    22,439 training utterances of the base corpus), and a later call with the same examples reads them instead of
    running the encoder (8 to 19 utterances a second on two cores, recipes/asr_states.py); a call with other
    examples reads those that other files there hold and encodes the rest (a stopped encoding's partial files
    too: the same call after Ctrl-C or a kill goes on where it stopped). ``sources``, if given,
    gets that cache file (what `pack_units` sends elsewhere). Examples that all have their states already are
    returned as they are (a ``speech_states`` recipe's test rows, which `zipper.recipe.read_split` read with them)."""
    from towers.audio import load_audio

    _check_states_codec(codec)
    if examples and all("states" in ex for ex in examples):  # attached already (`zipper.recipe.read_split`)
        return list(examples)
    path = root = None
    if corpus is not None and examples:
        root = Path(corpus).resolve()
        (path, canonical), *older = _states_cache_paths(examples, Path(corpus) / f"states-{codec_id(codec)}", root)
        for where, rows in [(path, canonical), *older]:
            cached = _read_cache(where, rows, root)
            if cached is not None and {"states", "units"} <= cached.keys():
                if progress:
                    print(f"[zipper] encoder states of {len(examples)} utterances read from {where}", flush=True)
                if sources is not None:
                    sources.append(where)
                at = {_row_order(r): i for i, r in enumerate(rows)}  # the file's order -> the examples' order
                return [{**ex, "states": cached["states"][i], "units": cached["units"][i]}
                        for ex, i in ((ex, at[_row_order(ex)]) for ex in examples)]
        if sources is not None:
            sources.append(path)

    def encode(ex: dict) -> dict[str, torch.Tensor]:
        states, units = states_and_units(codec, *load_audio(ex["audio_filepath"], target_sr=codec.sample_rate,
                                                            max_seconds=None))
        return {"states": states.half(), "units": units}

    got = _reused_or_encoded(examples, root, None if path is None else path.parent, ["states", "units"], encode,
                             progress, "encoder states of {} of {} utterances", desc="whisper encoder states",
                             mininterval=10)
    out = [{**ex, **fields} for ex, fields in zip(examples, got)]
    if path is not None:
        rows = sorted(out, key=_row_order)
        try:
            _write_cache(path, rows, root, states=[ex["states"] for ex in rows], units=[ex["units"] for ex in rows])
            _drop_partials(path.parent, rows, root)
        except OSError as e:  # a read-only corpus, a full disk: the states are here all the same
            print(f"[zipper] could not cache the encoder states in {path.parent} ({e})", flush=True)
    return out


def _row_order(row: dict) -> tuple[str, str]:
    return row["id"], row["audio_filepath"]


def _states_cache_paths(examples: Sequence[dict], folder: Path, root: Path) -> list[tuple[Path, list[dict]]]:
    """Where in ``folder`` the states of ``examples`` (of the corpus at ``root``) are cached, each file with the
    order of the rows it holds: first the file keyed by the rows sorted by id (what is written: a run with another
    seed, whose training rows come in another order, reads it), then the one keyed in the examples' own order
    (written before 2026-12-05)."""
    canonical = sorted(examples, key=_row_order)
    paths = [(folder / f"{_ids_key(canonical, root)}.safetensors", canonical),
             (folder / f"{_ids_key(examples, root)}.safetensors", list(examples))]
    return paths[:1] if paths[0][0] == paths[1][0] else paths  # examples in sorted order: one file, read once


def states_and_units(codec, wave, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip -> its encoder states ``(T, F)`` and their units ``(T,)``, from one encoder run."""
    _check_states_codec(codec)
    states = codec.states_batch([wave], sample_rate)[0]
    return states, codec.units_of_states(states).long()


def _check_states_codec(codec) -> None:
    if not hasattr(codec, "states_batch"):
        raise ValueError(f"a zip that reads encoder states needs a codec over them (whisper_kmeans); "
                         f"{type(codec).__name__} has none")


def make_segments(model, batch: Sequence[dict], task: str) -> list[Segment]:
    """ASR: [speech (input), text (loss)]; TTS: [text (input), speech (loss)]. For TTS an example's
    ``text_prompt`` (e.g. ``"piper-joe: "``, the recipes' ``voice_prompt``) is read before its text. A zip that
    reads states (`reads_states`) takes each ASR example's ``"states"`` (`attach_states`)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    tx, tx_start = model.tower("text"), model.start_ids("text")
    units = [ex["units"] for ex in batch]
    texts = [tts_text(ex) if task == "tts" else ex["text"] for ex in batch]
    text = pad_rows([text_ids(tx, t, start=tx_start) for t in texts], tx.pad_token_id)
    if task == "asr":
        return [speech_segment(model, units, [ex.get("states") for ex in batch]), Segment("text", *text, loss=True)]
    return [Segment("text", *text), speech_segment(model, units, loss=True)]


def batches(examples: Sequence[dict], batch_size: int, seed: int, start_step: int = 0) -> Iterator[list[dict]]:
    """An endless, seeded stream of batches, length-bucketed for less padding; resumable at a step.

    Epoch e is a fixed permutation from (seed, e), so the stream after ``start_step`` batches is
    the same whether or not the run was interrupted. The ``len % batch_size`` examples left over in an
    epoch are random ones, dropped before the length sort. (Earlier versions dropped them after it: the
    longest of the last chunk, never drawn. The stream for a given seed differs from theirs.)
    """
    if not examples:  # the stream would never yield
        raise ValueError("no examples to batch (an empty or fully filtered split)")
    per_epoch = max(1, len(examples) // batch_size)
    epoch, skip = divmod(start_step, per_epoch)
    while True:
        rng = random.Random(seed * 100_003 + epoch)
        order = list(range(len(examples)))
        rng.shuffle(order)
        order = order[:per_epoch * batch_size]  # the leftover: random examples, not the longest
        # sort within chunks of 50 batches by length, then shuffle the batches
        chunk = batch_size * 50
        order = [i for c in range(0, len(order), chunk)
                 for i in sorted(order[c:c + chunk], key=lambda i: len(examples[i]["units"]))]
        groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        rng.shuffle(groups)
        for g in groups[skip:]:
            yield [examples[i] for i in g]
        epoch, skip = epoch + 1, 0


LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def librivox_examples(codec) -> list[dict]:
    """The 5 real human read-speech clips of Debian's pocketsphinx-testdata, with units (none without a ``codec``)
    and transcripts."""
    import re

    from towers.audio import load_audio

    if not (LIBRIVOX / "transcription").exists():
        return []
    out = []
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        m = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
        if m:
            path = LIBRIVOX / f"{m.group(2)}.wav"
            row = {"id": m.group(2), "text": m.group(1), "audio_filepath": str(path), "voice": "librivox"}
            if codec is not None:
                row["units"] = codec.encode(*load_audio(path, target_sr=codec.sample_rate)).long()
            out.append(row)
    return out


def pack_units(configs: Sequence[str | Path], out: str | Path, progress: bool = True, overwrite: bool = False) -> dict:
    """``zipper data pack``: one ``.tar.xz`` with what the recipes ``configs`` read from their corpora on a
    machine without the audio (a GPU machine): each corpus's ``corpus.json``, the manifests of the splits
    they use and the unit caches of exactly the rows they use (a ``speech_states`` recipe's: the encoder states
    and their units, ~175 kB an utterance), encoding any that are missing first. Unpack it in the directory the
    configs' ``corpus`` paths are relative to. Audio files are not included."""
    import tarfile

    from towers.codec import load_codec
    from zipper.recipe import RecipeConfig, read_split, splits_used

    out, members, codecs = Path(out), {}, {}
    if not out.name.endswith(".tar.xz"):
        raise ValueError(f"the pack is written as a .tar.xz file; got {out}")
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent} is not a folder: pass a file in an existing folder")
    if out.exists() and not overwrite:  # checked before any encoding
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    for path in configs:
        cfg = RecipeConfig.from_json(path)
        corpus = Path(cfg.corpus)
        if os.path.relpath(corpus).startswith(os.pardir):
            raise ValueError(f"{path}: its corpus {corpus} is outside the current folder; run the pack from a folder "
                             "that holds it (the pack stores paths relative to that folder, as the configs name them)")
        if not (corpus / "corpus.json").is_file():
            raise FileNotFoundError(f"{path}: its corpus {corpus} is not built here (`zipper data build --size "
                                    f"{cfg.corpus_size} --out {corpus}`, or run the recipe once)")
        if cfg.codec not in codecs:  # configs of one corpus mostly share a codec: load it once
            codecs[cfg.codec] = load_codec(cfg.codec)
        codec = codecs[cfg.codec]
        members[corpus / "corpus.json"] = None
        for split, keep in splits_used(cfg, training=True).items():
            sources: list[Path] = []
            read_split(cfg, corpus, split, codec, keep, progress=progress, sources=sources)
            members.update(dict.fromkeys([corpus / f"{split}.jsonl", *sources]))
    unwritten = [str(m) for m in members if not Path(m).is_file()]
    if unwritten:  # attach_states goes on without its cache when it cannot write one; a pack cannot
        raise FileNotFoundError(f"could not write the caches {', '.join(unwritten)} (see above): a pack without "
                                "them would make the machine it goes to encode the audio, which it does not have")
    with replaced_atomically(out) as tmp, tarfile.open(tmp, "w:xz") as tar:  # a pack is complete or absent
        for member in members:
            tar.add(member, arcname=Path(os.path.relpath(member)).as_posix())
    return {"out": str(out), "bytes": out.stat().st_size, "files": [str(m) for m in members]}

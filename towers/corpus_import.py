"""Your own recordings as a corpus the recipes read (``zipper data import``).

A recipe reads a corpus directory (``"corpus"`` in its config): the layout of :mod:`towers.corpus`, whose
builder makes one from synthetic voices. This makes the same layout from audio you have, so that ``zipper
train`` / ``zipper eval`` run on it unchanged::

    zipper data import --folder /data/LibriSpeech/dev-clean --out data/my-corpus      # a folder of recordings
    zipper data import --manifest clips.tsv --audio-root clips/ --out data/my-corpus  # or a list of them

Sources:
- ``--manifest``: JSONL (NeMo style: ``audio_filepath``, ``text``), or CSV / TSV with a header (Common Voice's
  ``path`` / ``sentence`` / ``client_id`` work as they are). Audio column: one of :data:`AUDIO_KEYS`; text:
  :data:`TEXT_KEYS`; optional speaker (:data:`SPEAKER_KEYS`), ``id`` and ``split`` (train, dev, test,
  unpaired_speech). Relative audio paths are relative to ``--audio-root``, else to the manifest's folder.
- ``--folder``: every audio file below it (:data:`AUDIO_EXTS`) with its transcript from a same-named ``.txt`` or
  ``.lab`` beside it, a LibriSpeech ``*.trans.txt`` (``ID TEXT`` lines) or a CMU Sphinx ``*transcription`` file
  (``<s> TEXT </s> (ID)`` lines) in its folder. Its speaker is a LibriSpeech id's first field (``84`` of
  ``84-121123-0000``), else the first folder below ``--folder``, or ``--folder``'s own name for files directly in
  it. A recording without a transcript is unpaired speech (for pretraining the speech tower), and counted as such;
  one of a held-out (dev or test) speaker is left out (named in ``failed``): it would train the speech tower on
  the voices it is tested on.

Splits, as the built corpora's: test and dev speakers are held out of training. Unless a row names its split, or
``--split`` puts every row in one (e.g. ``test``, to evaluate a trained zip on them), ``--test-speakers`` /
``--dev-speakers`` name them, or speakers are drawn (by ``--seed``) until each holds about ``--held-out / 2`` of
the utterances. With fewer than 3 speakers the utterances are drawn instead, and a warning says the test voices
are then not held out.

Every recording is decoded, checked and written as 16 kHz mono PCM-16 WAV under ``audio/<split>/<speaker>/``.
One that fails (corrupt, empty, NaN, too long, unreadable; an empty transcript) is skipped with its reason in
``corpus.json``'s ``failed`` and counted in the report; nothing of the sources is changed. ``--workers N`` decodes
and resamples in N processes (at most one a core), in the rows' order, so the corpus is the one a single process
writes (``python -m benchmarks.data_import`` times it). The corpus is written to a temporary folder beside
``--out`` (``.<name>.importing``) and moved into place whole; an existing ``--out`` is replaced only with
``overwrite`` and only if it is a corpus (holds a ``corpus.json``). An interrupted import (Ctrl-C, a kill, a full
disk) keeps that folder and its journal, one line per recording done: the same command resumes there, from the
first recording whose source changed since (size or modification time), if any, and writes the corpus an
uninterrupted import writes; other rows (other sources, another ``--seed`` or ``--max-seconds``) start afresh.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import sys
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from towers.audio import DEFAULT_SR, AudioError, load_audio, save_audio
from towers.corpus import read_manifest
from towers.journal import file_stamp, read_journal, start_journal, write_entry

AUDIO_EXTS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
AUDIO_KEYS = ("audio_filepath", "audio", "path", "file", "filename", "wav")
TEXT_KEYS = ("text", "transcript", "transcription", "sentence", "normalized_text")
SPEAKER_KEYS = ("speaker", "speaker_id", "client_id", "voice")
SPLITS = ("train", "dev", "test", "unpaired_speech")
_LIBRISPEECH_ID = re.compile(r"^(\d+)-\d+-\d+$")  # speaker-chapter-utterance
_SPHINX = re.compile(r"^(?:<s>\s*)?(.*?)(?:\s*</s>)?\s*\(([^()]+)\)\s*$")  # <s> text </s> (id)
JOURNAL = "import-journal.jsonl"  # in the temporary folder: what an interrupted import had done


class CorpusImportError(ValueError):
    """Sources that give no corpus (no usable rows, an unknown column or split, a bad option)."""


def _pick(row: dict, keys: Sequence[str]) -> str | None:
    return next((k for k in keys if k in row), None)


def _safe(name: str) -> str:
    """A file-name-safe form of an id or speaker (a path separator or a space is not one)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"


def read_manifest_sources(path: str | os.PathLike, audio_root: str | os.PathLike | None = None) -> list[dict]:
    """The rows of a JSONL / CSV / TSV list of recordings: ``{"audio", "text", "speaker", "id", "split"}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    root = Path(audio_root) if audio_root is not None else path.parent
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            rows = read_manifest(path, absolute=False)  # a ValueError naming the line that is not a JSON object
        else:  # decoded from bytes, not read_text: a quoted "\r" in a field stays "\r"; the csv module reads the
            # text whole, not its lines, since a quoted field may hold a newline
            text = path.read_bytes().decode("utf-8-sig")
            rows = list(csv.DictReader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    except UnicodeDecodeError as e:
        raise CorpusImportError(f"manifest {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not rows:
        raise CorpusImportError(f"manifest {path} lists no recordings")
    audio_key, text_key = _pick(rows[0], AUDIO_KEYS), _pick(rows[0], TEXT_KEYS)
    if audio_key is None:
        raise CorpusImportError(f"manifest {path}: no audio column; name it one of {', '.join(AUDIO_KEYS)} "
                                f"(its columns: {', '.join(rows[0])})")
    speaker_key = _pick(rows[0], SPEAKER_KEYS)
    out = []
    for row in rows:
        audio = str(row.get(audio_key) or "")
        text_value = row.get(text_key) if text_key else None
        out.append({"audio": str(root / audio) if audio else "",
                    "text": None if text_value is None else str(text_value),
                    "speaker": str(row.get(speaker_key) or "") if speaker_key else "",
                    "id": str(row.get("id") or Path(audio).stem), "split": str(row.get("split") or "") or None})
    return out


def _folder_transcripts(files: Sequence[Path]) -> dict[Path, tuple[str, str | None]]:
    """(transcript, speaker or None) by audio path without extension, from the ``*.trans.txt`` (LibriSpeech: the
    speaker is the id's first field) and ``*transcription`` files among ``files``."""
    found: dict[Path, tuple[str, str | None]] = {}
    for f in files:
        if f.name.endswith(".trans.txt"):  # LibriSpeech: "84-121123-0000 GO DO YOU HEAR"
            for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                utt, _, text = line.strip().partition(" ")
                if utt:
                    found[f.parent / utt] = (text, utt.split("-")[0] if "-" in utt else None)
        elif f.name.endswith("transcription"):  # CMU Sphinx: "<s> text </s> (utt)"
            for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
                m = _SPHINX.match(line.strip())
                if m:
                    found[f.parent / m.group(2)] = (m.group(1), None)
    return found


def read_folder_sources(folder: str | os.PathLike) -> list[dict]:
    """Every recording below ``folder``, with its transcript (None: none found) and speaker."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.is_file())  # one walk of the tree, for both
    listed = _folder_transcripts(files)
    out = []
    for f in (p for p in files if p.suffix.lower() in AUDIO_EXTS):
        text, speaker = listed.get(f.with_suffix(""), (None, None))
        for ext in (".txt", ".lab"):
            if text is None and f.with_suffix(ext).is_file():
                text = f.with_suffix(ext).read_text(encoding="utf-8", errors="replace")
        rel = f.relative_to(folder)
        libri = _LIBRISPEECH_ID.match(f.stem)  # an untranscribed LibriSpeech file names its speaker too
        speaker = speaker or (libri.group(1) if libri else rel.parts[0] if len(rel.parts) > 1 else folder.resolve().name)
        out.append({"audio": str(f), "text": text, "speaker": speaker, "id": f.stem, "split": None})
    if not out:
        raise CorpusImportError(f"folder {folder} holds no audio files ({', '.join(AUDIO_EXTS)})")
    return out


def _draw(key: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def assign_splits(rows: list[dict], split: str | None = None, test_speakers: Sequence[str] = (),
                  dev_speakers: Sequence[str] = (), held_out: float = 0.1, seed: int = 0) -> list[str]:
    """Each row's split (see the module doc); rows without text are ``unpaired_speech``, but for those of a dev or
    test speaker with no training recording: they would train the speech tower (``pretrain_speech``) on the voices
    it is tested on, so their split is None (not imported, named in ``failed``). Returns warnings."""
    notes = _assign_splits(rows, split, test_speakers, dev_speakers, held_out, seed)
    held = ({r["speaker"] for r in rows if r["split"] in ("dev", "test")}
            - {r["speaker"] for r in rows if r["split"] == "train"})
    for r in rows:
        if r["split"] == "unpaired_speech" and r["speaker"] in held:
            r["split"] = None
    return notes


def _assign_splits(rows: list[dict], split: str | None, test_speakers: Sequence[str], dev_speakers: Sequence[str],
                   held_out: float, seed: int) -> list[str]:
    for name, value in (("--split", split), *(("a row's split", r["split"]) for r in rows if r["split"])):
        if value is not None and value not in SPLITS:
            raise CorpusImportError(f"{name} must be one of {', '.join(SPLITS)}, got {value!r}")
    if not 0 <= held_out < 1:
        raise CorpusImportError(f"held_out must be in [0, 1), got {held_out}")
    both = set(test_speakers) & set(dev_speakers)
    if both:
        raise CorpusImportError(f"speakers both in test and dev: {sorted(both)}")
    notes = []
    todo = []
    for r in rows:
        if r["text"] is None:
            r["split"] = "unpaired_speech"
        elif split or r["split"]:
            r["split"] = split or r["split"]
        elif r["speaker"] in test_speakers or r["speaker"] in dev_speakers:
            r["split"] = "test" if r["speaker"] in test_speakers else "dev"
        else:
            todo.append(r)
    missing = sorted((set(test_speakers) | set(dev_speakers)) - {r["speaker"] for r in rows})
    if missing:
        raise CorpusImportError(f"no recordings of the held-out speakers {missing}")
    if not todo:
        return notes
    if test_speakers or dev_speakers or held_out == 0:
        for r in todo:
            r["split"] = "train"
        return notes
    per_speaker = Counter(r["speaker"] for r in todo)
    goal = held_out / 2 * len(todo)
    if len(per_speaker) >= 3:  # whole speakers, drawn, until test then dev hold about held_out / 2 each, one at
        # least, and one speaker at least stays for training
        chosen: dict[str, str] = {}
        order = sorted(per_speaker, key=lambda s: _draw(s, seed))
        for name in ("test", "dev"):
            n = 0
            while len(order) > (2 if name == "test" else 1) and (n == 0 or n + per_speaker[order[0]] / 2 <= goal):
                n += per_speaker[order[0]]
                chosen[order.pop(0)] = name
        for r in todo:
            r["split"] = chosen.get(r["speaker"], "train")
    else:
        notes.append(f"{len(per_speaker)} speaker(s): dev and test utterances are drawn from their recordings, so "
                     "the test voices are also training voices (name held-out speakers with --test-speakers when "
                     "there are more)")
        for i, r in enumerate(sorted(todo, key=lambda r: _draw(r["audio"], seed))):
            r["split"] = "test" if i < round(goal) else "dev" if i < 2 * round(goal) else "train"
    return notes


def _one_thread() -> None:  # a worker process's torch: one thread each, the processes share the cores
    import torch

    torch.set_num_threads(1)


def _load_row(job: tuple[str | None, float]):
    """One recording decoded, checked and resampled to 16 kHz (in a worker process with ``--workers``):
    ``(wave, sr)``, the reason it cannot be imported (a str), or None for a row without audio to read (its
    transcript is empty)."""
    path, max_seconds = job
    if path is None:
        return None
    try:
        if not path or not Path(path).is_file():
            raise AudioError(f"{path or 'an empty audio path'}: no such file")
        return load_audio(path, target_sr=DEFAULT_SR, max_seconds=max_seconds)
    except (AudioError, OSError) as e:
        return str(e)


def _journal(tmp: Path, plan: str, jobs: list) -> list[dict]:
    """The journal entries in ``tmp`` of an interrupted import of the same plan, in the rows' order, up to the first
    whose source changed or whose WAV is missing; WAVs past them are removed (a new plan empties ``tmp``)."""
    def whole(i: int, e: dict) -> bool:
        return (e["i"] == i < len(jobs) and e["stamp"] == file_stamp(jobs[i][0])
                and ("row" not in e or (tmp / e["row"]["audio_filepath"]).is_file()))

    entries = read_journal(tmp / JOURNAL, plan, whole)
    if entries is None and any(tmp.iterdir()):
        print(f"[zipper] {tmp} holds an interrupted import of other recordings or settings: starting afresh",
              file=sys.stderr)
        for child in tmp.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    kept = {e["row"]["audio_filepath"] for e in entries or [] if "row" in e}
    for f in sorted((tmp / "audio").rglob("*")):  # a WAV past the last entry kept, or one a kill cut short
        if f.is_file() and f.relative_to(tmp).as_posix() not in kept:
            f.unlink()
    return entries or []


def import_corpus(out: str | os.PathLike, rows: list[dict], unpaired_text: Sequence[str] = (),
                  max_seconds: float = 60.0, overwrite: bool = False, progress: bool = True,
                  source: str = "", notes: Sequence[str] = (), workers: int = 1) -> dict:
    """Write ``rows`` (split by :func:`assign_splits`) as a corpus directory ``out``; returns ``corpus.json``.
    ``workers`` > 1 decodes and resamples the recordings in that many processes (at most one a core and one per 8
    recordings); the corpus is the same."""
    if workers < 1:
        raise CorpusImportError(f"workers must be >= 1, got {workers}")
    from tqdm.auto import tqdm

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
        if not (out / "corpus.json").is_file():
            raise FileExistsError(f"{out} exists and is not a corpus (no corpus.json): not replacing it")
    tmp = out.parent / f".{out.name}.importing"  # a fixed name: an interrupted import resumes from it
    started = time.time()
    manifests: dict[str, list[dict]] = {s: [] for s in SPLITS}
    failed, ids = [], set()
    texts = [" ".join((r["text"] or "").split()) for r in rows]
    jobs = [(None if r["split"] is None or r["text"] is not None and not t else r["audio"], max_seconds)
            for r, t in zip(rows, texts)]
    plan = hashlib.sha256(json.dumps([[r["audio"], t, r["speaker"], r["id"], r["split"], j[0]] for r, t, j in
                                      zip(rows, texts, jobs)] + [max_seconds]).encode()).hexdigest()
    tmp.mkdir(parents=True, exist_ok=True)
    lock = os.open(tmp, os.O_RDONLY)  # held until the end: one import at a time writes this folder
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise CorpusImportError(f"another import is writing {out} now (into {tmp})") from None
    pool = journal = None
    done = 0

    def take(entry: dict) -> None:  # one recording's outcome, journaled or new, into the corpus
        nonlocal done
        if "row" in entry:
            manifests[entry["row"]["split"]].append(entry["row"])
            ids.add(entry["row"]["id"])
        else:
            failed.append(entry["failed"])
        done += 1

    try:
        entries = _journal(tmp, plan, jobs)
        for e in entries:  # what an interrupted import of these rows had done
            take(e)
        resumed = done
        if resumed:
            print(f"[zipper] resuming the interrupted import in {tmp}: {resumed} of {len(rows)} recordings done",
                  file=sys.stderr)
        journal = start_journal(tmp / JOURNAL, plan, entries)
        cores = os.cpu_count() or 1
        if workers > cores:
            warnings.warn(f"{workers} workers on {cores} cores: using {cores}", stacklevel=2)
        workers = min(workers, cores, max(1, sum(j[0] is not None for j in jobs[done:]) // 8))  # none idle
        if workers > 1:  # spawned, not forked: a forked torch can hang on its thread pools
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_one_thread)
            loaded = pool.map(_load_row, jobs[done:], chunksize=8)  # in the rows' order: the serial corpus
        else:
            loaded = map(_load_row, jobs[done:])
        for r, text, job, got in tqdm(zip(rows[done:], texts[done:], jobs[done:], loaded), total=len(rows),
                                      initial=done, desc="importing", unit="file", disable=not progress):
            entry = {"i": done, "stamp": file_stamp(job[0])}
            if got is None:
                entry["failed"] = {"audio": r["audio"], "error": "empty transcript" if r["split"] else
                                   f"untranscribed recording of held-out speaker {r['speaker']}: not unpaired "
                                   "speech, which trains the speech tower"}
            elif isinstance(got, str):  # this recording is skipped, the others imported
                entry["failed"] = {"audio": r["audio"], "error": got}
            else:
                wave, sr = got
                speaker = _safe(r["speaker"] or "unknown")
                uid = _safe(r["id"])
                if uid in ids:  # two files of one name: keep both, told apart by their path
                    uid = f"{uid}-{hashlib.sha256(r['audio'].encode()).hexdigest()[:8]}"
                ids.add(uid)
                rel = Path("audio") / r["split"] / speaker / f"{uid}.wav"
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # a multichannel file's downmix was warned about at load
                    save_audio(tmp / rel, wave, sr)
                row = {"audio_filepath": rel.as_posix(), "duration": round(len(wave) / sr, 3)}
                if r["split"] != "unpaired_speech":
                    row["text"] = text
                entry["row"] = {**row, "voice": speaker, "speaker": speaker, "split": r["split"], "augment": None,
                                "id": uid, "source": r["audio"]}
            write_entry(journal, entry)  # after its WAV: a journaled row is whole
            take(entry)
        if not any(manifests[s] for s in ("train", "dev", "test")):
            why = f"; {len(failed)} failed, e.g. {failed[0]['audio']}: {failed[0]['error']}" if failed else ""
            raise CorpusImportError(
                f"no recording with a transcript could be imported{why} (a manifest's text column is one of "
                f"{', '.join(TEXT_KEYS)}; a folder's transcripts are .txt / .lab files beside the recordings, "
                "*.trans.txt or *transcription files)")
        journal.close()
        for split, split_rows in manifests.items():
            (tmp / f"{split}.jsonl").write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in split_rows))
        sentences = [" ".join(t.split()) for t in unpaired_text]
        (tmp / "unpaired_text.jsonl").write_text(
            "".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in sentences if t))
        info = {"version": 1, "size": "imported", "source": source, "sample_rate": DEFAULT_SR,
                "voices": {s: sorted({x["voice"] for x in m}) for s, m in manifests.items()},
                "speakers": {s: sorted({x["speaker"] for x in m}) for s, m in manifests.items()},
                "hours_by_split": {s: round(sum(x["duration"] for x in m) / 3600, 4) for s, m in manifests.items()},
                "count_by_split": {**{s: len(m) for s, m in manifests.items()},
                                   "unpaired_text": sum(1 for t in sentences if t)},
                "seconds": round(time.time() - started, 1), "notes": list(notes), "failed": failed}
        if resumed:
            info["resumed"] = resumed  # recordings imported by the interrupted run(s), not read again
        (tmp / "corpus.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
        (tmp / JOURNAL).unlink()  # the corpus is whole: a kill from here on leaves nothing to resume
        old = out.parent / f".{out.name}.replaced-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    except CorpusImportError:  # nothing to resume: the sources give no corpus
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except BaseException as e:  # Ctrl-C, a full disk (or a kill, which runs nothing): the work done is kept
        if tmp.is_dir():
            e.add_note(f"{done} of {len(rows)} recordings done are kept in {tmp}: the same command resumes there")
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        if journal is not None:
            journal.close()
        os.close(lock)
    return info


def add_import_arguments(p) -> None:
    """The options of ``zipper data import``."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--folder", help="a folder of recordings with their transcripts (.txt / .lab beside each, "
                                      "LibriSpeech *.trans.txt or Sphinx *transcription files)")
    src.add_argument("--manifest", help="a JSONL, CSV or TSV list of recordings (audio path and text columns)")
    p.add_argument("--out", required=True, help="the corpus directory to write (recipes read it as \"corpus\")")
    p.add_argument("--audio-root", help="the folder a manifest's relative audio paths are relative to "
                                        "(default: the manifest's)")
    p.add_argument("--split", choices=SPLITS, help="put every recording with a transcript in this split, e.g. test "
                                                  "to evaluate a trained zip on them")
    p.add_argument("--test-speakers", nargs="+", default=[], help="speakers held out for the test split")
    p.add_argument("--dev-speakers", nargs="+", default=[], help="speakers held out for the dev split")
    p.add_argument("--held-out", type=float, default=0.1,
                   help="share of the utterances drawn (by whole speakers) for dev and test together (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="the draw of held-out speakers (default 0)")
    p.add_argument("--unpaired-text", help="a text file, one sentence a line, for the corpus's unpaired text")
    p.add_argument("--max-seconds", type=float, default=60.0,
                   help="skip longer recordings (default 60; the recipes train on single utterances)")
    p.add_argument("--workers", type=int, default=1,
                   help="decode and resample the recordings in this many processes (default 1; at most one a core; "
                        "the corpus is the same for any number)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing corpus at --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_import(a) -> int:
    """``zipper data import`` with parsed :func:`add_import_arguments` options; prints the split counts."""
    rows = read_manifest_sources(a.manifest, a.audio_root) if a.manifest else read_folder_sources(a.folder)
    notes = assign_splits(rows, split=a.split, test_speakers=a.test_speakers, dev_speakers=a.dev_speakers,
                          held_out=a.held_out, seed=a.seed)
    for n in notes:
        print(f"warning: {n}", file=sys.stderr)
    text = Path(a.unpaired_text).read_text(encoding="utf-8").splitlines() if a.unpaired_text else []
    info = import_corpus(a.out, rows, unpaired_text=text, max_seconds=a.max_seconds, overwrite=a.overwrite,
                         progress=not a.no_progress, source=str(a.manifest or a.folder), notes=notes,
                         workers=a.workers)
    for split in SPLITS:
        print(f"{split:16s} {info['count_by_split'][split]:6d} utterances {info['hours_by_split'][split]:8.3f} h  "
              f"{len(info['speakers'][split])} speakers")
    print(f"{'unpaired_text':16s} {info['count_by_split']['unpaired_text']:6d} sentences; written to {a.out} in "
          f"{info['seconds']:.1f} s")
    if info["failed"]:
        f = info["failed"][0]
        print(f"warning: {len(info['failed'])} recording(s) skipped, e.g. {f['audio']}: {f['error']} (all in "
              f"{Path(a.out) / 'corpus.json'})", file=sys.stderr)
    return 0

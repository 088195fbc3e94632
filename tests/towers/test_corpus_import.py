"""`zipper data import`: real recordings (the LibriVox clips of pocketsphinx-testdata) laid out as a user's
corpus would be, imported into the layout the recipes read; held-out speakers, bad files skipped with their
reason, sources untouched, an existing corpus replaced only whole."""
from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import example, given, settings
from hypothesis import strategies as st

from towers import corpus_import
from towers.audio import load_audio
from towers.corpus import read_manifest
from towers.corpus_import import (
    CorpusImportError,
    assign_splits,
    import_corpus,
    read_folder_sources,
    read_manifest_sources,
)
from zipper.cli import main as cli
from zipper.data import LIBRIVOX, librivox_examples

pytestmark = pytest.mark.skipif(not (LIBRIVOX / "transcription").exists(), reason="pocketsphinx-testdata missing")


@pytest.fixture(scope="module")
def clips():
    """The 5 real LibriVox clips (16 kHz mono) with their transcripts: [(wave, text)]."""
    return [(load_audio(r["audio_filepath"])[0], r["text"]) for r in librivox_examples(None)]


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def librispeech_tree(root: Path, clips, speakers: int = 4) -> Path:
    """A LibriSpeech-like folder: dev-clean/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac + one *.trans.txt per
    chapter."""
    for s in range(speakers):
        chapter = root / "dev-clean" / f"{100 + s}" / "7"
        chapter.mkdir(parents=True)
        lines = []
        for n, (wave, text) in enumerate(clips):
            utt = f"{100 + s}-7-{n:04d}"
            sf.write(chapter / f"{utt}.flac", wave, 16_000)
            lines.append(f"{utt} {text.upper()}")
        (chapter / f"{100 + s}-7.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def odd_speaker(src: Path, clips) -> None:
    """A fifth speaker's recordings in ``src``: each a way to go wrong, or a format to convert."""
    odd = src / "odd"
    odd.mkdir()
    wave, text = clips[1]
    stereo_8k = np.stack([wave[::2], wave[::2]], axis=1)  # 8 kHz, two channels
    sf.write(odd / "stereo8k.wav", stereo_8k, 8_000)
    (odd / "stereo8k.txt").write_text(text + "\n")
    sf.write(odd / "nan.wav", np.full(1600, np.nan, dtype=np.float32), 16_000, subtype="FLOAT")
    (odd / "nan.txt").write_text("not a number")
    (odd / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    (odd / "corrupt.txt").write_text("broken file")
    sf.write(odd / "blank.wav", wave, 16_000)
    (odd / "blank.txt").write_text("   \n")
    sf.write(odd / "untranscribed.wav", wave, 16_000)  # no transcript: unpaired speech


def test_a_librispeech_folder_imports_with_whole_speakers_held_out_and_bad_files_skipped(tmp_path, clips):
    src = librispeech_tree(tmp_path / "src", clips, speakers=4)
    odd_speaker(src, clips)
    wave = clips[1][0]
    before = digest(src)

    rows = read_folder_sources(src)
    assert len(rows) == 4 * 5 + 5
    notes = assign_splits(rows, held_out=0.4, seed=0)
    assert notes == []
    info = import_corpus(tmp_path / "corpus", rows, unpaired_text=["One sentence.", "", "Another  one."],
                         progress=False)
    out = tmp_path / "corpus"
    assert digest(src) == before  # the sources are read, never changed
    assert not list(tmp_path.glob(".corpus.*"))  # no temporary left
    splits = {s: read_manifest(out / f"{s}.jsonl") for s in ("train", "dev", "test", "unpaired_speech")}
    speakers = {s: {r["speaker"] for r in rs} for s, rs in splits.items()}
    # whole speakers: no test or dev speaker in training, each held-out split about 20% of the utterances
    assert speakers["test"] and speakers["dev"] and speakers["train"]
    assert not speakers["test"] & speakers["train"] and not speakers["dev"] & speakers["train"]
    assert not speakers["test"] & speakers["dev"]
    assert {r["error"].split()[0] for r in info["failed"]} >= {"empty"} and len(info["failed"]) == 3
    failed = {Path(f["audio"]).name: f["error"] for f in info["failed"]}
    assert set(failed) == {"nan.wav", "corrupt.wav", "blank.wav"}
    assert "non-finite" in failed["nan.wav"].lower() or "nan" in failed["nan.wav"].lower()
    assert failed["blank.wav"] == "empty transcript"
    assert [r["id"] for r in splits["unpaired_speech"]] == ["untranscribed"] and "text" not in splits["unpaired_speech"][0]
    paired = [r for s in ("train", "dev", "test") for r in splits[s]]
    assert len(paired) == 4 * 5 + 1
    by_id = {r["id"]: r for r in paired}
    assert by_id["100-7-0001"]["text"] == clips[1][1].upper()
    for r in paired:  # every file 16 kHz mono, its duration as written
        data, sr = sf.read(r["audio_filepath"])
        assert sr == 16_000 and data.ndim == 1 and abs(len(data) / sr - r["duration"]) < 1e-3
    assert set().union(*speakers.values()) == {"100", "101", "102", "103", "odd"}  # LibriSpeech ids name speakers
    original = load_audio(src / "dev-clean" / "100" / "7" / "100-7-0000.flac")[0]
    copied = load_audio(by_id["100-7-0000"]["audio_filepath"])[0]
    assert np.array_equal(original, copied)  # 16 kHz PCM-16 in, the same samples out
    assert by_id["stereo8k"]["duration"] == pytest.approx(len(wave[::2]) / 8_000, abs=1e-3)
    assert info["count_by_split"] == {**{s: len(rs) for s, rs in splits.items()}, "unpaired_text": 2}
    assert json.loads((out / "corpus.json").read_text()) == info
    assert [json.loads(x)["text"] for x in (out / "unpaired_text.jsonl").read_text().splitlines()] == \
        ["One sentence.", "Another one."]


def test_workers_write_the_corpus_one_process_writes(tmp_path, clips):
    src = librispeech_tree(tmp_path / "src", clips, speakers=3)
    odd_speaker(src, clips)  # failures and conversions in the workers too
    corpora = []
    for workers in (1, 2, 1000):  # 1000: more than the cores, warned about and capped
        rows = read_folder_sources(src)
        assign_splits(rows, held_out=0.4, seed=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = import_corpus(tmp_path / f"w{workers}", rows, progress=False, workers=workers)
        assert any("cores: using" in str(w.message) for w in caught) == (workers == 1000)
        files = digest(tmp_path / f"w{workers}")
        corpora.append(({k: v for k, v in files.items() if k != "corpus.json"}, {**info, "seconds": None}))
    assert len(corpora[0][1]["failed"]) == 3 and len(corpora[0][0]) > 16
    assert corpora[1] == corpora[0] and corpora[2] == corpora[0]
    with pytest.raises(CorpusImportError, match="workers"):
        import_corpus(tmp_path / "w0", read_folder_sources(src), workers=0)
    assert not (tmp_path / "w0").exists()


def interrupt_after(monkeypatch, n: int | None) -> list:
    """Count this process's recording loads; the (n+1)-th is a Ctrl-C (None: never)."""
    calls = []
    load = corpus_import._load_row

    def counted(job):
        calls.append(job[0])
        if n is not None and len(calls) > n:
            raise KeyboardInterrupt
        return load(job)
    monkeypatch.setattr(corpus_import, "_load_row", counted)
    return calls


def test_an_interrupted_import_resumes_to_the_corpus_an_uninterrupted_one_writes(tmp_path, clips, monkeypatch,
                                                                                    capsys):
    src = librispeech_tree(tmp_path / "src", clips, speakers=4)
    odd_speaker(src, clips)  # failures are journaled and resumed too
    rows = len(read_folder_sources(src))

    def imported(out, *extra, stop=None, code=0):
        calls = [] if "--workers" in extra else interrupt_after(monkeypatch, stop)  # workers load by the module's
        args = ["data", "import", "--folder", str(src), "--out", str(out), "--held-out", "0.4", "--no-progress"]
        assert cli([*args, *extra]) == code
        monkeypatch.undo()
        return calls

    def corpus(out):
        info = json.loads((out / "corpus.json").read_text())
        return {k: v for k, v in digest(out).items() if k != "corpus.json"}, {**info, "seconds": None}, info

    imported(tmp_path / "ref")
    ref = corpus(tmp_path / "ref")[:2]
    out, tmp = tmp_path / "corpus", tmp_path / ".corpus.importing"
    imported(out, stop=8, code=130)  # Ctrl-C while loading the 9th recording
    err = capsys.readouterr().err
    assert f"8 of {rows} recordings done are kept in {tmp}: the same command resumes there" in err
    assert not out.exists() and (tmp / corpus_import.JOURNAL).is_file()
    with (tmp / corpus_import.JOURNAL).open("a") as f:
        f.write('{"i": 8, "sta')  # a line a kill cut short
    assert len(imported(out)) == rows - 8  # what was done is not read again
    assert f"8 of {rows} recordings done" in capsys.readouterr().err
    files, info, raw = corpus(out)
    assert raw["resumed"] == 8 and (files, {k: v for k, v in info.items() if k != "resumed"}) == ref
    assert not tmp.exists()

    # a source changed since the interruption is read again, from its row on; its old WAV is not kept
    imported(out, "--overwrite", stop=12, code=130)
    order = [r["audio"] for r in read_folder_sources(src)]
    changed = src / "dev-clean" / "100" / "7" / "100-7-0001.flac"
    assert order.index(str(changed)) < 12
    changed.write_bytes(b"fLaC broken since")
    assert len(imported(out, "--overwrite")) == rows - order.index(str(changed))
    imported(tmp_path / "ref2")
    assert corpus(out)[0] == corpus(tmp_path / "ref2")[0] != ref[0]

    # other settings start afresh; worker processes resume in order (2 cores here)
    imported(out, "--overwrite", stop=3, code=130)
    assert len(imported(out, "--overwrite", "--seed", "1", stop=None)) == rows
    assert "starting afresh" in capsys.readouterr().err
    imported(tmp_path / "ref3", "--seed", "1")
    assert corpus(out)[:2] == corpus(tmp_path / "ref3")[:2]
    imported(out, "--overwrite", stop=3, code=130)
    imported(out, "--overwrite", "--workers", "2")
    assert corpus(out)[0] == corpus(tmp_path / "ref2")[0]


def test_one_import_at_a_time_writes_a_corpus(tmp_path, clips):
    rows = read_folder_sources(librispeech_tree(tmp_path / "src", clips, speakers=1))
    assign_splits(rows, split="test")
    tmp = tmp_path / ".corpus.importing"
    tmp.mkdir()
    held = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a running import holds it
        with pytest.raises(CorpusImportError, match="another import is writing"):
            import_corpus(tmp_path / "corpus", rows, progress=False)
    finally:
        os.close(held)
    assert tmp.is_dir() and not (tmp_path / "corpus").exists()
    import_corpus(tmp_path / "corpus", rows, progress=False)
    assert (tmp_path / "corpus" / "corpus.json").is_file() and not tmp.exists()


def test_a_held_out_speakers_untranscribed_recordings_train_nothing(tmp_path, clips):
    """Unpaired speech trains the speech tower: a test speaker's untranscribed recordings are left out of it (and
    named), a training speaker's kept; with every speaker in training too (one speaker), they are kept."""
    src = tmp_path / "src"
    for speaker in ("ann", "bob", "cy"):  # a folder a speaker, a .txt beside each transcribed recording
        (src / speaker).mkdir(parents=True)
        for n, (wave, text) in enumerate(clips):
            sf.write(src / speaker / f"{speaker}{n}.wav", wave, 16_000)
            if n:  # the first is untranscribed
                (src / speaker / f"{speaker}{n}.txt").write_text(text)
    rows = read_folder_sources(src)
    assign_splits(rows, test_speakers=["bob"], dev_speakers=["cy"])
    info = import_corpus(tmp_path / "c", rows, progress=False)
    assert [r["id"] for r in read_manifest(tmp_path / "c" / "unpaired_speech.jsonl")] == ["ann0"]
    assert sorted(Path(f["audio"]).name for f in info["failed"]) == ["bob0.wav", "cy0.wav"]
    assert all("held-out speaker" in f["error"] for f in info["failed"])
    assert info["count_by_split"]["test"] == info["count_by_split"]["dev"] == len(clips) - 1
    libri = librispeech_tree(tmp_path / "libri", clips, speakers=1)  # above dev-clean/: speakers from the ids
    sf.write(libri / "dev-clean" / "100" / "7" / "100-7-0099.flac", clips[0][0], 16_000)  # not in the *.trans.txt
    assert {(r["id"], r["speaker"]) for r in read_folder_sources(libri) if r["text"] is None} == {("100-7-0099", "100")}
    one = [r for r in read_folder_sources(src) if r["speaker"] == "bob"]
    assign_splits(one, held_out=0.4)  # one speaker: utterances drawn, the speaker trains too
    assert [r["split"] for r in one if r["text"] is None] == ["unpaired_speech"]


def test_a_manifest_in_common_voice_form_and_named_speakers(tmp_path, clips):
    audio = tmp_path / "clips"
    audio.mkdir()
    lines = ["client_id\tpath\tsentence"]
    for s in ("ann", "bob", "cyd"):
        for n, (wave, text) in enumerate(clips[:3]):
            sf.write(audio / f"{s}{n}.mp3", wave, 16_000)
            lines.append(f"{s}\t{s}{n}.mp3\t{text}")
    (tmp_path / "validated.tsv").write_text("\n".join(lines) + "\n")
    rows = read_manifest_sources(tmp_path / "validated.tsv", audio_root=audio)
    assert assign_splits(rows, test_speakers=["cyd"], dev_speakers=["bob"]) == []
    info = import_corpus(tmp_path / "c", rows, progress=False)
    assert info["speakers"]["test"] == ["cyd"] and info["speakers"]["dev"] == ["bob"] and info["speakers"]["train"] == ["ann"]
    assert info["count_by_split"]["train"] == 3 and not info["failed"]
    for kwargs, message in [({"test_speakers": ["zed"]}, "held-out speakers"),
                            ({"test_speakers": ["ann"], "dev_speakers": ["ann"]}, "both in test and dev"),
                            ({"split": "eval"}, "--split must be one of")]:
        with pytest.raises(CorpusImportError, match=message):
            assign_splits(read_manifest_sources(tmp_path / "validated.tsv", audio_root=audio), **kwargs)
    (tmp_path / "bad.csv").write_text("file_name,text\nx.wav,hello\n")
    with pytest.raises(CorpusImportError, match="no audio column"):
        read_manifest_sources(tmp_path / "bad.csv")


def test_one_speaker_is_split_by_utterance_with_a_warning_and_a_split_column_is_kept(tmp_path, clips):
    rows = [{"audio": f"/x/{n}.wav", "text": "t", "speaker": "solo", "id": str(n), "split": None} for n in range(20)]
    notes = assign_splits(rows, held_out=0.2)
    assert len(notes) == 1 and "also training voices" in notes[0]
    assert [r["split"] for r in rows].count("test") == 2 and [r["split"] for r in rows].count("dev") == 2
    manifest = tmp_path / "m.jsonl"
    sf.write(tmp_path / "a.wav", clips[0][0], 16_000)
    manifest.write_text(json.dumps({"audio_filepath": "a.wav", "text": clips[0][1], "split": "test"}) + "\n")
    rows = read_manifest_sources(manifest)
    assign_splits(rows)
    assert import_corpus(tmp_path / "c", rows, progress=False)["count_by_split"]["test"] == 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=3, max_size=12), st.floats(0.01, 0.9), st.integers(0, 5))
def test_drawn_held_out_speakers_are_whole_disjoint_and_leave_training_speakers(counts, held_out, seed):
    rows = [{"audio": f"/a/{s}-{n}.wav", "text": "t", "speaker": f"s{s}", "id": f"{s}-{n}", "split": None}
            for s, c in enumerate(counts) for n in range(c)]
    assign_splits(rows, held_out=held_out, seed=seed)
    split_of = {}
    for r in rows:
        assert split_of.setdefault(r["speaker"], r["split"]) == r["split"]  # a speaker is in one split only
    assert set(split_of.values()) == {"train", "dev", "test"}


def test_an_existing_corpus_is_replaced_only_whole_and_only_when_asked(tmp_path, clips, capsys):
    src = tmp_path / "src"
    src.mkdir()
    sf.write(src / "a.wav", clips[0][0], 16_000)
    (src / "a.txt").write_text(clips[0][1])
    out = tmp_path / "corpus"
    assert cli(["data", "import", "--folder", str(src), "--split", "test", "--out", str(out), "--no-progress"]) == 0
    assert "test" in capsys.readouterr().out
    kept = digest(out)
    assert cli(["data", "import", "--folder", str(src), "--out", str(out), "--no-progress"]) == 2
    assert "pass --overwrite" in capsys.readouterr().err
    (src / "a.txt").write_text(" ")  # now nothing is usable: the old corpus stays as it was
    assert cli(["data", "import", "--folder", str(src), "--split", "test", "--out", str(out), "--overwrite"]) == 2
    assert "no recording with a transcript could be imported" in capsys.readouterr().err
    assert digest(out) == kept and not list(tmp_path.glob(".corpus.*"))
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    (src / "a.txt").write_text(clips[0][1])
    assert cli(["data", "import", "--folder", str(src), "--split", "test", "--out", str(other), "--overwrite"]) == 2
    assert "not a corpus" in capsys.readouterr().err and (other / "mine.txt").read_text() == "keep me"
    assert cli(["data", "import", "--folder", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err


@settings(max_examples=25, deadline=None)
@example(listed=[("good.wav", "\r")])  # found by hypothesis: read_text turned a quoted "\r" into "\n"
@given(st.lists(st.tuples(st.sampled_from(["good.wav", "missing.wav", "", "folder", "corrupt.wav", "stereo.flac"]),
                          st.one_of(st.none(), st.text(max_size=30))), min_size=1, max_size=8))
def test_every_listed_recording_is_imported_or_named_with_its_reason(tmp_path_factory, clips, listed):
    """Whatever a manifest lists (missing, empty or folder paths, corrupt files, blank or odd text), the import
    either writes a corpus in which each row is a manifest row or a `failed` entry, or refuses with one
    CorpusImportError and writes nothing."""
    tmp = tmp_path_factory.mktemp("listed")
    sf.write(tmp / "good.wav", clips[4][0], 16_000)
    sf.write(tmp / "stereo.flac", np.stack([clips[4][0]] * 2, axis=1), 16_000)
    (tmp / "corrupt.wav").write_bytes(b"RIFF....WAVEdata")
    (tmp / "folder").mkdir()
    manifest = tmp / "list.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["audio", "text", "speaker", "id"])
        for n, (audio, text) in enumerate(listed):
            w.writerow([audio, "" if text is None else text, f"s{n % 3}", f"u{n}"])
    rows = read_manifest_sources(manifest)
    assert [r["text"] for r in rows] == ["" if t is None else t for _, t in listed]  # newlines in quotes kept
    assign_splits(rows, split="train")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the stereo file's downmix
            info = import_corpus(tmp / "corpus", rows, progress=False)
    except CorpusImportError as e:
        assert "no recording with a transcript could be imported" in str(e)
        assert not (tmp / "corpus").exists() and not list(tmp.glob(".corpus.*"))
        return
    written = [r for s in ("train", "dev", "test", "unpaired_speech") for r in read_manifest(tmp / "corpus" / f"{s}.jsonl")]
    assert len(written) + len(info["failed"]) == len(listed)
    for r in written:
        n = int(r["id"][1:])
        assert listed[n][0] in ("good.wav", "stereo.flac") and r["text"] == " ".join(listed[n][1].split())

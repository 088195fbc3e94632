"""Tests for towers.corpus and towers.voices: a real tiny build, splits, idempotence, voices."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from towers.audio import load_audio
from towers.corpus import (
    DEFAULT_VOICE_SPLITS,
    _est_seconds,
    SPLITS,
    CorpusError,
    augment_wave,
    build_corpus,
    load_sentences,
    main,
    plan_corpus,
    _valid_wav,
    read_manifest,
    split_sentences,
)
from towers.scoring import normalize_text
from towers.voices import VOICES, get_voice, list_voices, trim_silence

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    t0 = time.time()
    rep = build_corpus(out, size="tiny", seed=0, num_workers=2, progress=False)
    return out, rep, time.time() - t0


# ------------------------------------------------------------------ the tiny build
def test_tiny_build_report(tiny):
    out, rep, seconds = tiny
    assert rep.n_failed == 0, rep.failed
    assert rep.n_synthesized == rep.n_items > 0
    total_h = sum(rep.hours_by_split.values())
    assert 1.0 / 60 < total_h < 4.0 / 60  # "~2 minutes of audio"
    assert seconds < 60, f"tiny build took {seconds:.1f} s"
    summary = json.loads((out / "corpus.json").read_text())
    assert summary["count_by_split"] == rep.count_by_split and summary["failed"] == []


def test_manifests_valid_and_audio_matches(tiny):
    out, _, _ = tiny
    for split in SPLITS:
        rows = read_manifest(out / f"{split}.jsonl")
        assert rows, split
        for r in rows:
            assert set(r) >= {"audio_filepath", "duration", "voice", "speaker", "augment", "id"}
            assert r["split"] == split and r["voice"] in VOICES
            assert ("text" in r) == (split != "unpaired_speech")
            if "text" in r:
                assert 4 <= len(r["text"].split()) <= 20
            info = sf.info(r["audio_filepath"])
            assert info.samplerate == 16000 and info.channels == 1
            assert abs(info.frames / 16000 - r["duration"]) < 1e-3
            assert 0.5 < r["duration"] < 15
    # relative paths in the file itself, so the corpus can move
    raw = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert not Path(raw["audio_filepath"]).is_absolute()
    texts = read_manifest(out / "unpaired_text.jsonl")
    assert texts and all(set(t) == {"text"} for t in texts)


def test_audio_is_real_speech(tiny):
    out, _, _ = tiny
    for r in read_manifest(out / "test.jsonl")[:2]:
        wave, sr = load_audio(r["audio_filepath"])
        assert sr == 16000 and np.isfinite(wave).all()
        assert 0.01 < float(np.sqrt(np.mean(wave**2))) < 0.7  # not silence, not clipped noise


def test_splits_disjoint_in_voices_speakers_and_sentences(tiny):
    out, _, _ = tiny
    rows = {s: read_manifest(out / f"{s}.jsonl") for s in SPLITS}
    voices = {s: {r["voice"] for r in rows[s]} for s in SPLITS}
    speakers = {s: {r["speaker"] for r in rows[s]} for s in SPLITS}
    train_voices = voices["train"] | voices["unpaired_speech"]
    train_speakers = speakers["train"] | speakers["unpaired_speech"]
    for held in ("dev", "test"):
        assert not voices[held] & train_voices
        assert not speakers[held] & train_speakers
    assert not speakers["dev"] & speakers["test"]
    assert voices["test"] == set(DEFAULT_VOICE_SPLITS["test"])  # every test voice is used
    sents = {s: {normalize_text(r["text"]) for r in rows[s]} for s in ("train", "dev", "test")}
    unpaired_text = {normalize_text(r["text"]) for r in read_manifest(out / "unpaired_text.jsonl")}
    for held in ("dev", "test"):
        assert not sents[held] & sents["train"]
        assert not sents[held] & unpaired_text
    assert not sents["dev"] & sents["test"]
    # augmentation only on training audio, never on dev/test
    assert all(r["augment"] is None for s in ("dev", "test") for r in rows[s])


def test_rerun_is_a_fast_no_op(tiny):
    out, rep, _ = tiny
    files = sorted(out.rglob("*"))
    before = {p: p.stat().st_mtime_ns for p in files}
    t0 = time.time()
    rep2 = build_corpus(out, size="tiny", seed=0, num_workers=2, progress=False)
    assert time.time() - t0 < 10
    assert rep2.n_synthesized == 0 and rep2.n_skipped == rep.n_items and rep2.n_failed == 0
    assert sorted(out.rglob("*")) == files
    assert {p: p.stat().st_mtime_ns for p in files} == before  # nothing rewritten


def test_resume_after_loss_and_corruption(tiny, tmp_path):
    out, rep, _ = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    rows = read_manifest(copy / "train.jsonl")
    Path(rows[0]["audio_filepath"]).unlink()  # lost file
    Path(rows[1]["audio_filepath"]).write_bytes(b"RIFF garbage")  # half-written / corrupt file
    (copy / "dev.jsonl").unlink()
    rep2 = build_corpus(copy, size="tiny", seed=0, num_workers=1, progress=False)
    assert rep2.n_synthesized == 2 and rep2.n_skipped == rep.n_items - 2
    assert (copy / "dev.jsonl").read_text() == (out / "dev.jsonl").read_text()
    assert (copy / "train.jsonl").read_text() == (out / "train.jsonl").read_text()


def test_resume_resynthesises_a_half_written_wav(tiny, tmp_path):
    out, rep, _ = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    rows = read_manifest(copy / "train.jsonl")
    p = Path(rows[0]["audio_filepath"])
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # an interrupted copy: the header is whole, the samples are not
    assert _valid_wav(p) is None
    rep2 = build_corpus(copy, size="tiny", seed=0, num_workers=1, progress=False)
    assert rep2.n_synthesized == 1 and rep2.n_skipped == rep.n_items - 1 and rep2.n_failed == 0
    assert (copy / "train.jsonl").read_text() == (out / "train.jsonl").read_text()
    assert load_audio(p)[0].shape[0] > 0


def test_valid_wav_refuses_a_truncated_wav(tmp_path):
    from towers.audio import save_audio

    p = save_audio(tmp_path / "a.wav", np.full(16000, 0.1, np.float32), 16000)
    assert _valid_wav(p) == pytest.approx(1.0)
    data = p.read_bytes()
    p.write_bytes(data[:-100])
    assert _valid_wav(p) is None


# ------------------------------------------------------------------ planning (no synthesis)
@pytest.fixture(scope="module")
def sentences():
    return load_sentences()


def test_sentence_pool(sentences):
    assert len(sentences) > 20000
    keys = [normalize_text(s) for s in sentences]
    assert len(set(keys)) == len(keys)
    assert all(4 <= len(s.split()) <= 20 for s in sentences)
    pools = split_sentences(sentences)
    assert sum(len(v) for v in pools.values()) == len(sentences)
    seen: set[str] = set()
    for v in pools.values():
        assert not seen & set(v)
        seen |= set(v)


def test_plan_is_deterministic_and_sized(sentences):
    a, ta, va = plan_corpus(0.5, seed=3, sentences=sentences)
    b, tb, vb = plan_corpus(0.5, seed=3, sentences=sentences)
    c, _, _ = plan_corpus(0.5, seed=4, sentences=sentences)
    assert a == b and ta == tb and [i.augment for i in a] == [i.augment for i in b]
    assert [i.id for i in a] != [i.id for i in c]
    assert len({i.id for i in a}) == len(a)
    est = sum(_est_seconds(i.text) for i in a) / 3600
    assert 0.5 <= est < 0.52
    frac = sum(i.augment is not None for i in a if i.split == "train") / sum(i.split == "train" for i in a)
    assert 0.2 < frac < 0.4
    none, _, _ = plan_corpus(0.1, augment_prob=0.0, sentences=sentences)
    assert all(i.augment is None for i in none)


def test_a_larger_plan_begins_with_the_smaller_one(sentences):
    # every split of a smaller size is the first utterances of the same split of a larger one (same seed), so the
    # medium corpus's test set is the base corpus's first 326 test utterances and their test numbers compare
    small, small_text, _ = plan_corpus(0.5, seed=3, sentences=sentences)
    large, large_text, _ = plan_corpus(3.0, seed=3, sentences=sentences)
    for split in {i.split for i in large}:
        a, b = [i for i in small if i.split == split], [i for i in large if i.split == split]
        assert 0 < len(a) < len(b) and b[:len(a)] == a, split
    assert large_text[:len(small_text)] == small_text


def test_plan_bad_arguments(sentences):
    with pytest.raises(CorpusError):
        plan_corpus(0, sentences=sentences)
    with pytest.raises(CorpusError):
        plan_corpus(0.1, augment_prob=1.5, sentences=sentences)
    with pytest.raises(CorpusError):  # same speaker (slt) in dev and test
        plan_corpus(0.1, sentences=sentences, test_voices=["flite-slt"], dev_voices=["festival-slt-hts"])
    with pytest.raises(KeyError):
        plan_corpus(0.1, sentences=sentences, test_voices=["no-such-voice"])
    with pytest.raises(CorpusError):
        build_corpus("/tmp/never-made", size="enormous")


def test_held_out_speaker_leaves_training(sentences):
    items, _, voices = plan_corpus(0.05, sentences=sentences, test_voices=["flite-slt"], dev_voices=["flite-rms"])
    assert "festival-slt-hts" not in voices["train"]  # same speaker as the held-out flite-slt


# ------------------------------------------------------------------ voices and augmentation
def test_voice_registry():
    assert len(VOICES) >= 20
    engines = {v.engine for v in list_voices()}
    assert {"espeak-ng", "flite", "festival", "piper"} <= engines
    with pytest.raises(KeyError):
        get_voice("nope")
    with pytest.raises(ValueError):
        get_voice("flite-awb").synthesize(["a", "b"], ["x.wav"])


@pytest.mark.parametrize("name", ["festival-slt-hts", "piper-joe"])
def test_voice_writes_16k_mono(tmp_path, name):
    texts = ['She said "hello" to the old man.', "Then she left (quietly) \\ at once."]
    outs = get_voice(name).synthesize(texts, [tmp_path / "a.wav", tmp_path / "b.wav"])
    for p in outs:
        info = sf.info(p)
        assert info.samplerate == 16000 and info.channels == 1 and 0.8 < info.duration < 6


def test_trim_silence():
    sr = 16000
    x = np.zeros(3 * sr, np.float32)
    x[sr : 2 * sr] = 0.5 * np.sin(np.arange(sr) * 0.1)
    y = trim_silence(x, sr, pad_s=0.1)
    assert abs(len(y) - 1.2 * sr) < 0.02 * sr
    assert len(trim_silence(np.zeros(1000, np.float32))) == 1000


def test_augment_wave(tmp_path):
    sr = 16000
    x = (0.3 * np.sin(2 * np.pi * 220 * np.arange(sr) / sr)).astype(np.float32)
    src = tmp_path / "src.wav"
    sf.write(src, x, sr)
    augment_wave(src, tmp_path / "fast.wav", {"speed": 1.1})
    y, _ = load_audio(tmp_path / "fast.wav")
    assert abs(len(y) - sr / 1.1) < 0.02 * sr
    augment_wave(src, tmp_path / "noisy.wav", {"noise_snr_db": 10.0, "noise_seed": 1})
    z, _ = load_audio(tmp_path / "noisy.wav")
    snr = 10 * np.log10(np.mean(x**2) / np.mean((z - x) ** 2))
    assert 8.5 < snr < 11.5
    augment_wave(src, tmp_path / "all.wav", {"pitch_cents": 200, "reverb": 50})
    w, _ = load_audio(tmp_path / "all.wav")
    assert len(w) >= len(x) and np.max(np.abs(w)) <= 0.99 + 1e-4


def test_cli_voices_and_errors(capsys, tmp_path):
    """`python -m towers.corpus` and `zipper data build` take the same options and refuse bad ones with one
    error line (exit 2) before writing anything."""
    from zipper.cli import main as zipper_main

    assert main(["voices"]) == 0
    assert "piper-joe" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    cases = [(["--hours", "-1"], "hours must be positive"), (["--hours", "nan"], "hours must be positive"),
             (["--augment-prob", "2"], "augment_prob"), (["--test-voices", "nobody"], "error: unknown voice 'nobody'"),
             (["--out", str(tmp_path / "file")], "is a file, not a corpus directory")]
    for cli in (lambda a: main(["build", *a]), lambda a: zipper_main(["data", "build", *a])):
        for extra, message in cases:
            assert cli(["--out", str(tmp_path / "c"), *extra]) == 2
            assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
    for cli in (lambda a: main(["build", *a]), lambda a: zipper_main(["data", "build", *a])):
        with pytest.raises(SystemExit):
            cli(["--help"])
        assert "--test-voices" in capsys.readouterr().out


def test_text_sources_knob(sentences):
    items, _, _ = plan_corpus(0.02, text_sources=("fortunes",))
    fortunes = set(load_sentences(sources=("fortunes",)))
    assert items and all(i.text in fortunes for i in items)
    assert len(fortunes) < len(sentences)
    # the held-out cut is per sentence, so it agrees across source sets
    pools_all, pools_f = split_sentences(sentences), split_sentences(sorted(fortunes))
    assert set(pools_f["test"]) <= set(pools_all["test"]) | (fortunes - set(sentences))


def test_unknown_text_sources_are_refused():
    with pytest.raises(CorpusError, match="unknown text sources"):
        load_sentences(sources=("fortunes", "wikipedia"))


def test_read_manifest_names_the_bad_line(tmp_path):
    """A manifest line that is not a JSON object, or lacks a required key, is a ValueError naming the file
    and line; relative audio paths resolve against the manifest's directory."""
    good = json.dumps({"audio_filepath": "a.wav", "text": "hi"})
    path = tmp_path / "m.jsonl"
    path.write_text(good + "\n\n" + good + "\n")
    rows = read_manifest(path, require=("audio_filepath", "text"))
    assert [r["audio_filepath"] for r in rows] == [str((tmp_path / "a.wav").resolve())] * 2
    assert read_manifest(path, absolute=False)[0]["audio_filepath"] == "a.wav"
    for bad, message in [("{oops", "m.jsonl:3: not JSON"), ("[1, 2]", "m.jsonl:3: not a JSON object"),
                         (json.dumps({"text": "hi"}), "m.jsonl:3: no 'audio_filepath'"),
                         (json.dumps({"audio_filepath": 7, "text": "hi"}), "m.jsonl:3: no 'audio_filepath'")]:
        path.write_text(good + "\n\n" + bad + "\n")
        with pytest.raises(ValueError, match=message):
            read_manifest(path, require=("audio_filepath",))
    with pytest.raises(FileNotFoundError):
        read_manifest(tmp_path / "absent.jsonl")


@pytest.mark.filterwarnings("ignore:the '(train|dev|unpaired_speech)' sentence pool")
def test_plan_rotation_reaches_every_voice_and_warns_when_the_pool_runs_out(monkeypatch):
    import towers.corpus as corpus

    voices = {"train": ["a", "b"], "unpaired_speech": ["a", "b"], "dev": ["d1"], "test": ["t1", "t2", "t3", "t4"]}
    pools = {s: [f"{s} sentence number {i} is here" for i in range(3)] for s in (*SPLITS, "unpaired_text")}
    monkeypatch.setattr(corpus, "_voice_splits", lambda test, dev: voices)
    monkeypatch.setattr(corpus, "split_sentences", lambda sentences: pools)
    items, _, _ = plan_corpus(1e-4, sentences=[])  # 3 test sentences, 4 test voices: each voice gets one
    assert {i.voice for i in items if i.split == "test"} == set(voices["test"])
    with pytest.warns(UserWarning, match="'test' sentence pool .3 sentences x 4 voices. gives only"):
        items, _, _ = plan_corpus(1.0, sentences=[])  # far more than the pool holds: every pair, once
    test = [(i.voice, i.text) for i in items if i.split == "test"]
    assert sorted(test) == sorted((v, s) for v in voices["test"] for s in pools["test"])


def test_write_atomic_gives_the_umask_mode_not_0600(tmp_path, monkeypatch):
    import os

    import towers.audio
    from towers.corpus import _write_atomic

    monkeypatch.setattr(towers.audio, "_UMASK", None, raising=False)  # read afresh under the umask set here
    old = os.umask(0o027)
    try:
        assert _write_atomic(tmp_path / "m.jsonl", "x\n")
    finally:
        os.umask(old)
    assert (tmp_path / "m.jsonl").stat().st_mode & 0o777 == 0o640

"""recipes/whisper_base_asr.py: Whisper-base's own transcripts of a corpus's test utterances, as a zip's test."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import load_recipe_script
from towers.corpus import read_manifest
from towers.scoring import wer

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
pytestmark = pytest.mark.skipif(not LIBRIVOX.exists(), reason="pocketsphinx-testdata not installed")


@pytest.fixture(scope="module")
def script():
    return load_recipe_script("whisper_base_asr")


def clips() -> list[tuple[Path, str]]:
    """The LibriVox clips with their transcripts, shortest first."""
    found = [re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
             for line in (LIBRIVOX / "transcription").read_text().splitlines()]
    pairs = [(LIBRIVOX / f"{m.group(2)}.wav", m.group(1)) for m in found if m]
    return sorted(pairs, key=lambda p: p[0].stat().st_size)


def make_corpus(root: Path, n: int) -> Path:
    """A corpus folder whose test.jsonl is the ``n`` shortest clips (relative paths), two voices."""
    root.mkdir()
    rows = []
    for i, (wav, text) in enumerate(clips()[:n]):
        shutil.copy(wav, root / f"u{i}.wav")
        rows.append({"id": f"u{i}", "text": text, "audio_filepath": f"u{i}.wav", "voice": f"v{i % 2}"})
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_transcribes_the_first_utterances_like_a_zips_test(script, tmp_path, monkeypatch, capsys):
    corpus = make_corpus(tmp_path / "corpus", 3)
    real = {"id": "lv", "text": clips()[0][1], "audio_filepath": str(clips()[0][0]), "voice": "librivox"}
    monkeypatch.setattr(script, "librivox_examples", lambda codec: [real])  # one clip, not all five
    md = tmp_path / "RESULTS.md"
    out = script.main(["--corpus", str(corpus), "--eval-utts", "2", "--out", str(tmp_path / "run"),
                       "--results-md", str(md), "--threads", "1"])
    test = out["metrics"]["test_asr"]
    hyps_dir = tmp_path / "run" / "hyps" / "corpus" / "eval-utts2"
    rows = [json.loads(line) for line in (hyps_dir / "test_asr.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["u0", "u1"] and [r["voice"] for r in rows] == ["v0", "v1"]  # the first 2
    refs = [r["text"] for r in read_manifest(corpus / "test.jsonl")[:2]]
    assert [r["ref"] for r in rows] == refs
    assert test["wer"] == round(100 * wer(refs, [r["hyp"] for r in rows]).wer, 2) <= 10  # Whisper on clean speech
    assert test["n_utts"] == 2 and set(test["by_voice"]) == {"v0", "v1"} and "utts" not in test
    assert (hyps_dir / "librivox_asr.jsonl").exists() and out["metrics"]["librivox_asr"]["n_utts"] == 1
    assert json.loads((hyps_dir / "results.json").read_text())["metrics"] == out["metrics"]
    row = md.read_text().splitlines()[-1]
    assert row.startswith("| ") and "| asr_whisper_base | test_asr.wer=" in row and "--eval-utts 2" in row
    assert "WER by voice" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--eval-utts", "-1"], "--eval-utts >= 0"),
    (["--beam", "0"], "--beam >= 1"),
    (["--corpus", "nowhere"], "build the corpus first"),
    (["--results-md", "no/such/folder/R.md"], "does not exist"),
])
def test_bad_arguments_are_refused_before_any_work(script, tmp_path, monkeypatch, args, message):
    corpus = make_corpus(tmp_path / "corpus", 1)
    monkeypatch.setattr(script, "WhisperJudge", lambda **kw: pytest.fail("loaded the judge"))
    with pytest.raises((SystemExit, ValueError), match=message):
        script.main(["--corpus", str(corpus), "--out", str(tmp_path / "run"), *args])


def test_a_corrupt_recording_is_named_and_nothing_is_written(script, tmp_path):
    corpus = make_corpus(tmp_path / "corpus", 2)
    (corpus / "u1.wav").write_bytes(b"not audio")
    md = tmp_path / "RESULTS.md"
    with pytest.raises(SystemExit, match="u1.wav: not a readable audio format"):
        script.main(["--corpus", str(corpus), "--out", str(tmp_path / "run"), "--results-md", str(md), "--no-librivox",
                     "--threads", "1"])
    assert not (tmp_path / "run").exists() and not md.exists()

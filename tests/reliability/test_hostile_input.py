"""Hostile input end to end: every bad input to the CLI gets one `zipper: error:` line and exit 2,
no traceback, and nothing is overwritten. Plus a scan of the code for unsafe loading."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import tiny_text_tower
from zipper.cli import main as cli
from zipper.data import LIBRIVOX

ROOT = Path(__file__).resolve().parents[2]
ROOT_WAV = str(LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0870.wav")  # a real recording


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, smollm2_tokenizer):
    """A small trained-shape model directory (tiny towers, tiny codec), built offline in seconds."""
    from towers import load_tower, new_speech_tower
    from towers.codec_train import train_tiny_codec
    from zipper import ZipperModel

    root = tmp_path_factory.mktemp("hostile")
    tiny_text_tower(smollm2_tokenizer).save_pretrained(root / "text")
    new_speech_tower(32, "tiny").save_pretrained(root / "speech")
    model = ZipperModel.from_towers([load_tower(root / "speech"), load_tower(root / "text")],
                                    directions=["speech->text", "text->speech"])
    model.save_pretrained(root / "model")
    train_tiny_codec(vocab_size=32).save_pretrained(root / "model" / "codec")
    return root


def _bad(capsys, argv) -> str:
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("zipper: error:") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _wav(path: Path, data: np.ndarray, sr: int = 16000) -> str:
    sf.write(path, data, sr, subtype="FLOAT" if data.dtype == np.float32 else "PCM_16")  # FLOAT keeps NaN
    return str(path)


def test_transcribe_rejects_bad_audio(model_dir, tmp_path, capsys):
    m = str(model_dir / "model")
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "garbage.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    nan = np.zeros(16000, dtype=np.float32)
    nan[100] = np.nan
    cases = {
        "missing": str(tmp_path / "nope.wav"),
        "empty file": str(tmp_path / "empty.wav"),
        "garbage": str(tmp_path / "garbage.wav"),
        "zero samples": _wav(tmp_path / "zero.wav", np.zeros(0, dtype=np.float32)),
        "NaN": _wav(tmp_path / "nan.wav", nan),
        "too long": _wav(tmp_path / "long.wav", np.zeros(16000 * 601, dtype=np.int16)),  # --max-seconds: 600
        "a directory": str(tmp_path),
        "not audio": str(ROOT / "pyproject.toml"),
    }
    for name, path in cases.items():
        _bad(capsys, ["transcribe", path, "--model", m])
    _bad(capsys, ["transcribe", cases["NaN"], "--model", str(tmp_path / "no-model")])


def test_speak_rejects_bad_text_and_outputs(model_dir, tmp_path, capsys):
    m = str(model_dir / "model")
    for text in ["", "   \n\t", "x" * 5001]:  # --max-chars: 5000
        _bad(capsys, ["speak", text, "--model", m, "-o", str(tmp_path / "a.wav")])
    _bad(capsys, ["speak", "hello", "--model", m, "-o", str(tmp_path / "no" / "dir" / "a.wav")])
    # an unwritable extension is refused before the model loads (a missing model would be the other error)
    assert "unknown audio extension" in _bad(capsys, ["speak", "hello", "--model", str(tmp_path / "no-model"),
                                                      "-o", str(tmp_path / "a.xyz")])
    assert "unknown audio extension" in _bad(capsys, ["codec", "roundtrip", ROOT_WAV, "-o", str(tmp_path / "a.xyz")])
    # an output folder that cannot be written, or a regular file, is refused before the model loads
    assert "/proc/a.wav" in _bad(capsys, ["speak", "hello", "--model", str(tmp_path / "no-model"), "-o", "/proc/a.wav"])
    (tmp_path / "file").write_text("x")
    assert "not a folder" in _bad(capsys, ["codec", "roundtrip", ROOT_WAV, "-o", str(tmp_path / "file" / "a.wav")])
    keep = tmp_path / "keep.wav"
    keep.write_bytes(b"precious")
    _bad(capsys, ["speak", "hello", "--model", m, "-o", str(keep)])
    assert keep.read_bytes() == b"precious"


def test_speak_handles_unknown_characters(model_dir, tmp_path, capsys):
    out = tmp_path / "u.wav"
    rc = cli(["speak", "naïve café ☃ 漢字 \u200b", "--model", str(model_dir / "model"), "-o", str(out)])
    err = capsys.readouterr().err
    assert (rc == 0 and out.stat().st_size > 44) or (rc == 2 and err.startswith("zipper: error:"))


def test_train_and_eval_reject_bad_configs(tmp_path, capsys):
    bad = {"missing": None, "not json": "{oops", "a list": "[1, 2]", "unknown key": json.dumps({"taks": "asr"}),
           "code": json.dumps({"_target_": "os.system"}), "bad task": json.dumps({"task": "rm -rf"}),
           "bad fraction": json.dumps({"data_fraction": 5}),
           "ctc on the baseline": json.dumps({"ctc_weight": 0.3, "model": "single_decoder"}),
           "ctc without speech->text": json.dumps({"ctc_weight": 0.3, "task": "tts", "directions": ["text->speech"]}),
           "guide on the baseline": json.dumps({"guided_attention": 1.0, "model": "single_decoder"}),
           "negative guide": json.dumps({"guided_attention": -1.0})}
    for name, text in bad.items():
        path = tmp_path / f"{name.replace(' ', '_')}.json"
        if text is not None:
            path.write_text(text)
        _bad(capsys, ["train", str(path)])
        _bad(capsys, ["eval", str(path)])
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"task": "asr"}))
    for minutes in ("-1", "nan"):
        assert "--max-minutes must be >= 0" in _bad(capsys, ["train", str(good), "--max-minutes", minutes])
    assert "out of range: {'stop_step': -1}" in _bad(capsys, ["train", str(good), "--stop-step", "-1"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=4096))
def test_fuzzed_audio_bytes(model_dir, tmp_path, capsys, blob):
    path = tmp_path / "fuzz.wav"
    path.write_bytes(blob)
    rc = cli(["transcribe", str(path), "--model", str(model_dir / "model")])
    err = capsys.readouterr().err
    assert rc in (0, 2) and "Traceback" not in err


def test_random_bytes_in_a_subprocess(model_dir, tmp_path):
    """The real entry point, in its own process with a time limit: no hang, no traceback."""
    rng = np.random.default_rng(0)
    for i in range(3):
        path = tmp_path / f"r{i}.wav"
        path.write_bytes(b"RIFF" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
        proc = subprocess.run([sys.executable, "-m", "zipper.cli", "transcribe", str(path), "--model",
                               str(model_dir / "model")], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("zipper: error:")


@pytest.fixture(scope="module")
def other_models(model_dir):
    """Beside model_dir's two-way zip: a single decoder, and a zip for each direction alone, each with the codec."""
    from towers import load_tower
    from zipper import ZipperModel
    from zipper.baseline import SingleDecoder

    towers = [load_tower(model_dir / "speech"), load_tower(model_dir / "text")]
    SingleDecoder(load_tower(model_dir / "text"), n_units=32).save_pretrained(model_dir / "single")
    for name, direction in (("asr_only", "speech->text"), ("tts_only", "text->speech")):
        ZipperModel.from_towers(towers, directions=[direction]).save_pretrained(model_dir / name)
    for name in ("single", "asr_only", "tts_only"):
        shutil.copytree(model_dir / "model" / "codec", model_dir / name / "codec")
    return model_dir


@pytest.fixture
def no_progress_bars():
    """transformers draws a progress bar on stderr while a tower loads; these errors come after one."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    yield
    hf_logging.enable_progress_bar()


def test_a_damaged_single_decoder_is_one_error_line(other_models, tmp_path, capsys, no_progress_bars):
    from tests.zipper.test_baseline import DAMAGE

    for name in ("config without n_units", "garbage weights", "other weights"):
        damage, message = DAMAGE[name]
        # beside the original, so that the text tower's relative path still holds
        d = shutil.copytree(other_models / "single", other_models / f"single-{name.replace(' ', '_')}")
        damage(d)
        assert re.search(message, _bad(capsys, ["transcribe", ROOT_WAV, "--model", str(d)]))
        assert re.search(message, _bad(capsys, ["speak", "hello", "--model", str(d), "-o", str(tmp_path / "a.wav")]))


def test_a_zip_for_the_other_direction_is_refused(other_models, tmp_path, capsys, no_progress_bars):
    err = _bad(capsys, ["transcribe", ROOT_WAV, "--model", str(other_models / "tts_only")])
    assert "zipped for text->speech, not speech->text" in err
    err = _bad(capsys, ["speak", "hello", "--model", str(other_models / "asr_only"), "-o", str(tmp_path / "a.wav")])
    assert "zipped for speech->text, not text->speech" in err and not (tmp_path / "a.wav").exists()


def _usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as stop:
        cli(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.splitlines()[-1].startswith("zipper: error:") and "Traceback" not in err, err
    return err.splitlines()[-1]


def test_options_that_would_be_ignored_are_refused(tmp_path, capsys):
    """Each combination used to run and silently ignore one option."""
    m = ["--model", str(tmp_path / "no-model")]  # refused before any loading
    assert "pass --fusion too" in _usage_error(capsys, ["transcribe", ROOT_WAV, *m, "--fusion-beam", "64"])
    assert "--fusion does not use" in _usage_error(capsys, ["transcribe", ROOT_WAV, *m, "--fusion", "--beams", "4"])
    assert "--fusion does not use" in _usage_error(capsys, ["transcribe", ROOT_WAV, *m, "--fusion", "--beams", "1"])
    assert "pass --fusion too" in _usage_error(capsys, ["transcribe", ROOT_WAV, *m, "--fusion-words", "w.txt"])
    words = ["transcribe", ROOT_WAV, *m, "--fusion", "--fusion-words"]  # the list is read before the model
    assert "no such file" in _bad(capsys, [*words, str(tmp_path / "none.txt")])
    (tmp_path / "empty.txt").write_text("# no words\n")
    assert "no words in it" in _bad(capsys, [*words, str(tmp_path / "empty.txt")])
    configs = {}
    for name, cfg in {"asr": {"task": "asr", "ctc_weight": 0.3, "ctc_units": "chars"},
                      "tts": {"task": "tts", "directions": ["text->speech"]},
                      "single": {"task": "asr", "model": "single_decoder"}}.items():
        configs[name] = tmp_path / f"{name}.json"
        configs[name].write_text(json.dumps(cfg))
    assert "pass --fusion too" in _usage_error(capsys, ["eval", str(configs["asr"]), *m, "--fusion-beam", "64"])
    for cmd in (["eval", str(configs["asr"])], ["transcribe", ROOT_WAV]):
        assert "pass --fusion too" in _usage_error(capsys, [*cmd, *m, "--fusion-alpha", "0.5"])
        assert "pass --fusion too" in _usage_error(capsys, [*cmd, *m, "--fusion-beta", "2"])
        for flag, value, said in (("--fusion-alpha", "nan", "finite"), ("--fusion-alpha", "-0.1", ">= 0"),
                                  ("--fusion-beta", "inf", "finite")):
            with pytest.raises(SystemExit) as stop:  # argparse's own line: "zipper eval: error: argument ..."
                cli([*cmd, *m, "--fusion", flag, value])
            last = capsys.readouterr().err.splitlines()[-1]
            assert stop.value.code == 2 and f"argument {flag}: must be" in last and said in last, last
    for name in ("tts", "single"):
        assert "--beams sets the attention beams" in _bad(capsys, ["eval", str(configs[name]), *m, "--beams", "4"])
    assert "runs no ASR evaluation" in _bad(capsys, ["eval", str(configs["tts"]), *m, "--fusion"])


def test_an_out_under_a_regular_file_is_one_error_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"task": "asr", "out": str(tmp_path / "file" / "run")}))
    assert "is a file, not a folder" in _bad(capsys, ["train", str(config)])
    assert cli(["data", "build", "--out", str(tmp_path / "file" / "corpus"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the corpus") and err.count("\n") == 1 and "Traceback" not in err, err


def test_no_unsafe_loading_in_the_code():
    """No torch.load without weights_only=True, no pickle loading, no trust_remote_code=True default."""
    offenders = []
    for path in [*ROOT.glob("zipper/**/*.py"), *ROOT.glob("towers/**/*.py"), *ROOT.glob("recipes/**/*.py"),
                 *ROOT.glob("benchmarks/**/*.py")]:
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(([^)]*)\)", text):
            if "weights_only=True" not in m.group(1):
                offenders.append(f"{path.name}: {m.group(0)}")
        offenders += [f"{path.name}: pickle.load" for _ in re.finditer(r"pickle\.loads?\(", text)]
        offenders += [f"{path.name}: trust_remote_code=True" for _ in re.finditer(r"trust_remote_code\s*=\s*True", text)]
    assert not offenders, offenders


def test_an_errors_notes_reach_the_one_error_line(monkeypatch, capsys):
    """Unit encoding adds the failing row and file as a note (zipper.data); the CLI line must show it."""
    from zipper import cli

    def fails(a):
        e = ValueError("audio is silent")
        e.add_note("while encoding train row 'u1' (/c/1.wav)")
        raise e

    monkeypatch.setattr(cli, "cmd_towers", fails)
    assert cli.main(["towers"]) == 2
    assert capsys.readouterr().err.strip() == "zipper: error: audio is silent (while encoding train row 'u1' (/c/1.wav))"


def test_a_model_copied_without_its_codec_warns_before_using_the_default(model_dir, tmp_path):
    """Units of another codec would be read as the default's and give fluent nonsense: say so."""
    import warnings

    from zipper.cli import _load_model_codec

    with pytest.warns(UserWarning, match="has no codec/ folder: using the default codec"):
        _load_model_codec(str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _load_model_codec(str(model_dir / "model")).vocab_size == 32

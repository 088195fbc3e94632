"""recipes/train_codec.py: bad 'train' settings and --max-files are usage errors (exit 2) before any audio loads."""

from __future__ import annotations

import json

import pytest

from tests.conftest import RECIPES, load_recipe_script


@pytest.fixture(scope="module")
def script():
    return load_recipe_script("train_codec")


def test_bad_train_settings_and_negative_max_files_are_usage_errors_before_loading_audio(script, tmp_path, capsys,
                                                                                         monkeypatch):
    def no_loading(*a, **k):
        raise AssertionError("audio was loaded before the arguments were checked")

    monkeypatch.setattr(script, "load_audio", no_loading)
    monkeypatch.setattr(script, "audio_paths", no_loading)
    cfg = {"codec_type": "mel_kmeans", "codec": {"vocab_size": 8, "n_mels": 40, "dec_channels": 16,
                                                 "dec_unit_dilations": [1], "dec_frame_dilations": [1], "dec_kernel": 3,
                                                 "gl_iters": 2},
           "train": {"kmeans_iters": 2, "dec_steps": 2, "batch_size": 2, "crop_units": 8, "progress": False}}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    base = ["--config", str(tmp_path / "cfg.json"), "--wav-dir", str(tmp_path), "--out", str(tmp_path / "out")]
    cases = [(["--set", "train.dec_stepz=5"], "unknown train keys ['dec_stepz'] for train_mel_unit_codec"),
             (["--set", "train.units_from=1"], "unknown train keys ['units_from']"),  # main passes it itself
             (["--set", "train.batch_size=0"], "train.batch_size must be an integer >= 1, got 0"),
             (["--set", "train.batch_size=2.5"], "train.batch_size must be an integer >= 1, got 2.5"),
             (["--set", "train.crop_units=-1"], "train.crop_units must be an integer >= 1"),
             (["--set", "train.kmeans_iters=0"], "train.kmeans_iters must be an integer >= 1"),
             (["--set", "train.log_every=0"], "train.log_every must be an integer >= 1"),
             (["--set", "train.dec_steps=-1"], "train.dec_steps must be an integer >= 0"),
             (["--set", "train.lr=0"], "train.lr must be a number > 0"),
             (["--set", "codec.vocab_size=4", "--set", "train.batch_size=true"], "train.batch_size must be an integer"),
             (["--max-files", "-2"], "--max-files must be >= 0")]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exc:
            script.main(base + extra)
        assert exc.value.code == 2 and message in capsys.readouterr().err, extra
    assert not (tmp_path / "out").exists()


def test_shipped_configs_train_settings_pass_the_check(script):
    from towers.codec_train import train_mel_unit_codec, train_whisper_unit_codec

    trainers = {"mel_kmeans": train_mel_unit_codec, "whisper_kmeans": train_whisper_unit_codec}
    configs = sorted((RECIPES / "configs").glob("codec*.json"))
    assert configs
    for path in configs:
        cfg = json.loads(path.read_text())
        assert script.train_args_problem(trainers[cfg.get("codec_type", "mel_kmeans")], cfg["train"]) is None, path
    assert "whisper" in script.train_args_problem(train_whisper_unit_codec, {"nope": 1})

"""recipes/eval_codec.py: a bad --manifest is a usage error (exit 2) before the codec or judge loads."""

from __future__ import annotations

import json

import pytest

from tests.conftest import load_recipe_script

@pytest.fixture(scope="module")
def script():
    return load_recipe_script("eval_codec")


def test_bad_manifest_is_a_usage_error_and_writes_nothing(script, tmp_path, capsys, monkeypatch):
    def no_loading(*a, **k):
        raise AssertionError("the codec or judge was loaded before the manifest was checked")

    monkeypatch.setattr(script, "load_codec", no_loading)
    monkeypatch.setattr(script, "make_judge", no_loading)
    good = json.dumps({"audio_filepath": "a.wav", "text": "hi", "voice": "v"})
    cases = {"not_json.jsonl": (good + "\n{oops\n", "not_json.jsonl:2: not JSON"),
             "no_text.jsonl": (json.dumps({"audio_filepath": "a.wav"}) + "\n", "no_text.jsonl:1: no 'text'"),
             "empty.jsonl": ("\n", "nothing to evaluate")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
    cases["absent.jsonl"] = (None, "absent.jsonl")
    for name, (_, message) in cases.items():
        with pytest.raises(SystemExit) as exc:
            script.main(["--codec", "default", "--manifest", str(tmp_path / name), "--out", str(tmp_path / "out")])
        assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_load_items_resolves_relative_paths_against_the_manifest(script, tmp_path):
    (tmp_path / "sub").mkdir()
    m = tmp_path / "sub" / "m.jsonl"
    m.write_text(json.dumps({"audio_filepath": "a.wav", "text": "hi"}) + "\n"
                 + json.dumps({"audio_filepath": "/abs/b.wav", "text": "yo", "voice": "v"}) + "\n")
    items = script.load_items(str(m), 0, librivox=False)
    assert [(i["path"], i["text"], i["voice"]) for i in items] == [
        (str((tmp_path / "sub" / "a.wav").resolve()), "hi", "?"), ("/abs/b.wav", "yo", "v")]


def test_gl_flags_decode_like_a_codec_saved_with_those_settings(script, tmp_path):
    """--gl-iters N decodes exactly as a copy of the codec with gl_iters N in its config; --gl-seed changes
    the phase draw (another waveform) and nothing else (same length)."""
    import shutil

    import torch

    from towers.codec import SHIPPED_CODECS, load_codec

    copy = tmp_path / "codec"
    shutil.copytree(SHIPPED_CODECS["default"], copy)
    cfg = json.loads((copy / "codec_config.json").read_text())
    (copy / "codec_config.json").write_text(json.dumps({**cfg, "gl_iters": 5}))
    units = torch.arange(3, 28)
    flagged = load_codec("default")
    script.set_vocoder(flagged, n_iter=5)
    assert torch.equal(flagged.decode(units)[0], load_codec(copy).decode(units)[0])
    reseeded = load_codec(copy)
    script.set_vocoder(reseeded, seed=1)
    a, b = reseeded.decode(units)[0], load_codec(copy).decode(units)[0]
    assert a.shape == b.shape and not torch.equal(a, b)


def test_gl_iters_below_one_is_a_usage_error(script, tmp_path, capsys):
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps({"audio_filepath": "a.wav", "text": "hi"}) + "\n")
    with pytest.raises(SystemExit) as exc:
        script.main(["--codec", "default", "--manifest", str(m), "--gl-iters", "0", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "--gl-iters" in capsys.readouterr().err


def test_negative_n_is_a_usage_error(script, tmp_path, capsys):
    m = tmp_path / "m.jsonl"
    m.write_text("".join(json.dumps({"audio_filepath": f"{i}.wav", "text": "hi"}) + "\n" for i in range(3)))
    with pytest.raises(SystemExit) as exc:
        script.main(["--codec", "default", "--manifest", str(m), "--n", "-2", "--out", str(tmp_path / "o")])
    assert exc.value.code == 2 and "--n must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert len(script.load_items(str(m), 2, librivox=False)) == 2
    with pytest.raises(ValueError, match="n must be >= 0"):
        script.load_items(str(m), -2, librivox=False)


def test_judge_hears_every_clip_at_its_own_rate(script, tmp_path, monkeypatch):
    """The original, the round trip and the mel baseline reach the judge with their real sample rate (a
    22.05 kHz codec's clips told as 16 kHz would be heard slowed down)."""
    import towers.judges
    from towers.audio import save_audio
    from towers.codec import MelUnitCodecConfig
    from towers.codec_train import synthetic_babble, train_mel_unit_codec

    c = MelUnitCodecConfig(sample_rate=22_050, vocab_size=16, n_mels=40, dec_channels=16, dec_unit_dilations=[1],
                           dec_frame_dilations=[1], dec_kernel=3, gl_iters=4)
    codec = train_mel_unit_codec(synthetic_babble(seconds=2.0, n=4), 16_000, c, kmeans_iters=2, dec_steps=2,
                                 batch_size=2, crop_units=8, progress=False)
    codec.save_pretrained(tmp_path / "codec")
    save_audio(tmp_path / "clip.wav", synthetic_babble(seconds=3.0, n=1, seed=5)[0], 16_000)
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio_filepath": str(tmp_path / "clip.wav"), "text": "hello"}) + "\n")
    heard = []

    class FakeJudge:
        def __init__(self, **kw):
            pass

        def transcribe_one(self, item):
            wave, sr = item
            heard.append((sr, len(wave) / sr))
            return "hello"

    monkeypatch.setattr(towers.judges, "WhisperJudge", FakeJudge)
    script.main(["--codec", str(tmp_path / "codec"), "--manifest", str(tmp_path / "m.jsonl"), "--mel-baseline",
                 "--out", str(tmp_path / "ev"), "--threads", "1"])
    assert len(heard) == 3  # original, codec, mel baseline
    assert all(sr == 22_050 for sr, _ in heard)
    assert all(abs(seconds - 3.0) < 0.05 for _, seconds in heard), heard

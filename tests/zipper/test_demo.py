"""`zipper demo`, the README's main job, end to end on a tiny text tower, codec and corpus.

The real demo (SmolLM2, the shipped codec, 0.25 h of speech, 5 minutes of training) takes ~6 minutes;
this runs the same code path in seconds: every stage, the caches on a second run, and the
`zipper transcribe` command the demo prints at its end.
"""
from __future__ import annotations

import re

from tests.conftest import tiny_text_tower
from zipper.cli import main as cli
from zipper.demo import run_demo


def test_demo_end_to_end_then_cached(tmp_path, smollm2_tokenizer, capsys):
    from towers.audio import load_audio
    from towers.codec_train import train_tiny_codec
    from towers.corpus import build_corpus, read_manifest

    out = tmp_path / "demo"
    # 6 layers: the demo cross-attends into every 6th text layer
    tiny_text_tower(smollm2_tokenizer, layers=6).save_pretrained(tmp_path / "text")
    build_corpus(out / "corpus", size="tiny", progress=False)  # the demo reuses a corpus it finds
    rows = read_manifest(out / "corpus" / "train.jsonl")[:8]
    train_tiny_codec([load_audio(r["audio_filepath"])[0] for r in rows], vocab_size=32).save_pretrained(tmp_path / "codec")
    opts = dict(text_tower=str(tmp_path / "text"), codec_name=str(tmp_path / "codec"), tower_minutes=0.05, eval_utts=3)

    assert run_demo(str(out), minutes=0.05, **opts) == 0
    first = capsys.readouterr().out
    for step in range(1, 7):
        assert f"[{step}/6]" in first
    assert "held-out unit perplexity" in first and "cached from an earlier run" not in first
    assert re.search(r"held-out synthetic voices: WER \d+(\.\d+)?%", first)
    assert re.search(r"Whisper-base \(trained on 680,000 h of speech\) transcribes the same recordings at WER "
                     r"\d+(\.\d+)?%", first)  # the ASR number's scale, from the TTS test's reference audio
    assert (out / "speech-tower" / "config.json").exists() and (out / "zip" / "model").is_dir()
    assert "judge hears:" in first or "no speech units yet" in first
    if "judge hears:" in first:
        wave, sr = load_audio(out / "demo_tts.wav")
        assert len(wave) > 0 and sr > 0

    # a second run reuses the corpus and the speech tower; only the zip trains again
    tower_weights = (out / "speech-tower" / "model.safetensors").read_bytes()
    assert run_demo(str(out), minutes=0.05, **opts) == 0
    second = capsys.readouterr().out
    assert "cached from an earlier run" in second and "held-out unit perplexity" not in second
    assert (out / "speech-tower" / "model.safetensors").read_bytes() == tower_weights

    # the command the demo prints at its end works on the model it wrote
    printed = re.search(r"try it: zipper transcribe (\S+) --model (\S+)", second)
    assert printed and printed.group(2) == str(out / "zip" / "model")
    wav = read_manifest(out / "corpus" / "test.jsonl")[0]["audio_filepath"]
    assert cli(["transcribe", wav, "--model", printed.group(2)]) == 0


def test_a_bad_minutes_budget_is_refused_before_any_stage(tmp_path, capsys, monkeypatch):
    import towers.corpus

    def no_stage(*a, **k):
        raise AssertionError("a demo stage ran before the budget was checked")
    monkeypatch.setattr(towers.corpus, "build_corpus", no_stage)
    for minutes in ("-1", "nan", "inf"):
        assert cli(["demo", "--out", str(tmp_path / "demo"), "--minutes", minutes]) == 2
        err = capsys.readouterr().err
        assert err.startswith("zipper: error: --minutes must be a number >= 0") and err.count("\n") == 1, err
    assert not (tmp_path / "demo").exists()

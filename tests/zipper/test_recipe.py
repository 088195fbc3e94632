"""The recipes end to end on a tiny corpus: pretrain a speech tower, zip ASR/TTS, the single-decoder
baseline, resume, and the CLI on the trained models (the CI smoke path of `recipes/`).

The text tower is a tiny Llama carrying SmolLM2's real tokenizer, saved as a local checkpoint
directory: the same loading, tokenisation and recipe code as the real tower, at test speed (the real
SmolLM2 itself is covered by tests/towers/test_tower.py)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import load_recipe_script, tiny_text_tower
from towers.scoring import wer
from zipper import tasks
from zipper.cli import main as cli
from zipper.ctc_beam import KNOWN_WORDS_FILE, read_word_list
from zipper.data import corpus_words
from zipper.model import ZipperModel
from zipper.recipe import RecipeConfig, read_split, run, splits_used


@pytest.fixture(scope="module")
def world(tmp_path_factory, smollm2_tokenizer):
    from towers.audio import load_audio
    from towers.codec_train import train_tiny_codec
    from towers.corpus import build_corpus, read_manifest

    root = tmp_path_factory.mktemp("recipe")
    tiny_text_tower(smollm2_tokenizer).save_pretrained(root / "text")  # SmolLM2's tokenizer, tiny weights
    build_corpus(root / "corpus", size="tiny", progress=False)
    rows = read_manifest(root / "corpus" / "train.jsonl")[:8]
    train_tiny_codec([load_audio(r["audio_filepath"])[0] for r in rows], vocab_size=32).save_pretrained(root / "codec")
    base = dict(corpus=str(root / "corpus"), corpus_size="tiny", codec=str(root / "codec"), text_tower=str(root / "text"),
                speech_tower=str(root / "speech"), batch_size=2, warmup_steps=1, eval_utts=2, eval_real_speech=False)
    res = run(RecipeConfig(task="pretrain_speech", out=str(root / "pre"), steps=3, **base), results_md=root / "R.md")
    return root, base, res


def test_pretrain_speech_tower(world):
    root, _, res = world
    assert (root / "speech" / "model.safetensors").exists() and (root / "speech" / "unit_tokenizer.json").exists()
    assert res["metrics"]["heldout_unit_ppl"] > 1 and res["train_utts"] > 0
    row = (root / "R.md").read_text().splitlines()[-1]
    assert "pretrain_speech" in row and "heldout_unit_ppl" in row


def test_asr_zip_resume_and_cli(world, capsys):
    root, base, _ = world
    cfg = RecipeConfig(task="asr", out=str(root / "asr"), steps=2, ctc_weight=0.3, **base)  # hybrid CTC/attention
    first = run(cfg, results_md=None)
    assert first["steps"] == 2 and first["params"]["trainable"] > 0
    cfg.steps, cfg.eval_every = 3, 3
    second = run(cfg, results_md=None)  # resumes from the step-2 checkpoint
    assert second["steps"] == 3 and (root / "asr" / "checkpoints" / "step-0000003" / "COMPLETE").exists()
    assert set(second["dev_curve"][-1]) == {"step", "dev_wer", "dev_text_nll", "dev_speech_info"}
    assert set(second["metrics"]["test_asr_beam1"]) >= {"wer", "cer", "n_utts", "ctc_wer", "ctc_cer", "speech_info"}
    model = root / "asr" / "model"
    assert (model / "zipper.safetensors").exists() and (model / "codec" / "codec.safetensors").exists()
    saved = json.loads((model / "zipper_config.json").read_text())  # the default "Text:" prefix, persisted
    from towers import load_tower

    assert saved["prefix_ids"] == [[], load_tower(base["text_tower"]).tokenizer("Text:", add_special_tokens=False).input_ids]
    assert len(saved["prefix_ids"][1]) == 2
    assert saved["ctc_directions"] == ["speech->text"] and saved["ctc_weight"] == 0.3
    wav = read_first_test_wav(root)
    assert cli(["transcribe", wav, "--model", str(model)]) == 0
    assert not (model / KNOWN_WORDS_FILE).exists()  # no character CTC head: no fused search to know words for
    capsys.readouterr()
    assert cli(["transcribe", str(root / "missing.wav"), "--model", str(model)]) == 2
    assert "zipper: error:" in capsys.readouterr().err


def test_character_ctc_zip_with_fused_decoding_in_the_recipe_eval_and_transcribe(world, capsys, monkeypatch):
    root, base, _ = world
    cfg = RecipeConfig(task="asr", out=str(root / "asr_chars"), steps=2, ctc_weight=0.3, ctc_units="chars",
                       eval_fusion=True, fusion_beam=2, **base)
    res = run(cfg, results_md=root / "R_chars.md")
    fused = res["metrics"]["test_asr_fusion"]
    assert fused["n_utts"] == 2 and fused["wer"] >= 0 and "speech_info" not in fused  # teacher-forced: beam 1 only
    assert "test_asr_fusion.wer=" in (root / "R_chars.md").read_text()
    hyps = root / "asr_chars" / "hyps" / "model"  # every utterance's hypothesis, beside the numbers
    assert sorted(p.name for p in hyps.iterdir()) == ["test_asr_beam1.jsonl", "test_asr_fusion.jsonl"]
    saved = json.loads((root / "asr_chars" / "results.json").read_text())["metrics"]
    from towers.corpus import read_manifest

    test_ids = {r["id"] for r in read_manifest(root / "corpus" / "test.jsonl")}
    ids = []
    for key in ("test_asr_beam1", "test_asr_fusion"):
        rows = [json.loads(line) for line in (hyps / f"{key}.jsonl").read_text().splitlines()]
        ids.append([r["id"] for r in rows])
        assert len(set(ids[-1])) == len(rows) == saved[key]["n_utts"] and set(ids[-1]) <= test_ids
        assert "utts" not in saved[key] and "utts" not in res["metrics"][key]
        assert round(100 * wer([r["ref"] for r in rows], [r["hyp"] for r in rows]).wer, 2) == saved[key]["wer"]
        assert ("ctc_hyp" in rows[0]) == (key == "test_asr_beam1")  # the CTC head's own, with greedy decoding
    assert ids[0] == ids[1]  # the same utterances in the same order: comparable line by line
    known = root / "asr_chars" / "model" / KNOWN_WORDS_FILE  # the training text's words travel with the model
    assert set(read_word_list(known)) == corpus_words(base["corpus"]) != set()
    config = write_config(root, "asr_chars", task="asr", ctc_weight=0.3, ctc_units="chars", **base)
    assert cli(["eval", str(config), "--beams", "1", "2", "--fusion", "--fusion-beam", "2"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out[out.index("{\n"):])  # after the loading messages
    assert set(shown) == {"test_asr_beam1", "test_asr_beam2", "test_asr_fusion"}
    # `zipper eval` writes beside the model it tests, named by the setting it changed from the config's
    assert sorted(p.name for p in (hyps / "fusion-beam2").iterdir()) == [f"test_asr_{k}.jsonl" for k in
                                                                         ("beam1", "beam2", "fusion")]
    cmp = load_recipe_script("diagnostics/compare_asr").main(
        [str(hyps / "fusion-beam2" / "test_asr_beam1.jsonl"), str(hyps / "fusion-beam2" / "test_asr_beam2.jsonl"),
         "--n", "50"])
    assert (cmp["wer_a"], cmp["wer_b"]) == (shown["test_asr_beam1"]["wer"], shown["test_asr_beam2"]["wer"])
    assert cmp["n_utts"] == 2 and cmp["diff"] == pytest.approx(cmp["wer_b"] - cmp["wer_a"], abs=0.02)
    assert cli(["eval", str(config), "--eval-utts", "1"]) == 0  # fewer (or more) test utterances than the config's
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{\n"):])["test_asr_beam1"]["n_utts"] == 1
    assert len((hyps / "eval-utts1" / "test_asr_beam1.jsonl").read_text().splitlines()) == 1
    assert len((hyps / "test_asr_beam1.jsonl").read_text().splitlines()) == 2  # the training run's test: kept
    assert cli(["eval", str(config)]) == 0  # the config's settings: the training run's files, written again
    assert sorted(p.name for p in hyps.iterdir()) == ["eval-utts1", "fusion-beam2", "test_asr_beam1.jsonl",
                                                      "test_asr_fusion.jsonl"]
    # a model of another run (an asr_states.py pass, a copy) may be tested with several configs: each its own folder
    import shutil

    other = root / "elsewhere" / "model"
    shutil.copytree(root / "asr_chars" / "model", other)
    shutil.copy(root / "asr_chars" / "results.json", other.parent / "results.json")
    for name in ("asr_chars", "asr_chars_again"):
        assert cli(["eval", str(write_config(root, name, task="asr", ctc_weight=0.3, ctc_units="chars", **base)),
                    "--model", str(other), "--eval-utts", "1", "--results-md", str(root / "R_other.md")]) == 0
        assert len((other.parent / "hyps" / "model" / name / "eval-utts1" / "test_asr_beam1.jsonl")
                   .read_text().splitlines()) == 1
    tests = json.loads((other.parent / "results.json").read_text())["tests"]  # both tests' records are kept
    assert sorted(tests) == [f"hyps/model/{name}/eval-utts1" for name in ("asr_chars", "asr_chars_again")]
    assert all(t["metrics"]["test_asr_beam1"]["n_utts"] == 1 and "--results-md" in t["command"] for t in tests.values())
    rows = (root / "R_other.md").read_text().splitlines()[-2:]  # and both rows, each naming its config
    assert ["asr_chars.json --model" in rows[0], "asr_chars_again.json --model" in rows[1]] == [True, True]
    assert sorted(p.name for p in hyps.iterdir()) == ["eval-utts1", "fusion-beam2", "test_asr_beam1.jsonl",
                                                      "test_asr_fusion.jsonl"]  # the config's own run: untouched
    assert cli(["transcribe", read_first_test_wav(root), "--model", str(root / "asr_chars" / "model"), "--fusion",
                "--fusion-beam", "2"]) == 0
    seen, real = [], tasks.fused_transcribe_units  # --fusion-alpha / --fusion-beta reach the search
    monkeypatch.setattr(tasks, "fused_transcribe_units",
                        lambda *a, **k: seen.append((k["alpha"], k["beta"], set(k["words"]))) or real(*a, **k))
    assert cli(["eval", str(config), "--fusion", "--fusion-beam", "2", "--fusion-alpha", "0.25", "--fusion-beta", "-1"]) == 0
    assert cli(["transcribe", read_first_test_wav(root), "--model", str(root / "asr_chars" / "model"), "--fusion",
                "--fusion-beam", "2", "--fusion-alpha", "0", "--fusion-beta", "1.5"]) == 0
    assert {(a, b) for a, b, _ in seen[:-1]} == {(0.25, -1.0)} and seen[-1][:2] == (0.0, 1.5), seen
    assert all(words == corpus_words(base["corpus"]) for *_, words in seen)  # eval and transcribe know the same words
    from zipper.quantize import Int8Linear

    int8 = []  # --int8: the search reads a text tower whose linear layers run in int8
    monkeypatch.setattr(tasks, "fused_transcribe_units", lambda model, *a, **k: int8.append(
        any(isinstance(x, Int8Linear) for x in model.tower("text").model.modules())) or real(model, *a, **k))
    for flags in ([], ["--int8"]):
        assert cli(["transcribe", read_first_test_wav(root), "--model", str(root / "asr_chars" / "model"), "--fusion",
                    "--fusion-beam", "2", *flags]) == 0
    assert int8 == [False, True]
    capsys.readouterr()
    # eval --int8: the same search on an int8 tower, its numbers named so, in the row and beside the fp32 ones
    assert cli(["eval", str(config), "--fusion", "--fusion-beam", "2", "--int8",
                "--results-md", str(root / "R_chars.md")]) == 0
    assert int8[2:] == [True]
    out = capsys.readouterr().out
    shown = json.JSONDecoder().raw_decode(out[out.index("{\n"):])[0]  # the row's message follows
    assert set(shown) == {"test_asr_beam1_int8", "test_asr_fusion_int8"}
    assert sorted(p.name for p in (hyps / "fusion-beam2_int8").iterdir()) == [f"test_asr_{k}_int8.jsonl" for k in
                                                                              ("beam1", "fusion")]
    row = (root / "R_chars.md").read_text().splitlines()[-1]
    assert "test_asr_fusion_int8.wer=" in row and "--fusion-beam 2 --int8 --results-md" in row
    record = json.loads((root / "asr_chars" / "results.json").read_text())
    assert {"test_asr_fusion", "test_asr_fusion_int8"} <= set(record["metrics"])
    assert "hyps/model/fusion-beam2_int8" in record["tests"]
    # an interrupted fused test resumes from its journal: the utterances done are not searched again, and the
    # hypotheses are an uninterrupted test's
    monkeypatch.setattr(tasks, "JOURNAL_CHUNK", 1)
    searched = []

    def stop_at_the_second(model, units, **k):
        searched.append(len(units))
        if len(searched) == 2:
            raise KeyboardInterrupt
        return real(model, units, **k)
    monkeypatch.setattr(tasks, "fused_transcribe_units", stop_at_the_second)
    before = (hyps / "fusion-beam2" / "test_asr_fusion.jsonl").read_text()
    args = ["eval", str(config), "--beams", "1", "2", "--fusion", "--fusion-beam", "2"]
    capsys.readouterr()
    assert cli(args) == 130
    journal = hyps / "fusion-beam2" / ".test_asr_fusion.partial.jsonl"
    assert f"1 of 2 hypotheses are kept in {journal}: the same command resumes there" in capsys.readouterr().err
    assert len(journal.read_text().splitlines()) == 2 and searched == [1, 1]  # its key and one hypothesis
    monkeypatch.setattr(tasks, "fused_transcribe_units",
                        lambda model, units, **k: searched.append(len(units)) or real(model, units, **k))
    assert cli(args) == 0
    assert searched == [1, 1, 1] and (hyps / "fusion-beam2" / "test_asr_fusion.jsonl").read_text() == before
    assert not journal.exists()
    tts = write_config(root, "tts_x", task="tts", directions=["text->speech"], **base)
    assert cli(["eval", str(tts), "--int8"]) == 2
    assert "tts recipe, whose decoder is the speech tower" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["eval", str(config), "--fusion", "--fusion-beam", "0"])
    assert "--fusion-beam: must be >= 1, got 0" in capsys.readouterr().err
    assert cli(["eval", str(write_config(root, "asr", task="asr", ctc_weight=0.3, **base)), "--fusion"]) == 2
    assert "eval_fusion needs a character CTC head" in capsys.readouterr().err


def test_long_audio_is_transcribed_in_pieces_cut_at_its_pauses(world, capsys, tmp_path):
    """`zipper transcribe` (zipper.tasks.transcribe_audio) cuts audio longer than --chunk-seconds at its pauses and
    joins the pieces' texts: the same texts as each piece transcribed alone, greedy and fused; shorter audio is
    transcribed whole."""
    import numpy as np
    import soundfile as sf

    from towers.audio import load_audio
    from towers.chunking import speech_chunks
    from towers.corpus import read_manifest
    from zipper.cli import _load_model_codec
    from zipper.tasks import transcribe_audio

    root, base, _ = world
    run(RecipeConfig(task="asr", out=str(tmp_path / "asr"), steps=1, ctc_weight=0.3, ctc_units="chars", **base),
        results_md=None)
    model_dir = tmp_path / "asr" / "model"
    model, codec = ZipperModel.from_pretrained(model_dir), _load_model_codec(model_dir)
    sr = codec.sample_rate
    waves = [load_audio(r["audio_filepath"], target_sr=sr)[0] for r in read_manifest(root / "corpus" / "test.jsonl")[:3]]
    gap = np.zeros(int(0.5 * sr), np.float32)
    long = np.concatenate([waves[0], gap, waves[1], gap, waves[2]])
    chunk = max(len(w) for w in waves) / sr + 0.5
    pieces = speech_chunks(long, sr, chunk)
    assert len(pieces) >= 2
    for fusion in (None, dict(beam=2)):
        got = transcribe_audio(model, codec, [(long, sr)], chunk_seconds=chunk, fusion=fusion)[0]
        alone = [transcribe_audio(model, codec, [(long[a:b], sr)], chunk_seconds=0, fusion=fusion)[0] for a, b in pieces]
        assert got == " ".join(t for t in alone if t)
        short = (waves[0], sr)  # shorter than the chunk: whole
        assert transcribe_audio(model, codec, [short], chunk_seconds=chunk, fusion=fusion) == \
            transcribe_audio(model, codec, [short], chunk_seconds=0, fusion=fusion)
    path = tmp_path / "long.wav"
    sf.write(path, long, sr)
    capsys.readouterr()
    assert cli(["transcribe", str(path), "--model", str(model_dir), "--chunk-seconds", f"{chunk!r}"]) == 0
    text = transcribe_audio(model, codec, [(long, sr)], chunk_seconds=chunk)[0]
    assert capsys.readouterr().out.splitlines()[-1] == text
    assert cli(["transcribe", str(path), "--model", str(model_dir), "--chunk-seconds", f"{chunk!r}", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out.splitlines()[-1])  # where each piece was cut, and its text
    assert shown["audio"] == str(path) and shown["text"] == text
    assert [(p["start"], p["end"]) for p in shown["pieces"]] == [(round(a / sr, 2), round(b / sr, 2)) for a, b in pieces]
    assert " ".join(p["text"] for p in shown["pieces"] if p["text"]) == text
    with pytest.raises(SystemExit):
        cli(["transcribe", str(path), "--model", str(model_dir), "--chunk-seconds", "-1"])
    assert "--chunk-seconds: must be >= 0" in capsys.readouterr().err

    # recipes/diagnostics/long_audio.py --corpus: recordings of one voice's utterances played one after another
    long_audio = load_recipe_script("diagnostics/long_audio")
    recordings = long_audio.test_recordings(root / "corpus", 2, 2, "train")  # the tiny corpus tests 2 utterances
    assert [len({r["voice"] for r in rows}) for rows in recordings] == [1, 1]
    assert len({r["id"] for rows in recordings for r in rows}) == 4
    got = long_audio.main(["--model", str(model_dir), "--corpus", str(root / "corpus"), "--recordings", "2",
                           "--per-recording", "2", "--split", "train", "--chunk-seconds", f"{chunk!r}"])
    assert got["recordings"] == 2 and [p["reference"] for p in got["per_recording"]] == \
        [" ".join(r["text"] for r in rows) for rows in recordings]
    for rec, rows in zip(got["per_recording"], recordings):
        waves = [load_audio(r["audio_filepath"], target_sr=sr)[0] for r in rows]
        assert rec["hyp_clips"] == " ".join(transcribe_audio(model, codec, [(w, sr) for w in waves], chunk_seconds=0))
        assert rec["hyp_whole"] == transcribe_audio(model, codec, [(np.concatenate(waves), sr)], chunk_seconds=0)[0]
    assert got["wer_clips"] == round(100 * wer([p["reference"] for p in got["per_recording"]],
                                               [p["hyp_clips"] for p in got["per_recording"]]).wer, 1)
    with pytest.raises(SystemExit, match="too few test utterances"):
        long_audio.test_recordings(root / "corpus", 2, 2)


def whisper_unit_zip(base: dict, tmp_path: Path) -> Path:
    """A character-CTC ASR zip trained 2 steps over Whisper units (a random 32-unit codec: the real encoder runs),
    in tmp_path/asr; returns its config."""
    import torch

    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig

    wcfg = WhisperUnitCodecConfig(vocab_size=32, n_mels=20, dec_channels=8, dec_unit_dilations=[1], dec_kernel=3,
                                  gl_iters=2)
    WhisperUnitCodec(wcfg, torch.randn(32, 512, generator=torch.Generator().manual_seed(0))).save_pretrained(
        tmp_path / "wcodec")
    kw = dict(task="asr", ctc_weight=0.3, ctc_units="chars", **{**base, "codec": str(tmp_path / "wcodec")})
    config = write_config(tmp_path, "asr", steps=2, **kw)
    run(RecipeConfig.from_json(config), results_md=tmp_path / "R.md")
    return config


def test_asr_states_extends_a_trained_zip_that_eval_and_transcribe_then_feed_with_states(world, capsys, tmp_path):
    """recipes/asr_states.py on a zip trained over Whisper units."""
    import torch

    root, base, _ = world
    config = whisper_unit_zip(base, tmp_path)
    out = tmp_path / "states"
    args = ["--model", str(tmp_path / "asr" / "model"), "--config", str(config), "--train-utts", "4",
            "--dev-utts", "2", "--epochs", "1", "--batch-size", "2", "--out", str(out)]
    corpus = Path(json.loads(Path(config).read_text())["corpus"])
    for cache in corpus.glob("units-*/train*"):  # one encoder run gives states and units: the units' cache is not
        cache.unlink()                            # needed, nor written again
    assert load_recipe_script("asr_states").main(args) == 0
    assert not list(corpus.glob("units-*/train*"))
    res = json.loads((out / "results.json").read_text())
    assert [h["epoch"] for h in res["history"]] == [0, 1] and res["train_utts"] == 4 and "asr_states.py" in res["command"]
    model = ZipperModel.from_pretrained(out / "model")
    assert model.config.feature_towers == ["speech"] and model.feature_inputs["speech"].proj.weight.abs().sum() > 0
    assert (out / "model" / KNOWN_WORDS_FILE).read_text() == (tmp_path / "asr" / "model" / KNOWN_WORDS_FILE).read_text()
    capsys.readouterr()
    assert cli(["eval", str(config), "--model", str(out / "model"), "--fusion", "--fusion-beam", "2", "--fusion-alpha",
                "0.5", "--results-md",
                str(tmp_path / "R.md")]) == 0
    shown = capsys.readouterr().out
    assert json.loads(shown[shown.index("{\n"):shown.index("\n}\n") + 2])["test_asr_beam1"]["n_utts"] == 2
    row = (tmp_path / "R.md").read_text().splitlines()[-1]  # the eval completes the script's record and row
    assert "dev_ctc.ctc_cer=" in row and "test_asr_fusion.wer=" in row and "recipes/asr_states.py --model" in row
    assert "--fusion-beam 2 --fusion-alpha 0.5 --results-md" in row  # the row's command is the one that ran
    assert cli(["transcribe", read_first_test_wav(root), "--model", str(out / "model")]) == 0
    # a zip the script made: its feature input trains further, on utterances it has not seen (--skip-utts)
    again = ["--model", str(out / "model"), *args[2:-1], str(tmp_path / "again"), "--skip-utts", "4"]
    assert load_recipe_script("asr_states").main(again) == 0
    res = json.loads((tmp_path / "again" / "results.json").read_text())
    assert res["metrics"]["dev_ctc_before"]["ctc_cer"] == json.loads((out / "results.json").read_text())[
        "metrics"]["dev_ctc"]["ctc_cer"]  # it starts where the first run ended
    trained = ZipperModel.from_pretrained(tmp_path / "again" / "model").feature_inputs["speech"].proj.weight
    assert not torch.equal(trained, model.feature_inputs["speech"].proj.weight)
    # --train decoder: the cross-attention blocks learn from the zip's loss, nothing else moves
    dec = ["--model", str(out / "model"), *args[2:-1], str(tmp_path / "dec"), "--train", "decoder"]
    capsys.readouterr()
    assert load_recipe_script("asr_states").main(dec) == 0
    shown = capsys.readouterr().out  # the first run's utterances: their encoder states come from its cache
    assert "encoder states of 4 utterances read from" in shown and "encoder states of 2 utterances read" in shown
    res = json.loads((tmp_path / "dec" / "results.json").read_text())
    assert res["trained"] == "decoder" and {"wer", "cer"} <= set(res["metrics"]["dev_greedy"])
    assert ("no pass beat the given zip" in shown) == (not res["beats_the_given_zip"])  # said, not only recorded
    before, after = model.zip_state_dict(), ZipperModel.from_pretrained(tmp_path / "dec" / "model").zip_state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(("blocks.", "input_projections.")) for k in moved), sorted(moved)[:5]
    with pytest.raises(SystemExit, match="train its feature input first"):  # a unit zip has no states to read
        load_recipe_script("asr_states").main(["--model", str(tmp_path / "asr" / "model"), *dec[2:-3],
                                               str(tmp_path / "dec2"), "--train", "decoder"])
    # --train tower: the feature input, the speech tower (frozen in this zip: the config unfreezes it, so that the
    # zip saves it) and the CTC head's layer learn by the CTC loss; the blocks and the text tower stay
    orig = {n: p.detach().clone() for n, p in model.named_parameters()}  # towers may be shared: copy them first
    tow = ["--model", str(out / "model"), *args[2:-1], str(tmp_path / "tower"), "--train", "tower"]
    assert load_recipe_script("asr_states").main(tow) == 0
    assert json.loads((tmp_path / "tower" / "results.json").read_text())["lr"] == 1e-4
    trained = ZipperModel.from_pretrained(tmp_path / "tower" / "model")
    assert dict(zip(trained.config.modalities, trained.config.frozen)) == {"speech": False, "text": True}
    moved = {n for n, p in trained.named_parameters() if not torch.equal(orig[n], p)}
    assert any(n.startswith("towers.speech.") for n in moved) and any(n.startswith("ctc_heads.") for n in moved)
    assert all(n.startswith(("towers.speech.", "feature_inputs.", "ctc_heads.")) for n in moved), sorted(moved)[:5]


def test_asr_states_voices_keep_the_named_voices_and_engines_in_order():
    """--voices: names or engines ("flite" is every flite-... voice, not "flite2-x"), chosen before --skip-utts and
    --train-utts slice; a resumed pass must give the same ones."""
    script = load_recipe_script("asr_states")
    rows = [{"id": i, "voice": v} for i, v in enumerate(["flite-slt", "espeak-us-m1", "festival-kal", "flite2-x",
                                                         "flite-awb", "piper-joe"])]
    assert [r["id"] for r in script.of_voices(rows, ["flite", "piper-joe"])] == [0, 4, 5]
    assert script.of_voices(rows, ["espeak-us-m1"]) == [rows[1]] and script.of_voices(rows, None) is rows
    with pytest.raises(SystemExit, match="no training utterance.*espeak-us-m1, festival-kal"):
        script.of_voices(rows, ["fli"])  # a prefix is not an engine
    assert "voices" in script.SAME_ON_RESUME
    assert script.build_parser().parse_args(["--model", "m", "--config", "c", "--out", "o", "--voices", "flite",
                                             "piper-joe"]).voices == ["flite", "piper-joe"]


def test_an_asr_states_pass_stopped_part_way_resumes_to_what_one_run_trains(world, capsys, tmp_path, monkeypatch):
    """Ctrl-C in the second pass of recipes/asr_states.py: the step finishes and is checkpointed; the same command
    resumes there and ends with the weights and dev history of an uninterrupted run. Other arguments, a finished
    pass and a model/ without checkpoints are refused."""
    import os
    import signal

    import torch

    from zipper.train import TrainingInterrupted

    _, base, _ = world
    config = whisper_unit_zip(base, tmp_path)
    args = ["--model", str(tmp_path / "asr" / "model"), "--config", str(config), "--train", "tower", "--train-utts",
            "4", "--dev-utts", "2", "--epochs", "2", "--batch-size", "2", "--out"]
    assert load_recipe_script("asr_states").main([*args, str(tmp_path / "one")]) == 0
    script, calls = load_recipe_script("asr_states"), []

    def interrupted(*a):  # the 3rd step (the second pass's first) gets a Ctrl-C
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return step_loss(*a)

    step_loss = script.step_loss
    monkeypatch.setattr(script, "step_loss", interrupted)
    with pytest.raises(TrainingInterrupted, match="SIGINT at step 3"):
        script.main([*args, str(tmp_path / "two")])
    two = tmp_path / "two"
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-0000002", "step-0000003"]
    started = json.loads((two / "checkpoints" / "step-0000003" / "trainer_state.json").read_text())["started"]
    assert not (two / "results.json").exists() and (two / "model").exists()  # the first pass's zip
    with pytest.raises(SystemExit, match=r"other arguments \(--seed 0\)"):
        script.main([*args, str(two), "--seed", "1"])
    capsys.readouterr()
    assert script.main([*args, str(two)]) == 0
    assert "resuming" in capsys.readouterr().out and len(calls) == 4  # step 4 alone
    res = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("one", "two")]
    assert res[0]["history"] == res[1]["history"] and res[0]["steps"] == res[1]["steps"] == 4
    assert res[1]["started"] == started  # the interrupted run's start; its wall time counts too
    one, two_ = (dict(ZipperModel.from_pretrained(tmp_path / d / "model").named_parameters()) for d in ("one", "two"))
    assert all(torch.equal(one[n], two_[n]) for n in one)
    assert not (two / "checkpoints").exists()  # a finished pass keeps model/ and results.json
    with pytest.raises(SystemExit, match="finished pass"):
        script.main([*args, str(two)])
    (tmp_path / "three").mkdir()
    (two / "model").rename(tmp_path / "three" / "model")
    with pytest.raises(SystemExit, match="no checkpoint to resume"):
        script.main([*args, str(tmp_path / "three")])


def test_a_zip_that_reads_the_states_from_its_first_step(world, capsys, tmp_path, monkeypatch):
    """``speech_states``: the zip is built with its feature input and trained on the states (no unit zip first);
    the states of the rows it reads are computed once, cached beside the corpus, read again by `zipper eval`,
    and packed by `zipper data pack` for a machine without the audio."""
    import re
    import shutil
    import tarfile

    import torch

    import zipper.data
    from towers.whisper_units import WhisperUnitCodec, WhisperUnitCodecConfig
    from zipper.config import ConfigError
    from zipper.data import codec_id

    root, base, _ = world
    wcfg = WhisperUnitCodecConfig(vocab_size=32, n_mels=20, dec_channels=8, dec_unit_dilations=[1], dec_kernel=3,
                                  gl_iters=2)
    WhisperUnitCodec(wcfg, torch.randn(32, 512, generator=torch.Generator().manual_seed(1))).save_pretrained(
        tmp_path / "wcodec")
    cid = codec_id(WhisperUnitCodec.from_pretrained(tmp_path / "wcodec"))
    corpus = tmp_path / "corpus"  # a copy: this test's cache files stay out of the other tests' corpus
    shutil.copytree(root / "corpus", corpus, ignore=shutil.ignore_patterns("units-*", "states-*"))
    monkeypatch.chdir(tmp_path)  # the config names its corpus relative to here, as `zipper data pack` needs
    kw = dict(base, task="asr", ctc_weight=0.3, ctc_units="chars", codec=str(tmp_path / "wcodec"), corpus="corpus",
              speech_states=True, eval_every=1, steps=2)
    config = write_config(tmp_path, "asr", **kw)
    capsys.readouterr()
    res = run(RecipeConfig.from_json(config), results_md=tmp_path / "R.md")
    # train, dev and test: states and their units from one encoder run, no separate unit encoding
    assert not (corpus / f"units-{cid}").exists() and len(list((corpus / f"states-{cid}").iterdir())) == 3
    assert {"dev_wer", "step"} <= set(res["dev_curve"][0]) and res["metrics"]["test_asr_beam1"]["n_utts"] == 2
    model = ZipperModel.from_pretrained(tmp_path / "asr" / "model")
    assert model.config.feature_towers == ["speech"] and model.config.feature_dim == 512
    assert model.feature_inputs["speech"].proj.weight.abs().sum() > 0  # trained from zero
    capsys.readouterr()
    assert cli(["eval", str(config), "--results-md", str(tmp_path / "R.md")]) == 0
    shown = capsys.readouterr().out
    # the test rows' states: the training run's cache, read once (read_split), not again by the evaluation
    assert shown.count("encoder states of 2 utterances read from") == 1
    assert not (corpus / f"units-{cid}").exists()  # nor did the eval encode units apart from the states
    assert cli(["transcribe", read_first_test_wav(root), "--model", str(tmp_path / "asr" / "model")]) == 0
    capsys.readouterr()  # recipes/diagnostics/feature_share.py: the trained input adds something, the units' own too
    assert load_recipe_script("diagnostics/feature_share").main([str(config), str(tmp_path / "asr" / "model"), "2"]) == 0
    added, embedded = [float(x) for x in re.findall(r"norm (\d+\.\d+)", capsys.readouterr().out)]
    assert added > 0 and embedded > 0
    with pytest.raises(ConfigError, match="speech_states needs a codec over Whisper encoder states"):
        run(RecipeConfig(**{**kw, "codec": base["codec"], "out": str(tmp_path / "mel")}), results_md=None)
    # the pack carries the states caches the run read, not the audio: there, no encoder runs
    assert cli(["data", "pack", str(config), "-o", str(tmp_path / "pack.tar.xz")]) == 0
    with tarfile.open(tmp_path / "pack.tar.xz") as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "there", filter="data")
    assert not any(n.endswith(".wav") for n in names) and sum(f"states-{cid}/" in n for n in names) == 3
    cfg, codec = RecipeConfig.from_json(config), WhisperUnitCodec.from_pretrained(tmp_path / "wcodec")
    monkeypatch.setattr(zipper.data, "states_and_units", lambda *a: pytest.fail("the pack lacks a states cache"))
    for split, keep in splits_used(cfg, training=True).items():
        rows = read_split(cfg, tmp_path / "there" / "corpus", split, codec, keep, progress=False)
        assert rows and all(r["states"].shape == (len(r["units"]), 512) for r in rows)
    # a corpus where the states cannot be cached: the run goes on without, a pack says what it would lack
    def read_only(*a, **k):
        raise PermissionError("read-only file system")

    monkeypatch.undo()  # the encoder may run again
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(zipper.data, "_write_cache", read_only)
    shutil.rmtree(corpus / f"states-{cid}")
    capsys.readouterr()
    assert cli(["data", "pack", str(config), "-o", str(tmp_path / "pack.tar.xz"), "--overwrite"]) == 2
    assert "could not write the caches" in capsys.readouterr().err and tarfile.is_tarfile(tmp_path / "pack.tar.xz")


def test_tts_zip_and_speak(world, capsys):
    from towers.corpus import read_manifest

    root, base, _ = world
    voice = read_manifest(root / "corpus" / "train.jsonl")[0]["voice"]
    cfg = RecipeConfig(task="tts", out=str(root / "tts"), steps=2, directions=["text->speech"], voice_prompt=voice,
                       train_speech_tower=True, eval_every=2, guided_attention=0.5, best_metric="dev_unit_nll", **base)
    res = run(cfg, results_md=None)
    assert res["best"] == {"step": 2, "value": res["dev_curve"][-1]["dev_unit_nll"]} and not res["stopped_early"]
    assert set(res["dev_curve"][-1]) == {"step", "dev_unit_nll", "dev_text_info", "dev_tts_guide_loss"}
    assert 0 < res["dev_curve"][-1]["dev_tts_guide_loss"] < 1
    tts = res["metrics"]["test_tts"]
    assert tts["unit_nll"] > 0 and tts["unit_nll_other_text"] - tts["unit_nll"] == pytest.approx(tts["text_info"], abs=2e-4)
    assert tts["n_utts"] == 2 and tts["judge_wer_vs_gold"] >= 0 and tts["reference_audio_judge_wer"] >= 0
    assert 1 <= tts["reference_audio_dnsmos_ovrl"] <= 5 and tts["empty_outputs"] + bool(tts["dnsmos_ovrl"]) >= 1
    rows = [json.loads(line) for line in (root / "tts" / "hyps" / "model" / "test_tts.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and "utts" not in tts
    assert round(100 * wer([r["text"] for r in rows], [r["judge_heard"] for r in rows]).wer, 2) == tts["judge_wer_vs_gold"]
    assert round(100 * wer([r["text"] for r in rows], [r["reference_heard"] for r in rows]).wer, 2) == \
        tts["reference_audio_judge_wer"]
    out = root / "hello.wav"
    assert cli(["speak", "hello world", "--model", str(root / "tts" / "model"), "-o", str(out), "--voice", voice]) == 0
    assert out.stat().st_size > 44
    # the model names the voices it was taught (voices.json): the tested one is the default, others are refused
    taught = sorted({r["voice"] for r in read_manifest(root / "corpus" / "train.jsonl")})
    assert json.loads((root / "tts" / "model" / "voices.json").read_text()) == {"voice_prompt": voice, "voices": taught}
    capsys.readouterr()
    assert cli(["speak", "hello world", "--model", str(root / "tts" / "model"), "-o", str(root / "dflt.wav")]) == 0
    assert f"voice {voice})" in capsys.readouterr().out and (root / "dflt.wav").read_bytes() == out.read_bytes()
    assert cli(["speak", "hello world", "--model", str(root / "tts" / "model"), "-o", str(root / "no.wav"),
                "--voice", "nobody"]) == 2
    assert f"not trained to speak in voice 'nobody'; its voices: {', '.join(taught)}" in capsys.readouterr().err
    assert not (root / "no.wav").exists()
    # longer text is spoken in pieces (whole sentences while they fit), each as it is spoken alone, with pauses
    import torch

    from zipper.cli import _load_model_codec
    from zipper.data import voice_text_prompt
    from zipper.tasks import speak_text, speak_units

    model, codec = ZipperModel.from_pretrained(root / "tts" / "model"), _load_model_codec(root / "tts" / "model")
    text, prompt = "The first sentence is here. And a second one, with a comma.", voice_text_prompt(voice)
    wave, sr, units = speak_text(model, codec, text, chunk_chars=30, prompt=prompt, pause_seconds=0.5)
    alone = [speak_units(model, [t], units_per_second=codec.units_per_second, prompts=[prompt])[0]
             for t in ("The first sentence is here.", "And a second one,", "with a comma.")]
    assert len(units) == 3 and all(torch.equal(u, a) for u, a in zip(units, alone))
    waves = [torch.as_tensor(codec.decode(u)[0]).float() for u in alone if len(u)]
    pause = torch.zeros(int(0.5 * sr))
    assert torch.equal(wave, torch.cat([x for w in waves for x in (pause, w)][1:]) if waves else torch.zeros(0))
    assert speak_text(model, codec, text, chunk_chars=0, prompt=prompt)[2][0].equal(
        speak_units(model, [text], units_per_second=codec.units_per_second, prompts=[prompt])[0])  # 0: whole
    before = out.read_bytes()
    assert cli(["speak", "hello again", "--model", str(root / "tts" / "model"), "-o", str(out)]) == 2
    assert out.read_bytes() == before  # nothing overwritten without --overwrite
    assert "exists" in capsys.readouterr().err


def test_untested_training_is_tested_later_by_eval_with_its_row(world, monkeypatch, capsys):
    """eval_test false (a GPU machine without the judges) trains and saves only, without reading the test
    split; `zipper eval --results-md` tests it later and appends the run's row, naming both machines and
    both commands."""
    import towers.judges

    root, base, _ = world

    class NoJudge:
        def __init__(self, *a, **k):
            raise AssertionError("eval_test false must not load a judge")

    import zipper.data

    read, load_split = [], zipper.data.load_split

    def recording(corpus, name, *a, **k):  # the test audio need not be on the machine that trains
        read.append(name)
        return load_split(corpus, name, *a, **k)

    with monkeypatch.context() as m:
        m.setattr(towers.judges, "WhisperJudge", NoJudge)
        m.setattr(zipper.data, "load_split", recording)
        res = run(RecipeConfig(task="tts", out=str(root / "tts_later"), steps=1, directions=["text->speech"],
                               eval_test=False, **base), results_md=None)
    assert res["metrics"] == {} and (root / "tts_later" / "model" / "zipper.safetensors").exists()
    assert sorted(read) == ["dev", "train"]
    config = write_config(root, "tts_later", task="tts", directions=["text->speech"], steps=1, **base)
    md = root / "R_later.md"
    import zipper.recipe
    import zipper.results

    head, test_metrics = ["c0ffee1"], zipper.recipe.test_metrics

    def testing_then_commit(*a, **k):  # a commit made while the test runs is not the code that tested
        out = test_metrics(*a, **k)
        head[0] = "beef002"
        return out

    monkeypatch.setattr(zipper.results, "git_hash", lambda: head[0])
    monkeypatch.setattr(zipper.recipe, "test_metrics", testing_then_commit)
    assert cli(["eval", str(config), "--results-md", str(md)]) == 0
    row = md.read_text().splitlines()[-1]
    assert "test_tts.judge_wer_vs_gold=" in row and "; tested: " in row and f"`zipper eval {config} --results-md {md}`" in row
    record = json.loads((root / "tts_later" / "results.json").read_text())
    assert record["metrics"]["test_tts"]["n_utts"] == 2 and record["steps"] == 1 and record["tested"]["git"] == "c0ffee1"
    capsys.readouterr()
    assert cli(["eval", str(config), "--results-md", str(root / "no-such-folder" / "R.md")]) == 2
    assert "existing folder" in capsys.readouterr().err
    (root / "tts_later" / "results.json").unlink()
    assert cli(["eval", str(config), "--results-md", str(md)]) == 2
    assert "results.json" in capsys.readouterr().err and md.read_text().splitlines()[-1] == row


def test_a_recipe_trains_on_an_imported_corpus_and_eval_tests_on_another_as_on_its_own(world, capsys, tmp_path):
    """`zipper data import` gives a corpus a recipe trains on as on a built one (a Common Voice style TSV of the
    tiny corpus's recordings); `zipper eval --corpus` tests on another imported corpus (a folder of test
    recordings with .txt transcripts) and hears exactly what it hears from the same recordings in its own."""
    import shutil

    from towers.corpus import read_manifest
    from zipper.config import ConfigError

    root, base, _ = world
    lines = ["path\tsentence\tclient_id\tsplit"]
    for split, n in (("train", 8), ("dev", 2), ("test", 2)):
        lines += [f"{r['audio_filepath']}\t{r['text']}\t{r['speaker']}\t{split}"
                  for r in read_manifest(root / "corpus" / f"{split}.jsonl")[:n]]
    (tmp_path / "mine.tsv").write_text("\n".join(lines) + "\n")
    mine = tmp_path / "mine"
    assert cli(["data", "import", "--manifest", str(tmp_path / "mine.tsv"), "--out", str(mine), "--no-progress"]) == 0
    cfg = write_config(root, "imported", task="asr", steps=2, **{**base, "corpus": str(mine)})
    res = run(RecipeConfig.from_json(cfg), results_md=None)
    assert res["train_utts"] == 8 and res["metrics"]["test_asr_beam1"]["n_utts"] == 2
    folder = tmp_path / "recordings"  # the same two test recordings, as a user's folder
    folder.mkdir()
    for r in read_manifest(mine / "test.jsonl"):
        shutil.copy(r["audio_filepath"], folder / f"{r['id']}.wav")
        (folder / f"{r['id']}.txt").write_text(r["text"])
    assert cli(["data", "import", "--folder", str(folder), "--split", "test", "--out", str(tmp_path / "theirs"),
                "--no-progress"]) == 0
    capsys.readouterr()
    assert cli(["eval", str(cfg), "--corpus", str(tmp_path / "theirs")]) == 0
    hyps = root / "imported" / "hyps" / "model"
    own = [json.loads(x) for x in (hyps / "test_asr_beam1.jsonl").read_text().splitlines()]
    other = [json.loads(x) for x in (hyps / "corpus-theirs" / "test_asr_beam1.jsonl").read_text().splitlines()]
    assert [(u["id"], u["ref"], u["hyp"]) for u in other] == [(u["id"], u["ref"], u["hyp"]) for u in own]
    assert cli(["eval", str(cfg), "--corpus", str(tmp_path / "nowhere")]) == 2
    assert "has no test.jsonl" in capsys.readouterr().err
    # a TTS recipe may name an imported corpus's training speaker as its voice_prompt, and no other voice
    speaker = read_manifest(mine / "train.jsonl")[0]["speaker"]
    assert RecipeConfig(task="tts", directions=["text->speech"], corpus=str(mine), voice_prompt=speaker).voice_prompt
    with pytest.raises(ConfigError, match="not a known voice"):
        RecipeConfig(task="tts", directions=["text->speech"], corpus=str(mine), voice_prompt="piper-joe")
    test_only = write_config(root, "test_only", task="asr", steps=2, **{**base, "corpus": str(tmp_path / "theirs")})
    assert cli(["train", str(test_only), "--results-md", "none"]) == 2  # a test set trains nothing: said at once
    assert "no train, no dev utterances" in capsys.readouterr().err and not (root / "test_only" / "checkpoints").exists()


def test_init_model_fine_tunes_a_trained_zip_and_refuses_another_zip(world, monkeypatch, capsys):
    """A recipe with init_model trains from that zip's weights, and refuses, before any training, a zip this config
    would not build or a model folder that is none."""
    import torch

    import zipper.recipe
    from zipper.config import ConfigError
    from zipper.model import read_weights

    root, base, _ = world
    first = run(RecipeConfig(task="asr", out=str(root / "ft_first"), steps=2, eval_test=False, **base), results_md=None)
    assert first["steps"] == 2
    trained = read_weights(root / "ft_first" / "model" / "zipper.safetensors")
    assert any(v.abs().sum() > 0 for k, v in trained.items() if k.endswith("gate"))  # its gates opened
    seen, fit = {}, zipper.recipe.fit

    def recording(model, *a, **k):  # the weights training starts from
        seen.update(model.zip_state_dict())
        return fit(model, *a, **k)

    monkeypatch.setattr(zipper.recipe, "fit", recording)
    cfg = RecipeConfig(task="asr", out=str(root / "ft_second"), steps=1, eval_test=False,
                       init_model=str(root / "ft_first" / "model"), **base)
    assert run(cfg, results_md=None)["steps"] == 1
    assert seen.keys() == trained.keys() and all(torch.equal(seen[k], trained[k]) for k in trained)
    tuned = read_weights(root / "ft_second" / "model" / "zipper.safetensors")
    assert any(not torch.equal(tuned[k], trained[k]) for k in trained)  # and it trained
    seen.clear()
    other = write_config(root, "ft_other", task="asr", steps=1, ffn_mult=1, init_model=str(root / "ft_first" / "model"),
                         **base)
    assert cli(["train", str(other), "--results-md", "none"]) == 2
    assert "ffn_mult 2, 1" in capsys.readouterr().err and not seen
    missing = write_config(root, "ft_missing", task="asr", steps=1, init_model=str(root / "nowhere"), **base)
    assert cli(["train", str(missing), "--results-md", "none"]) == 2
    assert "not a trained zip's model directory" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="init_model starts an asr, tts or joint zip"):
        RecipeConfig(task="pretrain_speech", init_model=str(root / "ft_first" / "model"))


def test_single_decoder_baseline_recipe(world):
    root, base, _ = world
    res = run(RecipeConfig(task="asr", model="single_decoder", out=str(root / "single"), steps=2, **base),
              results_md=None)
    assert res["params"]["frozen"] == 0 and "test_asr_beam1" in res["metrics"]
    assert cli(["eval", str(write_config(root, "single", model="single_decoder", task="asr", **base))]) == 0


def test_source_use_reads_the_single_decoders_tts_nll(world):
    """tts_metrics reports text_info for the baseline too: its text is in the context, not cross-attended."""
    from towers import load_tower
    from towers.codec import load_codec
    from zipper.baseline import SingleDecoder
    from zipper.data import load_split
    from zipper.tasks import source_use

    root, base, _ = world
    codec = load_codec(base["codec"])
    model = SingleDecoder(load_tower(base["text_tower"], modality="text"), codec.vocab_size, [])
    m = source_use(model, load_split(base["corpus"], "test", codec, progress=False)[:3], "tts")
    assert m["unit_nll"] > 0 and m["text_info"] == pytest.approx(m["unit_nll_other_text"] - m["unit_nll"], abs=2e-4)


def test_adapt_text_tunes_a_text_tower_that_a_trained_zip_then_reads_in_place_of_its_own(world, capsys):
    """adapt_text fine-tunes the text tower on the corpus's text alone (no codec, no audio) and saves it; the held-out
    sentences' perplexity falls. `zipper transcribe --tower text=DIR` reads it in place of the zip's own tower:
    the original tower given that way transcribes exactly as without --tower; a malformed --tower is a usage error."""
    import torch

    from towers import load_tower

    root, base, _ = world
    cfg = RecipeConfig(task="adapt_text", out=str(root / "adapt"), steps=6, lr=3e-3, eval_every=3,
                       reference_corpus=base["corpus"], **{**base, "codec": "no-such-codec"})  # never loaded
    res = run(cfg, results_md=root / "R.md")
    m = res["metrics"]
    assert m["test_ppl"] < m["test_ppl_init"] and m["reference_test_ppl"] < m["reference_test_ppl_init"]
    assert [e["step"] for e in res["dev_curve"]] == [3, 6] and res["train_utts"] > 0
    row = (root / "R.md").read_text().splitlines()[-1]
    assert "| adapt_text |" in row and "test_ppl" in row and f"| {res['train_utts']} (text) |" in row
    tuned, original = load_tower(str(root / "adapt" / "tower"), modality="text"), load_tower(base["text_tower"])
    assert any(not torch.equal(a, b) for a, b in zip(tuned.model.parameters(), original.model.parameters()))

    run(RecipeConfig(task="asr", out=str(root / "asr-swap"), steps=1, **base), results_md=None)
    model, wav = str(root / "asr-swap" / "model"), read_first_test_wav(root)
    capsys.readouterr()
    outputs = []
    for swap in ([], ["--tower", f"text={base['text_tower']}"], ["--tower", f"text={root / 'adapt' / 'tower'}"]):
        assert cli(["transcribe", wav, "--model", model, *swap]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[1] == outputs[0]
    for bad, message in ((f"{root / 'adapt' / 'tower'}", "--tower takes MODALITY=TOWER"),
                         (f"vision={root / 'adapt' / 'tower'}", "no vision tower")):
        assert cli(["transcribe", wav, "--model", model, "--tower", bad]) == 2
        assert message in capsys.readouterr().err


def read_first_test_wav(root: Path) -> str:
    from towers.corpus import read_manifest

    return read_manifest(root / "corpus" / "test.jsonl")[0]["audio_filepath"]


def write_config(root: Path, name: str, **kw) -> Path:
    path = root / f"{name}.json"
    path.write_text(json.dumps({"out": str(root / name), **kw}))
    return path


def test_asr_recipe_under_torchrun_two_processes(world):
    """`torchrun --nproc_per_node 2` (gloo on CPU): one model, one results row, two ranks' data per step."""
    import os
    import socket
    import subprocess
    import sys

    root, base, _ = world
    config = write_config(root, "ddp", task="asr", steps=2, **base)
    with socket.socket() as s:  # a free port, so parallel runs do not collide on torchrun's default
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(port), "-m", "zipper.cli", "train", str(config), "--results-md", str(root / "ddp.md")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((root / "ddp" / "results.json").read_text())
    assert res["processes"] == 2 and res["steps"] == 2 and "test_asr_beam1" in res["metrics"]
    rows = [line for line in (root / "ddp.md").read_text().splitlines() if "| asr |" in line]
    assert len(rows) == 1  # written by rank 0 only
    assert (root / "ddp" / "model" / "zipper.safetensors").exists()
    assert (root / "ddp" / "checkpoints" / "step-0000002" / "COMPLETE").exists()


@pytest.mark.parametrize("path", sorted(p for p in (Path(__file__).parents[2] / "recipes" / "configs").glob("*.json")
                                        if not p.name.startswith("codec_")), ids=lambda p: p.name)
def test_shipped_recipe_configs_parse_and_name_their_command(path):
    """Every recipe config loads as a RecipeConfig (known keys, valid values) and records the command that
    runs it (the codec configs, for recipes/train_codec.py, carry it as `_command`)."""
    cfg = RecipeConfig.from_json(path)
    assert cfg.command.split()[-1] == f"recipes/configs/{path.name}", cfg.command


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[2] / "recipes" / "configs").glob("codec_*.json")),
                         ids=lambda p: p.name)
def test_shipped_codec_configs_parse_and_name_their_command(path):
    """Every codec config (recipes/train_codec.py) builds its codec config and names its own command."""
    from towers.codec import MelUnitCodecConfig
    from towers.whisper_units import WhisperUnitCodecConfig

    cfg = json.loads(path.read_text())
    kind = {"mel_kmeans": MelUnitCodecConfig, "whisper_kmeans": WhisperUnitCodecConfig}[cfg.get("codec_type", "mel_kmeans")]
    kind.from_dict(cfg["codec"])
    assert f"--config recipes/configs/{path.name}" in cfg["_command"], cfg["_command"]


def test_train_command_line_overrides_are_applied_and_recorded(monkeypatch, tmp_path):
    import zipper.recipe as recipe

    seen = {}
    monkeypatch.setattr(recipe, "run", lambda cfg, results_md: seen.update(cfg=cfg))
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"task": "asr", "max_minutes": 40, "command": "zipper train c.json"}))
    assert cli(["train", str(path), "--max-minutes", "20", "--steps", "7", "--seed", "3"]) == 0
    cfg = seen["cfg"]
    assert (cfg.max_minutes, cfg.steps, cfg.seed) == (20, 7, 3)
    assert cfg.command == "zipper train c.json --steps 7 --max-minutes 20 --seed 3"
    assert cli(["train", str(path)]) == 0  # no overrides: the config as written
    assert (seen["cfg"].max_minutes, seen["cfg"].command) == (40, "zipper train c.json")
    # a copied config still names its original: the row records the file that ran, and every digit typed
    copy = tmp_path / "mine.json"
    copy.write_text(path.read_text())
    assert cli(["train", "mine.json", "--max-minutes", "37.123456789"]) == 0
    assert seen["cfg"].command == "zipper train mine.json --max-minutes 37.123456789"
    assert cli(["train", "mine.json", "--stop-step", "610", "--max-minutes", "0"]) == 0
    assert (seen["cfg"].stop_step, seen["cfg"].train_config().stop_step, seen["cfg"].max_minutes) == (610, 610, 0)
    assert seen["cfg"].command == "zipper train mine.json --max-minutes 0 --stop-step 610"
    # a pretraining run's tower is an output: --out keeps it with the run, not at the config's shared path
    path.write_text(json.dumps({"task": "pretrain_speech", "command": "zipper train c.json"}))
    assert cli(["train", "c.json", "--out", "runs/seed1"]) == 0
    assert seen["cfg"].speech_tower == str(Path("runs/seed1") / "speech-tower")


def test_splits_used_cut_the_rows_before_encoding_and_pretraining_reads_the_named_splits():
    from zipper.config import ConfigError
    from zipper.data import subset

    rows = [{"id": f"u{i}"} for i in range(1000)]
    zip_keep = splits_used(RecipeConfig(task="asr", data_fraction=0.1, eval_utts=40, seed=3))
    assert sorted(zip_keep) == ["dev", "test", "train"]
    assert zip_keep["train"](rows) == subset(rows, 0.1, 3) and len(zip_keep["train"](rows)) == 100
    assert zip_keep["dev"](rows) == rows[:10] and zip_keep["test"](rows) == rows[:40]
    # 100%: still the seeded permutation (the batch stream depends on the order), read from the split's cache
    assert splits_used(RecipeConfig(task="asr", seed=3))["train"](rows) == subset(rows, 1.0, 3) != rows

    assert list(splits_used(RecipeConfig(task="pretrain_speech"))) == ["unpaired_speech", "train", "test"]
    only = splits_used(RecipeConfig(task="pretrain_speech", pretrain_speech_splits=["unpaired_speech"], eval_utts=5))
    assert list(only) == ["unpaired_speech", "test"] and only["unpaired_speech"] is None and only["test"](rows) == rows[:5]
    for bad in ([], ["dev"], ["train", "test"], ["train", "train"]):  # a repeat would double that audio
        with pytest.raises(ConfigError, match="pretrain_speech_splits"):
            RecipeConfig(task="pretrain_speech", pretrain_speech_splits=bad)


def _json_values():
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=12) | st.floats(allow_nan=True)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                          max_size=2), max_leaves=5)


def test_recipe_config_field_values_either_load_or_raise_config_error():
    """Any JSON value in any field: a RecipeConfig, or a ConfigError saying what is wrong, never another
    exception (so `zipper train` reports it as a usage error before any corpus or tower work)."""
    import dataclasses

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from zipper.config import ConfigError

    names = [f.name for f in dataclasses.fields(RecipeConfig)]

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(names), _json_values())
    def check(name, value):
        try:
            cfg = RecipeConfig(**{name: value})
        except ConfigError as e:
            assert str(e)
        else:  # accepted: the value has the field's type, and numbers are finite and in range
            assert getattr(cfg, name) == value
            assert cfg.steps >= 1 and cfg.batch_size >= 1 and cfg.lr > 0

    check()


@pytest.mark.parametrize("data, message", [
    ({"steps": -5}, "steps"), ({"batch_size": 0}, "batch_size"), ({"lr": -1.0}, "lr"), ({"lr": "1e-3"}, "lr must be float"),
    ({"directions": ["x->y"]}, "directions"), ({"ctc_weight": 1.5}, "ctc_weight"), ({"corpus_size": "xl"}, "corpus_size"),
    ({"speech_tower_size": "huge"}, "speech_tower_size"), ({"max_minutes": -1}, "max_minutes"),
    ({"seed": -1}, "seed"), ({"seed": 2**63}, "seed"), ([1], "JSON object"),
    ({"task": "tts", "directions": ["text->speech"], "best_metric": "dev_wer", "eval_every": 100}, "best_metric"), ({"patience": 3}, "patience"),
    ({"task": "tts", "directions": ["text->speech"], "best_metric": "dev_unit_nll"}, "eval_every"),
    ({"task": "tts"}, "needs directions"), ({"task": "asr", "directions": ["text->speech"]}, "needs directions"),
    ({"task": "joint", "directions": ["speech->text"]}, "needs directions"),
    ({"task": "pretrain_speech", "best_metric": "dev_wer", "eval_every": 100}, "best_metric"),
    ({"task": "asr", "voice_prompt": "piper-joe"}, "voice_prompt"),
    # refused when the config is read, not after the corpus build and the text tower's load
    ({"input_projection_towers": ["vision"]}, "input_projection_towers names 'vision'"),
    ({"input_projection_towers": ["text", "text"]}, "duplicate entries"),
    ({"input_projection_towers": ["text"], "input_projection": False}, "needs input_projection=True"),
    ({"task": "tts", "directions": ["text->speech"], "voice_prompt": "nobody"}, "not a known voice"),
    # accepted and then silently ignored
    ({"model": "single_decoder", "eval_beams": [1, 4]}, "eval_beams"), ({"model": "single_decoder", "lora_rank": 4}, "lora_rank"),
    ({"model": "single_decoder", "train_speech_tower": True}, "train_speech_tower"),
    ({"ctc_units": "chars"}, "needs ctc_weight > 0"),
    ({"task": "tts", "directions": ["text->speech"], "speech_states": True}, "speech_states"),
    ({"model": "single_decoder", "speech_states": True}, "speech_states"),
    ({"out": ""}, "out must not be empty"), ({"codec": ""}, "codec must not be empty"),
    ({"corpus_text_sources": ["wikipedia"]}, "corpus_text_sources must be"), ({"corpus_hours": -1.0}, "out of range"),
    ({"text_tower": ""}, "text_tower must not be empty"), ({"speech_tower": ""}, "speech_tower must not be empty")])
def test_bad_recipe_config_is_a_usage_error_before_any_work(data, message, monkeypatch, tmp_path, capsys):
    import zipper.recipe as recipe

    monkeypatch.setattr(recipe, "run", lambda *a, **k: pytest.fail("run() reached with a bad config"))
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    assert cli(["train", str(path)]) == 2
    assert message in capsys.readouterr().err
    path.write_text(json.dumps({"task": "asr"}))
    assert cli(["train", str(path), "--steps", "0"]) == 2 and "steps" in capsys.readouterr().err


def test_a_results_md_in_a_missing_folder_is_refused_before_any_work(monkeypatch, tmp_path, capsys):
    import zipper.recipe as recipe

    monkeypatch.setattr(recipe, "check_references", lambda cfg: pytest.fail("work started"))
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"task": "asr"}))
    assert cli(["train", str(path), "--results-md", str(tmp_path / "missing" / "R.md")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(["train", str(path), "--results-md", str(tmp_path)]) == 2  # used to fail after training
    assert "is a directory" in capsys.readouterr().err


def test_duplicate_keys_in_a_recipe_config_are_refused(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text('{"task": "asr", "steps": 10, "steps": 20}')  # used to run 20 steps silently
    assert cli(["train", str(path)]) == 2
    assert "duplicate keys ['steps']" in capsys.readouterr().err


def test_missing_tower_or_codec_is_refused_before_the_corpus_is_built(tmp_path, capsys):
    """A recipe whose speech tower, text tower or codec does not exist fails in seconds with a usage error,
    before it builds a corpus or writes its output directory."""
    base = {"task": "asr", "corpus": str(tmp_path / "corpus"), "out": str(tmp_path / "out"), "corpus_size": "tiny"}
    for extra, message in [({"speech_tower": str(tmp_path / "no-tower")}, "Pretrain one first"),
                           ({"speech_tower": str(tmp_path), "text_tower": "no-such-lm"}, "text_tower 'no-such-lm'"),
                           ({"codec": "no-such-codec"}, "neither a shipped codec"),
                           # existing paths that hold no tower / codec used to pass, and fail after the corpus build
                           ({"speech_tower": str(tmp_path)}, "Pretrain one first"),
                           ({"text_tower": str(tmp_path / "c.json")}, "text_tower"),
                           ({"task": "adapt_text", "reference_corpus": str(tmp_path / "nowhere")},
                            "reference_corpus"),
                           ({"codec": str(tmp_path)}, "neither a shipped codec")]:
        path = tmp_path / "c.json"
        path.write_text(json.dumps({**base, **extra}))
        assert cli(["train", str(path)]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "corpus").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("task", ["pretrain_speech", "adapt_text"])
def test_eval_of_a_pretraining_config_says_what_eval_is_for(tmp_path, capsys, task):
    path = tmp_path / "pt.json"
    path.write_text(json.dumps({"task": task, "out": str(tmp_path / "run")}))
    assert cli(["eval", str(path)]) == 2
    assert "evaluates asr, tts and joint recipes" in capsys.readouterr().err


def test_voice_prompts_name_each_rows_voice_and_the_test_speaks_the_configured_one():
    from zipper.config import ConfigError
    from zipper.recipe import prompt_voices, tts_test_rows

    rows = lambda voices: [{"text": f"s{i}", "voice": v} for i, v in enumerate(voices)]  # noqa: E731
    a, b, c, d = "flite-awb", "piper-joe", "flite-slt", "flite-rms"  # voice_prompt must be a known voice
    train, dev, test = rows([a, b, a]), rows([c]), rows([d] * 60)
    cfg = RecipeConfig(task="tts", directions=["text->speech"], voice_prompt=b)
    prompt_voices(cfg, train, dev)
    assert [r["text_prompt"] for r in train + dev] == [f"{a}: ", f"{b}: ", f"{a}: ", f"{c}: "]
    spoken = tts_test_rows(cfg, test)
    assert len(spoken) == 50 and {r["text_prompt"] for r in spoken} == {f"{b}: "}
    assert [r["text"] for r in spoken] == [r["text"] for r in test[:50]] and "text_prompt" not in test[0]
    with pytest.raises(ConfigError, match="not a training voice"):
        prompt_voices(RecipeConfig(task="tts", directions=["text->speech"], voice_prompt=d), rows([a]), [])
    plain = rows([a])
    no_voice = RecipeConfig(task="tts", directions=["text->speech"])
    prompt_voices(no_voice, plain, [])
    assert "text_prompt" not in plain[0] and tts_test_rows(no_voice, test) == test[:50]


def test_the_row_names_the_weights_tested_a_budgets_last_ones_included(tmp_path):
    """The steps column says whose weights were saved and tested: the best scheduled evaluation's, or the
    last step's when a time budget's final evaluation beat it (`fit`'s "kept"); a record from before
    "kept" existed reads as best's."""
    from zipper.results import append_results_row

    cfg = RecipeConfig(task="asr", best_metric="dev_wer", eval_every=500)
    common = {"metrics": {}, "train_utts": 3, "train_hours": 0.1, "wall_s": 1.0, "machine": "m", "git": "g",
              "command": "zipper train c.json", "started": "2026-12-04T17:46:00"}
    best = {"step": 1500, "value": 67.05}
    for kept, label in ((best, "2492 (weights of 1500: best dev_wer)"),
                        ({"step": 2492, "value": 61.63},
                         "2492 (its last weights: dev_wer better than step 1500's, the best scheduled)"),
                        (None, "2492 (weights of 1500: best dev_wer)")):
        md = tmp_path / "R.md"
        md.unlink(missing_ok=True)
        append_results_row(cfg, {**common, "steps": 2492, "best": best, **({"kept": kept} if kept else {})}, md)
        assert f"| {label} |" in md.read_text().splitlines()[-1]


def test_a_pack_holds_what_the_recipes_read_and_serves_it_without_the_audio(world, monkeypatch, tmp_path):
    """`zipper data pack` writes the manifests and the unit caches of exactly the rows a speech-tower
    pretraining and an untested zip read (no test split for the zip, the first eval_utts for the tower),
    and no audio; unpacked in a folder without the audio, every split loads the same units. An existing
    pack is replaced only with --overwrite."""
    import tarfile

    import torch

    import zipper.data
    from towers.codec import load_codec
    from zipper.data import load_split

    root, base, _ = world
    monkeypatch.chdir(root)  # the configs name their corpus relative to here, as recipes/configs do
    rel = {**base, "corpus": "corpus"}
    zip_cfg = write_config(root, "packed_zip", task="asr", eval_test=False, **rel)
    tower_cfg = write_config(root, "packed_tower", task="pretrain_speech", pretrain_speech_splits=["train"], **rel)
    out = tmp_path / "pack.tar.xz"
    assert cli(["data", "pack", str(zip_cfg), str(tower_cfg), "-o", str(out)]) == 0
    with tarfile.open(out) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "there", filter="data")
    assert not any(n.endswith(".wav") for n in names)
    assert {n for n in names if n.endswith(".jsonl")} == {"corpus/train.jsonl", "corpus/dev.jsonl", "corpus/test.jsonl"}
    codec = load_codec(base["codec"])

    def no_encoding(*a, **k):  # there, every unit comes from the pack's caches
        raise AssertionError("the pack lacks a unit cache")

    for cfg_path in (zip_cfg, tower_cfg):
        cfg = RecipeConfig.from_json(cfg_path)
        for split, keep in splits_used(cfg, training=True).items():
            here = load_split("corpus", split, codec, progress=False, keep=keep)
            with monkeypatch.context() as m:
                m.setattr(zipper.data, "_encode_and_cache", no_encoding)
                there = load_split(tmp_path / "there" / "corpus", split, codec, progress=False, keep=keep)
            assert [r["id"] for r in there] == [r["id"] for r in here]
            assert all(torch.equal(a["units"], b["units"]) for a, b in zip(here, there))
    before = out.read_bytes()
    assert cli(["data", "pack", str(zip_cfg), "-o", str(out)]) == 2 and out.read_bytes() == before  # kept
    assert cli(["data", "pack", str(zip_cfg), "-o", str(out), "--overwrite"]) == 0
    with tarfile.open(out) as tar:  # the zip alone reads no test split
        assert not any("test" in n for n in tar.getnames())
    assert cli(["data", "pack", str(zip_cfg), "-o", str(tmp_path / "pack.zip")]) == 2
    assert not (tmp_path / "pack.zip").exists()

"""The single-decoder baseline: same interface as ZipperModel, the text LM untouched on text at init."""
from __future__ import annotations

import copy

import torch

from tests.conftest import tiny_tower, train_steps
from zipper import Segment
from zipper.baseline import SingleDecoder


def _model(seed=0):
    text = tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=seed, init_std=0.4)
    original = copy.deepcopy(text.model)
    return SingleDecoder(text, n_units=20), original


def test_text_logits_unchanged_at_init():
    model, original = _model()
    t = torch.randint(3, 56, (2, 7))
    out = model([Segment("text", t)])
    assert torch.equal(out.logits[0], original(input_ids=t).logits)
    assert model.parameter_counts()["frozen"] == 0


def test_asr_loss_trains_and_generation_matches_forward():
    model, _ = _model(1)
    s = torch.randint(3, 23, (2, 9))
    t = torch.cat([torch.ones(2, 1, dtype=torch.long), torch.randint(3, 56, (2, 5))], 1)
    segs = [Segment("speech", s), Segment("text", t, loss=True)]
    losses = train_steps(model, segs, steps=5, lr=1e-2)
    assert losses[-1] < losses[0]
    model.eval()
    gen = model.generate([Segment("speech", s)], ["text"], max_new_tokens=6)[0]
    n = gen.input_ids.shape[1]
    full = torch.cat([torch.ones(2, 1, dtype=torch.long), gen.input_ids], 1)
    logits = model([Segment("speech", s), Segment("text", full, torch.cat([torch.ones(2, 1), gen.attention_mask], 1).long())]).logits[1]
    real = gen.attention_mask.bool()
    assert torch.equal(logits[:, :n].argmax(-1)[real], gen.input_ids[real])


def test_generates_only_the_output_modality():
    model, _ = _model(2)
    gen = model.generate([Segment("text", torch.randint(3, 56, (3, 4)))], ["speech"], max_new_tokens=10)[0]
    assert gen.input_ids.max() < model.tower("speech").vocab_size


def test_save_load_round_trip_from_another_working_directory(tmp_path, monkeypatch):
    """save_pretrained / from_pretrained give identical logits; the text tower's path is recorded relative
    to the model directory, so the model loads from any working directory."""
    import json

    from towers import load_tower

    text = tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=3, init_std=0.4)
    text.save_pretrained(tmp_path / "runs" / "text-tower")
    monkeypatch.chdir(tmp_path)
    model = SingleDecoder(load_tower("runs/text-tower"), n_units=20)
    train_steps(model, [Segment("speech", torch.randint(3, 23, (2, 9))), Segment("text", torch.randint(3, 56, (2, 5)), loss=True)],
                steps=2)
    model.eval()
    s, t = torch.randint(3, 23, (2, 9)), torch.randint(3, 56, (2, 5))
    before = model([Segment("speech", s), Segment("text", t)]).logits[1]
    model.save_pretrained("runs/single/model")
    assert json.loads((tmp_path / "runs/single/model/single_decoder.json").read_text())["text_tower"] == "../../text-tower"
    monkeypatch.chdir(tmp_path / "runs")
    loaded = SingleDecoder.from_pretrained(tmp_path / "runs/single/model")
    assert torch.equal(loaded([Segment("speech", s), Segment("text", t)]).logits[1], before)


def test_start_ids_on_the_device_asked_for():
    model = SingleDecoder(tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=3), n_units=20,
                          text_prefix_ids=[7])
    assert model.start_ids("text").tolist() == [1, 7] and model.start_ids("text").device.type == "cpu"
    assert model.start_ids("text", "meta").device.type == "meta"
    assert model.start_ids("speech", "meta").shape == (1,)

"""The single-decoder baseline: same interface as ZipperModel, the text LM untouched on text at init."""
from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch

from tests.conftest import tiny_tower, train_steps
from zipper import CheckpointError, Segment
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


def test_a_loaded_single_decoder_keeps_the_special_ids_it_was_trained_with(tmp_path):
    """As a zip (tests/zipper/test_checkpoint.py): the saved BOS / EOS / PAD win over the tokenizer's."""
    model = SingleDecoder(tiny_tower("llama", "text", vocab=56, seed=3), n_units=20)
    model.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model/single_decoder.json").read_text())["text_special_ids"] == \
        {"bos": 1, "eos": 2, "pad": 0}
    other = tiny_tower("llama", "text", vocab=56, seed=3)
    other.model.config.eos_token_id = 4  # what another tokenizer or transformers version reads
    with pytest.warns(UserWarning, match=r"'eos': 4.* trained with .*'eos': 2"):
        loaded = SingleDecoder.from_pretrained(tmp_path / "model", text=other)
    assert loaded.text.eos_token_id == 2


def test_start_ids_on_the_device_asked_for():
    model = SingleDecoder(tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=3), n_units=20,
                          text_prefix_ids=[7])
    assert model.start_ids("text").tolist() == [1, 7] and model.start_ids("text").device.type == "cpu"
    assert model.start_ids("text", "meta").device.type == "meta"
    assert model.start_ids("speech", "meta").shape == (1,)


def _edit_meta(d, **changes):
    meta = json.loads((d / "single_decoder.json").read_text())
    meta.update(changes)
    (d / "single_decoder.json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))


def _save_weights(d, edit):
    from safetensors.torch import load_file, save_file

    state = load_file(str(d / "single_decoder.safetensors"))
    save_file(edit(state), str(d / "single_decoder.safetensors"))


DAMAGE = {  # what is done to a saved single decoder -> what the CheckpointError says
    "no config": (lambda d: (d / "single_decoder.json").unlink(), "has no single_decoder.json"),
    "config not JSON": (lambda d: (d / "single_decoder.json").write_text("{oops"), "not valid JSON"),
    "config a list": (lambda d: (d / "single_decoder.json").write_text("[1]"), "lacks text_tower, n_units"),
    "config without n_units": (lambda d: _edit_meta(d, n_units=None), "lacks n_units"),
    "no weights": (lambda d: (d / "single_decoder.safetensors").unlink(), "has no single_decoder.safetensors"),
    "garbage weights": (lambda d: (d / "single_decoder.safetensors").write_bytes(b"garbage" * 10),
                        "not a valid safetensors file"),
    "pickled weights": (lambda d: (d / "single_decoder.safetensors").write_bytes(b"\x80\x04K\x01." * 4), "pickle"),
    "header too large": (lambda d: (d / "single_decoder.safetensors").write_bytes(
        (10 ** 6).to_bytes(8, "little") + b"{" + b" " * 2 * 10 ** 6), "not a valid safetensors file"),
    "other weights": (lambda d: _save_weights(d, lambda s: {"unrelated": torch.zeros(1)}), "unexpected \\['unrelated'\\]"),
    "a weight missing": (lambda d: _save_weights(d, lambda s: dict(sorted(s.items())[1:])),
                         "do not match this model: missing"),
    "another unit vocabulary": (lambda d: _edit_meta(d, n_units=21), "saved shape"),
}


@pytest.mark.parametrize("kind", ["gpt2", "llama"])  # tied and untied embeddings
def test_a_damaged_save_is_a_checkpoint_error_never_a_silent_load(tmp_path, kind):
    from towers import load_tower

    tiny_tower(kind, "text", vocab=56, hidden=32, layers=2, seed=3, init_std=0.4).save_pretrained(tmp_path / "text")
    model = SingleDecoder(load_tower(tmp_path / "text"), n_units=20, text_prefix_ids=[7])
    batch = [Segment("speech", torch.randint(3, 23, (2, 9))), Segment("text", torch.randint(3, 56, (2, 5)), loss=True)]
    train_steps(model, batch, steps=2)
    model.eval().save_pretrained(tmp_path / "model")
    s, t = torch.randint(3, 23, (2, 9)), torch.randint(3, 56, (2, 5))
    loaded = SingleDecoder.from_pretrained(tmp_path / "model")
    assert torch.equal(loaded([Segment("speech", s), Segment("text", t)]).logits[1],
                       model([Segment("speech", s), Segment("text", t)]).logits[1])
    for name, (damage, message) in DAMAGE.items():
        d = shutil.copytree(tmp_path / "model", tmp_path / name.replace(" ", "_"))
        damage(d)
        with pytest.raises(CheckpointError, match=message):
            SingleDecoder.from_pretrained(d)


def test_cpu_segments_reach_a_model_on_another_device(monkeypatch):
    """forward and generate move CPU segments to the model's device (meta stands in for a GPU)."""
    model, _ = _model()
    model.to("meta")
    seen = []

    def record(ids, mask, *args, **kwargs):
        seen.append((ids.device.type, mask.device.type))
        raise RuntimeError("reached")

    monkeypatch.setattr(model, "_run", record)
    units = torch.randint(3, 20, (2, 5))
    for call in (lambda: model([Segment("speech", units), Segment("text", torch.randint(3, 56, (2, 4)), loss=True)]),
                 lambda: model.generate([Segment("speech", units)], ["text"], max_new_tokens=2)):
        with pytest.raises(RuntimeError, match="reached"):
            call()
    assert seen == [("meta", "meta")] * 2

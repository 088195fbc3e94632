"""save_pretrained / from_pretrained: exact round trips, safetensors only, clear errors on mismatch."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from tests.conftest import open_gates, tiny_tower
from zipper import CheckpointError, ConfigError, Segment, ZipperModel


def _model(pair, **kw):
    speech, text = pair
    return ZipperModel.from_towers([speech, text], directions=["speech->text"], **kw)


def _logits(model):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randint(3, 40, (2, 6), generator=g), torch.randint(3, 56, (2, 5), generator=g)
    return model([Segment("speech", s), Segment("text", t)]).logits[1]


def _as_trained(model, draw=torch.Tensor.normal_):
    """Open the gates and draw the LoRA B matrices (zero at init), as training would move them."""
    open_gates(model)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                draw(p)


def test_round_trip_identical_logits(pair, tmp_path):
    model = _model(pair, lora_rank=2, lora_towers=["speech"])
    _as_trained(model)
    before = _logits(model)
    model.save_pretrained(tmp_path / "zip")
    assert sorted(f.name for f in (tmp_path / "zip").iterdir()) == ["zipper.safetensors", "zipper_config.json"]
    fresh = (tiny_tower("llama", "speech", vocab=40, hidden=32, layers=4, seed=1),
             tiny_tower("gpt_neox", "text", vocab=56, hidden=48, layers=3, seed=2))
    loaded = ZipperModel.from_pretrained(tmp_path / "zip", towers=fresh)
    assert torch.equal(_logits(loaded), before)


def test_saves_only_trainable_weights(pair, tmp_path):
    from safetensors import safe_open

    model = _model(pair)
    model.save_pretrained(tmp_path / "zip")
    with safe_open(str(tmp_path / "zip" / "zipper.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert keys == {n for n, p in model.named_parameters() if p.requires_grad}
    assert not any(k.startswith("towers.") for k in keys)


def test_save_replaces_previous_atomically(pair, tmp_path):
    model = _model(pair)
    model.save_pretrained(tmp_path / "zip")
    open_gates(model)
    model.save_pretrained(tmp_path / "zip")
    assert not [p for p in tmp_path.iterdir() if p.name != "zip"]  # no temp or old dirs left behind
    loaded = ZipperModel.from_pretrained(tmp_path / "zip", towers=pair)
    assert loaded.blocks["speech_to_text"][0].attn_gate.item() == pytest.approx(0.7)


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):  # unpickling this would create a file
        return (open, (self.path, "w"))


@pytest.mark.parametrize("name", ["zipper.safetensors", "pytorch_model.bin"])
def test_pickle_checkpoint_refused_without_unpickling(pair, tmp_path, name):
    model = _model(pair)
    model.save_pretrained(tmp_path / "zip")
    (tmp_path / "zip" / "zipper.safetensors").unlink()
    marker = tmp_path / "pwned"
    (tmp_path / "zip" / name).write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError, match="pickle"):
        ZipperModel.from_pretrained(tmp_path / "zip", towers=pair)
    assert not marker.exists()


def test_mismatched_towers_rejected(pair, tmp_path):
    _model(pair).save_pretrained(tmp_path / "zip")
    wrong = (tiny_tower("llama", "speech", vocab=40, hidden=64, layers=4), pair[1])
    with pytest.raises(ConfigError, match="hidden_size 64 but the zip was built for 32"):
        ZipperModel.from_pretrained(tmp_path / "zip", towers=wrong)


def test_corrupt_or_foreign_weights_rejected(pair, tmp_path):
    _model(pair).save_pretrained(tmp_path / "zip")
    (tmp_path / "zip" / "zipper.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="safetensors"):
        ZipperModel.from_pretrained(tmp_path / "zip", towers=pair)
    from safetensors.torch import save_file

    save_file({"blocks.bogus": torch.zeros(1)}, str(tmp_path / "zip" / "zipper.safetensors"))
    with pytest.raises(CheckpointError, match="missing"):
        ZipperModel.from_pretrained(tmp_path / "zip", towers=pair)


def test_config_is_plain_json_with_tower_references(pair, tmp_path):
    model = _model(pair)
    model.save_pretrained(tmp_path / "zip")
    data = json.loads((tmp_path / "zip" / "zipper_config.json").read_text())
    assert data["modalities"] == ["speech", "text"] and data["tower_hidden_sizes"] == [32, 48]
    with pytest.raises(CheckpointError, match="in-memory"):
        ZipperModel.from_pretrained(tmp_path / "zip")  # tiny towers have no load reference


def test_tower_paths_are_saved_relative_to_the_model_and_load_from_any_directory(pair, tmp_path, monkeypatch):
    """A zip over towers loaded by a path relative to the working directory loads again from another working
    directory, after its runs directory moved, and (as saved before paths were made portable) when its
    config names the towers relative to the working directory; a tower that is gone is a CheckpointError."""
    import shutil

    from towers import load_tower

    runs = tmp_path / "project" / "runs"
    for t, name in zip(pair, ("speech-tower", "text-tower")):
        t.save_pretrained(runs / name)
    monkeypatch.chdir(tmp_path / "project")
    towers = [load_tower("runs/speech-tower"), load_tower("runs/text-tower")]
    model = _model(towers)
    open_gates(model)
    before = _logits(model)
    model.save_pretrained("runs/zip/model")
    saved = json.loads((runs / "zip" / "model" / "zipper_config.json").read_text())["towers"]
    assert saved == ["../../speech-tower", "../../text-tower"]

    monkeypatch.chdir(tmp_path)
    assert torch.equal(_logits(ZipperModel.from_pretrained("project/runs/zip/model")), before)
    shutil.move(str(runs), str(tmp_path / "moved"))  # the whole runs directory moves: still loads
    loaded = ZipperModel.from_pretrained(tmp_path / "moved" / "zip" / "model")
    assert torch.equal(_logits(loaded), before)
    assert loaded.config.towers == [str(tmp_path / "moved" / n) for n in ("speech-tower", "text-tower")]

    config = tmp_path / "moved" / "zip" / "model" / "zipper_config.json"
    old = json.loads(config.read_text())
    old["towers"] = ["moved/speech-tower", "moved/text-tower"]  # an older save: relative to the working dir
    config.write_text(json.dumps(old))
    assert torch.equal(_logits(ZipperModel.from_pretrained("moved/zip/model")), before)

    shutil.rmtree(tmp_path / "moved" / "speech-tower")
    with pytest.raises(CheckpointError, match="speech tower 'moved/speech-tower' is neither next to the model"):
        ZipperModel.from_pretrained("moved/zip/model")


def test_a_tower_given_by_modality_replaces_the_saved_one_and_the_other_loads_from_its_reference(pair, tmp_path):
    """from_pretrained(towers={"text": t}): the zip reads t in place of the tower it was trained with (a tower
    fine-tuned on a domain), its own weights unchanged; the speech tower still loads from its reference, and the
    zip now refers to (and saves) t. A copy of the saved tower gives the same logits, a changed one others; a
    tower of other sizes, or of a modality the zip lacks, is refused."""
    from towers import load_tower

    for t, name in zip(pair, ("speech-tower", "text-tower")):
        t.save_pretrained(tmp_path / name)
    model = _model([load_tower(str(tmp_path / "speech-tower")), load_tower(str(tmp_path / "text-tower"))])
    open_gates(model)
    before = _logits(model)
    model.save_pretrained(tmp_path / "zip")

    same = ZipperModel.from_pretrained(tmp_path / "zip", towers={"text": load_tower(str(tmp_path / "text-tower"))})
    assert torch.equal(_logits(same), before)
    tuned = load_tower(str(tmp_path / "text-tower"))
    with torch.no_grad():
        for p in tuned.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tuned.save_pretrained(tmp_path / "tuned")
    swapped = ZipperModel.from_pretrained(tmp_path / "zip", towers={"text": load_tower(str(tmp_path / "tuned"))})
    assert not torch.allclose(_logits(swapped), before)
    assert swapped.config.towers == [str(tmp_path / "speech-tower"), str(tmp_path / "tuned")]
    zip_weights = {n: p for n, p in swapped.zip_state_dict().items()}
    assert all(torch.equal(p, model.zip_state_dict()[n]) for n, p in zip_weights.items())  # the zip as saved
    swapped.save_pretrained(tmp_path / "zip-tuned")
    assert torch.equal(_logits(ZipperModel.from_pretrained(tmp_path / "zip-tuned")), _logits(swapped))

    with pytest.raises(ConfigError, match="no vision tower"):
        ZipperModel.from_pretrained(tmp_path / "zip", towers={"vision": tuned})
    with pytest.raises(ConfigError, match="towers do not match"):
        ZipperModel.from_pretrained(tmp_path / "zip", towers={"text": tiny_tower("gpt_neox", "text", vocab=56, hidden=64)})


def _fresh_pair():
    return (tiny_tower("llama", "speech", vocab=40, hidden=32, layers=4, seed=1),
            tiny_tower("gpt_neox", "text", vocab=56, hidden=48, layers=3, seed=2))


def test_zips_sharing_towers_each_save_what_their_config_trains(pair, tmp_path):
    """requires_grad flags another zip set on shared towers never change what a zip saves: each saves and
    loads back exactly (the tuned zip onto fresh towers, the frozen one onto the towers as they now are)."""
    tuned = ZipperModel.from_towers(list(pair), directions=["speech->text"], frozen=[False, True])
    plain = _model(pair)  # all frozen: clears the speech tower's flags
    tuned.train()  # sets them again: now the plain zip's towers carry trainable flags
    with torch.no_grad():
        next(pair[0].model.parameters()).add_(0.5)  # a trained speech tower
    for model, name, towers in ((tuned, "tuned", _fresh_pair()), (plain, "plain", pair)):
        open_gates(model)
        model.eval()
        model.save_pretrained(tmp_path / name)
        assert set(model.zip_state_dict()) == model._expected_trainable()
        assert torch.equal(_logits(ZipperModel.from_pretrained(tmp_path / name, towers=towers)), _logits(model))
    assert any(n.startswith("towers.speech.") for n in tuned.zip_state_dict())
    assert not any(n.startswith("towers.") for n in plain.zip_state_dict())


def test_a_lora_zip_after_another_was_unzipped_round_trips(pair, tmp_path):
    """The second LoRA zip over the same tower objects starts from the bare tower and saves/loads exactly."""
    first = _model(pair, lora_rank=2, lora_towers=["speech"])
    _as_trained(first)
    first.unzip()
    second = _model(pair, lora_rank=2, lora_towers=["speech"])
    _as_trained(second, torch.Tensor.uniform_)
    second.save_pretrained(tmp_path / "zip")
    assert torch.equal(_logits(ZipperModel.from_pretrained(tmp_path / "zip", towers=_fresh_pair())), _logits(second))


def test_a_loaded_zip_keeps_the_special_ids_it_was_trained_with(pair, tmp_path):
    """Another tokenizer or transformers version may name other BOS / EOS ids for the same checkpoint
    (transformers 5.17 reads SmolLM2's GGUF with EOS <|im_start|>, 5.25 with <|im_end|>): a zip trained to
    stop on one would run on past it. The saved ids win, with a warning."""
    model = _model(pair, prefix_ids=[[], [7]])
    _as_trained(model)
    model.save_pretrained(tmp_path / "zip")
    saved = json.loads((tmp_path / "zip" / "zipper_config.json").read_text())["tower_special_ids"]
    assert saved == [{"bos": 1, "eos": 2, "pad": 0}] * 2
    speech, text = _fresh_pair()
    text.model.config.eos_token_id, text.model.config.bos_token_id = 5, 6  # what another version reads
    with pytest.warns(UserWarning, match=r"text tower's tokenizer gives special ids .*'eos': 5.* built with .*'eos': 2"):
        loaded = ZipperModel.from_pretrained(tmp_path / "zip", towers=[speech, text])
    assert loaded.tower("text").special_ids() == {"bos": 1, "eos": 2, "pad": 0}
    assert torch.equal(loaded.start_ids("text"), model.start_ids("text"))
    assert torch.equal(_logits(loaded), _logits(model))


def test_a_zip_saved_before_special_ids_were_recorded_loads_with_the_towers_ids(pair, tmp_path):
    model = _model(pair)
    model.save_pretrained(tmp_path / "zip")
    cfg = json.loads((tmp_path / "zip" / "zipper_config.json").read_text())
    del cfg["tower_special_ids"]
    (tmp_path / "zip" / "zipper_config.json").write_text(json.dumps(cfg))
    loaded = ZipperModel.from_pretrained(tmp_path / "zip", towers=_fresh_pair())
    assert loaded.config.tower_special_ids == [{"bos": 1, "eos": 2, "pad": 0}] * 2


@pytest.mark.parametrize("ids", [{"bos": 1, "eos": 2}, {"bos": 1, "eos": 2, "pad": -1},
                                 {"bos": 1, "eos": True, "pad": 0}, {"bos": 1, "eos": 2, "pad": 0, "sep": 3}])
def test_malformed_special_ids_are_a_config_error(pair, ids):
    with pytest.raises(ConfigError, match="tower_special_ids"):
        _model(pair, tower_special_ids=[ids, {"bos": 1, "eos": 2, "pad": 0}])


def test_special_ids_outside_the_vocabulary_are_refused(pair):
    with pytest.raises(ValueError, match="eos id 99 is not in the text tower's vocabulary"):
        _model(pair, tower_special_ids=[{"bos": 1, "eos": 2, "pad": 0}, {"bos": 1, "eos": 99, "pad": 0}])

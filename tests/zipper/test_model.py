"""Invariants of the zipped forward pass: identity at init, frozen towers, gradients, causal masking."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import open_gates, tiny_tower, train_steps
from zipper import ConfigError, Segment, ZipperModel

ARCHS = ["llama", "gpt2", "gpt_neox", "qwen2"]


def _ids(vocab: int, b: int, t: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (b, t), generator=g)


@pytest.mark.parametrize("src_kind", ARCHS)
@pytest.mark.parametrize("dst_kind", ARCHS)
def test_init_logits_equal_bare_towers(src_kind, dst_kind):
    speech = tiny_tower(src_kind, "speech", vocab=40, hidden=32, layers=4, seed=3)
    text = tiny_tower(dst_kind, "text", vocab=56, hidden=48, layers=3, seed=4)
    model = ZipperModel.from_towers([speech, text], directions=["speech->text", "text->speech"],
                                    cross_attention_interval=[1, 1])
    s, t = _ids(40, 3, 9, 0), _ids(56, 3, 6, 1)
    s_mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 7 + [0] * 2])
    t_mask = torch.tensor([[1] * 6, [1] * 6, [1] * 4 + [0] * 2])
    out = model([Segment("speech", s, s_mask), Segment("text", t, t_mask, loss=True)])
    with torch.no_grad():
        bare_s = speech.model(input_ids=s, attention_mask=s_mask).logits
        bare_t = text.model(input_ids=t, attention_mask=t_mask).logits
    # Exact equality on every real token: zero gates make every zip block the identity.
    assert torch.equal(out.logits[0][s_mask.bool()], bare_s[s_mask.bool()])
    assert torch.equal(out.logits[1][t_mask.bool()], bare_t[t_mask.bool()])
    assert out.loss is not None and torch.isfinite(out.loss)


def test_parameter_names_unchanged_and_counts(pair):
    speech, text = pair
    names_before = [n for n, _ in text.model.named_parameters()]
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"])
    assert [n for n, _ in text.model.named_parameters()] == names_before
    assert set(text.model.state_dict()) == {n for n in text.model.state_dict()}
    counts = model.parameter_counts()
    tower_params = speech.num_parameters() + text.num_parameters()
    assert counts["frozen"] == tower_params
    assert counts["trainable"] == sum(p.numel() for n, p in model.named_parameters()
                                      if n.startswith(("blocks.", "input_projections.")))
    assert counts["trainable"] > 0 and not any(p.requires_grad for p in text.model.parameters())


def _interleaved(s, t):
    # [speech, text, speech]: both directions receive memory, so every block is used.
    return [Segment("speech", s, loss=True), Segment("text", t, loss=True), Segment("speech", s.flip(1), loss=True)]


def test_training_changes_only_zip_and_reaches_every_trainable_param(pair):
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text", "text->speech"],
                                    cross_attention_interval=[2, 1])
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    segs = _interleaved(_ids(40, 2, 8, 0), _ids(56, 2, 5, 1))
    losses = train_steps(model, segs)
    assert losses[-1] < losses[0]
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen tensor {n} changed"
            assert p.grad is None
    changed = [n for n, p in model.named_parameters() if n in trainable and not torch.equal(p, trainable[n])]
    assert len(changed) == len(trainable), f"unchanged: {set(trainable) - set(changed)}"
    # Gates are open now, so a backward pass reaches every trainable tensor with a non-zero gradient.
    model.zero_grad()
    model(segs).loss.backward()
    dead = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum())]
    assert not dead, f"no gradient reached {dead}"


def test_lora_only_adapterstrain_steps(pair):
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], lora_rank=4,
                                    lora_towers=["speech"])
    lora = [n for n, p in model.named_parameters() if "lora_" in n]
    assert lora and all(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)
    s, t = _ids(40, 2, 8, 0), _ids(56, 2, 5, 1)
    bare = text.model(input_ids=t).logits
    assert torch.equal(model([Segment("speech", s), Segment("text", t)]).logits[1], bare)  # LoRA B = 0 at init
    base = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
    train_steps(model, [Segment("speech", s), Segment("text", t, loss=True)], steps=4)
    assert all(torch.equal(p, base[n]) for n, p in model.named_parameters() if n in base)
    assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters() if n in before)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_lora_dropout_acts_in_train_mode_on_a_frozen_tower(kind):
    """A frozen tower stays in eval mode (its own dropout off), but its LoRA adapters' lora_dropout follows
    train()/eval(): two train-mode forwards differ, two eval-mode forwards are equal."""
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1)
    text = tiny_tower(kind, "text", vocab=56, hidden=48, layers=2, seed=2)
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], frozen=[True, True], lora_rank=4,
                                    lora_towers=["text"], lora_dropout=0.5)
    with torch.no_grad():  # LoRA B starts at zero, which would hide the dropout before it
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    segs = [Segment("speech", _ids(40, 2, 6, 0)), Segment("text", _ids(56, 2, 5, 1), loss=True)]
    model.train()
    lora_dropouts = [m for n, m in model.towers["text"].named_modules() if "lora_dropout" in n]
    assert lora_dropouts and all(m.training for m in lora_dropouts)
    assert not any(m.training for n, m in model.towers["text"].named_modules() if "lora_dropout" not in n)
    assert not any(m.training for m in model.towers["speech"].modules())
    with torch.no_grad():
        assert not torch.equal(model(segs).logits[1], model(segs).logits[1])
    model.eval()
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        assert torch.equal(model(segs).logits[1], model(segs).logits[1])


def test_start_ids_and_loss_targets_follow_the_inputs_device(pair):
    """Start ids are made on the device asked for, and the forced-start check of the loss runs on the
    segment's device (meta stands in for a GPU here: mixing it with CPU tensors fails like CUDA does)."""
    from zipper.model import loss_targets

    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], prefix_ids=[[], [11, 12]])
    assert model.start_ids("text").device.type == "cpu"
    start = model.start_ids("text", "meta")
    assert start.device.type == "meta" and start.shape == (3,)
    ids = torch.cat([model.start_ids("text").expand(2, -1), _ids(56, 2, 4, 0)], 1)
    on_cpu = loss_targets(Segment("text", ids), model.start_ids("text"))
    assert on_cpu[:, :2].sum() == 0 and bool(on_cpu[:, 2:].all())
    for start in (model.start_ids("text"), model.start_ids("text", "meta")):  # a CPU start is moved across
        keep = loss_targets(Segment("text", ids.to("meta")), start)
        assert keep.device.type == "meta" and keep.shape == on_cpu.shape


def test_unfrozen_tower_trains(pair):
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["text->speech"], frozen=[False, True])
    assert all(p.requires_grad for p in speech.model.parameters())
    assert not any(p.requires_grad for p in text.model.parameters())
    assert speech.model.training is False
    model.train()
    assert model.towers["speech"].training and not model.towers["text"].training


def test_cross_modal_mask_is_causal(pair):
    """A position never sees a later other-modality position: perturbing later segments changes nothing before."""
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text", "text->speech"],
                                    cross_attention_interval=[1, 1])
    open_gates(model)
    t1, s, t2 = _ids(56, 2, 5, 0), _ids(40, 2, 7, 1), _ids(56, 2, 4, 2)
    base = model([Segment("text", t1), Segment("speech", s), Segment("text", t2)]).logits
    s_alt = _ids(40, 2, 7, 9)
    alt = model([Segment("text", t1), Segment("speech", s_alt), Segment("text", t2)]).logits
    assert torch.equal(alt[0], base[0])  # earlier text never saw the speech
    assert not torch.allclose(alt[2], base[2])  # later text does see it (the test can fail)
    t2_alt = _ids(56, 2, 4, 7)
    alt2 = model([Segment("text", t1), Segment("speech", s), Segment("text", t2_alt)]).logits
    assert torch.equal(alt2[0], base[0]) and torch.equal(alt2[1], base[1])


def test_padding_in_memory_is_ignored(pair):
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"])
    open_gates(model)
    s, t = _ids(40, 1, 6, 0), _ids(56, 1, 5, 1)
    one = model([Segment("speech", s), Segment("text", t)]).logits[1]
    padded = torch.cat([s, torch.full((1, 4), 0)], 1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], 1).long()
    two = model([Segment("speech", padded, mask), Segment("text", t)]).logits[1]
    torch.testing.assert_close(one, two, rtol=1e-5, atol=1e-5)


def test_bad_segments_rejected(pair):
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"])
    with pytest.raises(ValueError, match="no tower"):
        model([Segment("image", torch.ones(1, 2, dtype=torch.long))])
    with pytest.raises(ValueError, match="token ids"):
        model([Segment("speech", torch.full((1, 3), 999))])
    with pytest.raises(ValueError, match="input_ids"):
        model([Segment("speech", torch.ones(1, 0, dtype=torch.long))])
    with pytest.raises(ValueError, match="attention_mask"):
        model([Segment("speech", torch.ones(1, 3, dtype=torch.long), torch.ones(1, 4))])
    with pytest.raises(ValueError, match="integer token ids"):
        model([Segment("speech", torch.ones(1, 3))])
    with pytest.raises(ValueError, match="only 0 and 1"):
        model([Segment("speech", torch.ones(1, 3, dtype=torch.long), torch.full((1, 3), 2))])
    model([Segment("speech", torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.bool))])  # bool mask ok
    with pytest.raises(ConfigError, match="modalities"):
        ZipperModel.from_towers([speech, tiny_tower("llama", "speech")], directions=["speech->text"])


def test_three_towers(pair):
    speech, text = pair
    image = tiny_tower("gpt2", "image", vocab=30, hidden=64, layers=2, seed=5)
    model = ZipperModel.from_towers([speech, image, text], directions=["speech->text", "image->text"])
    s, i, t = _ids(40, 2, 5, 0), _ids(30, 2, 4, 1), _ids(56, 2, 6, 2)
    out = model([Segment("speech", s), Segment("image", i), Segment("text", t, loss=True)])
    assert torch.equal(out.logits[2], text.model(input_ids=t).logits)
    open_gates(model)
    a = model([Segment("speech", s), Segment("image", i), Segment("text", t)]).logits[2]
    b = model([Segment("speech", s), Segment("image", i.flip(1)), Segment("text", t)]).logits[2]
    assert not torch.allclose(a, b)


def test_rezipping_the_same_towers_never_stacks_hooks(pair):
    """Hooks go away with their model (or unzip()); a new zip over the same towers sees only its own."""
    import gc

    speech, text = pair
    s, t = _ids(40, 1, 5, 0), _ids(56, 1, 4, 1)
    reference = None
    for _ in range(12):  # Python reuses ids of collected objects: a key on id(self) would misfire here
        torch.manual_seed(0)  # identical zip weights every time
        model = ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 1])
        open_gates(model)
        logits = model([Segment("speech", s), Segment("text", t)]).logits[1]
        reference = logits if reference is None else reference
        assert torch.equal(logits, reference)
        assert len(text.layers[0]._forward_hooks) == 1
        del model
        gc.collect()
    assert len(text.layers[0]._forward_hooks) == 0
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"])
    model.unzip()
    assert len(text.layers[0]._forward_hooks) == 0
    with pytest.raises(RuntimeError, match="unzipped"):
        model([Segment("speech", s), Segment("text", t)])


def test_input_projection_per_tower_skips_source_backward(pair):
    """Without an input projection on the frozen source tower, no gradient flows through that tower."""
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], input_projection_towers=["text"])
    assert list(model.input_projections) == ["text"]
    s, t = _ids(40, 2, 6, 0), _ids(56, 2, 5, 1)
    seen = []
    handle = speech.layers[0].register_full_backward_hook(lambda *a: seen.append(1))
    model.train()
    model([Segment("speech", s), Segment("text", t, loss=True)]).loss.backward()
    handle.remove()
    assert not seen  # the speech tower ran without autograd work
    assert torch.equal(model([Segment("speech", s), Segment("text", t)]).logits[1], text.model(input_ids=t).logits)
    with pytest.raises(ConfigError, match="input_projection_towers"):
        ZipperModel.from_towers([speech, text], directions=["speech->text"], input_projection_towers=["image"])


def test_zip_without_feed_forward_has_only_cross_attention_paths(pair):
    """ffn_mult=0: no gated feed-forward in any block; identity at init; every trainable tensor gets a
    gradient once the gates are open, and the text then depends on the speech only through attention."""
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 1],
                                    ffn_mult=0)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and not any(".ff." in n or n.endswith("ff_gate") or ".ff_norm." in n for n in names)
    s, t = _ids(40, 2, 7, 0), _ids(56, 2, 5, 1)
    segs = [Segment("speech", s), Segment("text", t, loss=True)]
    with torch.no_grad():
        assert torch.equal(model(segs).logits[1], text.model(input_ids=t).logits)
    open_gates(model)
    model(segs).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)


def _perturb_lora(model) -> None:
    """LoRA B starts at zero (an identity); give it values, as training would."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kind", ["llama", "gpt2", "gpt_neox"])
@pytest.mark.parametrize("how", ["unzip", "garbage-collected"])
def test_lora_adapters_leave_with_their_zip(kind, how):
    """After unzip() or garbage collection the tower is the bare tower again: its own modules and parameter
    names, and logits bit-exactly a fresh copy's; a new zip over it starts from the bare tower."""
    import gc

    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1)
    text = tiny_tower(kind, "text", vocab=56, hidden=32, layers=2, seed=2, init_std=0.2)
    fresh = tiny_tower(kind, "text", vocab=56, hidden=32, layers=2, seed=2, init_std=0.2)
    names = [n for n, _ in text.model.named_parameters()]
    s, t = _ids(40, 2, 6, 0), _ids(56, 2, 5, 1)
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], lora_rank=4, lora_towers=["text"])
    _perturb_lora(model)
    with torch.no_grad():
        assert not torch.equal(text.model(input_ids=t).logits, fresh.model(input_ids=t).logits)  # adapters act
    if how == "unzip":
        model.unzip()
    else:
        del model
        gc.collect()
    assert [n for n, _ in text.model.named_parameters()] == names and not hasattr(text.model, "peft_config")
    with torch.no_grad():
        assert torch.equal(text.model(input_ids=t).logits, fresh.model(input_ids=t).logits)
    again = ZipperModel.from_towers([speech, text], directions=["speech->text"], lora_rank=4, lora_towers=["text"])
    with torch.no_grad():
        assert torch.equal(again([Segment("speech", s), Segment("text", t)]).logits[1], fresh.model(input_ids=t).logits)


def test_a_tower_carrying_another_zips_lora_is_refused(pair):
    """A zip never runs on (nor resets) another live zip's adapters: it asks for that zip to be unzipped."""
    speech, text = pair
    first = ZipperModel.from_towers([speech, text], directions=["speech->text"], lora_rank=4, lora_towers=["speech"])
    _perturb_lora(first)
    trained = {n: p.detach().clone() for n, p in first.named_parameters() if "lora_" in n}
    for kwargs in ({}, {"lora_rank": 4, "lora_towers": ["speech"]}):
        with pytest.raises(ConfigError, match="already carries LoRA adapters.*unzip"):
            ZipperModel.from_towers([speech, text], directions=["speech->text"], **kwargs)
    assert all(torch.equal(p, trained[n]) for n, p in first.named_parameters() if "lora_" in n)
    first.unzip()
    ZipperModel.from_towers([speech, text], directions=["speech->text"])


def test_train_reapplies_this_zips_trainability_on_shared_towers(pair):
    """Another zip built over the same towers sets their requires_grad its way; train() sets them back to
    this zip's config, so training it trains (and saving it saves) what its config says."""
    speech, text = pair
    tts = ZipperModel.from_towers([speech, text], directions=["text->speech"], frozen=[False, True])
    ZipperModel.from_towers([speech, text], directions=["text->speech"])  # all frozen: clears the flags
    assert not any(p.requires_grad for p in speech.model.parameters())
    tts.train()
    assert all(p.requires_grad for p in speech.model.parameters())
    assert {n for n, p in tts.named_parameters() if p.requires_grad} == tts._expected_trainable()
    before = {n: p.detach().clone() for n, p in speech.model.named_parameters()}
    opt = torch.optim.AdamW([p for p in tts.parameters() if p.requires_grad], lr=1e-2)
    tts([Segment("text", _ids(56, 2, 5, 1)), Segment("speech", _ids(40, 2, 6, 0), loss=True)]).loss.backward()
    opt.step()
    assert all(not torch.equal(p, before[n]) for n, p in speech.model.named_parameters())


def test_the_callers_config_is_left_unchanged(pair):
    """Building a zip fills a copy of its config: the same config object then zips other towers."""
    from zipper import ZipperConfig

    config = ZipperConfig(modalities=["speech", "text"], directions=["speech->text"])
    before = config.to_dict()
    first = ZipperModel(config, pair)
    assert config.to_dict() == before and first.config is not config and first.config.tower_hidden_sizes == [32, 48]
    other = (tiny_tower("llama", "speech", vocab=40, hidden=64, layers=2, seed=3), pair[1])
    second = ZipperModel(config, other)  # would be "towers do not match this zip" with a filled config
    assert second.config.tower_hidden_sizes == [64, 48] and config.to_dict() == before


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_input_ids_other_than_long_are_refused_by_name(pair, dtype):
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"])
    segs = [Segment("speech", _ids(40, 2, 6, 0).to(dtype)), Segment("text", _ids(56, 2, 5, 1).to(dtype), loss=True)]
    with pytest.raises(ValueError, match=f"torch.long.*got {dtype}"):
        model(segs)
    with pytest.raises(ValueError, match=f"torch.long.*got {dtype}"):
        model.generate(segs[:1], ["text"], max_new_tokens=2)


def test_a_tower_without_bos_trains_on_its_plain_next_token_loss(pair):
    """start_ids leaves out a BOS the tower does not have; the loss at init is the bare tower's mean
    next-token NLL (the zip is the identity), with no forced start to skip."""
    import torch.nn.functional as F

    speech, text = pair
    text.model.config.bos_token_id = None
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], prefix_ids=[[], [11]])
    assert model.start_ids("text").tolist() == [11] and model.start_ids("speech").tolist() == [1]
    t = _ids(56, 2, 5, 1)
    out = model([Segment("speech", _ids(40, 2, 6, 0)), Segment("text", t, loss=True)])
    with torch.no_grad():
        logits = text.model(input_ids=t).logits
    torch.testing.assert_close(out.loss, F.cross_entropy(logits[:, :-1].transpose(1, 2), t[:, 1:]))
    with pytest.raises(ValueError, match="needs bos"):
        model.generate([Segment("speech", _ids(40, 2, 6, 0))], ["text"], max_new_tokens=2)


class _Reached(Exception):
    pass


def test_cpu_segments_reach_towers_on_another_device(pair, monkeypatch):
    """Data is made on the CPU; a tower may sit on a GPU. forward, generate and run_segments move each
    segment to its tower's device first (meta stands in for the GPU: the towers are moved there)."""
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"]).to("meta")
    assert model.tower("text").device.type == "meta"
    seen = []

    def record(modality, input_ids, mask, *args, **kwargs):
        seen.append((modality, input_ids.device.type, mask.device.type))
        raise _Reached

    monkeypatch.setattr(model, "tower_forward", record)
    segs = [Segment("speech", _ids(40, 2, 5, 0)), Segment("text", _ids(56, 2, 4, 1), loss=True)]
    for call in (lambda: model(segs), lambda: model.generate(segs[:1], ["text"], max_new_tokens=2),
                 lambda: model.run_segments(segs[:1])):
        with pytest.raises(_Reached):
            call()
    assert seen == [("speech", "meta", "meta")] * 3
    assert Segment("text", _ids(56, 1, 3, 0)).to("meta").mask().device.type == "meta"


def test_saving_over_a_model_directory_keeps_what_else_it_holds(pair, tmp_path):
    """A recipe writes the codec into model/codec: re-saving the zip there must not delete it."""
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"])
    (tmp_path / "m" / "codec").mkdir(parents=True)
    (tmp_path / "m" / "codec" / "x.json").write_text("{}")
    model.save_pretrained(tmp_path / "m")
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "codec" / "x.json").read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["codec", "zipper.safetensors", "zipper_config.json"]
    assert not list(tmp_path.glob(".m.*"))  # no temp or old copies left beside it


def test_an_unzipped_model_refuses_to_save(pair, tmp_path):
    speech, text = pair
    model = ZipperModel.from_towers([speech, text], directions=["speech->text"], lora_rank=2, lora_towers=["text"])
    model.unzip()
    with pytest.raises(RuntimeError, match="unzipped"):
        model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_sliding_window_tower_refuses_a_padded_repeat_beyond_its_window():
    """HF windows the KV cache by position: padding left in it by an earlier segment would shift one row's window."""
    from transformers import MistralConfig, MistralForCausalLM

    from towers import Tower

    def mistral(window):
        torch.manual_seed(0)
        return Tower(MistralForCausalLM(MistralConfig(
            vocab_size=56, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, sliding_window=window, bos_token_id=1, eos_token_id=2, pad_token_id=0)).eval(), "text")

    speech = tiny_tower("llama", "speech", vocab=40, seed=1)
    padded = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]])
    segs = [Segment("text", _ids(56, 2, 6, 0), padded), Segment("speech", _ids(40, 2, 3, 1)),
            Segment("text", _ids(56, 2, 4, 2))]
    with torch.no_grad():
        small = ZipperModel.from_towers([speech, mistral(3)], directions=["speech->text"])
        with pytest.raises(NotImplementedError, match="sliding window"):
            small(segs)
        small(segs[:1] + segs[1:2])  # no repeated segment: nothing to refuse
        small.unzip()
        wide = ZipperModel.from_towers([speech, mistral(64)], directions=["speech->text"])
        alone = wide([Segment(s.modality, s.input_ids[1:, :3 if i == 0 else None]) for i, s in enumerate(segs)])
        assert torch.allclose(wide(segs).logits[2][1], alone.logits[2][0], atol=1e-5)  # within the window: exact

"""Auxiliary CTC (zipper/ctc.py): the mixed loss, its targets, what it trains, greedy decoding, config, saving."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import open_gates, tiny_tower, train_steps
from zipper import Segment, ZipperModel
from zipper.config import ConfigError
from zipper.ctc import ctc_greedy

PREFIX = [7, 9]


def _zip(ctc_weight=0.3, seed=3):
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1, init_std=0.4)
    text = tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=2, init_std=0.4)
    torch.manual_seed(seed)
    m = ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 1],
                                prefix_ids=[[], PREFIX], ctc_directions=["speech->text"] if ctc_weight else [],
                                ctc_weight=ctc_weight)
    open_gates(m, 0.5)
    return m


def _batch(m):
    speech = Segment("speech", torch.randint(3, 40, (2, 12), generator=torch.Generator().manual_seed(0)),
                     torch.tensor([[1] * 12, [1] * 9 + [0] * 3]))
    words = torch.tensor([[11, 12, 13, 2, 0], [14, 15, 2, 0, 0]])
    ids = torch.cat([m.start_ids("text").expand(2, -1), words], 1)  # BOS 7 9 w.. EOS pad
    return [speech, Segment("text", ids, (ids != 0) | (torch.arange(ids.shape[1]) == 0), loss=True)]


def test_loss_mixes_attention_and_ctc_and_the_attention_part_is_the_plain_zip():
    m, plain = _zip(0.3), _zip(0.0)
    plain.load_state_dict({k: v for k, v in m.state_dict().items() if not k.startswith("ctc_heads.")})
    out, ref = m(_batch(m)), plain(_batch(plain))
    assert ref.ctc_loss is None and out.ctc_loss is not None and out.ctc_loss > 0
    assert torch.allclose(out.loss, 0.7 * ref.loss + 0.3 * out.ctc_loss)


def test_ctc_targets_are_the_words_without_prefix_and_eos():
    m = _zip()
    batch = _batch(m)
    out = m(batch)
    _, history, _ = m.run_segments(batch[:1])
    log_probs = m.ctc_log_probs("speech", "text", history[0])  # (B, M, V + 1)
    assert log_probs.shape == (2, 12, 57)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 12), atol=1e-5)
    expected = F.ctc_loss(log_probs.transpose(0, 1), torch.tensor([11, 12, 13, 14, 15]), torch.tensor([12, 9]),
                          torch.tensor([3, 2]), blank=56, reduction="mean", zero_infinity=True)
    assert torch.allclose(out.ctc_loss, expected)


def test_ctc_gradient_reaches_the_head_and_the_last_blocks_memory_projection_only():
    m = _zip()
    m.train()
    m(_batch(m)).ctc_loss.backward()
    grads = {n: p.grad for n, p in m.named_parameters() if p.requires_grad}
    last = len(m.blocks["speech_to_text"]) - 1
    assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in grads if n.startswith("ctc_heads."))
    assert grads[f"blocks.speech_to_text.{last}.mem_proj.0.weight"].abs().sum() > 0
    assert grads["blocks.speech_to_text.0.q.weight"] is None  # CTC does not touch the attention path
    assert all(p.grad is None for n, p in m.named_parameters() if n.startswith("towers."))  # frozen


def test_a_few_steps_lower_the_ctc_loss_and_leave_the_towers_bit_identical():
    m = _zip(0.5)
    towers = {n: p.detach().clone() for n, p in m.named_parameters() if n.startswith("towers.")}
    batch = _batch(m)
    m.train()
    first = m(batch).ctc_loss.item()
    train_steps(m, batch, steps=30, lr=3e-3)
    assert m(batch).ctc_loss.item() < 0.5 * first
    assert all(torch.equal(p, towers[n]) for n, p in m.named_parameters() if n.startswith("towers."))


def test_greedy_merges_repeats_drops_blanks_and_padding():
    blank = 5
    paths = torch.tensor([[1, 1, 5, 1, 2, 2, 5, 5], [3, 5, 3, 3, 4, 4, 4, 4]])
    log_probs = F.one_hot(paths, blank + 1).float().log()  # (2, 8, 6)
    mask = torch.tensor([[1] * 8, [1] * 4 + [0] * 4]).bool()
    assert ctc_greedy(log_probs, mask) == [[1, 1, 2], [3, 3]]


def test_save_and_load_round_trip_the_head(tmp_path):
    m = _zip()
    with torch.no_grad():
        for p in m.ctc_heads.parameters():
            p.add_(torch.randn_like(p))
    m.save_pretrained(tmp_path / "z")
    again = ZipperModel.from_pretrained(tmp_path / "z", towers=list(m.tower_objs.values()))
    assert again.config.ctc_directions == ["speech->text"] and again.config.ctc_weight == 0.3
    batch = _batch(m)
    assert torch.equal(m(batch).loss, again(batch).loss)


@pytest.mark.parametrize("kwargs", [
    dict(ctc_directions=["text->speech"], ctc_weight=0.3),  # not a direction of the zip
    dict(ctc_directions=["speech->text"], ctc_weight=0.0),  # a head without weight
    dict(ctc_directions=[], ctc_weight=0.3),  # weight without a head
    dict(ctc_directions=["speech->text"], ctc_weight=1.0),  # no attention loss left
    dict(ctc_directions=["speech->text"], ctc_weight=-0.1),
])
def test_bad_ctc_configs_are_refused(kwargs):
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1)
    text = tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=2)
    with pytest.raises(ConfigError, match="ctc"):
        ZipperModel.from_towers([speech, text], directions=["speech->text"], **kwargs)


# ---- character CTC (ctc_units="chars"): a 28-symbol head of its own, targets from the decoded text ----

def _chars_zip(tokenizer, ctc_weight=0.5):
    from tests.conftest import tiny_text_tower

    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1, init_std=0.4)
    torch.manual_seed(3)
    m = ZipperModel.from_towers([speech, tiny_text_tower(tokenizer, seed=2)], directions=["speech->text"],
                                cross_attention_interval=[1, 1], ctc_directions=["speech->text"],
                                ctc_weight=ctc_weight, ctc_units="chars")
    open_gates(m, 0.5)
    return m


def _text_batch(m, tokenizer, texts, n_frames=(40, 31)):
    from zipper.data import pad_rows

    speech = Segment("speech", torch.randint(3, 40, (len(texts), max(n_frames)), generator=torch.Generator().manual_seed(0)),
                     torch.stack([torch.arange(max(n_frames)) < n for n in n_frames]).long())
    start = m.start_ids("text").view(-1).tolist()
    rows = [start + tokenizer(t, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for t in texts]
    ids, mask = pad_rows([torch.tensor(r) for r in rows], tokenizer.pad_token_id or 0)
    return [speech, Segment("text", ids, mask, loss=True)]


def test_char_targets_are_normalised_text():
    from zipper.ctc import CTC_CHARS, char_targets, chars_text

    got = char_targets(["Mr. Smith's 2 dogs -- well!", "  ", "Ünïcode\tok"])
    assert [chars_text(t.tolist()) for t in got] == ["mister smith's two dogs well", "", "unicode ok"]
    assert all(0 <= int(i) < len(CTC_CHARS) for t in got for i in t)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_ctc_loss_on_a_gpu_takes_character_targets_built_on_the_cpu():
    from zipper.ctc import char_targets, ctc_loss

    log_probs = torch.randn(2, 30, 29, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    mask = torch.ones(2, 30, dtype=torch.bool)
    targets = char_targets(["hello there", "a cat"])  # on the CPU
    want = ctc_loss(log_probs, mask, targets)
    assert ctc_loss(log_probs.cuda(), mask.cuda(), targets).item() == pytest.approx(want.item(), rel=1e-4)


def test_char_ctc_scores_28_characters_and_its_loss_is_ctc_on_the_decoded_text(smollm2_tokenizer):
    from zipper.ctc import CTC_CHARS, char_targets

    m = _chars_zip(smollm2_tokenizer)
    texts = ["Hello there, Tom.", "It's 3 a.m."]
    batch = _text_batch(m, smollm2_tokenizer, texts)
    out = m(batch)
    _, history, _ = m.run_segments(batch[:1])
    log_probs = m.ctc_log_probs("speech", "text", history[0])  # (B, M, 28 + 1)
    assert log_probs.shape == (2, 40, len(CTC_CHARS) + 1) == (2, 40, 29)
    targets = char_targets(texts)  # "hello there tom", "it's three a m"
    expected = F.ctc_loss(log_probs.transpose(0, 1), torch.cat(targets), torch.tensor([40, 31]),
                          torch.tensor([len(t) for t in targets]), blank=28, reduction="mean", zero_infinity=True)
    assert torch.allclose(out.ctc_loss, expected)


def test_char_ctc_trains_decodes_and_round_trips(smollm2_tokenizer, tmp_path):
    from zipper.ctc import chars_text

    m = _chars_zip(smollm2_tokenizer)
    batch = _text_batch(m, smollm2_tokenizer, ["abc", "a b"], n_frames=(12, 12))
    first = m(batch).ctc_loss.item()
    train_steps(m, batch, steps=150, lr=1e-2)
    m.eval()
    assert m(batch).ctc_loss.item() < 0.3 * first
    _, history, _ = m.run_segments(batch[:1])
    best = ctc_greedy(m.ctc_log_probs("speech", "text", history[0]), history[0].mask)
    assert [chars_text(row) for row in best] == ["abc", "a b"]
    m.save_pretrained(tmp_path / "z")
    again = ZipperModel.from_pretrained(tmp_path / "z", towers=list(m.tower_objs.values()))
    assert again.config.ctc_units == "chars" and torch.equal(m(batch).loss, again(batch).loss)


def test_bad_ctc_units_and_chars_without_a_tokenizer_are_refused():
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1)
    text = tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=2)  # ids only: no tokenizer
    with pytest.raises(ConfigError, match="ctc_units"):
        ZipperModel.from_towers([speech, text], directions=["speech->text"], ctc_directions=["speech->text"],
                                ctc_weight=0.3, ctc_units="bytes")
    from zipper.recipe import RecipeConfig

    with pytest.raises(ConfigError, match="ctc_units"):
        RecipeConfig(task="asr", ctc_weight=0.3, ctc_units="phones")
    with pytest.raises(ConfigError, match="tokenizer"):
        ZipperModel.from_towers([speech, text], directions=["speech->text"], ctc_directions=["speech->text"],
                                ctc_weight=0.3, ctc_units="chars")

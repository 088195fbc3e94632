"""Auxiliary CTC (zipper/ctc.py): the mixed loss, its targets, what it trains, greedy decoding, config, saving."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import open_gates, tiny_tower
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
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=3e-3)
    first = m(batch).ctc_loss.item()
    for _ in range(30):
        opt.zero_grad()
        m(batch).loss.backward()
        opt.step()
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

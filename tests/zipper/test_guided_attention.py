"""Guided attention (zipper/fusion.py, diagonal_guide): the penalty matrix, the explicit attention path,
the mixed loss, what training on it does, and the config checks."""
from __future__ import annotations

import pytest
import torch

from tests.conftest import open_gates, tiny_tower, train_steps
from zipper import Segment, ZipperModel
from zipper.config import ConfigError
from zipper.fusion import GatedCrossAttention, diagonal_guide, guide_penalty


def test_guide_is_zero_on_the_diagonal_of_the_real_part_and_at_padded_queries():
    q = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    k = torch.tensor([[1] * 8, [1] * 4 + [0] * 4], dtype=torch.bool)
    w = diagonal_guide(q, k, sigma=0.2)  # (2, 4, 8)
    assert w.shape == (2, 4, 8) and (w >= 0).all() and (w < 1).all()
    assert w[0, 1, 2] == 0 and w[1, 1, 2] == 0  # n/N == m/M: 1/4 = 2/8, and 1/2 = 2/4 in the shorter row
    assert w[0, 0, 7] > 0.99 and w[0, 3, 0] > 0.9  # far corners
    assert (w[1, 2:] == 0).all()  # padded queries carry no penalty
    for n in range(4):  # along a query row the penalty is smallest at its diagonal key
        assert w[0, n].argmin() == 2 * n


def test_the_explicit_attention_path_equals_sdpa_and_reports_a_penalty():
    torch.manual_seed(0)
    block = GatedCrossAttention(dim=16, mem_dim=12, heads=4, projection_layers=1, ffn_mult=2)
    with torch.no_grad():
        block.attn_gate.fill_(0.8)
        block.ff_gate.fill_(0.5)
    x, states = torch.randn(2, 5, 16), torch.randn(2, 7, 12)
    key_mask = torch.tensor([[1] * 7, [1] * 3 + [0] * 4], dtype=torch.bool)
    k, v = block.memory(states)
    plain = block(x, k, v, key_mask)
    penalties: list = []
    guide = diagonal_guide(torch.ones(2, 5, dtype=torch.bool), key_mask)
    guided = block(x, k, v, key_mask, guide, penalties)
    assert torch.allclose(plain, guided, atol=1e-5)
    assert len(penalties) == 1 and 0 < penalties[0] < 1
    w = block.attention_weights(x, k, key_mask)  # (B, H, T, M): what the diagnostics read
    assert torch.allclose(w.sum(-1), torch.ones(2, 4, 5)) and (w[1, ..., 3:] == 0).all()  # padded keys: none
    assert torch.equal(penalties[0], guide_penalty(w, guide))


def _zip(guided: float, direction: str = "speech->text"):
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1, init_std=0.4)
    text = tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=2, init_std=0.4)
    torch.manual_seed(3)
    m = ZipperModel.from_towers([speech, text], directions=[direction], cross_attention_interval=[1, 1],
                                guided_attention=guided)
    open_gates(m, 0.5)
    return m


def _batch(task: str):
    g = torch.Generator().manual_seed(0)
    speech = torch.randint(3, 40, (2, 12), generator=g)
    speech[:, 0] = 1
    sm = torch.tensor([[1] * 12, [1] * 9 + [0] * 3])
    text = torch.tensor([[1, 11, 12, 13, 2, 0], [1, 14, 15, 2, 0, 0]])
    tm = (text != 0).long()
    if task == "asr":
        return [Segment("speech", speech, sm), Segment("text", text, tm, loss=True)]
    return [Segment("text", text, tm), Segment("speech", speech, sm, loss=True)]


@pytest.mark.parametrize("task, direction", [("asr", "speech->text"), ("tts", "text->speech")])
def test_loss_adds_the_penalty_and_the_nll_is_the_plain_zips(task, direction):
    m, plain = _zip(0.5, direction), _zip(0.0, direction)
    plain.load_state_dict(m.state_dict())
    out, ref = m(_batch(task)), plain(_batch(task))
    assert ref.guide_loss is None and out.guide_loss is not None and 0 < out.guide_loss < 1
    assert torch.allclose(out.row_nll, ref.row_nll, atol=1e-5)  # the NLL does not change, only the loss
    assert torch.allclose(out.loss, ref.loss + 0.5 * out.guide_loss, atol=1e-6)


def test_training_on_the_guide_alone_moves_attention_to_the_diagonal():
    m = _zip(1.0, "speech->text")
    before = m(_batch("asr")).guide_loss.item()
    train_steps(m, _batch("asr"), steps=30, lr=3e-2)
    after = m(_batch("asr")).guide_loss.item()
    assert after < 0.8 * before


def test_config_checks():
    with pytest.raises(ConfigError, match="guided_attention"):
        _zip(-1.0)
    from zipper.recipe import RecipeConfig

    with pytest.raises(ConfigError, match="single decoder has no cross-attention"):
        RecipeConfig(model="single_decoder", guided_attention=1.0)

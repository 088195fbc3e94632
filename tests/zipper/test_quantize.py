"""Int8 inference (zipper/quantize.py): close to fp32, the weights and their keys untouched, refused where a copy
would go stale or cannot run."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tests.conftest import open_gates, tiny_tower
from zipper import Segment, ZipperModel
from zipper.quantize import Int8Linear, quantize_linears


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 96), st.integers(1, 96), st.booleans(), st.lists(st.integers(1, 5), min_size=0, max_size=2),
       st.integers(0, 2**16))
def test_an_int8_linear_is_within_a_few_percent_of_the_fp32_one(n_in, n_out, bias, lead, seed):
    torch.manual_seed(seed)
    lin = nn.Linear(n_in, n_out, bias=bias)
    x = torch.randn(*lead, n_in)
    q = Int8Linear(lin)
    with torch.no_grad():
        want, got = lin(x), q(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    # 8-bit weights per output channel, 7-bit activations per call: each product's error is a percent or two of
    # its size, so the bound is on the products' sizes (an output near zero by cancellation has no relative error)
    assert (got - want).norm() <= 0.03 * (x.abs() @ lin.weight.abs().T).norm() + 1e-6
    assert q.weight is lin.weight and q.bias is lin.bias  # the parameters themselves, not copies


def _zip():
    speech, text = tiny_tower("llama", "speech", vocab=40, seed=1), tiny_tower("llama", "text", vocab=56, hidden=48,
                                                                              seed=2, init_std=0.2)
    torch.manual_seed(3)
    m = ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 1])
    open_gates(m, 0.5)
    return m.eval()


def test_an_int8_text_tower_keeps_its_keys_and_weights_and_nearly_its_logits():
    m = _zip()
    g = torch.Generator().manual_seed(0)
    segments = [Segment("speech", torch.randint(3, 40, (2, 9), generator=g)),
                Segment("text", torch.randint(3, 56, (2, 7), generator=g))]
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with torch.no_grad():
        want = m(segments).logits[1]  # (B, T, V)
    tower = m.tower("text").model
    linears = sum(type(x) is nn.Linear for x in tower.modules())
    assert quantize_linears(tower) == linears > 0
    assert not any(type(x) is nn.Linear for x in tower.modules())
    assert not any(isinstance(x, Int8Linear) for x in m.tower("speech").model.modules())  # only the module given
    after = m.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        got = m(segments).logits[1]
    assert (got - want).norm() <= 0.1 * want.norm()  # two layers of int8 errors, at width 48
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() >= 0.9
    assert quantize_linears(tower) == 0  # nothing left to convert


def test_int8_is_refused_for_trainable_or_non_cpu_modules():
    lin = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="frozen"):
        quantize_linears(nn.Sequential(lin))
    assert type(lin) is nn.Linear  # nothing converted
    with pytest.raises(ValueError, match="CPU"):
        quantize_linears(nn.Sequential(nn.Linear(4, 4, device="meta")).requires_grad_(False))


def test_int8_needs_an_x86_engine(monkeypatch):
    monkeypatch.setattr(torch.backends.quantized, "engine", "qnnpack", raising=False)
    with pytest.raises(RuntimeError, match="quantized engine"):
        quantize_linears(nn.Sequential(nn.Linear(4, 4)).requires_grad_(False))

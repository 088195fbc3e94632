"""Continuous feature input (zipper/features.py): exact no-op at init, trained like any zip part, saved and checked."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import open_gates, tiny_tower, train_steps
from zipper import ConfigError, Segment, ZipperModel
from zipper.features import feature_rows

F = 12  # feature width of these tests (Whisper-base states are 512)


def _zip(feature_towers=("speech",), **kw):
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=4, seed=1)
    text = tiny_tower("gpt_neox", "text", vocab=56, hidden=48, layers=3, seed=2)
    return ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[2, 1],
                                   feature_towers=list(feature_towers), feature_dim=F if feature_towers else 0, **kw)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randint(3, 40, (3, 9), generator=g)
    s_mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4, [1] * 7 + [0] * 2])
    states = [torch.randn(n - 2, F, generator=g) for n in (9, 5, 7)]  # BOS + units + EOS
    feats, fmask = feature_rows(states, s_mask, 1, F)
    t = torch.randint(3, 56, (3, 6), generator=g)
    return s, s_mask, feats, fmask, t


def _segments(s, s_mask, feats, fmask, t, with_features=True):
    return [Segment("speech", s, s_mask, features=feats if with_features else None,
                    feature_mask=fmask if with_features else None), Segment("text", t, loss=True)]


def test_feature_rows_align_states_with_the_unit_positions():
    s_mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2])  # BOS, 4 units, EOS / BOS, 2 units, EOS, pad, pad
    states = [torch.arange(8.).view(4, 2), torch.arange(10.).view(5, 2)]  # the second has 3 states beyond its units
    feats, mask = feature_rows(states, s_mask, 1, 2)
    assert mask.tolist() == [[False, True, True, True, True, False], [False, True, True, False, False, False]]
    assert torch.equal(feats[0, 1:5], states[0]) and torch.equal(feats[1, 1:3], states[1][:2])
    assert not feats[~mask].any()
    with pytest.raises(ValueError, match="frames >= its 4 units"):
        feature_rows([torch.zeros(3, 2), torch.zeros(2, 2)], s_mask, 1, 2)


def test_at_init_features_change_nothing_and_training_makes_them_matter():
    model = _zip()
    plain = _zip(feature_towers=())
    open_gates(model), open_gates(plain)
    plain.load_zip_state_dict({k: v for k, v in model.zip_state_dict().items() if not k.startswith("feature_inputs.")})
    batch = _batch()
    with torch.no_grad():
        with_f = model(_segments(*batch)).logits
        without = model(_segments(*batch, with_features=False)).logits
        bare = plain(_segments(*batch, with_features=False)).logits
    for a, b, c in zip(with_f, without, bare):  # zero-initialised projection: exactly the zip without features
        assert torch.equal(a, b) and torch.equal(a, c)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    losses = train_steps(model, _segments(*batch))
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert model.feature_inputs["speech"].proj.weight.abs().sum() > 0
    with torch.no_grad():
        after = model(_segments(*batch)).logits[1]
        other = model(_segments(*batch[:2], batch[2].flip(1), *batch[3:])).logits[1]
    assert not torch.equal(after, other)  # the text tower now reads the features


def test_features_round_trip_through_save_and_load(tmp_path):
    model = _zip()
    open_gates(model)
    batch = _batch()
    train_steps(model, _segments(*batch))
    model.eval()
    with torch.no_grad():
        before = model(_segments(*batch)).logits[1]
    model.save_pretrained(tmp_path / "zip")
    speech, text = model.tower("speech"), model.tower("text")
    model.unzip()
    loaded = ZipperModel.from_pretrained(tmp_path / "zip", towers=[speech, text])
    assert loaded.config.feature_towers == ["speech"] and loaded.config.feature_dim == F
    with torch.no_grad():
        assert torch.equal(loaded(_segments(*batch)).logits[1], before)


def test_config_and_segment_errors():
    with pytest.raises(ConfigError, match="go together"):
        ZipperModel.from_towers(
            [tiny_tower("llama", "speech", vocab=40), tiny_tower("llama", "text", vocab=40)],
            directions=["speech->text"], feature_towers=["speech"], feature_dim=0)
    with pytest.raises(ConfigError, match="feature_towers names 'image'"):
        _zip(feature_towers=("image",))
    s, s_mask, feats, fmask, t = _batch()
    model = _zip()
    with pytest.raises(ValueError, match="go together"):
        model([Segment("speech", s, s_mask, features=feats), Segment("text", t, loss=True)])
    with pytest.raises(ValueError, match=r"features must be float \(3, 9, 12\)"):
        model([Segment("speech", s, s_mask, features=feats[..., :5], feature_mask=fmask), Segment("text", t, loss=True)])
    with pytest.raises(ValueError, match="feature input only for \\['speech'\\]"):
        model([Segment("speech", s, s_mask), Segment("text", t, loss=True, features=torch.zeros(3, 6, F),
                                                     feature_mask=torch.ones(3, 6, dtype=torch.bool))])
    bad = feats.clone()
    bad[0, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model([Segment("speech", s, s_mask, features=bad, feature_mask=fmask), Segment("text", t, loss=True)])


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(st.integers(0, 6), min_size=1, max_size=4), extra=st.integers(0, 3))
def test_feature_rows_mask_counts_each_rows_units(rows, extra):
    length = max(rows) + 2
    token_mask = torch.tensor([[1] * (n + 2) + [0] * (length - n - 2) for n in rows])
    feats, mask = feature_rows([torch.ones(n + extra, 3) for n in rows], token_mask, 1, 3)
    assert mask.sum(1).tolist() == rows and feats.shape == (len(rows), length, 3)
    assert torch.equal(feats.sum(-1) > 0, mask)

"""Forced prefixes after BOS (ZipperConfig.prefix_ids): segment format, loss, generation, persistence.

The generation invariants (cached == uncached, beam(1) == greedy, batched == one-by-one) run with and
without a prefix in test_generation.py; these tests pin what the prefix itself means.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import open_gates, tiny_tower
from zipper import Segment, ZipperModel
from zipper.baseline import SingleDecoder
from zipper.config import ConfigError

TEXT_PREFIX = [7, 9]


def _zip(prefix=((), TEXT_PREFIX)):
    speech = tiny_tower("llama", "speech", vocab=40, hidden=32, layers=2, seed=1, init_std=0.4)
    text = tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=2, init_std=0.4)
    m = ZipperModel.from_towers([speech, text], directions=["speech->text"], cross_attention_interval=[1, 1],
                                prefix_ids=[list(p) for p in prefix])
    open_gates(m, 1.0, block_scale=10.0)
    return m


def _speech(b, t, seed=0):
    return torch.randint(3, 40, (b, t), generator=torch.Generator().manual_seed(seed))


def test_start_ids_are_bos_then_prefix():
    m = _zip()
    assert m.start_ids("text").tolist() == [1, *TEXT_PREFIX]
    assert m.start_ids("speech").tolist() == [1]
    assert _zip(((), ())).start_ids("text").tolist() == [1]


def test_loss_skips_the_forced_start_but_not_rows_without_it():
    m = _zip()
    speech = Segment("speech", _speech(2, 6))
    words = torch.tensor([[11, 12, 13, 2], [14, 15, 16, 2]])
    ids = torch.cat([m.start_ids("text").expand(2, -1), words], 1)  # row: BOS 7 9 w w w EOS
    ids[1, 1] = 8  # row 1 does not begin with the prefix: all its targets count
    out = m([speech, Segment("text", ids, loss=True)])
    logits = out.logits[1][:, :-1]
    nll = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), reduction="none").view(2, -1)
    expected = torch.cat([nll[0, len(TEXT_PREFIX):], nll[1]])  # row 0: targets from the first word on
    assert out.num_loss_tokens == len(expected) == 4 + 6
    assert torch.allclose(out.loss, expected.mean())


def test_generation_starts_after_the_prefix_and_returns_only_new_tokens():
    m = _zip()
    prompt = [Segment("speech", _speech(3, 7, 1))]
    out = m.generate(prompt, ["text"], max_new_tokens=8)[0]
    # the first generated token is the argmax at the prefix's last position, given BOS + prefix
    start = m.start_ids("text").expand(3, -1)
    logits = m(prompt + [Segment("text", start)]).logits[1]
    assert torch.equal(out.input_ids[:, 0], logits[:, -1].argmax(-1))
    plain = _zip(((), ())).generate(prompt, ["text"], max_new_tokens=8)[0]
    assert not torch.equal(out.input_ids[:, :1], plain.input_ids[:, :1])  # the prefix changes what follows


def test_prefix_round_trips_through_save_and_load(tmp_path):
    m = _zip()
    m.save_pretrained(tmp_path / "zip")
    loaded = ZipperModel.from_pretrained(tmp_path / "zip", towers=list(m.tower_objs.values()))
    assert loaded.config.prefix_ids == [[], TEXT_PREFIX]
    assert torch.equal(loaded.start_ids("text"), m.start_ids("text"))


@pytest.mark.parametrize("prefix,match", [
    ([[], [7]], None),
    ([[7, 9]], "prefix_ids has 1 entries"),
    ([[], [-1]], "token ids >= 0"),
    ([[], [56]], "below its vocabulary size 56"),
    ([[], [3, 2]], "without its EOS 2"),
])
def test_bad_prefixes_rejected(prefix, match):
    if match is None:
        _zip(prefix)
        return
    with pytest.raises(ConfigError, match=match):
        _zip(prefix)


def test_single_decoder_uses_the_same_start_and_persists_it(tmp_path):
    def text():
        return tiny_tower("llama", "text", vocab=56, hidden=32, layers=2, seed=3, init_std=0.4)

    model = SingleDecoder(text(), n_units=20, text_prefix_ids=TEXT_PREFIX)
    s = Segment("speech", _speech(2, 5, 2).clamp(max=22))
    gen = model.generate([s], ["text"], max_new_tokens=5)[0]
    full = torch.cat([model.start_ids("text").expand(2, -1), gen.input_ids], 1)
    mask = torch.cat([torch.ones(2, 3, dtype=torch.long), gen.attention_mask], 1)
    logits = model([s, Segment("text", full, mask)]).logits[1]
    real = gen.attention_mask.bool()
    assert torch.equal(logits[:, 2:-1].argmax(-1)[real], gen.input_ids[real])
    model.save_pretrained(tmp_path / "sd")
    assert SingleDecoder.from_pretrained(tmp_path / "sd", text=text()).text_prefix_ids == TEXT_PREFIX
    with pytest.raises(ValueError, match="without its EOS 2"):  # the same check as ZipperModel's
        SingleDecoder(text(), n_units=20, text_prefix_ids=[2])

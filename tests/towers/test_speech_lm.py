"""towers.speech_lm: the pretraining batches."""
from __future__ import annotations

import itertools

import pytest
import torch

from towers.speech_lm import lm_batches
from towers.units import UnitTokenizer


def test_fewer_utterances_than_a_batch_give_batches_of_all_of_them():
    """Three utterances and batch_size 8: every batch holds the three (it used to wait forever)."""
    seqs = [torch.arange(n) % 10 for n in (4, 7, 5)]
    got = list(itertools.islice(lm_batches(seqs, UnitTokenizer(10), batch_size=8, seed=0), 3))
    assert [ids.shape[0] for ids, _ in got] == [3, 3, 3]
    with pytest.raises(ValueError, match="no utterances"):
        next(lm_batches([], UnitTokenizer(10), batch_size=8, seed=0))


def test_unit_tokenizer_refuses_float_ids_and_2d_input():
    """A float unit id would be truncated (2.7 -> 2) and 2-D ids flattened into one sequence: both refused."""
    tok = UnitTokenizer(10)
    assert tok.decode(tok.encode(torch.tensor([2, 7]))).tolist() == [2, 7]
    with pytest.raises(ValueError, match="integers"):
        tok.encode(torch.tensor([2.7, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        tok.decode(torch.tensor([[3, 4], [5, 6]]))


def test_loss_and_perplexity_move_cpu_batches_to_the_models_device(monkeypatch):
    """Speech-tower pretraining makes batches on the CPU; the tower may be on a GPU (meta stands in)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from towers.speech_lm import lm_loss, unit_perplexity

    model = LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1)).to("meta")
    seen = []

    def record(input_ids=None, attention_mask=None, **kwargs):
        seen.append((input_ids.device.type, attention_mask.device.type))
        raise RuntimeError("reached")

    monkeypatch.setattr(model, "forward", record)
    ids = torch.randint(3, 20, (2, 6))
    with pytest.raises(RuntimeError, match="reached"):
        lm_loss(model, (ids, torch.ones_like(ids)))
    with pytest.raises(RuntimeError, match="reached"):
        unit_perplexity(model, [torch.arange(5), torch.arange(7)], UnitTokenizer(17))
    assert seen == [("meta", "meta")] * 2

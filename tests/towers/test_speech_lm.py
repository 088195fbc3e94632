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

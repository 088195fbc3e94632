"""recipes/diagnostics/codec_windows.py: windowed unit decoding keeps every unit's frames, in order."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import load_recipe_script


@pytest.fixture(scope="module")
def windowed():
    return load_recipe_script("diagnostics/codec_windows").windowed


class _PointwiseCodec:
    """Each unit decodes to ``per`` frames of its own id, whatever its neighbours: windowing changes nothing."""

    per = 2

    def _check_units(self, units):
        return torch.as_tensor(units, dtype=torch.long)

    def decode_mel(self, units):
        return units.repeat_interleave(self.per)[:, None].float().expand(-1, 3)  # (U * per, 3)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), window=st.integers(0, 20), context=st.integers(0, 8))
def test_windowed_equals_whole_for_a_context_free_decoder(windowed, n, window, context):
    codec = _PointwiseCodec()
    units = torch.arange(n) + 5
    got = windowed(_PointwiseCodec.decode_mel, window, context)(codec, units)
    assert torch.equal(got, codec.decode_mel(units))


def test_each_window_sees_its_context(windowed):
    calls = []

    class Recording(_PointwiseCodec):
        def decode_mel(self, units):
            calls.append(units.tolist())
            return super().decode_mel(units)

    windowed(Recording.decode_mel, 4, 2)(Recording(), torch.arange(10))
    assert calls == [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 6, 7, 8, 9], [6, 7, 8, 9]]

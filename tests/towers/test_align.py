"""DTW alignment (towers.align): against a brute-force reference, and warping recovers a known stretch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from towers.align import cosine_cost, dtw_path, warp_index


def reference_dtw(cost: np.ndarray) -> float:
    """The textbook O(N M) recurrence, cell by cell."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j], acc[i, j - 1], acc[i - 1, j - 1])
    return acc[n, m]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), m=st.integers(1, 12), seed=st.integers(0, 10_000))
def test_path_is_a_valid_warp_with_the_optimal_cost(n, m, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((n, 3)), rng.standard_normal((m, 3))
    path, mean = dtw_path(a, b)
    assert tuple(path[0]) == (0, 0) and tuple(path[-1]) == (n - 1, m - 1)
    steps = np.diff(path, axis=0)
    assert ((steps == [1, 0]) | (steps == [0, 1]) | (steps == [1, 1])).all(1).all()  # monotone, no skips
    cost = cosine_cost(a, b)
    total = cost[path[:, 0], path[:, 1]].sum()
    assert total == pytest.approx(reference_dtw(cost), abs=1e-9)
    assert mean == pytest.approx(total / len(path))


def test_warp_index_recovers_a_known_time_warp():
    rng = np.random.default_rng(0)
    src = rng.standard_normal((200, 16))
    true = np.sort(rng.integers(0, 200, 300))  # each target frame's source frame: repeats and skips of up to 4
    true[0], true[-1] = 0, 199
    tgt = src[true] + 0.01 * rng.standard_normal((300, 16))
    idx, dist = warp_index(src, tgt)
    assert idx.shape == (300,) and dist < 0.2  # the skipped source frames cost ~1 each on the path
    assert np.abs(idx.numpy() - true).max() <= 2 and (idx.numpy() == true).mean() > 0.8
    same, d0 = warp_index(src, src)
    assert (same.numpy() == np.arange(200)).all() and d0 == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("a, b", [(np.zeros((0, 4)), np.ones((3, 4))), (np.ones((3, 4)), np.ones((3, 5))),
                                  (np.ones(3), np.ones(3))])
def test_bad_shapes_are_refused(a, b):
    with pytest.raises(ValueError, match="non-empty"):
        dtw_path(a, b)

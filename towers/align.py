"""Dynamic time warping between two feature sequences (e.g. the Whisper states of two voices
reading the same sentence), for training a unit decoder on parallel speech: another voice's units,
warped onto a target speaker's frames, paired with the target speaker's mel.

:func:`dtw_path` is the classic DTW (steps right, down, diagonal; cosine distance), vectorised over
anti-diagonals so a 300 x 300 alignment takes milliseconds. :func:`warp_index` turns the path into
one source frame per target frame.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["cosine_cost", "dtw_path", "warp_index"]


def cosine_cost(a, b) -> np.ndarray:
    """``(N, D)``, ``(M, D)`` -> ``(N, M)`` cosine distances ``1 - cos(a_i, b_j)`` in [0, 2]."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or not len(a) or not len(b):
        raise ValueError(f"need two non-empty (N, D) and (M, D) sequences, got {a.shape} and {b.shape}")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-8)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-8)
    return 1.0 - a @ b.T


def dtw_path(a, b) -> tuple[np.ndarray, float]:
    """Align ``a (N, D)`` to ``b (M, D)``: -> (path ``(L, 2)`` of ``(i, j)`` pairs from ``(0, 0)`` to
    ``(N-1, M-1)``, each step +1 in i, j or both; the mean cosine distance along it)."""
    cost = cosine_cost(a, b)  # (N, M)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)  # acc[i, j]: best cost of a[:i] against b[:j]
    acc[0, 0] = 0.0
    for k in range(2, n + m + 1):  # the anti-diagonal i + j = k (1-based); it needs only k-1 and k-2
        i = np.arange(max(1, k - m), min(n, k - 1) + 1)
        j = k - i
        acc[i, j] = cost[i - 1, j - 1] + np.minimum(np.minimum(acc[i - 1, j], acc[i, j - 1]), acc[i - 1, j - 1])
    path, i, j = [(n - 1, m - 1)], n, m
    while (i, j) != (1, 1):
        steps = ((i - 1, j - 1), (i - 1, j), (i, j - 1))  # diagonal first: ties keep the path straight
        i, j = min(steps, key=lambda s: acc[s] if s[0] >= 1 and s[1] >= 1 else np.inf)
        path.append((i - 1, j - 1))
    path = np.array(path[::-1])
    return path, float(cost[path[:, 0], path[:, 1]].mean())


def warp_index(src, tgt) -> tuple[torch.Tensor, float]:
    """For each frame of ``tgt (M, D)``, the frame of ``src (N, D)`` that DTW matches to it (the middle
    one where several are): ``src[index]`` is ``src`` in ``tgt``'s timing. -> (index ``(M,)`` long,
    the path's mean cosine distance)."""
    path, dist = dtw_path(src, tgt)
    m = len(np.asarray(tgt))
    lo = np.full(m, np.iinfo(np.int64).max)
    hi = np.full(m, -1)
    np.minimum.at(lo, path[:, 1], path[:, 0])
    np.maximum.at(hi, path[:, 1], path[:, 0])
    return torch.from_numpy((lo + hi) // 2), dist

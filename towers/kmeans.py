"""k-means in plain torch: k-means++ initialisation, Lloyd iterations, chunked nearest-centroid search.

Used by the default speech codec to turn stacked log-mel frames into discrete units; usable for any
feature (e.g. Whisper encoder states) by a codec subclass.
"""

from __future__ import annotations

import torch

__all__ = ["kmeans_pp_init", "fit_kmeans", "assign"]


def _sq_dists(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``(N, D)``, ``(K, D)`` -> ``(N, K)`` squared euclidean distances."""
    return (x.pow(2).sum(1, keepdim=True) - 2 * x @ c.T + c.pow(2).sum(1)[None]).clamp_min(0)


def assign(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 16_384) -> torch.Tensor:
    """``(N, D)`` features -> ``(N,)`` int64 index of the nearest centroid ``(K, D)``."""
    out = [
        _sq_dists(x[i : i + chunk].float(), centroids.float()).argmin(1)
        for i in range(0, x.shape[0], chunk)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def kmeans_pp_init(x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """k-means++ seeding (D^2 sampling, one candidate per step): ``(N, D)`` -> ``(k, D)``."""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=generator)
    centroids = [x[first]]  # list of (1, D)
    d2 = _sq_dists(x, centroids[0]).squeeze(1)  # (N,)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:  # fewer distinct points than k: pick uniformly
            idx = torch.randint(n, (1,), generator=generator)
        else:
            idx = torch.multinomial(d2 / total, 1, generator=generator)
        centroids.append(x[idx])
        d2 = torch.minimum(d2, _sq_dists(x, x[idx]).squeeze(1))
    return torch.cat(centroids)


def fit_kmeans(
    x: torch.Tensor,
    k: int,
    n_iter: int = 25,
    seed: int = 0,
    init_sample: int = 20_000,
    progress: bool = False,
) -> torch.Tensor:
    """Fit ``k`` centroids to ``(N, D)`` features; returns ``(k, D)`` float32.

    k-means++ runs on a random subsample of ``init_sample`` points (it is O(N k)); Lloyd iterations
    use all points. Empty clusters are re-seeded at the points farthest from their centroid.
    """
    x = x.float()
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(1).sum())
        raise ValueError(f"k-means features must be finite: {bad} of {x.shape[0]} points hold NaN or inf")
    if x.shape[0] < k:
        raise ValueError(f"k-means needs at least k={k} points, got {x.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    sub = x[torch.randperm(x.shape[0], generator=g)[:init_sample]]
    c = kmeans_pp_init(sub, k, generator=g)
    it = range(n_iter)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc=f"k-means k={k} N={x.shape[0]}")
    for _ in it:
        idx = assign(x, c)  # (N,)
        counts = torch.bincount(idx, minlength=k).float()  # (k,)
        sums = torch.zeros_like(c).index_add_(0, idx, x)  # (k, D)
        new_c = sums / counts.clamp_min(1)[:, None]
        empty = counts == 0
        if empty.any():
            far = (x - new_c[idx]).pow(2).sum(1).topk(int(empty.sum())).indices
            new_c[empty] = x[far]
        c = new_c
    return c

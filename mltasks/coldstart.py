"""A start from nothing: the first slices to ask for, chosen without a model.

A project whose pool holds no label cannot train model 0, and without a model
there is no uncertainty and no bottleneck descriptor. Step 1 therefore picks
representative acquired slices by their images alone and asks for them whole:

1. ``slice_descriptors``: each slice area-averaged down to ``size`` x ``size``
   pixels, flattened and standardised (its own mean subtracted, divided by its
   own standard deviation: the pattern of body, bone and fat counts, not the
   overall brightness), or that vector mapped by a fixed Gaussian random
   projection of ``dims`` columns drawn from ``seed`` ("projection"). The pool's
   mean descriptor is then subtracted: CT slices are alike on the whole, so
   uncentred vectors all have a cosine near 1 and the cover would saturate after
   one pick; centred, the cosine compares how slices differ from the average
   slice. (Measured on phantoms, docs/learning.md: standardised 16 x 16 thumbnails
   covered at least as many structures as evenly spaced slices in 24 of 24 cases.)
2. ``select_cold_start``: the greedy set cover of D_r (``mltasks.selection``: the
   same clipped cosine similarity, gain and tie rule) over all slices, with one
   constraint: a pick removes every slice within ``gap`` slices of it in the same
   volume from the candidates, so no two picks are adjacent and picks spread
   along each volume.

Slices: (N, H, W) float images (network images in [0, 1], or normalised HU);
keys (N, 2) int (volume, z) or (N,) z of one volume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from mltasks.errors import InvalidQuery
from mltasks.selection import DEFAULT_CACHE_BYTES, clipped_similarity, tie_tolerance, unit_rows

DESCRIPTORS = ("downsample", "projection")
_BLOCK = 512  # candidate rows per similarity block


def slice_descriptors(
    images: np.ndarray,
    *,
    method: str = "downsample",
    size: int = 16,
    dims: int = 64,
    seed: int = 0,
) -> np.ndarray:
    """(N, d) float32 centred image descriptors (module docstring).

    Args:
        images: (N, H, W) float slices, H and W >= ``size``.
        method: "downsample" (d = size * size) or "projection" (d = ``dims``).
        size: side of the area-averaged thumbnail.
        dims: columns of the random projection.
        seed: seed of the projection matrix (unused by "downsample").
    """
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[0] == 0 or min(arr.shape[1:]) < size or size < 1:
        raise InvalidQuery(f"images must be (N, H, W) with N >= 1 and H, W >= size {size}; got {arr.shape}")
    if method not in DESCRIPTORS:
        raise InvalidQuery(f"unknown descriptor {method!r}; choose one of {', '.join(DESCRIPTORS)}")
    if not np.all(np.isfinite(arr)):
        raise InvalidQuery("images contain NaN or infinite values; normalise the CT first")
    thumbs = F.adaptive_avg_pool2d(torch.from_numpy(arr)[:, None], size)[:, 0]
    feats = thumbs.reshape(arr.shape[0], -1).numpy().astype(np.float64)
    spread = feats.std(axis=1, keepdims=True)
    feats = np.divide(feats - feats.mean(axis=1, keepdims=True), spread, out=np.zeros_like(feats), where=spread > 0)
    if method == "projection":
        proj = np.random.default_rng(seed).standard_normal((feats.shape[1], dims)) / np.sqrt(dims)
        feats = feats @ proj
    return (feats - feats.mean(axis=0, keepdims=True)).astype(np.float32)


def select_cold_start(
    images: np.ndarray,
    n: int,
    *,
    keys: np.ndarray | None = None,
    gap: int = 1,
    exclude: Sequence[int] | np.ndarray | None = None,
    method: str = "downsample",
    size: int = 16,
    dims: int = 64,
    seed: int = 0,
) -> np.ndarray:
    """The ``n`` slices to ask for first, by image descriptors alone (no model).

    Args:
        images: (N, H, W) float slices of every acquired slice of the pool.
        n: slices wanted; fewer are returned when the spacing rule leaves no candidate.
        keys: (N, 2) int (volume, z) or (N,) z; None: one volume, z = index.
        gap: no two picks within this many slices of each other in one volume.
        exclude: indices that may not be picked (they still count as pool slices).
        method, size, dims, seed: ``slice_descriptors``.
    Returns:
        (<= n,) int64 indices into ``images``, in the order chosen.
    """
    if n < 0 or gap < 0:
        raise InvalidQuery(f"n and gap must be >= 0, got n={n}, gap={gap}")
    feats = slice_descriptors(images, method=method, size=size, dims=dims, seed=seed)
    return spread_cover(feats, n, keys=_keys(keys, feats.shape[0]), gap=gap, exclude=exclude)


def _keys(keys: np.ndarray | None, n: int) -> np.ndarray:
    if keys is None:
        return np.stack([np.zeros(n, np.int64), np.arange(n, dtype=np.int64)], axis=1)
    arr = np.asarray(keys)
    if arr.ndim == 1:
        arr = np.stack([np.zeros(arr.shape[0], np.int64), arr], axis=1)
    if arr.shape != (n, 2) or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidQuery(f"keys must be {n} integer rows (volume, z) or {n} z positions, got {arr.shape} {arr.dtype}")
    return arr.astype(np.int64)


def spread_cover(
    features: np.ndarray,
    n: int,
    *,
    keys: np.ndarray,
    gap: int = 1,
    exclude: Sequence[int] | np.ndarray | None = None,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> np.ndarray:
    """Greedy set cover (D_r's gain and tie rule) over all slices, no two picks within ``gap``.

    Args:
        features: (N, d) descriptors of every pool slice.
        keys: (N, 2) int (volume, z).
        cache_bytes: the N x N similarities (4 bytes each) are kept when they fit, else
            recomputed at every pick (same result, slower).
    Returns:
        (<= n,) int64 indices in the order chosen.
    """
    units = unit_rows(features)
    n_pool = units.shape[0]
    allowed = np.ones(n_pool, dtype=bool)
    if exclude is not None:
        idx = np.asarray(exclude, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= n_pool):
            raise InvalidQuery(f"exclude holds indices outside [0, {n_pool})")
        allowed[idx] = False
    rows = _SimilarityRows(units, cache_bytes=cache_bytes)
    best = np.zeros(n_pool, dtype=np.float32)
    tol = tie_tolerance(n_pool)
    chosen: list[int] = []
    while len(chosen) < n and allowed.any():
        cands = np.flatnonzero(allowed)
        gains = np.concatenate([rows.gains(cands[b : b + _BLOCK], best) for b in range(0, cands.size, _BLOCK)])
        pick = int(cands[np.flatnonzero(gains >= gains.max() - tol)[0]])
        chosen.append(pick)
        np.maximum(best, rows.get(np.array([pick]))[0], out=best)
        near = (keys[:, 0] == keys[pick, 0]) & (np.abs(keys[:, 1] - keys[pick, 1]) <= gap)
        allowed &= ~near
    return np.array(chosen, dtype=np.int64)


class _SimilarityRows:
    """max(0, cosine) of pool rows with every pool slice: cached (N x N float32) when it fits."""

    def __init__(self, units: np.ndarray, *, cache_bytes: int) -> None:
        self.units = units
        n_pool = units.shape[0]
        self.cache = None
        if n_pool * n_pool * 4 <= cache_bytes:
            self.cache = np.concatenate([clipped_similarity(units, np.arange(r, min(r + _BLOCK, n_pool)), 0, n_pool)
                                         for r in range(0, n_pool, _BLOCK)])  # fmt: skip

    def get(self, rows: np.ndarray) -> np.ndarray:
        if self.cache is not None:
            return self.cache[rows]
        return clipped_similarity(self.units, rows, 0, self.units.shape[0])

    def gains(self, rows: np.ndarray, best: np.ndarray) -> np.ndarray:
        """(len(rows),) float64 sum_j max(0, sim_j - best_j) (float32 max, float64 sum, as D_r)."""
        return np.maximum(self.get(rows), best).sum(axis=1, dtype=np.float64) - best.sum(dtype=np.float64)

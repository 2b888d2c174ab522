"""Representative slices D_r out of the uncertain candidates D_c (method.md §4).

Greedy set cover on similarity (Hiasa et al. 2019, appendix; after Yang et al.
2017): repeatedly add the candidate I_c that maximises

    F(D_r + I_c) = sum over j in D_u of max(0, max over r in D_r + I_c of sim(I_j, I_r))

where D_u is the whole pool. The inner maximum starts at 0, so a similarity
below 0 counts as 0, and the first candidate in the given order that reaches a
strictly larger total wins a tie.

**Similarity, exactly.** ``sim`` is the cosine similarity computed in fixed
point. Each feature row is divided by its Euclidean norm (a row of zeros stays
zeros: its similarity with everything is 0), multiplied by
``scale = floor(4096 - sqrt(d) / 2) - 1`` and rounded to the nearest integer
(``np.rint``); these are its *codes*. ``sim(i, j) = floor(codes_i . codes_j / 256)``,
an integer in [-65536, 65535] (divide by ``scale**2 / 256`` for the cosine).
Every partial sum of such a dot product is an integer of magnitude < 2**24, hence
exact in float32 in *any* summation order: a BLAS matmul in blocks, a matrix-
vector product and a loop give bit-identical similarities, and totals (int64 or
float64 sums of integers) are exact. That is why the fast and the plain algorithm
make identical comparisons, ties included. The price is a tiny deviation from
the real-valued cosine: at most about ``sqrt(d) / scale`` (0.004 for d = 256),
typically 1e-4, well below the noise of network features.

``select_representative_plain`` is the algorithm as written (slow; tests and
benchmark). ``select_representative`` returns the same choice, fast:

* clipped similarities max(0, sim) of every candidate to every pool slice fit in
  uint16; they are computed once by float32 matmuls over blocks of candidates x
  pool rows (at most ``_BLOCK_ELEMENTS`` floats, 64 MB, at a time) and kept in a
  cache of |D_c| x n_pool x 2 bytes when that is at most ``cache_bytes``
  (default 512 MiB: 500 MB for 5,000 candidates x 50,000 slices); beyond that,
  rows are recomputed by matmul whenever needed (slower, same result). The pool
  codes take n_pool x d x 4 bytes (51 MB for 50,000 x 256);
* lazy greedy: F is submodular, so a candidate's gain can only shrink as D_r
  grows. Each candidate keeps its last exact gain in a heap keyed
  ``(-gain, position in candidates)``; only stale entries at the top are
  re-evaluated (in batches that double while the top stays stale). A fresh entry
  at the top is the plain algorithm's choice: every other candidate's true gain
  is <= its bound, and an equal bound belongs to a later position.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

import numpy as np

from mltasks.errors import InvalidQuery

# Largest block of float32 similarities held at once: 64 MB.
_BLOCK_ELEMENTS = 1 << 24
_SHIFT = 256.0  # sim = floor(dot / 256) keeps clipped similarities within uint16
_FIRST_BATCH = 4
_MAX_BATCH = 512
DEFAULT_CACHE_BYTES = 512 * 2**20


def similarity_codes(features: np.ndarray) -> np.ndarray:
    """Fixed-point unit vectors whose dot products define ``sim`` (module docstring).

    Args:
        features: (n, d) finite floats.
    Returns:
        (n, d) float32 array of integers with Euclidean norm < 4096.
    """
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        msg = f"features must be a non-empty (n_pool, d) array, got shape {feats.shape}"
        raise InvalidQuery(msg)
    if not np.all(np.isfinite(feats)):
        msg = "features contain NaN or infinite values; recompute them from a valid model"
        raise InvalidQuery(msg)
    scale = math.floor(4096 - math.sqrt(feats.shape[1]) / 2) - 1
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    units = np.divide(feats, norms, out=np.zeros_like(feats), where=norms > 0)
    return np.rint(units * scale).astype(np.float32)


def similarity(codes_a: np.ndarray, codes_b: np.ndarray) -> np.ndarray:
    """sim of every row of ``codes_a`` (m, d) with every row of ``codes_b`` (n, d): (m, n) float32 integers."""
    sims = codes_a @ codes_b.T  # exact: every partial sum is an integer < 2**24
    np.multiply(sims, 1.0 / _SHIFT, out=sims)  # exact: a power of two
    return np.floor(sims, out=sims)


def _check_candidates(candidates: Sequence[int] | np.ndarray, n_pool: int, n: int) -> np.ndarray:
    cands = np.asarray(candidates, dtype=np.int64).reshape(-1)
    if cands.size and (cands.min() < 0 or cands.max() >= n_pool):
        msg = f"candidate indices must lie in [0, {n_pool}), got {cands.min()}..{cands.max()}"
        raise InvalidQuery(msg)
    if np.unique(cands).size != cands.size:
        msg = "candidates contain duplicate indices; pass each pool slice at most once"
        raise InvalidQuery(msg)
    if not 0 <= n <= cands.size:
        msg = f"cannot choose n={n} slices from {cands.size} candidates; lower n or add candidates"
        raise InvalidQuery(msg)
    return cands


def select_representative_plain(
    features: np.ndarray,
    candidates: Sequence[int] | np.ndarray,
    n: int,
) -> list[int]:
    """The greedy selection exactly as the paper's pseudo-code, one candidate at a time.

    Args:
        features: (n_pool, d) descriptors of every pool slice (D_u).
        candidates: indices into ``features`` (D_c), in priority order for ties.
        n: number of slices to choose (|D_r|).
    Returns:
        ``n`` pool indices taken from ``candidates``, in the order chosen.
    """
    codes = similarity_codes(features)
    cands = _check_candidates(candidates, codes.shape[0], n)
    best = np.zeros(codes.shape[0], dtype=np.int64)  # max over D_r, starting at 0
    remaining = [int(c) for c in cands]
    chosen: list[int] = []
    for _ in range(n):
        best_total, best_c, best_sims = -1, -1, best
        for c in remaining:
            sims = similarity(codes[c : c + 1], codes)[0].astype(np.int64)
            total = int(np.maximum(best, sims).sum())
            if total > best_total:
                best_total, best_c, best_sims = total, c, sims
        chosen.append(best_c)
        remaining.remove(best_c)
        best = np.maximum(best, best_sims)
    return chosen


class _CoverRows:
    """max(0, sim) of candidates (rows) x pool (columns) as uint16, cached when it fits."""

    def __init__(self, codes: np.ndarray, cands: np.ndarray, *, cache_bytes: int) -> None:
        self.codes = codes
        self.cands = cands
        self.n_pool = codes.shape[0]
        self.cache: np.ndarray | None = None
        if cands.size * self.n_pool * 2 <= cache_bytes:
            self.cache = np.empty((cands.size, self.n_pool), dtype=np.uint16)

    def _computed(self, positions: np.ndarray, start: int, stop: int) -> np.ndarray:
        """(b, stop - start) uint16 max(0, sim): max(0, floor(x)) == trunc(max(0, x))."""
        sims = self.codes[self.cands[positions]] @ self.codes[start:stop].T
        np.multiply(sims, 1.0 / _SHIFT, out=sims)
        np.maximum(sims, 0, out=sims)
        return sims.astype(np.uint16)  # truncation toward zero

    def initial_gains(self) -> np.ndarray:
        """(|D_c|,) int64 gains with D_r empty; fills the cache on the way."""
        gains = np.zeros(self.cands.size, dtype=np.int64)
        rows = max(1, min(self.cands.size, 1024))
        cols = max(1, _BLOCK_ELEMENTS // rows)
        for r0 in range(0, self.cands.size, rows):
            positions = np.arange(r0, min(r0 + rows, self.cands.size))
            for c0 in range(0, self.n_pool, cols):
                c1 = min(c0 + cols, self.n_pool)
                block = self._computed(positions, c0, c1)
                gains[positions] += block.sum(axis=1, dtype=np.int64)
                if self.cache is not None:
                    self.cache[positions, c0:c1] = block
        return gains

    def gains(self, positions: np.ndarray, best: np.ndarray) -> np.ndarray:
        """(b,) int64 exact gains sum_j max(0, sim - best_j) of candidates at ``positions``."""
        totals = np.zeros(positions.size, dtype=np.int64)
        cols = max(1, _BLOCK_ELEMENTS // max(1, positions.size))
        for c0 in range(0, self.n_pool, cols):
            c1 = min(c0 + cols, self.n_pool)
            if self.cache is not None:
                block = self.cache[positions, c0:c1]
            else:
                block = self._computed(positions, c0, c1)
            np.maximum(block, best[c0:c1], out=block)
            totals += block.sum(axis=1, dtype=np.int64)
        return totals - int(best.sum(dtype=np.int64))

    def row(self, position: int) -> np.ndarray:
        if self.cache is not None:
            return self.cache[position]
        return self._computed(np.array([position]), 0, self.n_pool)[0]


def select_representative(
    features: np.ndarray,
    candidates: Sequence[int] | np.ndarray,
    n: int,
    *,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> list[int]:
    """Greedy representative selection (D_r from D_c), lazy and vectorised.

    Returns exactly what ``select_representative_plain`` returns (see the module
    docstring for why the comparisons are identical).

    Args:
        features: (n_pool, d) float descriptors of every pool slice (D_u), e.g. the
            network's globally averaged bottleneck features.
        candidates: indices into ``features`` (D_c); their order breaks ties (the
            earlier candidate wins).
        n: number of slices to choose, 0 <= n <= len(candidates).
        cache_bytes: largest similarity cache (|D_c| x n_pool x 2 bytes) to keep;
            above it rows are recomputed when needed (same result, slower).
    Returns:
        ``n`` pool indices taken from ``candidates``, in the order chosen.
    Raises:
        InvalidQuery: bad shapes, non-finite features, out-of-range or duplicate
            candidates, or n larger than the number of candidates.
    """
    codes = similarity_codes(features)
    cands = _check_candidates(candidates, codes.shape[0], n)
    if n == 0:
        return []
    cover = _CoverRows(codes, cands, cache_bytes=cache_bytes)
    # (-gain bound, position in candidates); fresh[pos] is the step of its last exact gain.
    heap = [(-int(g), pos) for pos, g in enumerate(cover.initial_gains())]
    heapq.heapify(heap)
    fresh = np.zeros(cands.size, dtype=np.int64)
    best = np.zeros(codes.shape[0], dtype=np.uint16)
    chosen: list[int] = []
    for step in range(n):
        batch = _FIRST_BATCH
        while fresh[heap[0][1]] != step:
            stale = np.array(_pop_stale(heap, fresh, step, batch), dtype=np.int64)
            for pos, g in zip(stale, cover.gains(stale, best), strict=True):
                fresh[pos] = step
                heapq.heappush(heap, (-int(g), int(pos)))
            batch = min(2 * batch, _MAX_BATCH)
        pos = heapq.heappop(heap)[1]
        chosen.append(int(cands[pos]))
        np.maximum(best, cover.row(pos), out=best)
    return chosen


def _pop_stale(heap: list[tuple[int, int]], fresh: np.ndarray, step: int, limit: int) -> list[int]:
    """Pop up to ``limit`` stale entries from the top of the heap, stopping at a fresh one."""
    stale: list[int] = []
    while heap and len(stale) < limit and fresh[heap[0][1]] != step:
        stale.append(heapq.heappop(heap)[1])
    return stale

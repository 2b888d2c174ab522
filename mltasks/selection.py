"""Representative slices D_r out of the uncertain candidates D_c (method.md §4).

Greedy set cover on similarity (Hiasa et al. 2019, appendix; after Yang et al.
2017): repeatedly add the candidate I_c that maximises

    F(D_r + I_c) = sum over j in D_u of max(0, max over r in D_r + I_c of sim(I_j, I_r))

where D_u is the whole pool. The inner maximum starts at 0, so a similarity
below 0 counts as 0.

**Similarity.** ``sim`` is the cosine similarity: each feature row divided by its
Euclidean norm (a row of zeros stays zeros: its similarity with everything is 0),
dot products in float64, the result rounded to float32 (which absorbs the last-bit
differences that different BLAS blockings of the same product produce, and halves
the cache). It deviates from the float64 cosine by at most 3e-8.

**Ties.** Gains are float64 sums whose last bits depend on the summation order, so
two gains within ``tie_tolerance(n_pool)`` (1e-12 per pool slice) of the best are
tied, and the tied candidate that comes first in ``candidates`` wins. The fast and
the plain algorithm apply the same rule, so they make the same choice; an
implementation that takes the float64 argmax agrees except when two different
gains differ by less than that tolerance.

``select_representative_plain`` is the algorithm as written (slow; tests and
benchmark). ``select_representative`` returns the same choice, fast:

* clipped similarities max(0, sim) of every candidate to every pool slice are
  computed once by float64 matmuls over blocks of candidates x pool rows (at
  most ``_BLOCK_ELEMENTS`` values at a time) and kept as float32 in a cache of
  |D_c| x n_pool x 4 bytes when that is at most ``cache_bytes`` (default 1 GiB:
  1.0 GB for 5,000 candidates x 50,000 slices); beyond that, rows are recomputed
  whenever needed (slower, same result);
* lazy greedy: F is submodular, so a candidate's gain can only shrink as D_r
  grows. Each candidate keeps its last exact gain in a heap keyed
  ``(-gain, position in candidates)``; only stale entries at the top are
  re-evaluated (in batches that double while the top stays stale). Once the top
  is fresh, every entry whose bound lies within the tie tolerance of it is
  refreshed too, and the earliest candidate within the tolerance of the best
  fresh gain is chosen: every other candidate's gain is below its bound, hence
  below that band.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from mltasks.errors import InvalidQuery

# Largest block of similarities computed at once: 16 M values (128 MB as float64).
_BLOCK_ELEMENTS = 1 << 24
_FIRST_BATCH = 4
_MAX_BATCH = 512
DEFAULT_CACHE_BYTES = 2**30
_TIE_PER_SLICE = 1e-12


def tie_tolerance(n_pool: int) -> float:
    """Gains closer than this to the best one are ties (float64 rounding of n_pool terms)."""
    return _TIE_PER_SLICE * max(1, n_pool)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """(n, d) float64 rows of ``features`` divided by their norms (zero rows stay zero)."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        msg = f"features must be a non-empty (n_pool, d) array, got shape {feats.shape}"
        raise InvalidQuery(msg)
    if not np.all(np.isfinite(feats)):
        msg = "features contain NaN or infinite values; recompute them from a valid model"
        raise InvalidQuery(msg)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return np.divide(feats, norms, out=np.zeros_like(feats), where=norms > 0)


def clipped_similarity(units: np.ndarray, rows: np.ndarray, start: int, stop: int) -> np.ndarray:
    """(len(rows), stop - start) float32 max(0, sim) of pool rows ``rows`` with rows start..stop-1."""
    sims = units[rows] @ units[start:stop].T
    np.maximum(sims, 0.0, out=sims)
    return sims.astype(np.float32)


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


def _gain(cover: np.ndarray, best: np.ndarray) -> float:
    """sum_j max(0, cover_j - best_j) for float32 rows: max first (exact), then float64 sums."""
    return float(np.maximum(cover, best).sum(dtype=np.float64) - best.sum(dtype=np.float64))


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
    units = unit_rows(features)
    n_pool = units.shape[0]
    cands = _check_candidates(candidates, n_pool, n)
    tol = tie_tolerance(n_pool)
    best = np.zeros(n_pool, dtype=np.float32)  # max over D_r, starting at 0
    remaining = [int(c) for c in cands]
    chosen: list[int] = []
    for _ in range(n):
        rows = {c: clipped_similarity(units, np.array([c]), 0, n_pool)[0] for c in remaining}
        gains = {c: _gain(row, best) for c, row in rows.items()}
        top = max(gains.values())
        pick = next(c for c in remaining if gains[c] >= top - tol)
        chosen.append(pick)
        remaining.remove(pick)
        best = np.maximum(best, rows[pick])
    return chosen


class _CoverRows:
    """max(0, sim) of candidates (rows) x pool (columns) as float32, cached when it fits."""

    def __init__(self, units: np.ndarray, cands: np.ndarray, *, cache_bytes: int) -> None:
        self.units = units
        self.cands = cands
        self.n_pool = units.shape[0]
        self.cache: np.ndarray | None = None
        if cands.size * self.n_pool * 4 <= cache_bytes:
            self.cache = np.empty((cands.size, self.n_pool), dtype=np.float32)

    def _block(self, positions: np.ndarray, start: int, stop: int) -> np.ndarray:
        if self.cache is not None:
            return self.cache[positions, start:stop]
        return clipped_similarity(self.units, self.cands[positions], start, stop)

    def initial_gains(self) -> np.ndarray:
        """(|D_c|,) float64 gains with D_r empty; fills the cache on the way."""
        gains = np.zeros(self.cands.size, dtype=np.float64)
        rows = max(1, min(self.cands.size, 1024))
        cols = max(1, _BLOCK_ELEMENTS // rows)
        for r0 in range(0, self.cands.size, rows):
            positions = np.arange(r0, min(r0 + rows, self.cands.size))
            for c0 in range(0, self.n_pool, cols):
                c1 = min(c0 + cols, self.n_pool)
                block = clipped_similarity(self.units, self.cands[positions], c0, c1)
                gains[positions] += block.sum(axis=1, dtype=np.float64)
                if self.cache is not None:
                    self.cache[positions, c0:c1] = block
        return gains

    def gains(self, positions: np.ndarray, best: np.ndarray) -> np.ndarray:
        """(b,) float64 gains sum_j max(0, sim - best_j) of candidates at ``positions``."""
        totals = np.zeros(positions.size, dtype=np.float64)
        cols = max(1, _BLOCK_ELEMENTS // max(1, positions.size))
        for c0 in range(0, self.n_pool, cols):
            c1 = min(c0 + cols, self.n_pool)
            block = np.maximum(self._block(positions, c0, c1), best[c0:c1])
            totals += block.sum(axis=1, dtype=np.float64)
        return totals - best.sum(dtype=np.float64)

    def row(self, position: int) -> np.ndarray:
        return self._block(np.array([position]), 0, self.n_pool)[0]


def select_representative(
    features: np.ndarray,
    candidates: Sequence[int] | np.ndarray,
    n: int,
    *,
    cache_bytes: int = DEFAULT_CACHE_BYTES,
) -> list[int]:
    """Greedy representative selection (D_r from D_c), lazy and vectorised.

    Returns what ``select_representative_plain`` returns (module docstring: the
    similarity and the tie rule).

    Args:
        features: (n_pool, d) float descriptors of every pool slice (D_u), e.g. the
            network's globally averaged bottleneck features.
        candidates: indices into ``features`` (D_c); their order breaks ties (the
            earlier candidate wins).
        n: number of slices to choose, 0 <= n <= len(candidates).
        cache_bytes: largest similarity cache (|D_c| x n_pool x 4 bytes) to keep;
            above it rows are recomputed when needed (same result, slower).
    Returns:
        ``n`` pool indices taken from ``candidates``, in the order chosen.
    Raises:
        InvalidQuery: bad shapes, non-finite features, out-of-range or duplicate
            candidates, or n larger than the number of candidates.
    """
    units = unit_rows(features)
    cands = _check_candidates(candidates, units.shape[0], n)
    if n == 0:
        return []
    cover = _CoverRows(units, cands, cache_bytes=cache_bytes)
    tol = tie_tolerance(units.shape[0])
    # (-gain bound, position in candidates); fresh[pos] is the step of its last exact gain.
    heap = [(-float(g), pos) for pos, g in enumerate(cover.initial_gains())]
    heapq.heapify(heap)
    fresh = np.zeros(cands.size, dtype=np.int64)
    best = np.zeros(units.shape[0], dtype=np.float32)
    chosen: list[int] = []
    for step in range(n):
        _refresh_top(heap, fresh, step, cover, best)
        pos = _pick_within_tolerance(heap, fresh, step, cover, best, tol)
        chosen.append(int(cands[pos]))
        np.maximum(best, cover.row(pos), out=best)
    return chosen


def _refresh(stale: list[int], fresh: np.ndarray, step: int, cover: _CoverRows, best: np.ndarray):
    positions = np.array(stale, dtype=np.int64)
    for pos, g in zip(positions, cover.gains(positions, best), strict=True):
        fresh[pos] = step
        yield float(g), int(pos)


def _refresh_top(heap, fresh: np.ndarray, step: int, cover: _CoverRows, best: np.ndarray) -> None:
    """Re-evaluate stale entries at the top of the heap until a fresh one is there."""
    batch = _FIRST_BATCH
    while fresh[heap[0][1]] != step:
        stale = []
        while heap and len(stale) < batch and fresh[heap[0][1]] != step:
            stale.append(heapq.heappop(heap)[1])
        for g, pos in _refresh(stale, fresh, step, cover, best):
            heapq.heappush(heap, (-g, pos))
        batch = min(2 * batch, _MAX_BATCH)


def _pick_within_tolerance(heap, fresh, step: int, cover: _CoverRows, best: np.ndarray, tol: float) -> int:
    """Pop the fresh top and every entry whose bound is within ``tol`` of it; return the
    earliest position whose exact gain is within ``tol`` of the best; push back the rest."""
    top = -heap[0][0]
    gains: dict[int, float] = {}
    stale: list[int] = []
    while heap and -heap[0][0] >= top - tol:
        bound, pos = heapq.heappop(heap)
        if fresh[pos] == step:
            gains[pos] = -bound
        else:
            stale.append(pos)
    if stale:
        gains.update((pos, g) for g, pos in _refresh(stale, fresh, step, cover, best))
    best_gain = max(gains.values())
    pick = min(p for p, g in gains.items() if g >= best_gain - tol)
    for p, g in gains.items():
        if p != pick:
            heapq.heappush(heap, (-g, p))
    return pick

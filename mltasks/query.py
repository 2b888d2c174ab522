"""Choosing what to ask the expert in one active-learning step (method.md §4).

Slices: ``slice_scores`` -> ``select_uncertain`` (D_c) -> ``select_representative``
(D_r, in ``mltasks.selection``). Pixels: ``pixel_query_mask`` (Eq. 7),
``manual_annotation_cost`` (Eq. 8), ``merge_answers``. Baselines:
``full_slice_mask``, ``random_pixel_mask``, ``select_random``. Choosing tau:
``suggest_tau`` and ``query_count``.

Arrays of slices are (N, H, W) = (z, y, x) stacks of axial slices.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mltasks.errors import InvalidQuery, MissingAnswers
from mltasks.selection import select_representative, select_representative_plain

__all__ = [
    "ANSWERED",
    "PREDICTED",
    "UNANSWERED",
    "full_slice_mask",
    "manual_annotation_cost",
    "merge_answers",
    "pixel_query_mask",
    "query_count",
    "random_pixel_mask",
    "select_random",
    "select_representative",
    "select_representative_plain",
    "select_uncertain",
    "slice_scores",
    "suggest_tau",
]

# Provenance codes of a training label's pixels.
PREDICTED = np.uint8(0)
ANSWERED = np.uint8(1)
# Value of an answer pixel the expert has not labelled.
UNANSWERED = -1


def _finite(array: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(array, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        msg = f"{what} contains NaN or infinite values; recompute it from a valid model"
        raise InvalidQuery(msg)
    return arr


def _exclusion_mask(size: int, exclude: Sequence[int] | np.ndarray | None) -> np.ndarray:
    """(size,) bool: True for indices that may be chosen."""
    allowed = np.ones(size, dtype=bool)
    if exclude is not None:
        idx = np.asarray(exclude, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            msg = f"exclude holds indices outside [0, {size}); pass pool indices only"
            raise InvalidQuery(msg)
        allowed[idx] = False
    return allowed


def slice_scores(pixel_uncertainty: np.ndarray, body: np.ndarray | None = None) -> np.ndarray:
    """One uncertainty score per slice: the mean pixel uncertainty inside the body.

    Args:
        pixel_uncertainty: (N, H, W) pixel uncertainty u (sum of class variances).
        body: (N, H, W) bool body mask, or None to average over whole slices.
    Returns:
        (N,) float64 scores. A slice whose body mask is empty scores 0 (nothing in
        it is worth annotating).
    """
    u = _finite(pixel_uncertainty, "pixel_uncertainty")
    if u.ndim != 3:
        msg = f"pixel_uncertainty must be (N, H, W), got shape {u.shape}"
        raise InvalidQuery(msg)
    if body is None:
        return u.reshape(u.shape[0], -1).mean(axis=1) if u.size else np.zeros(u.shape[0])
    inside = np.asarray(body, dtype=bool)
    if inside.shape != u.shape:
        msg = f"body mask shape {inside.shape} differs from pixel_uncertainty shape {u.shape}"
        raise InvalidQuery(msg)
    counts = inside.reshape(u.shape[0], -1).sum(axis=1)
    sums = np.where(inside, u, 0.0).reshape(u.shape[0], -1).sum(axis=1)
    return np.divide(sums, counts, out=np.zeros(u.shape[0]), where=counts > 0)


def select_uncertain(
    scores: np.ndarray,
    k: int,
    *,
    exclude: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """D_c: the ``k`` highest-scoring slices, most uncertain first.

    Ties are broken by the lower index (a stable sort). Indices in ``exclude``
    (e.g. slices already labelled) are never chosen; when fewer than ``k``
    slices remain, all of them are returned.

    Args:
        scores: (N,) slice scores.
        k: number of slices wanted, >= 0.
    Returns:
        (min(k, available),) int64 indices into ``scores``.
    """
    s = _finite(scores, "scores").reshape(-1)
    if k < 0:
        msg = f"k must be >= 0, got {k}"
        raise InvalidQuery(msg)
    allowed = np.flatnonzero(_exclusion_mask(s.size, exclude))
    order = np.argsort(-s[allowed], kind="stable")
    return allowed[order[:k]].astype(np.int64)


def select_random(
    pool_size: int,
    n: int,
    *,
    rng: np.random.Generator | int | None,
    exclude: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Random-slice baseline: ``n`` distinct slices drawn uniformly, in drawn order.

    Args:
        pool_size: number of slices in the pool.
        n: slices wanted; when fewer remain after ``exclude``, all remaining are returned.
        rng: a numpy Generator or a seed.
    Returns:
        (min(n, available),) int64 indices.
    """
    if n < 0:
        msg = f"n must be >= 0, got {n}"
        raise InvalidQuery(msg)
    allowed = np.flatnonzero(_exclusion_mask(pool_size, exclude))
    picked = np.random.default_rng(rng).permutation(allowed.size)[:n]
    return allowed[picked].astype(np.int64)


def pixel_query_mask(pixel_uncertainty: np.ndarray, tau: float) -> np.ndarray:
    """Eq. 7: the pixels sent to the expert, those with u >= tau.

    Args:
        pixel_uncertainty: any shape, e.g. (H, W) or (N, H, W).
        tau: threshold.
    Returns:
        bool array of the same shape.
    """
    if not math.isfinite(tau):
        msg = f"tau must be a finite number, got {tau}"
        raise InvalidQuery(msg)
    return _finite(pixel_uncertainty, "pixel_uncertainty") >= tau


def full_slice_mask(shape: tuple[int, ...]) -> np.ndarray:
    """Fully manual baseline: every pixel of the slice is queried (MAC = 1)."""
    return np.ones(shape, dtype=bool)


def random_pixel_mask(
    shape: tuple[int, ...],
    n_pixels: int,
    *,
    rng: np.random.Generator | int | None,
) -> np.ndarray:
    """Random-pixel baseline: exactly ``n_pixels`` distinct pixels drawn uniformly.

    Args:
        shape: mask shape, e.g. (N, H, W) for all selected slices together.
        n_pixels: 0 <= n_pixels <= prod(shape), typically the tau-query's count.
        rng: a numpy Generator or a seed.
    Returns:
        bool array of ``shape`` with ``n_pixels`` True values.
    """
    size = int(np.prod(shape))
    if not 0 <= n_pixels <= size:
        msg = f"cannot draw {n_pixels} pixels from a mask of {size} pixels"
        raise InvalidQuery(msg)
    mask = np.zeros(size, dtype=bool)
    mask[np.random.default_rng(rng).choice(size, size=n_pixels, replace=False)] = True
    return mask.reshape(shape)


def manual_annotation_cost(query_masks: np.ndarray | Sequence[np.ndarray]) -> float:
    """Eq. 8: MAC = queried pixels / all pixels of the given slices.

    Args:
        query_masks: one bool array (any shape, e.g. (N, H, W)) or a list of
            per-slice bool arrays (shapes may differ).
    Returns:
        MAC in [0, 1].
    """
    masks = (
        [np.asarray(query_masks)]
        if isinstance(query_masks, np.ndarray)
        else [np.asarray(m) for m in query_masks]
    )
    total = sum(m.size for m in masks)
    if total == 0:
        msg = "manual_annotation_cost needs at least one pixel; pass the masks of the added slices"
        raise InvalidQuery(msg)
    return float(sum(int(np.count_nonzero(m)) for m in masks) / total)


def merge_answers(
    predicted: np.ndarray,
    query_mask: np.ndarray,
    answers: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """A slice's training label: the expert's answers where queried, the prediction elsewhere.

    Args:
        predicted: (H, W) integer labels predicted by the model.
        query_mask: (H, W) bool, the queried pixels.
        answers: (H, W) integer labels from the expert; values outside the query
            are ignored (only queried pixels are editable); ``UNANSWERED`` (-1, or
            any negative value) marks a pixel with no answer.
    Returns:
        labels: (H, W) array with ``predicted``'s dtype.
        provenance: (H, W) uint8, ``ANSWERED`` inside the query, ``PREDICTED`` elsewhere.
    Raises:
        MissingAnswers: a queried pixel is unanswered.
        InvalidQuery: shapes differ.
    """
    pred = np.asarray(predicted)
    query = np.asarray(query_mask, dtype=bool)
    ans = np.asarray(answers)
    if not (pred.shape == query.shape == ans.shape):
        msg = (
            f"shapes differ: predicted {pred.shape}, query_mask {query.shape}, answers {ans.shape}"
        )
        raise InvalidQuery(msg)
    missing = int(np.count_nonzero(query & (ans < 0)))
    if missing:
        msg = f"{missing} queried pixels have no answer; label every pixel inside the query outline"
        raise MissingAnswers(msg)
    labels = np.where(query, ans, pred).astype(pred.dtype)
    provenance = np.where(query, ANSWERED, PREDICTED).astype(np.uint8)
    return labels, provenance


def _queryable_values(
    pixel_uncertainty: np.ndarray | Sequence[np.ndarray],
    body: np.ndarray | Sequence[np.ndarray] | None,
) -> tuple[np.ndarray, int]:
    """(sorted u of queryable pixels, number of all pixels)."""
    if isinstance(pixel_uncertainty, np.ndarray):
        parts = [pixel_uncertainty]
        bodies = None if body is None else [np.asarray(body)]
    else:
        parts = list(pixel_uncertainty)
        bodies = None if body is None else [np.asarray(b) for b in body]
    arrays = [_finite(p, "pixel_uncertainty") for p in parts]
    total = sum(a.size for a in arrays)
    if bodies is not None:
        if [b.shape for b in bodies] != [a.shape for a in arrays]:
            msg = "body masks must have the same shapes as the pixel uncertainty arrays"
            raise InvalidQuery(msg)
        arrays = [a[b.astype(bool)] for a, b in zip(arrays, bodies, strict=True)]
    values = np.sort(np.concatenate([a.reshape(-1) for a in arrays])) if arrays else np.zeros(0)
    return values, total


def suggest_tau(
    pixel_uncertainty: np.ndarray | Sequence[np.ndarray],
    target_mac: float,
    *,
    body: np.ndarray | Sequence[np.ndarray] | None = None,
) -> tuple[float, int]:
    """The tau that would query a target fraction of the pixels of the given slices.

    The fraction counts queried pixels over *all* pixels (as MAC, Eq. 8). With
    ``body``, pixels outside the body are never counted as queried (pass the same
    body to ``query_count``). Plateaus of equal u cannot be split, so tau is the
    smallest value that queries **at most** ``floor(target_mac * all pixels)``
    pixels: the count is exact when no plateau straddles the target, and below it
    otherwise. tau is always one of the u values (so ``u >= tau`` is exact), or
    just above the largest u when not even the most uncertain plateau fits.

    Args:
        pixel_uncertainty: one array of any shape, or a list of per-slice arrays.
        target_mac: wanted fraction in [0, 1].
        body: bool mask(s) of the same shape(s), or None.
    Returns:
        (tau, the number of pixels it queries).
    """
    if not 0.0 <= target_mac <= 1.0:
        msg = f"target_mac must lie in [0, 1], got {target_mac}"
        raise InvalidQuery(msg)
    values, total = _queryable_values(pixel_uncertainty, body)
    if values.size == 0:
        return math.inf, 0
    allowed = math.floor(target_mac * total + 1e-9)  # absorbs 0.57 * 100 = 56.999...
    start = max(values.size - allowed, 0)  # pixels values[start:] would be queried
    first = (
        int(np.searchsorted(values, values[start], side="left"))
        if start < values.size
        else values.size
    )
    if first < start:  # values[start] sits on a plateau reaching below: skip the plateau
        first = int(np.searchsorted(values, values[start], side="right"))
    if first >= values.size:
        return float(np.nextafter(values[-1], np.inf)), 0
    return float(values[first]), int(values.size - first)


def query_count(
    pixel_uncertainty: np.ndarray | Sequence[np.ndarray],
    tau: float,
    *,
    body: np.ndarray | Sequence[np.ndarray] | None = None,
) -> int:
    """Number of pixels with u >= tau (inside ``body`` when given): the lead's preview of a step's cost."""
    values, _ = _queryable_values(pixel_uncertainty, body)
    return int(values.size - np.searchsorted(values, tau, side="left"))

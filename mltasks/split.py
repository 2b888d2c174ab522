"""Choosing validation slices for training (``mltasks.train``).

Neighbouring slices of one CT look almost alike, so validating on a slice next to
a training slice measures memory, not learning. ``split_by_position`` therefore
holds out slices none of which lies within ``gap`` slices of a training slice of
the same volume: it groups the slices into *runs* (slices of one volume whose z
differ by at most ``gap`` from the next one) and assigns whole runs to validation.
Only when no run can be spared (every labelled slice in one contiguous block) does
it cut a run: a block at one end validates, the ``gap`` slices next to it are left
out of both sets, the rest trains.

``split_validation`` is the plain random split, for slices without positions.

Slice keys: (N, 2) integers (volume, z), or (N,) z positions of one volume.
"""

from __future__ import annotations

import numpy as np

from mltasks.errors import InvalidTrainingData


def n_validation(n: int, fraction: float) -> int:
    """Validation slices wanted of ``n``: round(n x fraction), at least 1 when n >= 2, at most n - 1."""
    if fraction <= 0:
        return 0
    return min(max(int(round(n * fraction)), 1 if n >= 2 else 0), max(n - 1, 0))


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of ``n`` slices, shuffled with ``seed``; at least one each when n >= 2."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = n_validation(n, fraction)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def as_slice_keys(keys: np.ndarray, n: int) -> np.ndarray:
    """(n, 2) int64 (volume, z) rows of (n,) z positions or (n, 2) keys."""
    arr = np.asarray(keys)
    if arr.ndim == 1:
        arr = np.stack([np.zeros(arr.shape[0], np.int64), arr], axis=1)
    if arr.ndim != 2 or arr.shape != (n, 2) or not np.issubdtype(arr.dtype, np.integer):
        msg = f"slice_keys must be {n} integer rows (volume, z) or {n} z positions, got shape {arr.shape} {arr.dtype}"
        raise InvalidTrainingData(msg)
    return arr.astype(np.int64)


def slice_runs(keys: np.ndarray, *, gap: int = 1) -> list[np.ndarray]:
    """Runs of slices: indices (in z order) of one volume whose successive z differ by <= ``gap``.

    Args:
        keys: (N, 2) int (volume, z).
    Returns:
        runs ordered by (volume, first z); every index 0..N-1 is in exactly one run.
    """
    if keys.shape[0] == 0:
        return []
    order = np.lexsort((keys[:, 1], keys[:, 0]))
    same_volume = keys[order[1:], 0] == keys[order[:-1], 0]
    close = keys[order[1:], 1] - keys[order[:-1], 1] <= gap
    breaks = np.flatnonzero(~(same_volume & close)) + 1
    return np.split(order, breaks)


def split_by_position(
    keys: np.ndarray, fraction: float, seed: int, *, gap: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): no validation slice within ``gap`` slices of a training slice.

    Whole runs (``slice_runs``) are drawn in an order shuffled with ``seed`` and go
    to validation while they fit into round(N x fraction) slices, always leaving one
    run to train on. When no whole run fits, the first drawn run that is long enough
    is cut (module docstring); the slices of the cut gap belong to neither set.
    When nothing can be held out honestly, validation is empty (``train`` then
    keeps the weights of the lowest training loss).

    Args:
        keys: (N, 2) int (volume, z) or (N,) z of one volume.
        fraction: share of the N slices wanted for validation.
        seed: seed of the draw.
        gap: slices closer than or as close as this to a training slice never validate.
    Returns:
        (train, validation) sorted int64 indices into ``keys``.
    """
    keys = as_slice_keys(keys, np.asarray(keys).shape[0])
    n = keys.shape[0]
    n_val = n_validation(n, fraction)
    runs = slice_runs(keys, gap=gap)
    if n_val == 0 or not runs:
        return np.arange(n, dtype=np.int64), np.zeros(0, np.int64)
    rng = np.random.default_rng(seed)
    drawn = [runs[i] for i in rng.permutation(len(runs))]
    val: list[np.ndarray] = []
    taken = 0
    for k, run in enumerate(drawn):
        left_to_train = len(drawn) - len(val) - 1
        if taken + run.size <= n_val and left_to_train >= 1:
            val.append(run)
            taken += run.size
            drawn[k] = np.zeros(0, np.int64)
        if taken == n_val:
            break
    if val:
        val_idx = np.concatenate(val)
        train_idx = np.concatenate([r for r in drawn if r.size])
        return np.sort(train_idx).astype(np.int64), np.sort(val_idx).astype(np.int64)
    return _cut_a_run(drawn, keys[:, 1], n_val, gap)


def _cut_a_run(
    drawn: list[np.ndarray], z: np.ndarray, n_val: int, gap: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate on the last ``n_val`` slices (z order) of the first drawn run that keeps a
    training slice more than ``gap`` slices below them; slices in between join neither set."""
    for k, run in enumerate(drawn):
        val_idx = run[run.size - n_val :]
        keep = run[z[run] < z[val_idx].min() - gap]
        if run.size > n_val and keep.size:
            rest = [keep] + [r for j, r in enumerate(drawn) if j != k]
            return np.sort(np.concatenate(rest)).astype(np.int64), np.sort(val_idx).astype(np.int64)
    everything = np.concatenate(drawn)
    return np.sort(everything).astype(np.int64), np.zeros(0, np.int64)

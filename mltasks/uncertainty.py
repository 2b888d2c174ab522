"""MC-dropout uncertainty statistics (method.md §3, Eqs. 4 and 5).

With T stochastic softmax outputs p_t(c) per voxel:
    mean          pbar(c) = 1/T sum_t p_t(c)
    variance      Var(c)  = 1/T sum_t p_t(c)^2 - pbar(c)^2        (Eq. 4)
    uncertainty   u       = sum_c Var(c)
    PSV of c      mean of u over the voxels labelled c             (Eq. 5)

Sums are taken in float64, so the cancellation in Eq. 4 costs about 1e-16;
what rounding leaves below zero is clamped to 0. ``MCAccumulator`` gives the
same numbers one sample (or batch of samples) at a time, so inference never
holds T samples at once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mltasks.errors import InvalidArray


class MCStatistics(NamedTuple):
    """Result of ``mc_statistics`` / ``MCAccumulator.result``; unpacks as a 3-tuple.

    Attributes:
        mean: (C, ...) mean softmax pbar.
        variance: (C, ...) predictive variance Var(c) (Eq. 4), >= 0.
        pixel_uncertainty: (...) u = sum over classes of the variance.
    """

    mean: np.ndarray
    variance: np.ndarray
    pixel_uncertainty: np.ndarray


def mc_statistics(probs: np.ndarray, *, dtype: np.dtype | type | None = None) -> MCStatistics:
    """Mean, predictive variance (Eq. 4) and pixel uncertainty of T softmax samples.

    Args:
        probs: (T, C, ...) softmax outputs, e.g. (T, C, Y, X) for a slice or
            (T, C, Z, Y, X) for a volume; T >= 1.
        dtype: dtype of the results; default float32 for float16/float32 input,
            float64 for float64 input. Computation is float64 either way.
    Returns:
        ``MCStatistics(mean (C, ...), variance (C, ...), pixel_uncertainty (...))``.
    """
    probs = np.asarray(probs)
    if probs.ndim < 2 or probs.shape[0] < 1:
        msg = f"probs must have shape (T, C, ...) with T >= 1 samples, got shape {probs.shape}"
        raise InvalidArray(msg)
    out_dtype = _result_dtype(probs.dtype, dtype)
    p64 = probs.astype(np.float64, copy=False)
    return _finish(p64.sum(axis=0), np.square(p64).sum(axis=0), probs.shape[0], out_dtype)


class MCAccumulator:
    """Streaming version of ``mc_statistics``: add samples one at a time or in batches.

    Keeps two float64 arrays of shape (C, ...) (sum and sum of squares) and a
    count, so ``result()`` equals ``mc_statistics`` on the stacked samples to
    about 1e-15.

        acc = MCAccumulator(n_classes, (Y, X))
        for _ in range(T):
            acc.add(softmax(net(x)))          # (C, Y, X) or (B, C, Y, X)
        mean, variance, u = acc.result()
    """

    def __init__(
        self, n_classes: int, shape: tuple[int, ...], *, dtype: np.dtype | type = np.float32
    ) -> None:
        """
        Args:
            n_classes: C, number of classes including background.
            shape: spatial shape (...) of one sample, e.g. (Y, X) or (Z, Y, X).
            dtype: dtype of the arrays ``result()`` returns.
        """
        self.n_classes = int(n_classes)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._sum = np.zeros((self.n_classes, *self.shape), dtype=np.float64)
        self._sum_sq = np.zeros_like(self._sum)
        self.count = 0

    def add(self, probs: np.ndarray) -> None:
        """Add one sample (C, ...) or a batch of samples (B, C, ...).

        Accepts anything ``np.asarray`` takes (a CPU torch tensor included).
        """
        probs = np.asarray(probs)
        sample_shape = (self.n_classes, *self.shape)
        if probs.shape == sample_shape:
            probs = probs[None]
        elif probs.shape[1:] != sample_shape:
            msg = f"expected a sample {sample_shape} or a batch (B, *{sample_shape}), got shape {probs.shape}"
            raise InvalidArray(msg)
        for sample in probs:
            sample64 = sample.astype(np.float64, copy=False)
            self._sum += sample64
            self._sum_sq += sample64 * sample64
        self.count += probs.shape[0]

    def result(self) -> MCStatistics:
        """Statistics of every sample added so far (see ``mc_statistics``)."""
        if self.count == 0:
            raise InvalidArray("no sample was added; call add() at least once before result()")
        return _finish(self._sum, self._sum_sq, self.count, self.dtype)


def structure_wise_variance(
    labels: np.ndarray, pixel_uncertainty: np.ndarray, n_classes: int
) -> np.ndarray:
    """PSV (Eq. 5): the mean pixel uncertainty over the voxels of each label.

    Args:
        labels: (Z, Y, X) integer labels in [0, n_classes) (any shape).
        pixel_uncertainty: u of the same shape as ``labels``.
        n_classes: number of classes including background 0.
    Returns:
        (n_classes,) float64; entry c is the PSV of class c (entry 0 the
        background's), NaN for classes with no voxel.
    """
    labels = np.asarray(labels)
    u = np.asarray(pixel_uncertainty)
    if labels.shape != u.shape:
        msg = f"labels shape {labels.shape} differs from pixel_uncertainty shape {u.shape}"
        raise InvalidArray(msg)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InvalidArray(f"labels must be an integer array, got dtype {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        msg = f"labels span [{labels.min()}, {labels.max()}] but n_classes is {n_classes}; pass the label set's n_classes"
        raise InvalidArray(msg)
    flat = labels.reshape(-1)
    counts = np.bincount(flat, minlength=n_classes)
    sums = np.bincount(
        flat, weights=u.reshape(-1).astype(np.float64, copy=False), minlength=n_classes
    )
    psv = np.full(n_classes, np.nan)
    present = counts > 0
    psv[present] = sums[present] / counts[present]
    return psv


def _finish(total: np.ndarray, total_sq: np.ndarray, t: int, dtype: np.dtype) -> MCStatistics:
    mean = total / t
    variance = total_sq / t - mean * mean
    np.maximum(variance, 0.0, out=variance)  # rounding can leave -1e-17
    u = variance.sum(axis=0)
    return MCStatistics(mean.astype(dtype), variance.astype(dtype), u.astype(dtype))


def _result_dtype(input_dtype: np.dtype, requested: np.dtype | type | None) -> np.dtype:
    if requested is not None:
        return np.dtype(requested)
    return np.dtype(np.float64) if input_dtype == np.float64 else np.dtype(np.float32)

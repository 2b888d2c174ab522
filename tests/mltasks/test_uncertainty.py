"""MC-dropout statistics (Eq. 4), the streaming accumulator and PSV (Eq. 5)."""

from __future__ import annotations

import numpy as np
import pytest

from mltasks.errors import InvalidArray
from mltasks.uncertainty import MCAccumulator, mc_statistics, structure_wise_variance


def random_softmax(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Softmax over axis 1 of random logits: (T, C, ...) float32."""
    logits = rng.normal(scale=2.0, size=shape)
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def test_it_computes_eq4_on_a_hand_worked_example():
    # T = 2 samples, C = 2 classes, 2 pixels.
    # pixel 0: p1 = (0.8, 0.2), p2 = (0.4, 0.6)
    #   mean = (0.6, 0.4)
    #   class 0: (0.64 + 0.16) / 2 - 0.36 = 0.40 - 0.36 = 0.04
    #   class 1: (0.04 + 0.36) / 2 - 0.16 = 0.20 - 0.16 = 0.04
    #   u = 0.08
    # pixel 1: both samples (1, 0): mean (1, 0), variance (0, 0), u = 0
    probs = np.array(
        [
            [[0.8, 1.0], [0.2, 0.0]],
            [[0.4, 1.0], [0.6, 0.0]],
        ],
        dtype=np.float64,
    )  # (T=2, C=2, 2 pixels)
    mean, variance, u = mc_statistics(probs)
    np.testing.assert_allclose(mean, [[0.6, 1.0], [0.4, 0.0]], atol=1e-15)
    np.testing.assert_allclose(variance, [[0.04, 0.0], [0.04, 0.0]], atol=1e-15)
    np.testing.assert_allclose(u, [0.08, 0.0], atol=1e-15)


def test_identical_samples_give_zero_variance_never_negative():
    # 1/T sum p^2 - pbar^2 can round to about -1e-17 when all samples agree.
    rng = np.random.default_rng(0)
    one = random_softmax(rng, (1, 5, 40, 40))[0]
    probs = np.stack([one] * 7)
    _, variance, u = mc_statistics(probs, dtype=np.float64)
    assert variance.min() >= 0.0
    assert np.abs(variance).max() < 1e-15
    assert np.abs(u).max() < 1e-14


def test_it_keeps_shapes_and_gives_float32_for_float32_input():
    probs = random_softmax(np.random.default_rng(1), (4, 3, 2, 5, 6))  # (T, C, Z, Y, X)
    stats = mc_statistics(probs)
    assert stats.mean.shape == (3, 2, 5, 6)
    assert stats.variance.shape == (3, 2, 5, 6)
    assert stats.pixel_uncertainty.shape == (2, 5, 6)
    assert stats.mean.dtype == np.float32
    np.testing.assert_allclose(stats.mean.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(stats.pixel_uncertainty, stats.variance.sum(axis=0), atol=1e-7)


def test_accumulator_equals_mc_statistics_with_single_and_batched_adds():
    rng = np.random.default_rng(2)
    probs = random_softmax(rng, (10, 4, 16, 12))  # (T, C, Y, X)
    acc = MCAccumulator(4, (16, 12), dtype=np.float64)
    acc.add(probs[0])  # one sample (C, Y, X)
    acc.add(probs[1:4])  # a batch (B, C, Y, X)
    for sample in probs[4:]:
        acc.add(sample)
    assert acc.count == 10
    streamed = acc.result()
    whole = mc_statistics(probs, dtype=np.float64)
    for got, want in zip(streamed, whole, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_accumulator_rejects_wrong_shapes_and_empty_results():
    acc = MCAccumulator(3, (4, 4))
    with pytest.raises(InvalidArray, match="no sample"):
        acc.result()
    with pytest.raises(InvalidArray, match="expected a sample"):
        acc.add(np.zeros((2, 4, 4)))


def test_mc_statistics_rejects_a_single_sample_axis():
    with pytest.raises(InvalidArray, match=r"\(T, C, ...\)"):
        mc_statistics(np.zeros(5))


def test_psv_is_the_mean_uncertainty_per_label_and_nan_when_absent():
    # label 0 -> u 0.1 (one voxel); label 1 -> (0.2 + 0.4) / 2 = 0.3; label 2 -> 0.9; label 3 absent
    labels = np.array([[0, 1], [1, 2]], dtype=np.uint8)
    u = np.array([[0.1, 0.2], [0.4, 0.9]], dtype=np.float32)
    psv = structure_wise_variance(labels, u, 4)
    assert psv.shape == (4,)
    np.testing.assert_allclose(psv[:3], [0.1, 0.3, 0.9], rtol=1e-6)
    assert np.isnan(psv[3])


def test_psv_rejects_labels_beyond_n_classes():
    with pytest.raises(InvalidArray, match="n_classes is 2"):
        structure_wise_variance(np.array([0, 2]), np.array([0.1, 0.2]), 2)

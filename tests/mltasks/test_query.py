"""Slice scores, D_c, pixel queries (Eq. 7), MAC (Eq. 8), merging answers, baselines, tau."""

from __future__ import annotations

import numpy as np
import pytest

from mltasks import query
from mltasks.errors import InvalidQuery, MissingAnswers
from mltasks.query import (
    ANSWERED,
    PREDICTED,
    UNANSWERED,
    full_slice_mask,
    manual_annotation_cost,
    merge_answers,
    pixel_query_mask,
    query_count,
    random_pixel_mask,
    select_random,
    select_uncertain,
    slice_scores,
    suggest_tau,
)


def test_slice_score_is_the_mean_uncertainty_inside_the_body():
    u = np.array(
        [
            [[0.1, 0.3], [0.5, 0.7]],
            [[1.0, 2.0], [3.0, 4.0]],
            [[9.0, 9.0], [9.0, 9.0]],
        ]
    )
    body = np.array(
        [
            [[True, True], [False, False]],
            [[False, False], [False, True]],
            [[False, False], [False, False]],
        ]
    )
    np.testing.assert_allclose(slice_scores(u, body), [0.2, 4.0, 0.0])


def test_slice_score_without_body_averages_the_whole_slice():
    u = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    np.testing.assert_allclose(slice_scores(u, None), [1.5])


def test_slice_scores_rejects_a_body_of_another_shape():
    with pytest.raises(InvalidQuery, match="body mask shape"):
        slice_scores(np.zeros((2, 3, 3)), np.ones((2, 3, 4), dtype=bool))


def test_select_uncertain_takes_the_highest_and_breaks_ties_by_lower_index():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    np.testing.assert_array_equal(select_uncertain(scores, 3), [1, 3, 0])
    np.testing.assert_array_equal(select_uncertain(scores, 3, exclude=[1]), [3, 0, 2])


def test_select_uncertain_returns_what_remains_when_k_is_too_large():
    np.testing.assert_array_equal(select_uncertain(np.array([0.2, 0.4]), 5, exclude=[0]), [1])


def test_select_uncertain_rejects_nan_scores():
    with pytest.raises(InvalidQuery, match="NaN"):
        select_uncertain(np.array([0.1, np.nan]), 1)


def test_select_random_is_seeded_distinct_and_respects_exclude():
    a = select_random(100, 10, rng=3, exclude=range(50))
    b = select_random(100, 10, rng=3, exclude=range(50))
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 10
    assert a.min() >= 50
    assert sorted(select_random(5, 9, rng=0, exclude=[1, 2]).tolist()) == [0, 3, 4]


def test_pixel_query_is_u_at_least_tau():
    u = np.array([[0.001, 0.0025], [0.0024999, 0.01]])
    np.testing.assert_array_equal(pixel_query_mask(u, 0.0025), [[False, True], [False, True]])


def test_mac_is_queried_over_all_pixels_of_the_added_slices():
    a = np.zeros((4, 4), dtype=bool)
    a[0, :3] = True  # 3 of 16
    b = np.zeros((2, 2), dtype=bool)
    b[1, 1] = True  # 1 of 4
    assert manual_annotation_cost([a, b]) == pytest.approx(4 / 20)
    stacked = np.stack([a, a])
    assert manual_annotation_cost(stacked) == pytest.approx(6 / 32)


def test_fully_manual_slices_cost_one():
    assert manual_annotation_cost([full_slice_mask((8, 8)), full_slice_mask((4, 5))]) == 1.0


def test_mac_of_nothing_is_an_error():
    with pytest.raises(InvalidQuery):
        manual_annotation_cost([])


def test_random_pixel_mask_draws_exactly_n_pixels_reproducibly():
    m1 = random_pixel_mask((3, 10, 10), 37, rng=np.random.default_rng(5))
    m2 = random_pixel_mask((3, 10, 10), 37, rng=np.random.default_rng(5))
    assert m1.shape == (3, 10, 10)
    assert m1.sum() == 37
    np.testing.assert_array_equal(m1, m2)
    with pytest.raises(InvalidQuery):
        random_pixel_mask((2, 2), 5, rng=0)


def test_merge_takes_answers_inside_the_query_and_prediction_elsewhere():
    predicted = np.array([[1, 1], [2, 2]], dtype=np.uint8)
    query_mask = np.array([[True, False], [False, True]])
    answers = np.array([[3, 7], [UNANSWERED, 0]])
    labels, provenance = merge_answers(predicted, query_mask, answers)
    np.testing.assert_array_equal(labels, [[3, 1], [2, 0]])
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(provenance, [[ANSWERED, PREDICTED], [PREDICTED, ANSWERED]])
    assert provenance.dtype == np.uint8
    assert (PREDICTED, ANSWERED) == (0, 1)


def test_merge_rejects_unanswered_pixels_inside_the_query():
    query_mask = np.array([[True, True]])
    with pytest.raises(MissingAnswers, match="1 queried pixels"):
        merge_answers(np.zeros((1, 2), int), query_mask, np.array([[4, UNANSWERED]]))


def test_merge_rejects_mismatched_shapes():
    with pytest.raises(InvalidQuery, match="shapes differ"):
        merge_answers(np.zeros((2, 2), int), np.zeros((2, 2), bool), np.zeros((2, 3), int))


def test_suggest_tau_hits_the_target_fraction_of_distinct_values():
    u = np.arange(1000, dtype=np.float64).reshape(10, 10, 10) / 1000.0
    tau, count = suggest_tau(u, 0.05)
    assert count == 50
    assert tau == pytest.approx(0.950)
    assert query_count(u, tau) == 50
    assert pixel_query_mask(u, tau).sum() == 50


def test_suggest_tau_stays_at_most_the_target_on_a_plateau():
    # 10 pixels: six at 0, three at 0.5, one at 0.9; 20 % cannot be met exactly
    u = np.array([0, 0, 0, 0, 0, 0, 0.5, 0.5, 0.5, 0.9])
    assert suggest_tau(u, 0.2) == (0.9, 1)
    assert suggest_tau(u, 0.4) == (0.5, 4)
    assert suggest_tau(u, 1.0) == (0.0, 10)
    tau, count = suggest_tau(u, 0.05)
    assert count == 0 and tau > 0.9 and query_count(u, tau) == 0


def test_suggest_tau_counts_only_body_pixels_but_over_all_pixels():
    u = np.array([[0.9, 0.8], [0.1, 0.2]])
    body = np.array([[False, True], [True, True]])
    assert suggest_tau(u, 0.5, body=body) == (0.2, 2)
    assert query_count(u, 0.2, body=body) == 2
    assert query_count(u, 0.2) == 3


def test_suggest_tau_accepts_a_list_of_slices():
    slices = [np.full((2, 2), 0.1), np.array([[0.3, 0.4], [0.5, 0.6]])]
    assert suggest_tau(slices, 0.25) == (0.5, 2)
    assert query_count(slices, 0.4) == 3


def test_suggest_tau_random_fractions_are_met_within_one_pixel():
    rng = np.random.default_rng(0)
    u = rng.random((4, 32, 32))
    for target in (0.0013, 0.0108, 0.0484, 0.3):
        tau, count = suggest_tau(u, target)
        assert count == int(np.floor(target * u.size))
        assert np.count_nonzero(u >= tau) == count


def test_suggest_tau_rejects_a_fraction_outside_0_1():
    with pytest.raises(InvalidQuery):
        suggest_tau(np.zeros((2, 2)), 1.5)


def test_query_module_reexports_select_representative():
    assert query.select_representative.__module__ == "mltasks.selection"

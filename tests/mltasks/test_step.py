"""The step code the worker and the simulation share (mltasks.step, mltasks.resize)."""

from __future__ import annotations

import numpy as np

from mltasks.query import slice_scores
from mltasks.resize import network_inputs
from mltasks.step import (
    SCORE_CHUNK,
    ScoredSlices,
    SliceRanking,
    StepPlan,
    choose_slices,
    chosen_maps,
    query_masks,
    slice_chunks,
)


def _scored(scores, size=4, seed=0) -> ScoredSlices:
    rng = np.random.default_rng(seed)
    n = len(scores)
    return ScoredSlices(
        labels=rng.integers(0, 3, (n, size, size), dtype=np.uint8),
        uncertainty=rng.random((n, size, size), dtype=np.float32),
        scores=np.asarray(scores, float),
        descriptors=rng.random((n, 5), dtype=np.float32),
    )


def test_slice_scores_average_uncertainty_inside_the_body_not_over_the_slice():
    hu = np.full((2, 40, 40), -1000, np.int16)
    hu[0, 5:35, 5:35] = 40  # a wide body, moderately uncertain
    hu[1, 15:25, 15:25] = 40  # a thin part of the body, very uncertain
    u = np.zeros(hu.shape, np.float32)
    u[0, 5:35, 5:35] = 0.2
    u[1, 15:25, 15:25] = 0.5
    images, body = network_inputs(hu, 40)
    assert images.dtype == np.float32 and body.dtype == bool and body.shape == hu.shape
    np.testing.assert_allclose(slice_scores(u, body), [0.2, 0.5], rtol=1e-6)
    assert u[1].mean() < u[0].mean()  # over whole slices the thin slice would have ranked last


def test_network_inputs_take_the_body_down_to_the_network_grid():
    hu = np.full((1, 64, 64), -1000, np.int16)
    hu[0, 16:48, 16:48] = 40
    images, body = network_inputs(hu, 32)
    assert images.shape == body.shape == (1, 32, 32)
    assert body[0, 8:24, 8:24].all() and body.sum() == 16 * 16


def test_volumes_are_cut_into_chunks_in_order():
    chunks = slice_chunks(range(2 * SCORE_CHUNK + 3))
    assert [len(c) for c in chunks] == [SCORE_CHUNK, SCORE_CHUNK, 3]
    assert sum(chunks, []) == list(range(2 * SCORE_CHUNK + 3))


def test_the_ranking_keeps_the_maps_of_the_top_slices_only_and_survives_a_file():
    ranking = SliceRanking(keep=2)
    scores = [0.1, 0.9, 0.3, 0.8, 0.2, 0.05]
    first, second = _scored(scores[:3], seed=1), _scored(scores[3:], seed=2)
    ranking.add([(7, 0), (7, 1), (7, 2)], first)
    ranking.add([(8, 0), (8, 1), (8, 2)], second)  # 6 maps > 2 x keep: pruned to the top 2
    assert sorted(ranking.maps(range(6))) == [1, 3]
    np.testing.assert_array_equal(ranking.maps([1])[1][1], first.uncertainty[1])
    again = SliceRanking.from_arrays(ranking.to_arrays(), keep=2)
    np.testing.assert_array_equal(again.keys, ranking.keys)
    np.testing.assert_array_equal(again.scores, scores)
    np.testing.assert_array_equal(again.descriptors, np.concatenate([first.descriptors, second.descriptors]))
    assert sorted(again.maps(range(6))) == [1, 3]


def test_chosen_maps_score_a_dropped_slice_again():
    ranking = SliceRanking(keep=1)
    ranking.add([(0,), (1,), (2,)], _scored([0.5, 0.1, 0.2]))
    ranking.add([(3,)], _scored([0.3], seed=3))  # 4 maps > 2: only slice 0's map stays
    asked = []

    def rescore(i):
        asked.append(i)
        return _scored([0.0], seed=10 + i)

    labels, u = chosen_maps(ranking, [2, 0], rescore)
    assert asked == [2] and len(labels) == len(u) == 2
    assert all(m.shape == (4, 4) for m in labels + u) and all(m.dtype == np.float32 for m in u)
    np.testing.assert_array_equal(u[0], _scored([0.0], seed=12).uncertainty[0])


def test_choose_takes_d_r_from_the_most_uncertain_and_random_slices_from_all():
    rng = np.random.default_rng(0)
    scores, desc = rng.random(30), rng.random((30, 4)).astype(np.float32)
    plan = StepPlan("tau", 1e-3, n_select=3, n_candidates=6)
    picked = choose_slices(scores, desc, plan, seed=1)
    assert picked.candidates == [int(i) for i in np.argsort(-scores)[:6]]
    assert len(picked.chosen) == 3 and set(picked.chosen) <= set(picked.candidates)
    rand = choose_slices(scores, desc, StepPlan("random_slices", 1e-3, 3, 6), seed=1)
    assert rand.candidates == [] and len(set(rand.chosen)) == 3
    assert rand.chosen == choose_slices(scores, desc, StepPlan("random_slices", 1e-3, 3, 6), seed=1).chosen
    assert choose_slices(np.zeros(0), np.zeros((0, 4)), plan, seed=1).chosen == []


def test_query_masks_follow_the_strategy():
    u = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    tau = query_masks(u, StepPlan("tau", 0.7, 2, 4), seed=0)
    np.testing.assert_array_equal(tau, u >= 0.7)
    rand = query_masks(u, StepPlan("random_pixels", 0.7, 2, 4), seed=0)
    assert rand.sum() == tau.sum() and not np.array_equal(rand, tau)
    assert query_masks(u, StepPlan("manual", 0.7, 2, 4), seed=0).all()
    mac = query_masks(u, StepPlan("tau", 0.7, 2, 4, target_mac=0.25), seed=0)
    assert mac.sum() <= 0.25 * u.size and mac.sum() > 0.2 * u.size


def test_a_ranking_of_scans_with_different_working_grids_survives_a_file():
    ranking = SliceRanking(keep=4)
    small, wide = _scored([0.9, 0.8], size=4, seed=4), _scored([0.7], size=6, seed=5)
    ranking.add([(1, 0), (1, 1)], small)
    ranking.add([(2, 0)], wide)
    arrays = ranking.to_arrays()
    assert all(a.dtype != object for a in arrays.values())  # np.load refuses pickles
    again = SliceRanking.from_arrays(arrays, keep=4)
    maps = again.maps(range(3))
    assert maps[2][0].shape == (6, 6) and maps[0][0].shape == (4, 4)
    np.testing.assert_array_equal(maps[2][1], wide.uncertainty[0])
    np.testing.assert_array_equal(maps[1][0], small.labels[1])


def test_a_ranking_file_of_the_earlier_stacked_layout_still_reads():
    ranking = SliceRanking(keep=2)
    scored = _scored([0.4, 0.6], size=4, seed=6)
    ranking.add([(3, 0), (3, 1)], scored)
    stacked = {"keys": ranking.keys, "scores": ranking.scores, "descriptors": ranking.descriptors,
               "map_index": np.array([0, 1]), "map_labels": scored.labels, "map_u": scored.uncertainty}
    again = SliceRanking.from_arrays(stacked, keep=2)
    np.testing.assert_array_equal(again.maps([1])[1][1], scored.uncertainty[1])

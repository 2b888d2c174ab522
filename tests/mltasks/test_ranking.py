"""The cheap ranking pass: all slices with few samples, the candidates with the full T."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mltasks.errors import InvalidQuery
from mltasks.infer import mc_predict_slices
from mltasks.netgrid import network_grid
from mltasks.nets import NetConfig, UNet
from mltasks.query import slice_scores
from mltasks.ranking import rank_pool, score_bias, score_network_slices, score_working_slices
from mltasks.step import ScoredSlices, StepPlan, choose_slices, chosen_maps


class FakeScorer:
    """Slices with a known uncertainty; fewer samples see it with more noise and the variance bias."""

    def __init__(self, map_shape=(6, 6)) -> None:
        self.calls: list[tuple[int, list[int], int, bool]] = []
        self.map_shape = map_shape

    @staticmethod
    def truth(volume: int, z: int) -> float:
        return float(np.random.default_rng([volume, z]).random())

    def full_score(self, volume: int, z: int, t: int) -> float:
        noise = np.random.default_rng([volume, z, t]).normal(0.0, 0.05 / np.sqrt(t))
        return (t - 1) / t * self.truth(volume, z) + noise

    def __call__(self, volume: int, slices: list[int], t: int, maps: bool) -> ScoredSlices:
        self.calls.append((volume, list(slices), t, maps))
        scores = np.array([self.full_score(volume, z, t) for z in slices])
        desc = np.stack([np.random.default_rng([volume, z, 99]).normal(size=4) + 0.1 * t for z in slices])
        shape = self.map_shape(volume) if callable(self.map_shape) else self.map_shape
        labels = np.stack([np.full(shape, z % 250, np.uint8) for z in slices])
        u = np.stack([np.full(shape, s, np.float32) for s in scores])
        return ScoredSlices(labels, u, scores, desc.astype(np.float32))


VOLUMES = [(7, list(range(0, 60, 1))), (9, list(range(3, 80, 2)))]  # 60 + 39 unlabelled slices


def test_candidates_come_from_the_rescored_slices_with_their_full_scores():
    scorer = FakeScorer()
    ranked = rank_pool(VOLUMES, scorer, n_candidates=8, t_full=10)
    ranking = ranked.ranking
    keys = [tuple(k) for k in ranking.keys]
    assert keys == [(v, z) for v, zs in VOLUMES for z in zs]
    assert ranked.rescored.sum() == 24 and ranked.cheap_scores is not None
    d_c = np.argsort(-ranking.scores, kind="stable")[:8]
    assert ranked.rescored[d_c].all()
    for i in np.flatnonzero(ranked.rescored):
        assert ranking.scores[i] == scorer.full_score(*keys[i], 10)
    assert ranking.scores[~ranked.rescored].max() < ranking.scores[ranked.rescored].min()
    # the re-scored were the top of the cheap pass
    cheap_order = np.argsort(-ranked.cheap_scores, kind="stable")
    assert set(cheap_order[:24]) == set(np.flatnonzero(ranked.rescored))
    # full-T descriptors where re-scored (the fake adds 0.1 x T)
    i, j = np.flatnonzero(ranked.rescored)[0], np.flatnonzero(~ranked.rescored)[0]
    base_i = np.random.default_rng([*keys[i], 99]).normal(size=4)
    base_j = np.random.default_rng([*keys[j], 99]).normal(size=4)
    np.testing.assert_allclose(ranking.descriptors[i], base_i + 1.0, rtol=1e-6)
    np.testing.assert_allclose(ranking.descriptors[j], base_j + 0.3, rtol=1e-6)


def test_only_the_candidates_get_the_full_samples_and_maps():
    scorer = FakeScorer()
    ranked = rank_pool(VOLUMES, scorer, n_candidates=8, t_full=10, t_cheap=3, rescore_factor=3)
    cheap = [c for c in scorer.calls if c[2] == 3]
    full = [c for c in scorer.calls if c[2] == 10]
    assert sum(len(c[1]) for c in cheap) == 99 and not any(c[3] for c in cheap)
    assert sum(len(c[1]) for c in full) == 24 and all(c[3] for c in full)
    assert all(len(c[1]) <= 16 for c in scorer.calls)  # chunks of mltasks.step.SCORE_CHUNK
    assert ranked.passes == 3 * 99 + 10 * 24


def test_the_step_chooses_from_the_ranking_without_scoring_again():
    ranked = rank_pool(VOLUMES, FakeScorer(), n_candidates=8, t_full=10)
    plan = StepPlan("tau", 0.1, n_select=3, n_candidates=8)
    selection = choose_slices(ranked.ranking.scores, ranked.ranking.descriptors, plan, seed=1)
    assert len(selection.chosen) == 3 and set(selection.chosen) <= set(selection.candidates)

    def rescore(i):
        raise AssertionError("D_c's maps must be kept")

    labels, u = chosen_maps(ranked.ranking, selection.chosen, rescore)
    labels, u = np.stack(labels), np.stack(u)  # one map per chosen slice
    keys = ranked.ranking.keys
    assert labels.shape == (3, 6, 6)
    assert [int(labels[j, 0, 0]) for j in range(3)] == [int(keys[i][1]) for i in selection.chosen]
    np.testing.assert_allclose(u[:, 0, 0], ranked.ranking.scores[selection.chosen], rtol=1e-6)


def test_without_a_saving_only_the_full_pass_runs():
    scorer = FakeScorer()
    volumes = [(1, list(range(20)))]
    ranked = rank_pool(volumes, scorer, n_candidates=5, t_full=10)  # 3 x 20 + 10 x 15 >= 10 x 20
    assert {c[2] for c in scorer.calls} == {10} and ranked.cheap_scores is None
    assert ranked.rescored.all() and ranked.passes == 200
    expected = [scorer.full_score(1, z, 10) for z in range(20)]
    np.testing.assert_array_equal(ranked.ranking.scores, expected)


def test_maps_of_scans_with_different_working_grids_are_kept():
    scorer = FakeScorer(map_shape=lambda volume: (5, 7) if volume == 7 else (6, 4))
    ranked = rank_pool(VOLUMES, scorer, n_candidates=8, t_full=10)
    d_c = np.argsort(-ranked.ranking.scores, kind="stable")[:8]
    maps = ranked.ranking.maps(d_c)
    assert len(maps) == 8
    for i, (labels, u) in maps.items():
        assert labels.shape == ((5, 7) if ranked.ranking.keys[i][0] == 7 else (6, 4)) == u.shape


def test_the_cheap_score_is_brought_to_the_full_scale():
    assert score_bias(3, 10) == pytest.approx(0.9 / (2 / 3))
    assert score_bias(10, 10) == 1.0


def test_progress_goes_through_both_passes():
    seen = []
    rank_pool(VOLUMES, FakeScorer(), n_candidates=8, t_full=10, on_progress=seen.append)
    assert seen[0].info["pass"] == "cheap" and seen[-1].info["pass"] == "full"
    assert seen[-1].done == seen[-1].total == 99 + 24
    assert [p.done for p in seen] == sorted(p.done for p in seen)


def test_an_empty_pool_gives_an_empty_ranking():
    ranked = rank_pool([(1, [])], FakeScorer(), n_candidates=3, t_full=10)
    assert ranked.ranking.scores.size == 0 and ranked.passes == 0


def test_bad_options_are_refused_with_a_reason():
    with pytest.raises(InvalidQuery, match="t_cheap must be >= 2"):
        rank_pool(VOLUMES, FakeScorer(), n_candidates=8, t_full=10, t_cheap=1)
    with pytest.raises(InvalidQuery, match="rescore_factor must be >= 1"):
        rank_pool(VOLUMES, FakeScorer(), n_candidates=8, t_full=10, rescore_factor=0.5)
    with pytest.raises(InvalidQuery, match=r"n_candidates \(0\) and t_full \(10\) must be >= 1"):
        rank_pool(VOLUMES, FakeScorer(), n_candidates=0, t_full=10)


def _hu(n: int, shape=(40, 36)) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    body = ((yy - 20) / 14.0) ** 2 + ((xx - 18) / 12.0) ** 2 <= 1
    hu = np.where(body, 40, -1000).astype(np.int16)
    rng = np.random.default_rng(0)
    return np.stack([hu + rng.integers(-60, 60, shape).astype(np.int16) * body for _ in range(n)])


def test_working_slices_are_scored_on_the_network_grid_and_mapped_back():
    torch.manual_seed(0)
    model = UNet(NetConfig(n_classes=3, width=4, depth=3, matrix=16))
    grid = network_grid((40, 36), (1.0, 1.0), pixel_mm=2.0, depth=3)
    hu = _hu(5)
    scored = score_working_slices(hu, model, grid, t_samples=3, seed=2, batch_size=2)
    assert scored.labels.shape == scored.uncertainty.shape == (5, 40, 36)
    assert scored.labels.dtype == np.uint8 and scored.uncertainty.dtype == np.float32
    images, body = grid.to_network(hu)
    ref = mc_predict_slices(images, model, t_samples=3, seed=2, batch_size=2, return_probs=True)
    np.testing.assert_allclose(scored.scores, slice_scores(ref.pixel_uncertainty, body))
    np.testing.assert_array_equal(scored.descriptors, ref.descriptors)
    labels, u = grid.to_working(ref.mean_probs, ref.pixel_uncertainty)
    np.testing.assert_array_equal(scored.labels, labels)
    np.testing.assert_array_equal(scored.uncertainty, u)
    cheap = score_working_slices(hu, model, grid, t_samples=3, seed=2, batch_size=2, maps=False)
    assert cheap.labels.shape == (5, *grid.shape)
    np.testing.assert_array_equal(cheap.scores, scored.scores)
    images, body = grid.to_network(hu)
    again = score_network_slices(images, body, model, grid, t_samples=3, seed=2, batch_size=2)
    np.testing.assert_array_equal(again.labels, scored.labels)
    np.testing.assert_array_equal(again.scores, scored.scores)


@pytest.mark.parametrize(("n", "n_candidates"), [(99, 8), (20, 5), (0, 3), (500, 20)])
def test_the_planned_passes_are_the_passes_the_ranking_makes(n, n_candidates):
    from mltasks.ranking import planned_passes

    volumes = [(1, list(range(n)))]
    ranked = rank_pool(volumes, FakeScorer(), n_candidates=n_candidates, t_full=10)
    assert planned_passes(n, n_candidates=n_candidates, t_full=10) == ranked.passes

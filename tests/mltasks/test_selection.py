"""Greedy representative selection: hand-computed cases and fast == plain on random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from mltasks.errors import InvalidQuery
from mltasks.query import select_representative, select_representative_plain
from mltasks.selection import clipped_similarity, unit_rows


def _random_case(seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    rng = np.random.default_rng(seed)
    n_pool = int(rng.integers(1, 40))
    d = int(rng.integers(1, 6))
    kind = seed % 5
    if kind == 0:  # general position, many negative similarities
        feats = rng.normal(size=(n_pool, d))
    elif kind == 1:  # integer features: exact ties
        feats = rng.integers(-2, 3, size=(n_pool, d)).astype(float)
    elif kind == 2:  # duplicate rows
        base = rng.integers(0, 2, size=(3, d)).astype(float)
        feats = base[rng.integers(0, 3, n_pool)]
    elif kind == 3:  # zero rows (similarity 0 with everything)
        feats = rng.normal(size=(n_pool, d))
        feats[rng.random(n_pool) < 0.3] = 0.0
    else:  # non-negative, like pooled ReLU features
        feats = np.abs(rng.normal(size=(n_pool, d))) * rng.integers(1, 3, size=(n_pool, 1))
    n_cand = int(rng.integers(0, n_pool + 1))
    cands = rng.permutation(n_pool)[:n_cand]
    return feats, cands, int(rng.integers(0, n_cand + 1))


@pytest.mark.parametrize("seed", range(400))
def test_fast_selection_equals_the_plain_algorithm(seed):
    feats, cands, n = _random_case(seed)
    plain = select_representative_plain(feats, cands, n)
    assert select_representative(feats, cands, n) == plain
    assert select_representative(feats, cands, n, cache_bytes=0) == plain  # recompute path


def test_fast_equals_plain_on_a_larger_pool_with_block_boundaries(monkeypatch):
    import mltasks.selection as selection

    monkeypatch.setattr(selection, "_BLOCK_ELEMENTS", 97)  # many ragged blocks
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(6, 8))
    feats = centres[rng.integers(0, 6, 300)] + 0.3 * rng.normal(size=(300, 8))
    cands = rng.permutation(300)[:60]
    assert select_representative(feats, cands, 12) == select_representative_plain(feats, cands, 12)


def test_it_picks_the_slice_that_covers_most_of_the_pool():
    # Pool: three slices along x, one along y, one along -x.
    feats = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [-1, 0]], dtype=float)
    # candidate 3 covers 1 slice, candidate 0 covers 3, candidate 4 covers 1 (negatives count 0)
    assert select_representative(feats, [3, 4, 0], 1) == [0]
    # then y (gain 1) ties with -x (gain 1): the earlier candidate in the given order wins
    assert select_representative(feats, [3, 4, 0], 3) == [0, 3, 4]
    assert select_representative(feats, [4, 3, 0], 3) == [0, 4, 3]


def test_duplicates_tie_and_the_first_in_candidate_order_wins():
    feats = np.array([[1, 1], [1, 1], [1, 1]], dtype=float)
    assert select_representative(feats, [2, 0, 1], 2) == [2, 0]
    assert select_representative_plain(feats, [2, 0, 1], 2) == [2, 0]


def test_similarity_is_the_clipped_cosine_in_float32():
    feats = np.array([[3.0, 4.0], [4.0, 3.0], [-3.0, -4.0], [0.0, 0.0]])
    units = unit_rows(feats)
    sims = clipped_similarity(units, np.arange(4), 0, 4)
    assert sims.dtype == np.float32
    expected = np.array([[1, 0.96, 0, 0], [0.96, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(sims, expected, atol=3e-8)


def test_similarity_is_identical_whatever_the_block_shape():
    rng = np.random.default_rng(2)
    units = unit_rows(rng.normal(size=(257, 300)))
    whole = clipped_similarity(units, np.arange(257), 0, 257)
    by_rows = np.concatenate([clipped_similarity(units, np.arange(i, i + 1), 0, 257) for i in range(0, 257, 37)])
    np.testing.assert_array_equal(whole[::37], by_rows)
    pieces = np.concatenate([clipped_similarity(units, np.arange(257), c, min(c + 50, 257))
                             for c in range(0, 257, 50)], axis=1)
    np.testing.assert_array_equal(whole, pieces)


def _float64_greedy(features, candidates, n, tol=1e-9):
    """An independent float64 greedy: per-candidate gains, ties within ``tol`` to the earlier candidate."""
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-300)
    best = np.zeros(len(f))
    remaining, chosen = list(candidates), []
    for _ in range(n):
        gains = [np.maximum(best, f[c] @ f.T).sum() for c in remaining]
        pick = remaining[next(i for i, g in enumerate(gains) if g >= max(gains) - tol)]
        chosen.append(int(pick))
        remaining.remove(pick)
        best = np.maximum(best, f[pick] @ f.T)
    return chosen


@pytest.mark.parametrize("seed", range(150))
def test_it_matches_an_independent_float64_greedy(seed):
    """The choice of the paper's algorithm on the real cosine, not on an approximation of it."""
    rng = np.random.default_rng(1000 + seed)
    n_pool, d = int(rng.integers(10, 200)), int(rng.integers(2, 64))
    feats = rng.normal(size=(n_pool, d)) + (3.0 if seed % 2 else 0.0)  # odd seeds: all cosines high
    cands = rng.choice(n_pool, int(rng.integers(2, min(n_pool, 50) + 1)), replace=False)
    n = int(rng.integers(1, cands.size + 1))
    assert select_representative(feats, cands, n) == _float64_greedy(feats, cands, n)


def test_it_rejects_bad_candidates_and_features():
    feats = np.eye(3)
    with pytest.raises(InvalidQuery, match="duplicate"):
        select_representative(feats, [0, 0], 1)
    with pytest.raises(InvalidQuery, match=r"\[0, 3\)"):
        select_representative(feats, [5], 1)
    with pytest.raises(InvalidQuery, match="cannot choose"):
        select_representative(feats, [0, 1], 3)
    with pytest.raises(InvalidQuery, match="NaN"):
        select_representative(np.array([[np.nan, 1.0]]), [0], 1)


def test_zero_selections_and_order_of_all_candidates():
    feats = np.eye(3)
    assert select_representative(feats, [2, 1], 0) == []
    assert select_representative(feats, [2, 1, 0], 3) == [2, 1, 0]

"""Cold start: the first slices to ask for, chosen by image descriptors alone (no model)."""

from __future__ import annotations

import numpy as np
import pytest

from mltasks.coldstart import select_cold_start, slice_descriptors, spread_cover
from mltasks.errors import InvalidQuery
from mltasks.phantom import generate_phantom
from mltasks.preprocess import normalise_hu
from mltasks.selection import select_representative


def _images(n: int = 30, size: int = 32, seed: int = 0) -> np.ndarray:
    """Slices of three kinds (a disk, a bar, two squares) with noise, in runs along z."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    kinds = [((xx - 16) ** 2 + (yy - 16) ** 2 < 64), (abs(yy - 16) < 3), ((xx % 16 < 6) & (yy % 16 < 6))]
    return np.stack([kinds[(i * 3) // n] * 0.8 + rng.random((size, size)) * 0.1 for i in range(n)]).astype(np.float32)


def test_descriptors_are_centred_thumbnails_and_projections_are_seeded():
    images = _images()
    down = slice_descriptors(images, size=8)
    assert down.shape == (30, 64) and np.allclose(down.mean(axis=0), 0, atol=1e-5)
    a = slice_descriptors(images, method="projection", dims=16, seed=3)
    assert a.shape == (30, 16) and np.array_equal(a, slice_descriptors(images, method="projection", dims=16, seed=3))
    assert not np.allclose(a, slice_descriptors(images, method="projection", dims=16, seed=4))


def test_a_slice_scaled_in_brightness_has_the_same_descriptor():
    images = _images()
    brighter = images.copy()
    brighter[4] = brighter[4] * 1.5 + 0.1
    assert np.allclose(slice_descriptors(images)[4], slice_descriptors(brighter)[4], atol=1e-4)


def test_picks_are_never_adjacent_in_a_volume_and_cover_every_kind():
    images = _images()
    keys = np.stack([np.repeat([0, 1], 15), np.tile(np.arange(15), 2)], axis=1)
    picks = select_cold_start(images, 6, keys=keys, gap=1)
    assert len(set(picks.tolist())) == 6
    for i in picks:
        for j in picks:
            if i != j and keys[i, 0] == keys[j, 0]:
                assert abs(keys[i, 1] - keys[j, 1]) > 1
    assert {(int(i) * 3) // 30 for i in picks} == {0, 1, 2}  # each kind of slice is asked


def test_the_choice_is_deterministic_for_a_seed():
    images = _images(seed=5)
    for method in ("downsample", "projection"):
        first = select_cold_start(images, 5, method=method, seed=2)
        assert np.array_equal(first, select_cold_start(images, 5, method=method, seed=2))


def test_without_spacing_it_is_d_r_s_set_cover_over_all_slices():
    features = slice_descriptors(_images(seed=1))
    keys = np.stack([np.arange(30), np.zeros(30, int)], axis=1)  # every slice its own volume
    ours = spread_cover(features, 7, keys=keys, gap=0)
    assert ours.tolist() == select_representative(features, np.arange(30), 7)


def test_uncached_similarities_give_the_same_picks():
    features = slice_descriptors(_images(seed=2))
    keys = np.stack([np.zeros(30, int), np.arange(30)], axis=1)
    assert np.array_equal(spread_cover(features, 6, keys=keys), spread_cover(features, 6, keys=keys, cache_bytes=0))


def test_fewer_picks_when_the_spacing_leaves_no_candidate_and_excluded_slices_are_skipped():
    images = _images(n=9)
    assert select_cold_start(images, 9, gap=1).size == 5  # z 0, 2, 4, 6, 8 at best
    picks = select_cold_start(images, 3, exclude=[0, 1, 2, 3])
    assert picks.min() >= 4


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(InvalidQuery, match="must be \\(N, H, W\\)"):
        select_cold_start(np.zeros((4, 8)), 2)
    with pytest.raises(InvalidQuery, match="unknown descriptor 'sift'"):
        select_cold_start(_images(), 2, method="sift")
    with pytest.raises(InvalidQuery, match="keys must be 30 integer rows"):
        select_cold_start(_images(), 2, keys=np.zeros((30, 3), int))
    with pytest.raises(InvalidQuery, match="NaN"):
        select_cold_start(np.full((3, 32, 32), np.nan, np.float32), 2)


def _structures(labels: np.ndarray, picks) -> int:
    return len(frozenset().union(*[frozenset(np.unique(labels[i]).tolist()) - {0} for i in picks]))


def test_on_phantoms_the_picks_cover_at_least_as_many_structures_as_evenly_spaced_slices():
    ours, even = [], []
    for seed in (0, 1):
        ph = generate_phantom(seed, shape=(40, 48, 48))
        images = normalise_hu(ph.hu)
        for n in (3, 4, 5, 6):
            ours.append(_structures(ph.labels, select_cold_start(images, n)))
            even.append(_structures(ph.labels, ((np.arange(n) + 0.5) * 40 / n).astype(int)))
    assert all(a >= b for a, b in zip(ours, even, strict=True)) and sum(ours) > sum(even)

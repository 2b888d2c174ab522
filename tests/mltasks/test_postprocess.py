"""keep_largest_components: islands removed, connectivity, dtype, agreement with ndimage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from mltasks.errors import InvalidArray
from mltasks.postprocess import keep_largest_components


def reference(labels: np.ndarray, connectivity: int) -> np.ndarray:
    """Per label: ndimage.label over the whole volume, keep the largest (first on ties)."""
    rank = {6: 1, 18: 2, 26: 3}[connectivity]
    structure = ndimage.generate_binary_structure(3, rank)
    out = np.zeros_like(labels)
    for value in np.unique(labels[labels > 0]):
        comp, n = ndimage.label(labels == value, structure=structure)
        sizes = np.bincount(comp.ravel(), minlength=n + 1)
        sizes[0] = 0
        out[comp == np.argmax(sizes)] = value
    return out


def test_it_keeps_the_largest_run_of_each_label_in_a_row():
    # label 1: runs of 2 and 1 -> keep the 2; label 2: runs of 3 and 1 -> keep the 3.
    row = np.array([1, 1, 0, 1, 0, 2, 2, 2, 0, 2], dtype=np.uint8).reshape(1, 1, 10)
    want = np.array([1, 1, 0, 0, 0, 2, 2, 2, 0, 0], dtype=np.uint8).reshape(1, 1, 10)
    np.testing.assert_array_equal(keep_largest_components(row), want)


def test_an_island_inside_another_structure_becomes_background():
    labels = np.zeros((6, 6, 6), np.int16)
    labels[0:4, 0:4, 0:4] = 2
    labels[1, 1, 1] = 1  # island of 1 inside 2 (1 voxel)
    labels[5, 4:6, 4:6] = 1  # main body of 1 (4 voxels)
    out = keep_largest_components(labels)
    assert out.dtype == np.int16
    assert out[1, 1, 1] == 0
    assert (out[5, 4:6, 4:6] == 1).all()
    assert (out == 2).sum() == 63  # the island's hole stays a hole


@pytest.mark.parametrize(
    ("connectivity", "kept"),
    [
        # diagonal chain of 3 (corner-touching) vs a face-adjacent pair
        (26, {(0, 0, 0), (1, 1, 1), (2, 2, 2)}),
        (18, {(5, 5, 3), (5, 5, 4)}),
        (6, {(5, 5, 3), (5, 5, 4)}),
    ],
)
def test_connectivity_decides_whether_corners_join(connectivity, kept):
    labels = np.zeros((6, 6, 6), np.uint8)
    for v in [(0, 0, 0), (1, 1, 1), (2, 2, 2), (5, 5, 3), (5, 5, 4)]:
        labels[v] = 1
    out = keep_largest_components(labels, connectivity=connectivity)
    assert set(zip(*np.nonzero(out), strict=True)) == kept


def test_18_connectivity_joins_edges_but_not_corners():
    labels = np.zeros((4, 4, 4), np.uint8)
    labels[0, 0, 0] = labels[0, 1, 1] = labels[1, 1, 2] = 1  # edge, then edge: one chain
    labels[2, 2, 1] = labels[3, 3, 0] = 1  # corner to the chain and to each other
    out = keep_largest_components(labels, connectivity=18)
    assert out.sum() == 3 and out[0, 0, 0] == out[1, 1, 2] == 1 and out[2, 2, 1] == 0
    assert keep_largest_components(labels, connectivity=26).sum() == 5


@pytest.mark.parametrize("connectivity", [6, 26])
@pytest.mark.parametrize("seed", range(4))
def test_it_equals_a_per_label_ndimage_loop_ties_included(seed, connectivity):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, size=(9, 10, 11)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.6] = 0  # many small islands and ties
    np.testing.assert_array_equal(
        keep_largest_components(labels, connectivity=connectivity), reference(labels, connectivity)
    )


def test_fortran_ordered_input_gives_the_same_result():
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 4, size=(7, 8, 9)).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.6] = 0
    np.testing.assert_array_equal(
        keep_largest_components(np.asfortranarray(labels)), reference(labels, 26)
    )


def test_2d_slices_and_bool_masks_work_too():
    # A diagonal pair joins under 8- but not 4-connectivity; the pair of 2 beats singles.
    image = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(
        keep_largest_components(image, connectivity=8), image & (np.arange(4) < 2)
    )
    four = keep_largest_components(image, connectivity=4)
    assert four.dtype == bool and four.sum() == 1 and four[0, 0]


def test_it_leaves_the_input_alone_and_handles_empty_volumes():
    labels = np.zeros((3, 3, 3), np.uint8)
    labels[0, 0, 0] = labels[2, 2, 2] = 1
    before = labels.copy()
    keep_largest_components(labels, connectivity=6)
    np.testing.assert_array_equal(labels, before)
    np.testing.assert_array_equal(keep_largest_components(np.zeros((2, 2, 2), np.uint8)), 0)


def test_it_rejects_unknown_connectivity_and_float_labels():
    with pytest.raises(InvalidArray, match="connectivity"):
        keep_largest_components(np.zeros((2, 2, 2), np.uint8), connectivity=8)
    with pytest.raises(InvalidArray, match="integer"):
        keep_largest_components(np.zeros((2, 2, 2), np.float32))

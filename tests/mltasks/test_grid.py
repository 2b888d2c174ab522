"""The working grid: acquired slices, the whole body in-plane, exact round trips."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry
from mltasks.grid import WorkingGrid, slice_step, tissue_box, working_grid

# An oblique patient: rotated 20 degrees about z, so shifts of the origin must follow the directions.
_A = np.deg2rad(20.0)
OBLIQUE = (float(np.cos(_A)), float(-np.sin(_A)), 0.0, float(np.sin(_A)), float(np.cos(_A)), 0.0, 0.0, 0.0, 1.0)


def _ct(nz: int = 14, sz: float = 3.0, *, direction=OBLIQUE) -> tuple[np.ndarray, Geometry]:
    """Air with a body in the middle, arms touching the left and right edges on some slices,
    and a table below the body that stops short of the bottom edge."""
    ny, nx = 40, 56
    hu = np.full((nz, ny, nx), -1000, np.int16)
    yy, xx = np.mgrid[0:ny, 0:nx]
    body = ((yy - 18) / 9.0) ** 2 + ((xx - 28) / 14.0) ** 2 <= 1.0
    hu[:, body] = 40
    hu[2:5, 14:20, 0:4] = 60  # right arm, touching the field of view's edge
    hu[6:9, 15:21, nx - 3:] = 60  # left arm, touching the other edge
    hu[:, 31, 6:50] = 300  # table shell
    hu[nz - 1, 3, 25] = -400  # a lone dense voxel on one slice still counts
    geometry = Geometry(shape=(nz, ny, nx), spacing=(sz, 0.8, 0.8), origin=(-20.0, 13.0, 101.5), direction=direction)
    return hu, geometry


def _physical(geometry: Geometry, index_zyx) -> np.ndarray:
    image = geometry.apply_to(sitk.Image([geometry.shape[2], geometry.shape[1], geometry.shape[0]], sitk.sitkUInt8))
    z, y, x = (int(v) for v in index_zyx)
    return np.array(image.TransformIndexToPhysicalPoint((x, y, z)))


def test_it_keeps_every_voxel_above_minus_500_hu_and_adds_the_margin():
    hu, geometry = _ct()
    grid = working_grid(hu, geometry, margin_mm=4.0)
    tissue = hu > -500
    kept = grid.crop(hu)
    # Every slice is kept at 3 mm, so every dense voxel is in the working volume.
    assert grid.z_step == 1 and grid.n_slices == hu.shape[0]
    assert int((kept > -500).sum()) == int(tissue.sum())
    # Arms touched the x edges: the box reaches them; above and below it has 4 mm = 5 px of air.
    assert grid.cols == (0, hu.shape[2])
    assert grid.rows == (0, 37)  # the lone voxel at row 3 leaves only 3 rows above: clipped at 0
    assert grid.shape == (hu.shape[0], 37, hu.shape[2])


def test_no_dense_voxel_lies_within_the_margin_of_an_edge_that_is_not_the_field_of_views():
    hu, geometry = _ct()
    hu[-1, 3, 25] = -1000  # without the lone voxel the top edge is free
    grid = working_grid(hu, geometry, margin_mm=2.0)
    kept = grid.crop(hu) > -500
    margin = 3  # ceil(2.0 / 0.8)
    assert grid.rows == (9 - margin, 32 + margin)
    assert not kept[:, :margin].any() and not kept[:, -margin:].any()
    assert kept[:, :, 0].any() and kept[:, :, -1].any()  # the arms touch the original edges


def test_working_slices_sit_at_the_acquired_positions():
    hu, geometry = _ct(nz=9, sz=0.5)
    grid = working_grid(hu, geometry)
    working = grid.geometry
    assert working.direction == geometry.direction and working.spacing[1:] == geometry.spacing[1:]
    for k, z in enumerate(grid.z_indices):
        for y, x in ((0, 0), (5, 7), (working.shape[1] - 1, working.shape[2] - 1)):
            original = _physical(geometry, (z, y + grid.rows[0], x + grid.cols[0]))
            np.testing.assert_allclose(_physical(working, (k, y, x)), original, atol=1e-9)


def test_a_half_millimetre_series_is_thinned_to_one_millimetre():
    hu, geometry = _ct(nz=9, sz=0.5)
    grid = working_grid(hu, geometry)
    assert grid.z_step == 2 and grid.geometry.spacing[0] == pytest.approx(1.0)
    assert grid.z_indices.tolist() == [0, 2, 4, 6, 8]
    # an even count: the kept run is centred, dropping one slice at the end
    grid10 = working_grid(np.concatenate([hu, hu[:1]]), Geometry((10, *geometry.shape[1:]), geometry.spacing,
                                                                  geometry.origin, geometry.direction))
    assert grid10.z_indices.tolist() == [0, 2, 4, 6, 8]
    assert working_grid(hu, geometry, min_slice_mm=0).z_step == 1


@pytest.mark.parametrize(("spacing", "step"), [(3.0, 1), (1.0, 1), (0.8, 1), (0.7, 2), (0.625, 2), (0.5, 2),
                                               (0.33, 3), (0.25, 3)])
def test_the_slice_step_keeps_about_one_millimetre(spacing, step):
    assert slice_step(spacing, 1.0) == step
    assert 0.75 - 1e-9 <= spacing * step < 1.5 or step == 1


def test_round_trip_is_exact_on_kept_voxels_and_fills_the_rest():
    hu, geometry = _ct(nz=9, sz=0.5)
    grid = working_grid(hu, geometry, margin_mm=1.0)
    back = grid.to_original(grid.crop(hu), fill=-1024)
    r, c = slice(*grid.rows), slice(*grid.cols)
    assert back.dtype == hu.dtype and back.shape == hu.shape
    np.testing.assert_array_equal(back[grid.z_indices][:, r, c], hu[grid.z_indices][:, r, c])
    outside = np.ones(hu.shape[1:], bool)
    outside[r, c] = False
    assert (back[:, outside] == -1024).all()
    # a thinned slice copies the nearest kept one (slice 1 lies between 0 and 2: the lower wins)
    np.testing.assert_array_equal(back[1], back[0])
    np.testing.assert_array_equal(back[3], back[2])
    filled = grid.to_original(grid.crop(hu), fill=-1024, between="fill")
    assert (filled[1] == -1024).all()


def test_nearest_working_slice_covers_the_ends_of_a_centred_run():
    geometry = Geometry((10, 4, 4), (0.5, 1.0, 1.0))
    grid = WorkingGrid(geometry, z_start=0, z_step=2, n_slices=5, rows=(0, 4), cols=(0, 4))
    assert grid.nearest_working_slice().tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [grid.working_index(z) for z in (0, 1, 8, 9)] == [0, None, 4, None]


def test_a_label_map_lands_on_the_same_voxels():
    hu, geometry = _ct(nz=9, sz=0.5)
    labels = np.zeros(hu.shape, np.uint8)
    labels[2, 18, 28] = 7
    labels[6, 10:13, 20:23] = 3
    labels[3, 18, 28] = 9  # on a thinned slice: not in the working grid
    grid = working_grid(hu, geometry)
    working = grid.crop(labels)
    assert working.dtype == np.uint8
    for value in (7, 3):
        for k, y, x in np.argwhere(working == value):
            z, yo, xo = grid.z_indices[k], y + grid.rows[0], x + grid.cols[0]
            assert labels[z, yo, xo] == value
            np.testing.assert_allclose(_physical(grid.geometry, (k, y, x)), _physical(geometry, (z, yo, xo)))
    assert (working == 3).sum() == 9 and (working == 7).sum() == 1 and not (working == 9).any()
    back = grid.to_original(working)
    assert back[2, 18, 28] == 7 and back[6, 11, 21] == 3
    assert back[3, 18, 28] == 7  # the thinned slice shows its lower neighbour's label


def test_crop_and_to_original_take_leading_channels():
    hu, geometry = _ct(nz=6)
    grid = working_grid(hu, geometry, margin_mm=0.0)
    probs = np.stack([hu, -hu]).astype(np.float32)
    working = grid.crop(probs)
    assert working.shape == (2, *grid.shape)
    np.testing.assert_array_equal(grid.to_original(working)[:, :, slice(*grid.rows), slice(*grid.cols)],
                                  probs[:, :, slice(*grid.rows), slice(*grid.cols)])


def test_it_round_trips_through_a_dict():
    hu, geometry = _ct(nz=9, sz=0.5)
    grid = working_grid(hu, geometry)
    assert WorkingGrid.from_dict(grid.to_dict()) == grid
    assert not grid.is_identity


def test_a_volume_without_tissue_is_refused_with_a_reason():
    geometry = Geometry((3, 8, 8), (3.0, 1.0, 1.0))
    with pytest.raises(InvalidArray, match="no voxel lies above -500 HU.*Hounsfield"):
        working_grid(np.full((3, 8, 8), -1000, np.int16), geometry)


def test_bad_inputs_are_refused_with_a_reason():
    hu, geometry = _ct(nz=4)
    with pytest.raises(InvalidArray, match=r"does not match geometry shape"):
        working_grid(hu[:3], geometry)
    with pytest.raises(InvalidArray, match="must be >= 0"):
        working_grid(hu, geometry, margin_mm=-1.0)
    grid = working_grid(hu, geometry, margin_mm=0.0)
    with pytest.raises(InvalidArray, match=r"does not end in the grid's \(z, y, x\) shape"):
        grid.to_original(hu)
    with pytest.raises(InvalidArray, match=r"does not end in the grid's"):
        grid.crop(hu[:, :5])
    with pytest.raises(InvalidArray, match="between must be"):
        grid.to_original(grid.crop(hu), between="linear")
    with pytest.raises(InvalidArray, match="does not fit the original shape"):
        WorkingGrid(geometry, z_start=0, z_step=1, n_slices=5, rows=(0, 4), cols=(0, 4))
    with pytest.raises(InvalidArray, match="slice spacing must be positive"):
        slice_step(0.0, 1.0)


def test_tissue_box_reads_a_memory_mapped_volume_in_slabs(tmp_path):
    hu, _ = _ct(nz=40)
    path = tmp_path / "hu.npy"
    np.save(path, hu)
    mapped = np.load(path, mmap_mode="r")
    assert tissue_box(mapped) == tissue_box(hu) == ((3, 32), (0, 56))

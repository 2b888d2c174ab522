"""``mltasks.io.labels_outside``: labelled voxels whose centres fall outside another grid."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from mltasks.geometry import Geometry
from mltasks.io import labels_outside
from mltasks.preprocess import network_geometry

C, S = np.cos(0.5), np.sin(0.5)


def by_simpleitk(labels: np.ndarray, geometry: Geometry, target: Geometry) -> dict[int, int]:
    """The same count, voxel by voxel, through SimpleITK's own index/physical-point transforms."""
    source = geometry.apply_to(sitk.Image(list(geometry.shape[::-1]), sitk.sitkUInt8))
    grid = target.apply_to(sitk.Image(list(target.shape[::-1]), sitk.sitkUInt8))
    counts: dict[int, int] = {}
    for k, j, i in zip(*np.nonzero(labels), strict=True):
        point = source.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k)))
        index = np.asarray(grid.TransformPhysicalPointToContinuousIndex(point))
        if np.any(index < -0.5 - 1e-6) or np.any(index > np.asarray(target.shape[::-1]) - 0.5 + 1e-6):
            value = int(labels[k, j, i])
            counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def test_counts_match_simpleitk_on_oblique_grids():
    geometry = Geometry(shape=(7, 20, 24), spacing=(3.0, 8.0, 9.0), origin=(10.0, -30.0, 5.0),
                        direction=(C, -S, 0.0, S, C, 0.0, 0.0, 0.0, 1.0))
    labels = np.random.default_rng(0).integers(0, 5, geometry.shape).astype(np.uint8)
    # A smaller field of view, turned against the labels' grid and shifted in z.
    target = Geometry(shape=(12, 40, 40), spacing=(1.5, 3.0, 3.0), origin=(-40.0, -20.0, 8.0),
                      direction=(C, S, 0.0, -S, C, 0.0, 0.0, 0.0, 1.0))
    expected = by_simpleitk(labels, geometry, target)
    assert expected and sum(expected.values()) < int((labels > 0).sum())  # some lost, some kept
    assert labels_outside(labels, geometry, target) == expected


def test_a_working_grid_narrower_than_the_ct_loses_the_sides_only():
    geometry = Geometry(shape=(3, 10, 30), spacing=(1.0, 10.0, 15.0))  # 450 mm wide, 100 mm deep
    labels = np.zeros(geometry.shape, np.uint16)
    labels[:, :, :2] = 300  # beyond 180 mm left of the centre (217.5 and 202.5 mm)
    labels[:, :, 2:4] = 7  # 187.5 mm: still outside; 172.5 mm: inside
    labels[:, 4:6, 10:20] = 1  # central
    target = network_geometry(geometry, matrix=512, fov_mm=360.0, slice_interval_mm=1.0)
    assert labels_outside(labels, geometry, target) == {7: 30, 300: 60}
    assert labels_outside(labels, geometry, geometry) == {}

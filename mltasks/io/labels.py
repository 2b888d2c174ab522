"""Placing a label map onto a CT's voxel grid by physical position.

The label map may have any grid and any direction cosines: every CT voxel
centre takes the label of the label-map voxel that contains it
(nearest-neighbour), and 0 where the label map does not reach.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from mltasks.errors import EmptyLabelMap, InvalidLabelMap, LabelMapOutsideImage
from mltasks.geometry import Geometry
from mltasks.io.files import read_image_file

_SAME_GRID_TOL = 1e-4  # mm (origin, spacing) and direction-cosine units


def read_label_onto(path: str | Path, geometry: Geometry) -> np.ndarray:
    """Read a label map and resample it onto ``geometry`` (a CT's grid).

    Args:
        path: a NIfTI, MetaImage or NRRD label map (non-negative integer values).
        geometry: the grid of the CT the labels belong to.
    Returns:
        (z, y, x) labels on ``geometry``: uint8 when the values fit, else uint16/int32.
    Raises:
        EmptyLabelMap, LabelMapOutsideImage, InvalidLabelMap; NotAnImage/CorruptImage for unreadable files.
    """
    path = Path(path)
    image = read_image_file(path)
    if image.GetDimension() > 3:
        image = image[:, :, :, 0]
    image = _as_integer_labels(path, image)
    stats = sitk.MinimumMaximumImageFilter()
    stats.Execute(image)
    if stats.GetMaximum() == 0:
        msg = f"{path}: the label map is empty (every voxel is 0); export the segmentation again with its labels"
        raise EmptyLabelMap(msg)
    out_type = _label_dtype(int(stats.GetMaximum()))
    if _same_grid(Geometry.from_sitk(image), geometry):
        return sitk.GetArrayViewFromImage(image).astype(out_type)
    placed = resample_labels(image, geometry)
    if not placed.any():
        msg = (
            f"{path}: no labelled voxel of the label map falls inside the CT "
            f"(labels span {_extent_text(Geometry.from_sitk(image))}, the CT spans {_extent_text(geometry)}); "
            "check that the label map belongs to this CT and was saved with its geometry"
        )
        raise LabelMapOutsideImage(msg)
    return placed.astype(out_type, copy=False)


def resample_labels(image: sitk.Image, geometry: Geometry) -> np.ndarray:
    """Nearest-neighbour resampling of a SimpleITK label image onto ``geometry``; (z, y, x)."""
    reference = sitk.Image(
        [geometry.shape[2], geometry.shape[1], geometry.shape[0]], sitk.sitkUInt8
    )
    geometry.apply_to(reference)
    resampled = sitk.Resample(
        image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, image.GetPixelID()
    )
    return sitk.GetArrayFromImage(resampled)


def labels_outside(labels: np.ndarray, geometry: Geometry, target: Geometry) -> dict[int, int]:
    """Labelled voxels of ``labels`` whose centres lie outside the voxels of ``target``, by label value.

    These are the voxels a resampling onto ``target`` drops for lying beyond its field of
    view (not those a coarser grid merely passes over between its voxel centres). Counted by
    voxel centre: onto a finer grid, nearest-neighbour resampling may still copy a label
    whose centre lies just outside into the edge voxels.

    Args:
        labels: (z, y, x) non-negative integer labels on ``geometry``.
        target: the grid they are resampled onto (any spacing and direction).
    Returns:
        {label value: voxels outside}, only labels that lose voxels, in value order.
    """
    to_index = _physical_to_index(target)
    # Continuous target index (x, y, z) of source voxel (i, j, k): affine in (i, j, k).
    step = to_index[:, :3] @ np.asarray(geometry.direction, np.float64).reshape(3, 3) @ np.diag(geometry.spacing[::-1])
    offset = to_index[:, :3] @ np.asarray(geometry.origin, np.float64) + to_index[:, 3]
    high = np.asarray(target.shape[::-1], np.float64) - 0.5
    counts = np.zeros(0, np.int64)
    for k, plane in enumerate(labels):
        js, is_ = np.nonzero(plane)
        if js.size == 0 or _box_inside(step, offset + step[:, 2] * k, js, is_, high):
            continue
        where = step[:, :2] @ np.stack([is_, js]).astype(np.float64) + (offset + step[:, 2] * k)[:, None]
        out = np.any((where < -0.5 - _EDGE) | (where >= high[:, None] + _EDGE), axis=0)
        counts = _add_counts(counts, np.bincount(plane[js[out], is_[out]].astype(np.int64)))
    return {int(v): int(n) for v, n in enumerate(counts) if v and n}


_EDGE = 1e-6  # index units: a centre on a voxel boundary counts as inside despite rounding


def _physical_to_index(geometry: Geometry) -> np.ndarray:
    """3 x 4 affine from LPS (x, y, z, 1) to continuous voxel index (i, j, k) of ``geometry``."""
    scaled = np.asarray(geometry.direction, np.float64).reshape(3, 3) @ np.diag(geometry.spacing[::-1])
    inverse = np.linalg.inv(scaled)
    return np.hstack([inverse, (-inverse @ np.asarray(geometry.origin, np.float64))[:, None]])


def _box_inside(step: np.ndarray, offset: np.ndarray, js: np.ndarray, is_: np.ndarray, high: np.ndarray) -> bool:
    """True when every corner of the labelled voxels' bounding box maps inside (so all of them do)."""
    corners = np.array([[i, j] for i in (is_.min(), is_.max()) for j in (js.min(), js.max())], np.float64).T
    where = step[:, :2] @ corners + offset[:, None]
    return bool(np.all((where >= -0.5 - _EDGE) & (where < high[:, None] + _EDGE)))


def _add_counts(total: np.ndarray, more: np.ndarray) -> np.ndarray:
    if more.size > total.size:
        total, more = more, total
    total = total.copy()
    total[: more.size] += more
    return total


def _as_integer_labels(path: Path, image: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayViewFromImage(image)
    lowest = array.min()
    if lowest < 0:
        msg = f"{path}: the label map has negative values (min {lowest}); labels must be 0 or positive integers"
        raise InvalidLabelMap(msg)
    if np.issubdtype(array.dtype, np.floating):
        if not np.array_equal(array, np.round(array)):
            msg = f"{path}: the label map has fractional values; is it a CT or a probability map? Give integer labels"
            raise InvalidLabelMap(msg)
        del array
        image = sitk.Cast(image, sitk.sitkInt32)
    return image


def _label_dtype(max_value: int) -> type:
    if max_value <= np.iinfo(np.uint8).max:
        return np.uint8
    if max_value <= np.iinfo(np.uint16).max:
        return np.uint16
    return np.int32


def _same_grid(a: Geometry, b: Geometry) -> bool:
    return (
        tuple(a.shape) == tuple(b.shape)
        and np.allclose(a.spacing, b.spacing, atol=_SAME_GRID_TOL)
        and np.allclose(a.origin, b.origin, atol=_SAME_GRID_TOL)
        and np.allclose(a.direction, b.direction, atol=_SAME_GRID_TOL)
    )


def physical_bounds(geometry: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest LPS (x, y, z) coordinates of the voxel centres."""
    direction = np.asarray(geometry.direction).reshape(3, 3)
    size = np.asarray(geometry.shape[::-1]) - 1
    spacing = np.asarray(geometry.spacing[::-1])
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * size * spacing
    points = np.asarray(geometry.origin) + corners @ direction.T
    return points.min(axis=0), points.max(axis=0)


def _extent_text(geometry: Geometry) -> str:
    low, high = physical_bounds(geometry)
    return "x {:.0f}..{:.0f}, y {:.0f}..{:.0f}, z {:.0f}..{:.0f} mm (LPS)".format(
        *np.stack([low, high], axis=1).ravel()
    )

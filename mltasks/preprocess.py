"""Network-space preprocessing of a CT volume (method.md §1, steps 2 and 3) and its inverse.

The network grid keeps the CT's own direction cosines (resampling happens in
the image's own axes), so only spacing, size and origin change:

- slices every ``slice_interval_mm`` (1 mm) starting at the first CT slice and
  ending at or before the last one;
- in-plane a ``fov_mm`` x ``fov_mm`` (360 mm) field of view on a ``matrix`` x
  ``matrix`` grid (512, or e.g. 256), centred on the centre of the original
  slices; whatever falls outside the CT reads as air (-1024 HU);
- HU clamped to [-150, 350] and mapped linearly to [0, 1] (the paper's [0, 255]
  divided by 255, so no 8-bit rounding happens in float mode).

``to_original_grid`` brings any network-space array back onto the CT grid:
labels with nearest neighbour, probabilities or uncertainty linearly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cc3d
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry

HU_WINDOW = (-150.0, 350.0)
AIR_HU = -1024.0
_CHUNK_SLICES = 32
_INTERPOLATORS = {"nearest": sitk.sitkNearestNeighbor, "linear": sitk.sitkLinear}


@dataclass(frozen=True)
class Preprocessed:
    """A CT in network space.

    Attributes:
        image: (z', matrix, matrix) network input; float32 in [0, 1], or uint8 in [0, 255].
        geometry: the network grid (same direction cosines as the CT).
        original: the CT's own grid, the target of ``to_original_grid``.
    """

    image: np.ndarray
    geometry: Geometry
    original: Geometry

    def to_original(self, array: np.ndarray, *, interpolation: str = "nearest") -> np.ndarray:
        """Shorthand for ``to_original_grid(array, self.geometry, self.original, ...)``."""
        return to_original_grid(array, self.geometry, self.original, interpolation=interpolation)


def network_geometry(
    geometry: Geometry, *, matrix: int = 512, fov_mm: float = 360.0, slice_interval_mm: float = 1.0
) -> Geometry:
    """The network grid for a CT grid: centred in-plane FOV, fixed slice interval, same directions."""
    if matrix < 1 or fov_mm <= 0 or slice_interval_mm <= 0:
        raise InvalidArray(
            f"matrix ({matrix}), fov_mm ({fov_mm}) and slice_interval_mm must be positive"
        )
    nz, ny, nx = geometry.shape
    sz, sy, sx = geometry.spacing
    pixel = fov_mm / matrix
    # Voxel centres: keep the centre of the original slices at the centre of the new matrix.
    shift_x = (nx - 1) / 2 * sx - (matrix - 1) / 2 * pixel
    shift_y = (ny - 1) / 2 * sy - (matrix - 1) / 2 * pixel
    direction = np.asarray(geometry.direction, dtype=np.float64).reshape(3, 3)
    origin = np.asarray(geometry.origin) + direction @ np.array([shift_x, shift_y, 0.0])
    depth = (nz - 1) * sz
    n_slices = int(np.floor(depth / slice_interval_mm + 1e-6)) + 1
    return Geometry(
        shape=(n_slices, matrix, matrix),
        spacing=(float(slice_interval_mm), float(pixel), float(pixel)),
        origin=tuple(float(v) for v in origin),
        direction=tuple(geometry.direction),
    )


def normalise_hu(hu: np.ndarray) -> np.ndarray:
    """Clamp HU to [-150, 350] and map linearly to [0, 1]; float32, same shape."""
    low, high = HU_WINDOW
    out = np.asarray(hu).astype(
        np.float32
    )  # one float32 copy, then in place (no float64 temporaries)
    np.clip(out, low, high, out=out)
    out -= np.float32(low)
    out /= np.float32(high - low)
    return out


def preprocess_volume(
    hu: np.ndarray,
    geometry: Geometry,
    *,
    matrix: int = 512,
    fov_mm: float = 360.0,
    slice_interval_mm: float = 1.0,
    dtype: Literal["float32", "uint8"] = "float32",
) -> Preprocessed:
    """Resample a CT onto the network grid (linear) and normalise it.

    Args:
        hu: (z, y, x) CT in HU on ``geometry``.
        dtype: "float32" gives [0, 1]; "uint8" gives the paper's [0, 255] rounded (4x smaller).
    Returns:
        Preprocessed with image (z', matrix, matrix).
    """
    _check_shape(hu, geometry, "hu")
    if dtype not in ("float32", "uint8"):
        raise InvalidArray(f"dtype must be 'float32' or 'uint8', not {dtype!r}")
    target = network_geometry(
        geometry, matrix=matrix, fov_mm=fov_mm, slice_interval_mm=slice_interval_mm
    )
    if same_grid(geometry, target):
        target = geometry  # identity: keep the exact original values and geometry
        image = normalise_hu(hu)
    else:
        image = _resample_normalised(hu, geometry, target)
    if dtype == "uint8":
        image *= 255.0
        image = np.rint(image, out=image).astype(np.uint8)
    return Preprocessed(image=image, geometry=target, original=geometry)


def _resample_normalised(hu: np.ndarray, geometry: Geometry, target: Geometry) -> np.ndarray:
    # Chunks of output slices keep the peak memory near one output volume plus the input.
    source = geometry.to_sitk(np.ascontiguousarray(hu))
    out = np.empty(target.shape, dtype=np.float32)
    step = np.asarray(target.direction).reshape(3, 3)[:, 2] * target.spacing[0]
    for z0 in range(0, target.shape[0], _CHUNK_SLICES):
        n = min(_CHUNK_SLICES, target.shape[0] - z0)
        origin = tuple(float(v) for v in np.asarray(target.origin) + step * z0)
        chunk = Geometry(
            shape=(n, *target.shape[1:]),
            spacing=target.spacing,
            origin=origin,
            direction=target.direction,
        )
        resampled = sitk.Resample(
            source, _reference(chunk), sitk.Transform(), sitk.sitkLinear, AIR_HU, sitk.sitkFloat32
        )
        out[z0 : z0 + n] = normalise_hu(sitk.GetArrayViewFromImage(resampled))
        del resampled
    return out


def _reference(geometry: Geometry) -> sitk.Image:
    reference = sitk.Image(
        [geometry.shape[2], geometry.shape[1], geometry.shape[0]], sitk.sitkUInt8
    )
    return geometry.apply_to(reference)


def resample_labels_to_network(
    labels: np.ndarray, geometry: Geometry, target_geometry: Geometry
) -> np.ndarray:
    """Nearest-neighbour resampling of (z, y, x) labels on ``geometry`` onto ``target_geometry``; same dtype."""
    return resample(labels, geometry, target_geometry, interpolation="nearest", default=0)


def to_original_grid(
    array: np.ndarray,
    target_geometry: Geometry,
    original_geometry: Geometry,
    *,
    interpolation: Literal["nearest", "linear"] = "nearest",
) -> np.ndarray:
    """Bring a network-space array back onto the CT grid.

    Args:
        array: (z', y', x') on ``target_geometry``, or (C, z', y', x') with channels first
            (e.g. class probabilities); labels use "nearest", probabilities/uncertainty "linear".
    Returns:
        (z, y, x) or (C, z, y, x) on ``original_geometry``; 0 outside the network grid.
        Nearest keeps the dtype; linear returns float32.
    """
    return resample(
        array, target_geometry, original_geometry, interpolation=interpolation, default=0
    )


def resample(
    array: np.ndarray,
    geometry: Geometry,
    target: Geometry,
    *,
    interpolation: Literal["nearest", "linear"],
    default: float = 0.0,
) -> np.ndarray:
    """Resample (z, y, x) or (C, z, y, x) ``array`` from ``geometry`` onto ``target`` by physical position."""
    if interpolation not in _INTERPOLATORS:
        raise InvalidArray(f"interpolation must be 'nearest' or 'linear', not {interpolation!r}")
    if array.ndim == 4:
        return np.stack(
            [
                resample(a, geometry, target, interpolation=interpolation, default=default)
                for a in array
            ]
        )
    _check_shape(array, geometry, "array")
    if same_grid(geometry, target):
        return array.astype(np.float32) if interpolation == "linear" else array.copy()
    result = sitk.GetArrayFromImage(
        _resample_image(array, geometry, target, interpolation, default)
    )
    return result.astype(bool) if array.dtype == bool else result


def _resample_image(
    array: np.ndarray, geometry: Geometry, target: Geometry, interpolation: str, default: float
) -> sitk.Image:
    # Linear output is float32 whatever the input type, without a float copy of the input.
    source = array.astype(np.uint8) if array.dtype == bool else array
    image = geometry.to_sitk(np.ascontiguousarray(source))
    reference = _reference(target)
    out_type = sitk.sitkFloat32 if interpolation == "linear" else image.GetPixelID()
    return sitk.Resample(
        image, reference, sitk.Transform(), _INTERPOLATORS[interpolation], float(default), out_type
    )


def same_grid(a: Geometry, b: Geometry, *, tol: float = 1e-6) -> bool:
    """True when two grids have the same shape and, within ``tol`` (mm), spacing, origin and directions."""
    return (
        tuple(a.shape) == tuple(b.shape)
        and np.allclose(a.spacing, b.spacing, rtol=0, atol=tol)
        and np.allclose(a.origin, b.origin, rtol=0, atol=tol)
        and np.allclose(a.direction, b.direction, rtol=0, atol=tol)
    )


def _check_shape(array: np.ndarray, geometry: Geometry, name: str) -> None:
    if array.ndim != 3 or array.shape != tuple(geometry.shape):
        raise InvalidArray(
            f"{name} shape {array.shape} does not match geometry shape {geometry.shape} (z, y, x)"
        )


# Air is about -1000 HU and fat about -100 HU: -500 separates the body from air with margin.
BODY_THRESHOLD_HU = -500.0


def body_from_hu(hu_slices: np.ndarray, *, threshold: float = BODY_THRESHOLD_HU) -> np.ndarray:
    """Body mask of axial HU slices where no body network is at hand (**choice**).

    Per slice: tissue above ``threshold``, holes filled (gas in the bowel belongs to
    the body), and only the largest 8-connected region kept, so the table and a
    calibration phantom beside the patient drop out.

    Args:
        hu_slices: (N, H, W) HU.
        threshold: HU above which a pixel is tissue.
    Returns:
        (N, H, W) bool; a slice with no tissue is all False.
    """
    hu = np.asarray(hu_slices)
    if hu.ndim != 3:
        raise InvalidArray(f"hu_slices must be (N, H, W), got shape {hu.shape}")
    body = np.zeros(hu.shape, dtype=bool)
    for i, tissue in enumerate(hu > threshold):
        if tissue.any():
            largest = cc3d.largest_k(tissue, k=1, connectivity=8) > 0
            body[i] = ndimage.binary_fill_holes(largest)
    return body

"""The expert's working grid: a pure subset of a CT's own voxels (method.md §1 step 2).

The working grid is what the product stores, shows, scores and queries. It takes
nothing from interpolation:

- **slices**: the acquired slices, at their own positions. A series finer than
  about ``min_slice_mm`` is thinned by keeping every k-th slice, k the smallest
  integer with k x spacing >= 3/4 of ``min_slice_mm``, so the kept spacing lies in
  [0.75, 1.5) x ``min_slice_mm`` (with 1 mm: 0.8 mm -> kept whole; 0.7 mm -> k = 2,
  1.4 mm; 0.625 mm -> 1.25 mm; 0.5 mm -> 1.0 mm; 0.33 mm -> k = 3, 0.99 mm). The
  kept run is centred: it starts at slice ((nz - 1) mod k) // 2.
- **in-plane**: the bounding box of every voxel above ``air_hu`` (-500 HU) over the
  whole volume (body, arms, table, a calibration phantom: tissue is never cropped),
  grown by ``margin_mm`` on every side and clipped to the original field of view.
  The original in-plane spacing is kept.

Going back (``WorkingGrid.to_original``): voxels outside the box take ``fill`` (0 for
labels, air for HU); slices dropped by thinning copy the nearest kept slice (the
lower one on a tie), so an export on the original grid has a label on every slice.

Arrays are (z, y, x); index ranges are half-open ``[start, stop)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry

DEFAULT_MARGIN_MM = 10.0
# Kept slices are at least this share of min_slice_mm apart: 0.8 mm stays whole, 0.5 mm -> 1 mm.
_SLICE_SHARE = 0.75
# Slices tested for tissue at a time: bounds the boolean temporary for memory-mapped volumes.
_SLAB = 32


@dataclass(frozen=True)
class WorkingGrid:
    """A working grid: kept slices and an in-plane box of an original CT grid.

    Attributes:
        original: the CT's own grid.
        z_start: first kept original slice.
        z_step: k, original slices per working slice (1: every slice kept).
        n_slices: number of working slices.
        rows: (start, stop) original y indices of the box.
        cols: (start, stop) original x indices of the box.
    """

    original: Geometry
    z_start: int
    z_step: int
    n_slices: int
    rows: tuple[int, int]
    cols: tuple[int, int]

    def __post_init__(self) -> None:
        nz, ny, nx = self.original.shape
        last = self.z_start + self.z_step * (self.n_slices - 1)
        ok = (
            self.z_step >= 1 and self.n_slices >= 1 and 0 <= self.z_start and last < nz
            and 0 <= self.rows[0] < self.rows[1] <= ny and 0 <= self.cols[0] < self.cols[1] <= nx
        )  # fmt: skip
        if not ok:
            msg = (f"working grid (z {self.z_start} + {self.z_step} x {self.n_slices}, rows {self.rows}, "
                   f"cols {self.cols}) does not fit the original shape {self.original.shape}")  # fmt: skip
            raise InvalidArray(msg)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) working voxels."""
        return (self.n_slices, self.rows[1] - self.rows[0], self.cols[1] - self.cols[0])

    @property
    def z_indices(self) -> np.ndarray:
        """(n_slices,) int64 original slice index of every working slice."""
        return self.z_start + self.z_step * np.arange(self.n_slices, dtype=np.int64)

    @property
    def geometry(self) -> Geometry:
        """The working grid's Geometry: same directions, origin at the first kept voxel."""
        g = self.original
        direction = np.asarray(g.direction, dtype=np.float64).reshape(3, 3)
        # Columns of ``direction`` are the physical directions of the x, y, z array axes.
        shift = np.array([self.cols[0] * g.spacing[2], self.rows[0] * g.spacing[1], self.z_start * g.spacing[0]])
        origin = np.asarray(g.origin, dtype=np.float64) + direction @ shift
        return Geometry(
            shape=self.shape,
            spacing=(g.spacing[0] * self.z_step, g.spacing[1], g.spacing[2]),
            origin=tuple(float(v) for v in origin),
            direction=tuple(g.direction),
        )

    @property
    def is_identity(self) -> bool:
        """True when the working grid is the original grid itself."""
        return self.shape == tuple(self.original.shape)

    def crop(self, volume: np.ndarray) -> np.ndarray:
        """The working part of an original-grid array (no interpolation: a copy of kept voxels).

        Args:
            volume: (..., z, y, x) on ``original`` (HU, labels, probabilities with
                leading channels); a memory-mapped array is read only where kept.
        Returns:
            (..., n_slices, H, W) contiguous copy, same dtype.
        """
        self._check(volume, tuple(self.original.shape), "volume")
        last = self.z_start + self.z_step * (self.n_slices - 1) + 1
        kept = volume[..., self.z_start:last:self.z_step, self.rows[0]:self.rows[1], self.cols[0]:self.cols[1]]
        return np.ascontiguousarray(kept)

    def to_original(
        self,
        array: np.ndarray,
        *,
        fill: float = 0,
        between: Literal["nearest", "fill"] = "nearest",
    ) -> np.ndarray:
        """Put a working-grid array back onto the original grid.

        Args:
            array: (..., n_slices, H, W) on this working grid.
            fill: value of the voxels outside the box (0 for labels, e.g. -1024 for HU).
            between: slices dropped by thinning copy the nearest kept slice ("nearest",
                the lower one on a tie; also the slices beyond the first and last kept
                ones), or take ``fill`` ("fill").
        Returns:
            (..., z, y, x) on ``original``, same dtype; kept voxels hold exactly ``array``.
        """
        if between not in ("nearest", "fill"):
            raise InvalidArray(f"between must be 'nearest' or 'fill', not {between!r}")
        self._check(array, self.shape, "array")
        nz, ny, nx = self.original.shape
        out = np.full((*array.shape[:-3], nz, ny, nx), fill, dtype=array.dtype)
        box = (slice(self.rows[0], self.rows[1]), slice(self.cols[0], self.cols[1]))
        if between == "fill":
            out[(..., self.z_indices, *box)] = array
            return out
        out[(..., slice(None), *box)] = array[..., self.nearest_working_slice(), :, :]
        return out

    def nearest_working_slice(self) -> np.ndarray:
        """(z,) int64: for every original slice, the nearest working slice (the lower on a tie)."""
        z = np.arange(self.original.shape[0], dtype=np.float64)
        k = np.ceil((z - self.z_start) / self.z_step - 0.5)
        return np.clip(k, 0, self.n_slices - 1).astype(np.int64)

    def working_index(self, z: int) -> int | None:
        """The working slice that is original slice ``z``, or None when ``z`` was thinned out."""
        k, r = divmod(int(z) - self.z_start, self.z_step)
        return k if r == 0 and 0 <= k < self.n_slices else None

    def to_dict(self) -> dict:
        return {
            "original": self.original.to_dict(), "z_start": self.z_start, "z_step": self.z_step,
            "n_slices": self.n_slices, "rows": list(self.rows), "cols": list(self.cols),
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> WorkingGrid:
        return cls(
            original=Geometry.from_dict(data["original"]), z_start=int(data["z_start"]),
            z_step=int(data["z_step"]), n_slices=int(data["n_slices"]),
            rows=(int(data["rows"][0]), int(data["rows"][1])), cols=(int(data["cols"][0]), int(data["cols"][1])),
        )  # fmt: skip

    @staticmethod
    def _check(array: np.ndarray, shape: tuple[int, ...], name: str) -> None:
        if array.ndim < 3 or tuple(array.shape[-3:]) != tuple(shape):
            msg = f"{name} shape {array.shape} does not end in the grid's (z, y, x) shape {shape}"
            raise InvalidArray(msg)


def working_grid(
    hu: np.ndarray,
    geometry: Geometry,
    *,
    min_slice_mm: float = 1.0,
    margin_mm: float = DEFAULT_MARGIN_MM,
    air_hu: float = -500.0,
) -> WorkingGrid:
    """The working grid of a CT: its acquired slices (thinned below ``min_slice_mm``) and the
    in-plane box of everything denser than air, plus a margin.

    Args:
        hu: (z, y, x) CT in HU on ``geometry`` (int16 or float; may be memory-mapped).
        geometry: the CT's own grid.
        min_slice_mm: thin slices closer than this (see the module doc); 0 keeps every slice.
        margin_mm: air kept around the tissue box on every side (clipped to the field of view).
        air_hu: voxels above this are tissue (or table) and are never cropped.
    Returns:
        A ``WorkingGrid`` of ``geometry``.
    Raises:
        InvalidArray: shape mismatch, negative options, or no voxel above ``air_hu``.
    """
    if hu.ndim != 3 or tuple(hu.shape) != tuple(geometry.shape):
        raise InvalidArray(f"hu shape {hu.shape} does not match geometry shape {geometry.shape} (z, y, x)")
    if min_slice_mm < 0 or margin_mm < 0:
        raise InvalidArray(f"min_slice_mm ({min_slice_mm}) and margin_mm ({margin_mm}) must be >= 0")
    rows, cols = tissue_box(hu, air_hu=air_hu)
    sz, sy, sx = geometry.spacing
    ny, nx = geometry.shape[1:]
    my, mx = math.ceil(margin_mm / sy - 1e-9), math.ceil(margin_mm / sx - 1e-9)
    rows = (max(rows[0] - my, 0), min(rows[1] + my, ny))
    cols = (max(cols[0] - mx, 0), min(cols[1] + mx, nx))
    step = slice_step(sz, min_slice_mm)
    nz = geometry.shape[0]
    start = ((nz - 1) % step) // 2
    n = (nz - 1 - start) // step + 1
    return WorkingGrid(original=geometry, z_start=start, z_step=step, n_slices=n, rows=rows, cols=cols)


def slice_step(spacing_mm: float, min_slice_mm: float) -> int:
    """k: the smallest number of original slices per working slice whose spacing reaches
    3/4 of ``min_slice_mm`` (1 when the series is already coarse enough)."""
    if spacing_mm <= 0:
        raise InvalidArray(f"slice spacing must be positive, got {spacing_mm} mm")
    return max(1, math.ceil(_SLICE_SHARE * min_slice_mm / spacing_mm - 1e-9))


def tissue_box(hu: np.ndarray, *, air_hu: float = -500.0) -> tuple[tuple[int, int], tuple[int, int]]:
    """((row start, stop), (col start, stop)) bounding every voxel above ``air_hu`` in any slice.

    Args:
        hu: (z, y, x) HU.
    Raises:
        InvalidArray: no voxel lies above ``air_hu``.
    """
    seen = np.zeros(hu.shape[1:], dtype=bool)
    for z0 in range(0, hu.shape[0], _SLAB):
        seen |= (np.asarray(hu[z0:z0 + _SLAB]) > air_hu).any(axis=0)
    if not seen.any():
        msg = (f"no voxel lies above {air_hu:g} HU: the volume holds no tissue; check that it is a CT "
               "in Hounsfield units (rescale slope and intercept applied)")
        raise InvalidArray(msg)
    r = np.flatnonzero(seen.any(axis=1))
    c = np.flatnonzero(seen.any(axis=0))
    return (int(r[0]), int(r[-1]) + 1), (int(c[0]), int(c[-1]) + 1)

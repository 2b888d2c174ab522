"""Physical geometry of a volume, and the axis conventions used everywhere.

Arrays are (z, y, x). ``spacing`` is in mm in that same (z, y, x) order.
``origin`` and ``direction`` are in SimpleITK's physical LPS space and order:
``origin`` is the (x, y, z) position in mm of voxel (0, 0, 0), ``direction`` the
3 x 3 direction-cosine matrix flattened row-major exactly as SimpleITK gives it
(its columns are the physical directions of the i, j, k = x, y, z array axes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Geometry:
    shape: tuple[int, int, int]  # (z, y, x) voxels
    spacing: tuple[float, float, float]  # (z, y, x) mm
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (x, y, z) mm, LPS
    direction: tuple[float, ...] = IDENTITY  # 9 values, SimpleITK order

    @classmethod
    def from_sitk(cls, image: sitk.Image) -> Geometry:
        size = image.GetSize()  # (x, y, z)
        sp = image.GetSpacing()
        return cls(
            shape=(int(size[2]), int(size[1]), int(size[0])),
            spacing=(float(sp[2]), float(sp[1]), float(sp[0])),
            origin=tuple(float(v) for v in image.GetOrigin()),
            direction=tuple(float(v) for v in image.GetDirection()),
        )

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        """Set this geometry on ``image`` (whose size must match) and return it."""
        if image.GetSize() != (self.shape[2], self.shape[1], self.shape[0]):
            msg = f"image size {image.GetSize()} (x, y, z) does not match geometry shape {self.shape} (z, y, x)"
            raise ValueError(msg)
        image.SetSpacing((self.spacing[2], self.spacing[1], self.spacing[0]))
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def to_sitk(self, array: np.ndarray) -> sitk.Image:
        """Wrap a (z, y, x) array as a SimpleITK image with this geometry."""
        return self.apply_to(sitk.GetImageFromArray(array))

    @property
    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def to_dict(self) -> dict:
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": list(self.direction),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Geometry:
        return cls(
            shape=tuple(int(v) for v in data["shape"]),
            spacing=tuple(float(v) for v in data["spacing"]),
            origin=tuple(float(v) for v in data["origin"]),
            direction=tuple(float(v) for v in data["direction"]),
        )

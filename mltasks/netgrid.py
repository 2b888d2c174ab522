"""The network's grid, separate from the expert's working grid (method.md §1 step 2).

The expert sees, answers and exports on the working grid (``mltasks.grid``: the
scan's own in-plane pixels). The network runs on a resampled copy of each working
slice whose pixel size belongs to the profile (coarser on a CPU; the scan's own for
``paper`` on a GPU):

- **forward** (``NetworkGrid.to_network``): HU -> ``normalise_hu`` -> area averaging
  (bilinear when the network pixel is finer), then padded with air (0.0, body False)
  up to a multiple of 2 ** (depth - 1) in each direction, so any U-Net depth fits.
  The content sits centred in the padded slice; the content covers exactly the
  working slice's field of view, so its pixels are ``H * sy / h0`` mm, within half a
  pixel of the profile's size.
- **back** (``NetworkGrid.to_working``): the mean class probabilities (not labels) are
  cropped to the content and upsampled bilinearly to the working slice; labels are
  their argmax there, and the pixel uncertainty u is upsampled bilinearly. So labels
  follow the probabilities' 0.5 crossings at full resolution and Eq. 7's threshold
  acts on full-resolution u. Slices go back one at a time: C x H x W floats at most.

Both directions treat a grid's pixels as covering its field of view edge to edge
(``align_corners=False``), so a constant image comes back unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry
from mltasks.preprocess import body_from_hu, normalise_hu

# Network pixel size (mm) per profile; None: the working grid's own pixels (**choice**).
PROFILE_PIXEL_MM: dict[str, float | None] = {"paper": None, "fast": 2.0, "tiny": 4.0}
# Slices resampled at a time: bounds the float temporaries of a whole-volume call.
_CHUNK = 16


@dataclass(frozen=True)
class NetworkGrid:
    """In-plane mapping between a working grid's slices and the network's.

    Attributes:
        working_shape: (H, W) working slice.
        working_spacing: (sy, sx) mm of the working slice.
        content_shape: (h0, w0) network pixels covering the working field of view.
        shape: (h, w) padded network slice, multiples of 2 ** (depth - 1).
        offset: (top, left) of the content inside the padded slice.
    """

    working_shape: tuple[int, int]
    working_spacing: tuple[float, float]
    content_shape: tuple[int, int]
    shape: tuple[int, int]
    offset: tuple[int, int]

    @property
    def pixel_mm(self) -> tuple[float, float]:
        """(y, x) mm of a network pixel."""
        (hh, ww), (h0, w0) = self.working_shape, self.content_shape
        return (hh * self.working_spacing[0] / h0, ww * self.working_spacing[1] / w0)

    @property
    def _content(self) -> tuple[slice, slice]:
        (top, left), (h0, w0) = self.offset, self.content_shape
        return slice(top, top + h0), slice(left, left + w0)

    def to_network(self, hu_slices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs of working-grid HU slices.

        Args:
            hu_slices: (n, H, W) HU on the working grid.
        Returns:
            (images (n, h, w) float32 in [0, 1] as ``normalise_hu``, body (n, h, w) bool).
            The body comes from the HU on the working grid (``body_from_hu``) and is
            area-averaged down with the images (a network pixel is body when at least
            half of it is).
        """
        hu = self._check_slices(hu_slices, "hu_slices")
        images = np.zeros((hu.shape[0], *self.shape), np.float32)
        body = np.zeros((hu.shape[0], *self.shape), bool)
        for s in range(0, hu.shape[0], _CHUNK):
            part = np.asarray(hu[s:s + _CHUNK])
            images[(slice(s, s + part.shape[0]), *self._content)] = self._down(normalise_hu(part))
            mask = self._down(body_from_hu(part).astype(np.float32))
            body[(slice(s, s + part.shape[0]), *self._content)] = mask >= 0.5
        return images, body

    def images_to_network(self, hu_slices: np.ndarray) -> np.ndarray:
        """(n, h, w) float32 network images of (n, H, W) HU slices, without the body mask."""
        hu = self._check_slices(hu_slices, "hu_slices")
        images = np.zeros((hu.shape[0], *self.shape), np.float32)
        for s in range(0, hu.shape[0], _CHUNK):
            part = np.asarray(hu[s:s + _CHUNK])
            images[(slice(s, s + part.shape[0]), *self._content)] = self._down(normalise_hu(part))
        return images

    def labels_to_network(self, labels: np.ndarray, *, pad_value: int = 0) -> np.ndarray:
        """(n, h, w) uint8 of (n, H, W) working-grid labels: nearest neighbour; the padding
        (air) takes ``pad_value`` (0, background)."""
        lab = self._check_slices(labels, "labels")
        out = np.full((lab.shape[0], *self.shape), pad_value, np.uint8)
        if tuple(self.content_shape) == tuple(self.working_shape):
            out[(slice(None), *self._content)] = lab
            return out
        x = torch.from_numpy(np.ascontiguousarray(lab, dtype=np.uint8))[:, None]
        out[(slice(None), *self._content)] = F.interpolate(x, size=self.content_shape, mode="nearest-exact")[:, 0].numpy()
        return out

    def to_working(self, mean_probs: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bring network outputs back to the working grid.

        Args:
            mean_probs: (n, C, h, w) mean softmax on the padded network grid.
            u: (n, h, w) pixel uncertainty on the padded network grid.
        Returns:
            (labels (n, H, W) uint8: argmax of the bilinearly upsampled probabilities,
            u (n, H, W) float32: bilinear).
        """
        probs = np.asarray(mean_probs)
        if probs.ndim != 4 or tuple(probs.shape[2:]) != tuple(self.shape):
            msg = f"mean_probs shape {probs.shape} is not (n, C, {self.shape[0]}, {self.shape[1]}) of this network grid"
            raise InvalidArray(msg)
        if np.shape(u) != (probs.shape[0], *self.shape):
            msg = f"u shape {np.shape(u)} is not (n, h, w) = ({probs.shape[0]}, {self.shape[0]}, {self.shape[1]})"
            raise InvalidArray(msg)
        n = probs.shape[0]
        labels = np.empty((n, *self.working_shape), np.uint8)
        u_work = self._up(np.asarray(u, dtype=np.float32)[(slice(None), *self._content)])
        for i in range(n):  # one slice at a time: C x H x W floats at most
            p = np.asarray(probs[i][(slice(None), *self._content)], dtype=np.float32)
            labels[i] = self._up(p).argmax(0)
        return labels, u_work

    def _down(self, values: np.ndarray) -> np.ndarray:
        """(n, H, W) float32 -> (n, h0, w0): area average (bilinear where the network is finer)."""
        if tuple(values.shape[-2:]) == tuple(self.content_shape):
            return values
        x = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[:, None]
        coarser = self.content_shape[0] <= values.shape[-2] or self.content_shape[1] <= values.shape[-1]
        if coarser:  # adaptive average pooling: every working pixel counts once
            return F.interpolate(x, size=self.content_shape, mode="area")[:, 0].numpy()
        return F.interpolate(x, size=self.content_shape, mode="bilinear", align_corners=False)[:, 0].numpy()

    def _up(self, values: np.ndarray) -> np.ndarray:
        """(n, h0, w0) float32 -> (n, H, W) float32, bilinear (identity when the grids agree)."""
        if tuple(values.shape[-2:]) == tuple(self.working_shape):
            return np.ascontiguousarray(values, dtype=np.float32)
        x = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[:, None]
        return F.interpolate(x, size=self.working_shape, mode="bilinear", align_corners=False)[:, 0].numpy()

    def _check_slices(self, array: np.ndarray, name: str) -> np.ndarray:
        if array.ndim != 3 or tuple(array.shape[1:]) != tuple(self.working_shape):
            msg = f"{name} shape {array.shape} is not (n, H, W) = (n, {self.working_shape[0]}, {self.working_shape[1]}) of the working grid"
            raise InvalidArray(msg)
        return array


def network_grid(
    working_shape: tuple[int, int],
    working_spacing: tuple[float, float],
    *,
    pixel_mm: float | None,
    depth: int,
) -> NetworkGrid:
    """The network grid of a working slice shape and spacing.

    Args:
        working_shape: (H, W) working slice.
        working_spacing: (sy, sx) mm.
        pixel_mm: network pixel size (the profile's, e.g. 2.0 for ``fast``); None, or a
            size finer than the working pixels, keeps the working pixels (``paper``).
        depth: U-Net levels; the padded shape is a multiple of 2 ** (depth - 1).
    """
    hh, ww = (int(v) for v in working_shape)
    sy, sx = (float(v) for v in working_spacing)
    if hh < 1 or ww < 1 or sy <= 0 or sx <= 0:
        raise InvalidArray(f"working shape {working_shape} and spacing {working_spacing} must be positive")
    if pixel_mm is not None and not pixel_mm > 0:
        raise InvalidArray(f"pixel_mm must be a positive size in mm or None (the scan's own), not {pixel_mm}")
    if depth < 1:
        raise InvalidArray(f"depth must be >= 1, not {depth}")
    if pixel_mm is None:
        h0, w0 = hh, ww
    else:
        # Never finer than the scan: upsampling adds pixels to run, not information.
        h0, w0 = min(hh, max(1, round(hh * sy / pixel_mm))), min(ww, max(1, round(ww * sx / pixel_mm)))
    f = 2 ** (depth - 1)
    h, w = math.ceil(h0 / f) * f, math.ceil(w0 / f) * f
    return NetworkGrid((hh, ww), (sy, sx), (h0, w0), (h, w), ((h - h0) // 2, (w - w0) // 2))


def network_grid_of(working: Geometry, *, pixel_mm: float | None, depth: int) -> NetworkGrid:
    """``network_grid`` of a working grid's Geometry (its in-plane shape and spacing)."""
    return network_grid(tuple(working.shape[1:]), tuple(working.spacing[1:]), pixel_mm=pixel_mm, depth=depth)



def stack_padded(arrays: list[np.ndarray], *, fill: float) -> np.ndarray:
    """Stack (n_i, h_i, w_i) network slices of several scans into (sum n_i, max h, max w).

    Each scan's slices are padded at the bottom and right with ``fill`` (0.0 for images,
    0 = background for labels: the padding is air, as ``to_network``'s own padding).
    Every network grid is a multiple of 2 ** (depth - 1), so the stack is too.
    """
    if not arrays:
        raise InvalidArray("nothing to stack: no slices")
    h = max(a.shape[1] for a in arrays)
    w = max(a.shape[2] for a in arrays)
    out = np.full((sum(a.shape[0] for a in arrays), h, w), fill, dtype=arrays[0].dtype)
    start = 0
    for a in arrays:
        out[start:start + a.shape[0], :a.shape[1], :a.shape[2]] = a
        start += a.shape[0]
    return out

"""In-plane resizing between a scan's working grid and the network matrix.

Both grids cover the same field of view, so moving between them is a pure in-plane
resize of (N, H, W) slices: images area-averaged down (bilinear up), labels and
masks nearest-neighbour, uncertainty bilinear. The worker and the simulation use the
same functions so that a step sees the same pixels in both.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from mltasks.preprocess import body_from_hu, normalise_hu


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) float intensities -> (N, size, size) float32 (area down, bilinear up)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return np.ascontiguousarray(images, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    mode = "area" if images.shape[-1] > size else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return F.interpolate(x, size=(size, size), mode=mode, **kwargs)[:, 0].numpy()


def resize_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) uint8 labels (or a bool mask as 0/1) -> (N, *shape) uint8, nearest neighbour."""
    if tuple(labels.shape[-2:]) == tuple(shape):
        return np.ascontiguousarray(labels, dtype=np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.uint8))[:, None]
    return F.interpolate(x, size=tuple(shape), mode="nearest-exact")[:, 0].numpy()


def resize_float(values: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, H, W) float values (uncertainty) -> (N, *shape) float32, bilinear."""
    if tuple(values.shape[-2:]) == tuple(shape):
        return np.ascontiguousarray(values, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))[:, None]
    return F.interpolate(x, size=tuple(shape), mode="bilinear", align_corners=False)[:, 0].numpy()


def network_inputs(hu_slices: np.ndarray, matrix: int) -> tuple[np.ndarray, np.ndarray]:
    """Working-grid HU slices (N, H, W) -> (network images (N, m, m) float32 in [0, 1],
    body masks (N, m, m) bool) with m = ``matrix``.

    The body comes from the HU (``body_from_hu``) on the working grid, then goes down
    to the network grid with the images, so a slice's score averages the same region
    whichever grid the HU came from.
    """
    hu = np.asarray(hu_slices)
    images = resize_images(normalise_hu(hu), matrix)
    body = resize_labels(body_from_hu(hu).astype(np.uint8), (matrix, matrix)) > 0
    return images, body

"""The network inputs of a step's scans: image-only work, done once per scan and network grid.

Scoring a scan needs its slices on the network grid (normalised, area-averaged) and
their body masks. They depend on the stored volume and the network grid alone, not on
the model, so the ranking's cheap and full passes share them, and later steps read
them back from the worker's cache directory instead of resampling again.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from backend.acquisition import ml_adapter


class ScanInputs:
    """Network inputs of the pool's scans, made once per scan and kept on disk between steps:
    they depend on the image and the network grid only, not on the model."""

    def __init__(self, scans: dict, *, pixel_mm: float | None, depth: int, cache: Path) -> None:
        self.scans, self.pixel_mm, self.depth, self.cache = scans, pixel_mm, depth, cache
        self._held: dict[int, tuple] = {}
        self._grids: dict[int, object] = {}

    def grid(self, scan_id: int):
        """A scan's network grid (geometry only: nothing is read)."""
        if scan_id not in self._grids:
            geometry = self.scans[scan_id].geometry
            self._grids[scan_id] = ml_adapter.network_grid(geometry, pixel_mm=self.pixel_mm, depth=self.depth)
        return self._grids[scan_id]

    def __call__(self, scan_id: int):
        """(network grid, images (z, h, w), body (z, h, w)) of a scan."""
        if scan_id not in self._held:
            grid = self.grid(scan_id)
            self._held = {scan_id: (grid, *self._load(self.scans[scan_id], grid))}  # one scan in memory at a time
        return self._held[scan_id]

    def _load(self, scan, grid):
        key = f"{Path(scan.volume.name).stem}-{grid.shape[0]}x{grid.shape[1]}-{grid.content_shape[0]}x{grid.content_shape[1]}"
        path = self.cache / f"network-inputs-{scan.pk}-{key}.npz"
        if path.is_file():
            with np.load(path) as data:
                return data["images"], data["body"]
        images, body = ml_adapter.network_inputs(ml_adapter.scan_hu(scan), grid)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npz")  # two workers never share one
        np.savez(partial, images=images, body=body)
        partial.replace(path)  # atomic: a reader never sees half a file
        return images, body

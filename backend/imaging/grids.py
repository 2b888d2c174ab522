"""A scan's working grid and the way back to its original CT grid.

Scans imported with ``mltasks.grid`` store which original voxels they keep
(``Scan.working_grid``): going back is exact, kept voxels hold the working values
and slices dropped by thinning copy the nearest kept one. Scans imported before
(``working_grid`` null) were resampled onto 512 x 512 / 1 mm and go back by
resampling, as they always did.
"""

from __future__ import annotations

import numpy as np

from mltasks.geometry import Geometry
from mltasks.grid import WorkingGrid
from mltasks.preprocess import to_original_grid


def working_grid_of(scan) -> WorkingGrid | None:
    """The scan's ``WorkingGrid``; None for a scan imported before working grids were stored."""
    return WorkingGrid.from_dict(scan.working_grid) if scan.working_grid else None


def to_original(scan, array: np.ndarray, *, labels: bool) -> np.ndarray:
    """A (z, y, x) array on the scan's working grid, put onto its original CT grid.

    Args:
        array: labels (uint8) or a float map (uncertainty) on ``scan.geometry``.
        labels: True for labels: a legacy scan resamples them nearest, floats linear.
    Returns:
        (z, y, x) on ``scan.original_geometry``; 0 outside the working grid's box.
    """
    grid = working_grid_of(scan)
    if grid is not None:
        return grid.to_original(array, fill=0)
    return to_original_grid(array, Geometry.from_dict(scan.geometry), Geometry.from_dict(scan.original_geometry),
                            interpolation="nearest" if labels else "linear")

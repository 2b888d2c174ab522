"""Post-processing of label volumes (method.md §1 step 6).

The network labels each axial slice on its own, so a structure often comes out
as one large body plus scattered islands (in other slices, or inside a
neighbour). ``keep_largest_components`` keeps the largest 3D connected
component of every label value and sets every other island to background.
"""

from __future__ import annotations

import cc3d
import numpy as np

from mltasks.errors import InvalidArray

CONNECTIVITIES = (6, 18, 26)
_SLAB_VOXELS = 1 << 22  # about 4 M voxels per slab


def keep_largest_components(labels: np.ndarray, *, connectivity: int = 26) -> np.ndarray:
    """Keep the largest 3D connected component of every label value.

    Connectivity: two voxels of the *same* label value are connected when they
    share a face (``connectivity=6``), a face or an edge (18) or a face, an edge
    or a corner (26, the default, the widest, so that thin oblique muscles are
    not cut into pieces). Voxels of different values are never connected.
    Background (0) is left as it is and never grows except where islands are
    removed. Ties between equally large components of one value keep the one
    whose first voxel comes first in (z, y, x) raster order (as
    ``scipy.ndimage.label`` followed by ``argmax`` of the sizes would).

    All labels are handled in one multi-label ``cc3d`` pass, then the
    component ids are run-length encoded slab by slab; sizes come from one
    ``np.bincount`` over the runs (weighted by run length) and the output from
    one lookup per run. Never one full-volume pass per label
    (bench/largest_components.py).

    Args:
        labels: (Z, Y, X) integer label volume (any integer or bool dtype); 0 is
            background. 2D (Y, X) arrays work too (with ``connectivity`` 4 or 8).
        connectivity: 6, 18 or 26 in 3D; 4 or 8 in 2D.
    Returns:
        (Z, Y, X) array of the same dtype and shape as ``labels``; a new array.
    """
    labels = np.asarray(labels)
    allowed = CONNECTIVITIES if labels.ndim == 3 else (4, 8)
    if labels.ndim not in (2, 3) or connectivity not in allowed:
        msg = (
            f"keep_largest_components needs a 2D or 3D integer array and connectivity in {allowed}; "
            f"got ndim={labels.ndim}, connectivity={connectivity}"
        )
        raise InvalidArray(msg)
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        msg = f"labels must be an integer array, got dtype {labels.dtype}; round or cast it first"
        raise InvalidArray(msg)
    if labels.size == 0:
        return labels.copy()

    # cc3d numbers components in the memory order of its input: C order gives raster order.
    labels = np.ascontiguousarray(labels)
    components, n = cc3d.connected_components(labels, connectivity=connectivity, return_N=True)
    # Slabs of at least n voxels keep the per-slab bincount of length n + 1 cheap.
    slab_voxels = max(_SLAB_VOXELS, n + 1)
    slabs = [_runs(ids) for ids in _slabs(components, slab_voxels)]
    sizes, value_of = _component_sizes_and_values(slabs, _slabs(labels, slab_voxels), n)
    keep = _largest_per_value(sizes, value_of)
    # Kept components map to their value, every other id (and background, id 0) to 0.
    lut = np.where(keep, value_of, np.zeros((), dtype=labels.dtype))
    out = np.empty_like(labels)
    for (_, run_ids, lengths), out_slab in zip(slabs, _slabs(out, slab_voxels), strict=True):
        out_slab.reshape(-1)[:] = np.repeat(lut[run_ids], lengths)
    return out


def _slabs(array: np.ndarray, voxels: int = _SLAB_VOXELS) -> list[np.ndarray]:
    """Views of ``array`` cut along axis 0 into slabs of about ``voxels`` elements.

    Slab-sized temporaries stay in cache instead of whole-volume index arrays.
    """
    per_row = max(1, array[0].size) if array.shape[0] else 1
    step = max(1, voxels // per_row)
    return [array[i : i + step] for i in range(0, array.shape[0], step)]


def _runs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run-length encoding of a slab of component ids in raster order.

    Segmentations are blobby, so a 512 x 512 slice holds a few thousand runs:
    working on runs instead of voxels makes the counting and the output about
    ten times cheaper than per-voxel ``np.bincount`` and lookups.

    Returns:
        (starts, run_ids, lengths): flat start index, component id and length of every run.
    """
    flat = ids.reshape(-1)
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate((np.zeros(1, dtype=starts.dtype), starts))
    return starts, flat[starts], np.diff(starts, append=flat.size)


def _component_sizes_and_values(
    slabs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], label_slabs: list[np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n + 1,) voxel count and (n + 1,) label value of every component id (id 0 = background)."""
    sizes = np.zeros(n + 1, dtype=np.int64)
    value_of = np.zeros(n + 1, dtype=label_slabs[0].dtype)
    for (starts, run_ids, lengths), lab_slab in zip(slabs, label_slabs, strict=True):
        sizes += np.bincount(run_ids, weights=lengths, minlength=n + 1).astype(np.int64)
        # All voxels of a component carry the same value, so any run's first voxel tells it.
        value_of[run_ids] = lab_slab.reshape(-1)[starts]
    return sizes, value_of


def _largest_per_value(sizes: np.ndarray, value_of: np.ndarray) -> np.ndarray:
    """(n + 1,) bool: True for the largest component of each value (lowest id wins a tie).

    Unbuffered ufunc reductions keyed by value instead of a sort: a fragmented
    volume can hold millions of components, where a lexsort takes seconds.
    """
    ids = np.arange(1, sizes.size)
    values = value_of[1:].astype(np.int64)
    values -= values.min() if values.size else 0
    best = np.zeros(int(values.max()) + 1 if values.size else 0, dtype=np.int64)
    np.maximum.at(best, values, sizes[1:])
    candidates = np.flatnonzero(sizes[1:] == best[values])
    winner = np.full(best.size, sizes.size, dtype=np.int64)
    np.minimum.at(winner, values[candidates], ids[candidates])
    keep = np.zeros(sizes.size, dtype=bool)
    keep[winner[winner < sizes.size]] = True
    return keep

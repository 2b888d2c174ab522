"""Surface meshes of a finished segmentation, for musculoskeletal models and the scan viewer's 3D view.

The meshes are made on the scan's working grid: its voxels are a subset of the original
CT's at the same physical positions (``backend.imaging.grids``), so its geometry puts the
vertices in patient coordinates (LPS, mm) directly; the original grid would add only the
copies of kept slices that thinning left out. The downloads are full resolution; the
viewer's meshes come from the label map taken every ``stride`` voxels along an axis
longer than ``VIEW_MAX_VOXELS``, so that a large CT still draws at once in a browser.
"""

from __future__ import annotations

import base64
import math

import numpy as np

from backend.acquisition import ml_adapter
from backend.acquisition.models import Segmentation
from backend.acquisition.outputs.export import load_npy

VIEW_MAX_VOXELS = 160  # along each axis of the viewer's label map


def segmentation_meshes_zip(seg: Segmentation, *, space: str = "LPS") -> bytes:
    """One STL and one OBJ per structure present, ``manifest.json`` and ``manifest.csv`` (names,
    colours, voxel and mesh volumes), vertices in ``space`` (LPS or RAS) mm."""
    meshes = ml_adapter.structure_meshes(load_npy(seg.labels), seg.scan.geometry, seg.project.label_set, space=space)
    about = {"scan": seg.scan.name, "scan_id": seg.scan_id, "segmentation_id": seg.id,
             "model_version": seg.model_version.number, "patient_id": seg.scan.patient_id}
    return ml_adapter.meshes_zip(meshes, about=about)


def segmentation_view_meshes(seg: Segmentation) -> dict:
    """The viewer's meshes: per structure float32 (x, y, z) LPS positions and uint32 triangle indices,
    little-endian, base64; plus the stride that made them and the full-resolution voxel volumes."""
    labels = load_npy(seg.labels)
    geometry = dict(seg.scan.geometry)
    counts = np.bincount(labels.ravel(), minlength=256)
    voxel_ml = float(np.prod(geometry["spacing"])) / 1000.0
    strides = [max(1, math.ceil(n / VIEW_MAX_VOXELS)) for n in labels.shape]
    if max(strides) > 1:
        labels = np.ascontiguousarray(labels[::strides[0], ::strides[1], ::strides[2]])
        geometry |= {"shape": list(labels.shape),
                     "spacing": [s * k for s, k in zip(geometry["spacing"], strides, strict=True)]}
    meshes = ml_adapter.structure_meshes(labels, geometry, seg.project.label_set)
    return {"space": "LPS", "units": "mm", "stride": strides, "structures": [
        {"name": m.name, "value": m.value, "colour": m.colour, "volume_ml": int(counts[m.value]) * voxel_ml,
         "triangles": len(m.faces), "positions": _b64(m.vertices.astype("<f4")), "indices": _b64(m.faces.astype("<u4"))}
        for m in meshes]}


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")

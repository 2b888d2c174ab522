"""Surface meshes of a finished segmentation, for musculoskeletal models and the scan viewer's 3D view.

The meshes are made on the scan's working grid: its voxels are a subset of the original
CT's at the same physical positions (``backend.imaging.grids``), so its geometry puts the
vertices in patient coordinates (LPS, mm) directly; the original grid would add only the
copies of kept slices that thinning left out.

The downloads are decimated towards ``DEFAULT_MAX_TRIANGLES`` a structure unless asked
otherwise (0: full resolution). The viewer's meshes come from the label map taken every
``stride`` voxels along an axis longer than ``VIEW_MAX_VOXELS``, decimated towards
``VIEW_MAX_TRIANGLES``, so that a large CT still draws at once in a browser. Both are made
in the request the first time and then read from ``MYOLABEL_CACHE_DIR/meshes``; the names
hold the labels' stored name, which a new segmentation never reuses.
"""

from __future__ import annotations

import base64
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from django.conf import settings

from backend.acquisition import ml_adapter
from backend.acquisition.models import Segmentation
from backend.acquisition.outputs.export import load_npy

VIEW_MAX_VOXELS = 160  # along each axis of the viewer's label map
VIEW_MAX_TRIANGLES = 5_000  # per structure in the viewer
# Per structure in the downloads: a muscle of a 512 x 512 CT has some 200,000 triangles at full
# resolution (3.5 million for 22 structures: about 170 MB of STL); 20,000 keep about a millimetre.
DEFAULT_MAX_TRIANGLES = 20_000


def segmentation_meshes_zip(seg: Segmentation, *, space: str = "LPS",
                            max_triangles: int = DEFAULT_MAX_TRIANGLES) -> bytes:
    """One STL and one OBJ per structure present, ``manifest.json`` and ``manifest.csv`` (names,
    colours, voxel and mesh volumes), vertices in ``space`` (LPS or RAS) mm; each structure
    decimated towards ``max_triangles`` (0: full resolution). Made once, then read from the cache:
    a finished segmentation's labels never change."""
    def make() -> bytes:
        meshes = ml_adapter.structure_meshes(load_npy(seg.labels), seg.scan.geometry, seg.project.label_set,
                                             space=space, max_triangles=max_triangles or None)
        about = {"scan": seg.scan.name, "scan_id": seg.scan_id, "segmentation_id": seg.id,
                 "model_version": seg.model_version.number, "patient_id": seg.scan.patient_id,
                 "max_triangles": max_triangles or None}
        return ml_adapter.meshes_zip(meshes, about=about)

    return _cached(f"seg-{seg.id}-{seg.labels.name.replace('/', '_')}-{space}-{max_triangles}.zip", make)


def _cached(name: str, make: Callable[[], bytes]) -> bytes:
    """``make()``, kept under MYOLABEL_CACHE_DIR/meshes (written beside, then renamed: readers never see half)."""
    folder = Path(settings.MYOLABEL_CACHE_DIR) / "meshes"
    path = folder / name
    if path.exists():
        return path.read_bytes()
    content = make()
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
    with os.fdopen(fd, "wb") as out:
        out.write(content)
    os.replace(tmp, path)
    return content


def segmentation_view_meshes(seg: Segmentation) -> dict:
    """The viewer's meshes: per structure float32 (x, y, z) LPS positions and uint32 triangle indices,
    little-endian, base64; plus the stride that made them and the full-resolution voxel volumes."""
    name = f"seg-{seg.id}-{seg.labels.name.replace('/', '_')}-view-{VIEW_MAX_VOXELS}-{VIEW_MAX_TRIANGLES}.json"
    return json.loads(_cached(name, lambda: json.dumps(_view_meshes(seg)).encode()))


def _view_meshes(seg: Segmentation) -> dict:
    labels = load_npy(seg.labels)
    geometry = dict(seg.scan.geometry)
    counts = np.bincount(labels.ravel(), minlength=256)
    voxel_ml = float(np.prod(geometry["spacing"])) / 1000.0
    strides = [max(1, math.ceil(n / VIEW_MAX_VOXELS)) for n in labels.shape]
    if max(strides) > 1:
        labels = np.ascontiguousarray(labels[::strides[0], ::strides[1], ::strides[2]])
        geometry |= {"shape": list(labels.shape),
                     "spacing": [s * k for s, k in zip(geometry["spacing"], strides, strict=True)]}
    meshes = ml_adapter.structure_meshes(labels, geometry, seg.project.label_set, max_triangles=VIEW_MAX_TRIANGLES)
    return {"space": "LPS", "units": "mm", "stride": strides, "structures": [
        {"name": m.name, "value": m.value, "colour": m.colour, "volume_ml": int(counts[m.value]) * voxel_ml,
         "triangles": len(m.faces), "positions": _b64(m.vertices.astype("<f4")), "indices": _b64(m.faces.astype("<u4"))}
        for m in meshes]}


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")

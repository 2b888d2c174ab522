"""Closed, smoothed surface meshes of labelled structures, in patient coordinates (mm).

For musculoskeletal models (OpenSim, FEBio, 3D Slicer...): one triangle mesh per
structure of a label map. The surface is scikit-image's marching cubes (Lorensen's
table) on the structure's binary mask, padded by one voxel so that it closes at the
edge of the volume; trimesh checks and writes it. On binary masks Lorensen's table
gave watertight surfaces on every phantom structure, where Lewiner's joins
diagonal neighbours through edges shared by four triangles.

Volume: Taubin's lambda/mu smoothing removes the voxel steps without the shrinking of
plain Laplacian smoothing, but every iso-surface of a binary mask cuts the corners
of the voxels (a lone voxel becomes an octahedron of a sixth of its volume). The
voxel count is the measured quantity, so the smoothed surface is finally moved along
its normals by the one uniform offset that restores the voxel volume (a fraction of
a voxel for any structure a few voxels thick; ``offset_mm`` records it).

Coordinates: vertices are (x, y, z) mm in the scan's patient space, LPS as in
``mltasks.geometry`` (DICOM, ITK), or RAS (x and y negated) on request. Faces are
oriented outwards (counter-clockwise seen from outside) in either space.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from dataclasses import dataclass

import numpy as np

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry
from mltasks.labels import LabelSet

SPACES = ("LPS", "RAS")
TAUBIN_ITERATIONS = 10
# Taubin's pass band: lambda > 0 shrinks, mu < -lambda inflates slightly more (k_PB = 1/lambda + 1/mu ~ 0.1).
TAUBIN_LAMBDA, TAUBIN_MU = 0.5, 0.53


@dataclass(frozen=True)
class StructureMesh:
    """One structure's closed surface.

    Attributes:
        vertices: (n, 3) float64 (x, y, z) mm in ``space``.
        faces: (m, 3) int64 vertex indices, outward.
        voxel_volume_ml: the structure's voxel count times the voxel volume.
        mesh_volume_ml: the volume the surface encloses.
        watertight: every edge shared by exactly two consistently wound triangles.
        offset_mm: the uniform normal offset that restored the voxel volume.
    """

    name: str
    value: int
    colour: str
    vertices: np.ndarray
    faces: np.ndarray
    voxel_volume_ml: float
    mesh_volume_ml: float
    watertight: bool
    offset_mm: float
    space: str = "LPS"

    def trimesh(self):
        import trimesh

        return trimesh.Trimesh(self.vertices, self.faces, process=False)

    def stl_bytes(self) -> bytes:
        """Binary STL; its 80-byte header names the space, as 3D Slicer reads it (``SPACE=LPS``)."""
        body = self.trimesh().export(file_type="stl")
        header = f"SPACE={self.space} mm MyoLabel {self.name}".encode()[:80].ljust(80, b" ")
        return header + body[80:]

    def obj_bytes(self) -> bytes:
        text = self.trimesh().export(file_type="obj", include_normals=False, include_color=False)
        return f"# SPACE={self.space}, mm, MyoLabel structure {self.name}\n{text}".encode()


def structure_surface(
    mask: np.ndarray,
    geometry: Geometry,
    *,
    iterations: int = TAUBIN_ITERATIONS,
    space: str = "LPS",
    max_triangles: int | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The smoothed, volume-restored surface of one binary mask.

    Args:
        mask: (Z, Y, X) bool, at least one voxel set, on ``geometry``.
        geometry: the grid's spacing, origin and direction (LPS).
        iterations: Taubin smoothing passes (0: the raw iso-surface, volume restored).
        space: "LPS" or "RAS".
        max_triangles: decimate a larger surface towards this many triangles (quadric
            decimation, ``fast-simplification``) where it stays watertight; None keeps all.
    Returns:
        vertices (n, 3) float64 mm, faces (m, 3) int64 outward, the normal offset in mm.
    """
    import trimesh
    from skimage import measure
    from trimesh import smoothing

    if space not in SPACES:
        raise ValueError(f"space {space!r}: use one of {', '.join(SPACES)}")
    if tuple(mask.shape) != tuple(geometry.shape):
        raise InvalidArray(f"mask {mask.shape} and geometry {tuple(geometry.shape)} must have one shape")
    padded = np.pad(np.asarray(mask, dtype=np.float32), 1)
    verts, faces, _, _ = measure.marching_cubes(padded, 0.5, method="lorensen")
    # skimage's triangles face the rising values (inwards here): reverse them to face out.
    mesh = trimesh.Trimesh(_index_to_mm(verts - 1.0, geometry), faces[:, ::-1].astype(np.int64), process=False)
    if iterations:
        smoothing.filter_taubin(mesh, lamb=TAUBIN_LAMBDA, nu=TAUBIN_MU, iterations=iterations)
    if max_triangles and len(mesh.faces) > max_triangles:
        mesh = _decimated(mesh, max_triangles)
    target = float(np.count_nonzero(mask)) * float(np.prod(geometry.spacing))
    offset = _restore_volume(mesh, target)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if space == "RAS":
        vertices = vertices * np.array([-1.0, -1.0, 1.0])  # a rotation by 180 deg: the winding stays outward
    return vertices, faces, offset


def _decimated(mesh, max_triangles: int):
    """The fewest triangles from ``max_triangles`` up, doubling, whose decimation stays closed.

    Quadric decimation can pinch a thin part into edges of four triangles (2 of 43 phantom
    muscles at 10,000 triangles): such a result is refused for a finer one, in the end the input.
    """
    if mesh.volume < 0:
        mesh.invert()
    count = max_triangles
    while count < len(mesh.faces):
        smaller = mesh.simplify_quadric_decimation(face_count=count)
        if smaller.is_watertight and smaller.is_winding_consistent and smaller.volume > 0:
            return smaller
        count *= 2
    return mesh


def _index_to_mm(zyx: np.ndarray, geometry: Geometry) -> np.ndarray:
    """(n, 3) fractional (z, y, x) indices -> (n, 3) LPS (x, y, z) mm through spacing, direction, origin."""
    direction = np.asarray(geometry.direction, dtype=np.float64).reshape(3, 3)
    scaled = zyx[:, ::-1] * np.asarray(geometry.spacing[::-1], dtype=np.float64)  # (x, y, z) mm along the axes
    points = scaled @ direction.T + np.asarray(geometry.origin, dtype=np.float64)
    return points


def _restore_volume(mesh, target_mm3: float, *, passes: int = 3) -> float:
    """Move ``mesh`` along its vertex normals until it encloses ``target_mm3``; return the total offset.

    A left-handed direction matrix mirrors the surface and turns the triangles inwards:
    they are reversed first, so the volume is positive and the normals point out.
    """
    if mesh.volume < 0:
        mesh.invert()
    total = 0.0
    for _ in range(passes):
        gap = target_mm3 - float(mesh.volume)
        if abs(gap) <= 1e-6 * target_mm3:
            break
        step = gap / float(mesh.area)  # first order: dV = area x offset
        mesh.vertices = mesh.vertices + step * mesh.vertex_normals
        total += step
    return total


def label_meshes(
    labels: np.ndarray,
    geometry: Geometry,
    label_set: LabelSet,
    *,
    iterations: int = TAUBIN_ITERATIONS,
    space: str = "LPS",
    max_triangles: int | None = None,
) -> list[StructureMesh]:
    """One mesh per structure of ``label_set`` present in ``labels`` (absent ones are left out).

    Args:
        labels: (Z, Y, X) integer labels on ``geometry``.
        max_triangles: per structure, as ``structure_surface``.
    Returns:
        Meshes in label-set order.
    """
    labels = np.asarray(labels)
    if tuple(labels.shape) != tuple(geometry.shape):
        raise InvalidArray(f"labels {labels.shape} and geometry {tuple(geometry.shape)} must have one shape")
    voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
    out = []
    for lab in label_set.labels:
        mask = labels == lab.value
        if not mask.any():
            continue
        box = _bounding_box(mask)
        vertices, faces, offset = structure_surface(mask[box], _sub_geometry(geometry, box), iterations=iterations,
                                                    space=space, max_triangles=max_triangles)
        mesh = StructureMesh(lab.name, lab.value, lab.colour, vertices, faces,
                             voxel_volume_ml=int(mask.sum()) * voxel_ml, mesh_volume_ml=0.0, watertight=False,
                             offset_mm=offset, space=space)
        checked = mesh.trimesh()
        out.append(StructureMesh(**{**mesh.__dict__, "mesh_volume_ml": abs(float(checked.volume)) / 1000.0,
                                    "watertight": bool(checked.is_watertight and checked.is_winding_consistent)}))
    return out


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice, slice]:
    """The smallest box holding every set voxel: meshing it costs its size, not the scan's."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _sub_geometry(geometry: Geometry, box: tuple[slice, slice, slice]) -> Geometry:
    start = np.array([box[2].start, box[1].start, box[0].start], dtype=np.float64)  # (x, y, z)
    direction = np.asarray(geometry.direction, dtype=np.float64).reshape(3, 3)
    origin = np.asarray(geometry.origin) + direction @ (start * np.asarray(geometry.spacing[::-1]))
    shape = tuple(s.stop - s.start for s in box)
    return Geometry(shape=shape, spacing=geometry.spacing, origin=tuple(float(v) for v in origin),
                    direction=geometry.direction)


MANIFEST_COLUMNS = ["name", "value", "colour", "stl", "obj", "voxel_volume_ml", "mesh_volume_ml",
                    "volume_difference_percent", "watertight", "vertices", "triangles", "offset_mm"]


def file_stem(mesh: StructureMesh) -> str:
    """``03_gluteus_maximus``: the value keeps names unique, the rest keeps them portable."""
    return f"{mesh.value:03d}_" + (re.sub(r"[^A-Za-z0-9_.-]+", "_", mesh.name).strip("._") or "structure")


def manifest_rows(meshes: list[StructureMesh]) -> list[dict]:
    rows = []
    for m in meshes:
        rows.append({
            "name": m.name, "value": m.value, "colour": m.colour, "stl": f"{file_stem(m)}.stl",
            "obj": f"{file_stem(m)}.obj",
            "voxel_volume_ml": round(m.voxel_volume_ml, 4), "mesh_volume_ml": round(m.mesh_volume_ml, 4),
            "volume_difference_percent": round(100.0 * (m.mesh_volume_ml / m.voxel_volume_ml - 1.0), 3),
            "watertight": m.watertight, "vertices": len(m.vertices), "triangles": len(m.faces),
            "offset_mm": round(m.offset_mm, 4),
        })
    return rows


def meshes_zip(meshes: list[StructureMesh], *, about: dict | None = None) -> bytes:
    """A zip: ``<name>.stl`` and ``<name>.obj`` per structure, ``manifest.json`` and ``manifest.csv``.

    Args:
        about: extra manifest entries (the scan, the segmentation...).
    """
    space = meshes[0].space if meshes else "LPS"
    rows = manifest_rows(meshes)
    manifest = {**(about or {}), "space": space, "units": "mm",
                "coordinates": f"(x, y, z) in the scan's patient space, {space}", "structures": rows}
    listing = io.StringIO()
    writer = csv.DictWriter(listing, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for mesh in meshes:
            archive.writestr(f"{file_stem(mesh)}.stl", mesh.stl_bytes())
            archive.writestr(f"{file_stem(mesh)}.obj", mesh.obj_bytes())
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
        archive.writestr("manifest.csv", listing.getvalue())
    return buffer.getvalue()

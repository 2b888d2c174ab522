"""Biomechanics outputs: structure meshes, the atrophy and fat report, 3D Slicer segmentations
(``outputs.meshes``, ``outputs.report``, ``outputs.slicer``): stored rows and geometry dicts <-> the library."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.acquisition.ml_adapter.core import label_set_of
from mltasks import meshes as mlmeshes
from mltasks import muscle_report as mlreport
from mltasks import slicer_seg
from mltasks.errors import InvalidLabelMap
from mltasks.geometry import Geometry
from mltasks.preprocess import resample

MESH_SPACES = mlmeshes.SPACES
FAT_HU = mlreport.FAT_HU
REPORT_COLUMNS = mlreport.COLUMNS
UnmappedSegments = slicer_seg.UnmappedSegments
LabelMapRefused = InvalidLabelMap


def structure_meshes(labels: np.ndarray, geometry: dict, label_set, *, space: str = "LPS",
                     max_triangles: int | None = None) -> list:
    """``mltasks.meshes.StructureMesh`` of every structure present, in patient coordinates (mm)."""
    return mlmeshes.label_meshes(labels, Geometry.from_dict(geometry), label_set_of(label_set), space=space,
                                 max_triangles=max_triangles)


def meshes_zip(meshes: list, *, about: dict) -> bytes:
    return mlmeshes.meshes_zip(meshes, about=about)


def muscle_rows(labels: np.ndarray, hu: np.ndarray, geometry: dict, label_set, *,
                fat_hu: tuple[float, float]) -> list[dict]:
    return mlreport.muscle_report(labels, hu, Geometry.from_dict(geometry), label_set_of(label_set), fat_hu=fat_hu)


def check_fat_range(fat_hu: tuple[float, float]) -> tuple[float, float]:
    return mlreport.check_fat_range(fat_hu)


def muscle_csv(rows: list[dict]) -> str:
    return mlreport.report_csv(rows)


def muscle_figure(series: list[tuple[str, list[dict]]]) -> str:
    """The bar charts as a data: URL (PNG), which the pages' Content-Security-Policy allows."""
    return mlreport.png_data_url(mlreport.report_figure_png(series))


def seg_nrrd_bytes(labels: np.ndarray, geometry: dict, label_set) -> bytes:
    return slicer_seg.write_seg_nrrd(labels, Geometry.from_dict(geometry), label_set_of(label_set))


def seg_nrrd_onto(path: Path, name: str, label_set, target: dict) -> np.ndarray:
    """A ``.seg.nrrd``'s segments as ``label_set`` values, placed on the grid ``target`` by physical position
    (nearest: exact where the file's voxels are the target's, as in a file exported from the same CT).

    Returns:
        (z, y, x) uint8 labels on ``target``.
    """
    labels, geometry = slicer_seg.seg_nrrd_labels(path, label_set_of(label_set), name=name)
    return resample(labels, geometry, Geometry.from_dict(target), interpolation="nearest", default=0).astype(np.uint8)

"""The reading half of a CT import: from an uploaded path to validated arrays, nothing stored.

An *input* is what the user gave: a zip, a folder, one image file (with its
.raw for .mhd), or loose DICOM files. An input holds one or more *sources*:
each DICOM series and each image file is its own source and becomes its own
scan. A zip or folder with several series imports every series by default;
a SeriesInstanceUID restricts it to that one.

Messages of ``mltasks`` errors name the local (staging or temporary) path; they
are rewritten to the name the user knows (``upload.zip/IM0001``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings

from mltasks.errors import (
    EmptyLabelMap,
    InvalidArray,
    InvalidLabelMap,
    MyoLabelError,
    NotAnImage,
    SeriesNotFound,
)
from mltasks.geometry import Geometry
from mltasks.grid import DEFAULT_MARGIN_MM, WorkingGrid, working_grid
from mltasks.io import (
    list_dicom_series,
    read_label_onto,
    read_volume,
    safe_extract_zip,
)
from mltasks.io.files import READ_SUFFIXES, suffix_of

# Working slices copied at a time: bounds a float CT's rounding temporaries to one slab.
_SLAB = 32
_FORMATS = {".nii": "nifti", ".nii.gz": "nifti", ".mha": "mha", ".mhd": "mha", ".nrrd": "nrrd", ".nhdr": "nrrd"}
_DATA_FILE_KEYS = {".mhd": r"^\s*ElementDataFile\s*=\s*(.+?)\s*$", ".nhdr": r"^\s*data ?file\s*:\s*(.+?)\s*$"}

Fraction = Callable[[float], None]


class DuplicateScan(MyoLabelError):
    """The series or the same pixel data is already imported."""


@dataclass(frozen=True)
class ImportInput:
    """One input of a job (or its reference label map): a local path and the name the user knows it by."""

    path: Path
    name: str


@dataclass
class Source:
    """One volume of an input: a DICOM series or one image file.

    Attributes:
        name: what the user calls it ("upload.zip", "upload.zip series 1.2.3").
        path: what ``mltasks.io.read_volume`` reads (a folder or a file).
        series_uid: the DICOM SeriesInstanceUID ("" for other formats).
        identifiers: DICOM identifiers under their keywords (empty for other formats).
        files: (local path, name shown to the user) of every original file to keep.
        source_format: dicom, nifti, mha or nrrd.
    """

    name: str
    path: Path
    series_uid: str = ""
    identifiers: dict[str, str] = field(default_factory=dict)
    files: list[tuple[Path, str]] = field(default_factory=list)
    source_format: str = "dicom"

    @property
    def scan_name(self) -> str:
        base = _stem(self.name.split(" series ")[0])
        description = self.identifiers.get("SeriesDescription", "")
        return f"{base} {description}".strip() if " series " in self.name and description else base


@dataclass
class ReadSource:
    """A source read and checked, ready to be stored."""

    source: Source
    hu: np.ndarray  # (z, y, x) original grid, int16 or float32
    geometry: Geometry
    content_hash: str


@dataclass
class ReferenceLabels:
    """A reference label map on the working grid.

    Attributes:
        labels: (z', H, W) uint8 on the working grid.
        slices: working-grid z indices that count as labelled.
        outside: {label value: voxels of the map (on the CT grid) the working grid does not keep}, dropped.
    """

    labels: np.ndarray
    slices: list[int]
    outside: dict[int, int]


def import_limits() -> dict:
    """Keyword options of ``safe_extract_zip`` from the settings' import-limits block."""
    return {
        "max_total_bytes": settings.MYOLABEL_MAX_EXTRACTED_BYTES,
        "max_ratio": settings.MYOLABEL_MAX_ZIP_RATIO,
        "max_members": settings.MYOLABEL_MAX_ZIP_MEMBERS,
    }


def readable_error(exc: BaseException, renames: dict[str, str]) -> str:
    """The error message with local paths replaced by the names the user knows."""
    text = str(exc) if isinstance(exc, MyoLabelError) else f"{type(exc).__name__}: {exc}"
    for local, shown in sorted(renames.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(local, shown)
    return text


@contextmanager
def expanded_input(
    path: Path, name: str, *, series_uid: str | None = None, renames: dict[str, str]
) -> Iterator[list[Source]]:
    """The sources of one input; a zip is extracted (with the configured limits) meanwhile.

    ``renames`` receives local path -> shown name pairs for ``readable_error``.
    Raises MyoLabelError (NotAnImage, UnsafeZip, SeriesNotFound, ...).
    """
    path = Path(path)
    renames[str(path)] = name
    if path.is_dir():
        yield _folder_sources(path, name, series_uid)
    elif path.is_file() and suffix_of(path) == ".zip":
        with tempfile.TemporaryDirectory(prefix="myolabel-import-", dir=_temp_root()) as tmp:
            renames[tmp] = name
            safe_extract_zip(path, tmp, **import_limits())
            yield _folder_sources(Path(tmp), name, series_uid)
    else:
        yield [_file_source(path, name, series_uid)]


def _temp_root() -> str:
    root = Path(settings.FILE_UPLOAD_TEMP_DIR)
    root.mkdir(parents=True, exist_ok=True)
    return str(root)


def _folder_sources(folder: Path, name: str, series_uid: str | None) -> list[Source]:
    infos = list_dicom_series(folder)
    if infos:
        if series_uid:
            infos = [info for info in infos if info.series_instance_uid == series_uid]
            if not infos:
                known = ", ".join(i.describe() for i in list_dicom_series(folder))
                raise SeriesNotFound(f"{name}: series {series_uid} not found; the series present are: {known}")
        several = len(infos) > 1
        return [
            Source(
                name=f"{name} series {info.series_instance_uid}" if several else name,
                path=folder,
                series_uid=info.series_instance_uid,
                identifiers=info.identifiers(),
                files=[(p, f"{name}/{p.relative_to(folder).as_posix()}") for p in info.files],
            )
            for info in infos
        ]
    images = sorted(p for p in folder.rglob("*") if p.is_file() and suffix_of(p) in READ_SUFFIXES)
    if not images:
        msg = (f"{name}: holds no DICOM series and no NIfTI, MetaImage or NRRD file; "
               "upload the folder or zip of the CT's DICOM files, or the image file itself")
        raise NotAnImage(msg)
    return [_file_source(p, f"{name}/{p.relative_to(folder).as_posix()}", None) for p in images]


def _file_source(path: Path, name: str, series_uid: str | None) -> Source:
    suffix = suffix_of(path)
    if suffix in _FORMATS:
        files = [(path, name)]
        companion = data_file_of(path)
        if companion is not None:
            if not companion.is_file():
                msg = (f"{name}: its pixel data file '{companion.name}' is missing; "
                       "upload it together with the header")
                raise NotAnImage(msg)
            files.append((companion, str(Path(name).parent / companion.name).removeprefix("./")))
        return Source(name=name, path=path, files=files, source_format=_FORMATS[suffix])
    infos = list_dicom_series(path) if path.is_file() else []
    ids = infos[0].identifiers() if infos else {}
    if series_uid and ids and ids["SeriesInstanceUID"] != series_uid:
        raise SeriesNotFound(f"{name}: series {series_uid} not found; this file is series {ids['SeriesInstanceUID']}")
    return Source(name=name, path=path, series_uid=ids.get("SeriesInstanceUID", ""), identifiers=ids,
                  files=[(path, name)])


def data_file_of(header: Path) -> Path | None:
    """The separate pixel-data file a .mhd or .nhdr header names (None if inline or another format)."""
    pattern = _DATA_FILE_KEYS.get(suffix_of(header))
    if pattern is None:
        return None
    with open(header, encoding="latin-1") as f:
        text = f.read(64 * 1024)
    match = re.search(pattern, text, flags=re.MULTILINE | re.IGNORECASE)
    if match is None or match.group(1).upper() in {"LOCAL", "LIST"}:
        return None
    return header.parent / match.group(1)


def is_companion(path: Path, others: list[Path]) -> bool:
    """True when ``path`` is the pixel-data file named by one of the headers in ``others``."""
    return any(data_file_of(h) == path for h in others if suffix_of(h) in _DATA_FILE_KEYS)


def read_source(source: Source) -> ReadSource:
    """Read a source's CT in HU with its geometry (all mltasks.io checks apply)."""
    series_uid = source.series_uid or None
    hu, geometry = read_volume(source.path, series_uid=series_uid if source.path.is_dir() else None)
    digest = hashlib.sha256(np.ascontiguousarray(hu).data).hexdigest()
    return ReadSource(source=source, hu=hu, geometry=geometry, content_hash=digest)


def working_volume(read: ReadSource, *, on_fraction: Fraction | None = None) -> tuple[np.ndarray, WorkingGrid]:
    """The CT's working grid (``mltasks.grid``) and its int16 HU there: a copy of the kept voxels.

    Copied slab by slab of working slices, so that progress moves and a float CT
    never needs a second full-size float copy. Float HU are rounded (int16 is how
    every scan is stored); int16 HU are copied exactly.
    Raises InvalidArray (named after the source) when no voxel lies above -500 HU.
    """
    try:
        grid = working_grid(read.hu, read.geometry)
    except InvalidArray as exc:
        raise InvalidArray(f"{read.source.name}: {exc}") from exc
    out = np.empty(grid.shape, dtype=np.int16)
    rows, cols = slice(*grid.rows), slice(*grid.cols)
    for k0 in range(0, grid.n_slices, _SLAB):
        k1 = min(k0 + _SLAB, grid.n_slices)
        z0 = grid.z_start + grid.z_step * k0
        slab = read.hu[z0:z0 + grid.z_step * (k1 - k0):grid.z_step, rows, cols]
        if slab.dtype != np.int16:
            slab = np.clip(np.rint(slab), -32768, 32767)
        out[k0:k1] = slab
        if on_fraction is not None:
            on_fraction(k1 / grid.n_slices)
    return out, grid


def read_reference_labels(
    path: Path, name: str, read: ReadSource, grid: WorkingGrid, *, allowed: set[int]
) -> ReferenceLabels:
    """Place a label map onto the CT (by physical position), check it, and keep its working-grid voxels.

    Returns:
        The labels on ``grid`` (an exact copy, no resampling), the working slices holding
        any label, and the labelled voxels the working grid does not keep (on slices left
        out by thinning, or outside the in-plane box, which holds all tissue).
    Raises:
        InvalidLabelMap (values outside ``allowed``; nothing left on the working grid),
        and mltasks.io's label-map errors.
    """
    try:
        on_ct = read_label_onto(path, read.geometry)
    except MyoLabelError as exc:
        raise type(exc)(readable_error(exc, {str(path): name})) from exc
    unknown = sorted(int(v) for v in np.unique(on_ct) if int(v) not in allowed)
    if unknown:
        listed = ", ".join(str(v) for v in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
        msg = (f"{name}: label values {listed} are not in the label set (values 0-{max(allowed)}); "
               "choose the matching label set or relabel the map")
        raise InvalidLabelMap(msg)
    on_ct = on_ct.astype(np.uint8, copy=False)
    labels = grid.crop(on_ct)
    slices = [int(k) for k in np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))]
    if not slices:
        msg = (f"{name}: no labelled voxel lies on the working grid ({_grid_parts(grid)}); "
               "check that the label map belongs to this CT")
        raise EmptyLabelMap(msg)
    # mltasks.io.labels_outside counts voxel centres outside another grid's extent: slices
    # dropped by thinning lie inside that extent, so count what the crop did not keep instead.
    lost = _label_counts(on_ct) - _label_counts(labels)
    return ReferenceLabels(labels, slices, {int(v): int(n) for v, n in enumerate(lost) if v and n})


def _label_counts(labels: np.ndarray) -> np.ndarray:
    """(256,) voxels of each uint8 label value; slice by slice, as bincount widens to int64."""
    counts = np.zeros(256, np.int64)
    for plane in labels:
        counts += np.bincount(plane.ravel(), minlength=256)
    return counts


def _grid_parts(grid: WorkingGrid) -> str:
    """What a working grid keeps, in words."""
    sz = grid.original.spacing[0]
    slices = (f"one acquired slice in {grid.z_step}, thinning the {sz:g} mm slices to {sz * grid.z_step:g} mm"
              if grid.z_step > 1 else "every acquired slice")
    return f"{slices}; in-plane, the box around everything above -500 HU plus {DEFAULT_MARGIN_MM:g} mm"


def labels_outside_text(name: str, outside: dict[int, int], grid: WorkingGrid,
                        names: dict[int, str] | None = None) -> str:
    """The sentence that tells an importer which labels lost voxels outside the working grid."""
    names = names or {}
    listed = ", ".join(f"label {v}" + (f" ({names[v]})" if v in names else "") + f": {n}"
                       for v, n in sorted(outside.items()))
    return (f"{name}: {sum(outside.values())} labelled voxels lie outside the working grid "
            f"({_grid_parts(grid)}) and were left out ({listed}); the stored reference lacks them")


def _stem(name: str) -> str:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".nii.gz", ".zip", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr", ".dcm"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)] or base
    return base

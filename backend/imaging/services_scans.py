"""Writes of one scan: its working-grid volume (a copy of the CT's kept voxels, ``mltasks.grid``),
original files, reference labels and rows.

A series, and the same pixel data, are imported once in the whole installation.
The importer checks this first to name the existing scan; the database enforces it
(``Scan`` constraints), and a concurrent import that loses the race gets the same
message as one that came later.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from backend.imaging import importing
from backend.imaging.importing import (
    DuplicateScan,
    ImportInput,
    ReadSource,
    ReferenceLabels,
    Source,
)
from backend.imaging.models import Pool, ReferenceLabelMap, Scan, ScanFile
from backend.imaging.volumes import save_array
from backend.projects.models import DEFAULT_LABEL_SET_NAME, LabelSet, Project
from mltasks.errors import MyoLabelError
from mltasks.grid import WorkingGrid
from mltasks.io.files import suffix_of

if TYPE_CHECKING:  # annotations only
    from django.contrib.auth.models import User

# Suffixes kept on stored originals (".dcm", ".nii.gz"): the rest of a client's name is data only.
_KEPT_SUFFIX = re.compile(r"\.[a-z][a-z0-9]{0,7}(\.gz)?")


@dataclass
class CreatedScan:
    """A stored scan, and the labelled voxels its reference lost outside the working grid (with a sentence)."""

    scan: Scan
    labels_outside: dict[int, int] = field(default_factory=dict)
    warning: str = ""


def label_set_for_pool(pool: Pool) -> LabelSet:
    """The label set of the projects using ``pool`` when they agree, else the default set."""
    ids = set(Project.objects.filter(pools=pool).values_list("label_set_id", flat=True))
    if len(ids) == 1:
        return LabelSet.objects.get(pk=ids.pop())
    found = LabelSet.objects.filter(name=DEFAULT_LABEL_SET_NAME).first()
    if found is None:
        raise ValidationError("choose the label set of the reference label map")
    return found


def duplicate_of(read: ReadSource, user: User) -> DuplicateScan | None:
    """The error naming the scan that already holds this series or pixel data (None if none does)."""
    uid = read.source.series_uid[:64]
    existing = Scan.objects.filter(series_uid=uid).order_by("pk").first() if uid else None
    why = f"series {uid}"
    if existing is None:
        existing = Scan.objects.filter(content_hash=read.content_hash).order_by("pk").first()
        why = "the same image data"
    if existing is None:
        return None
    from backend.projects.access import scans_visible_to

    where = (f'as scan "{existing.name}" (id {existing.pk}) in pool "{existing.pool.name}"'
             if user is None or scans_visible_to(user).filter(pk=existing.pk).exists()
             else "outside the projects you belong to; ask a site administrator")
    return DuplicateScan(f"{read.source.name}: {why} is already imported {where}; it was not imported again")


def check_not_duplicate(read: ReadSource, user: User) -> None:
    error = duplicate_of(read, user)
    if error is not None:
        raise error


def scan_create(
    *,
    pool: Pool,
    read: ReadSource,
    user=None,
    label_set: LabelSet | None = None,
    labels: ImportInput | None = None,
    labelled_slices: list[int] | None = None,
    on_fraction=None,
) -> CreatedScan:
    """Store a checked CT (working-grid volume, original files, reference labels) and its rows.

    Every check runs before the first byte is stored; files are written before the
    (short) transaction that creates the rows, and deleted again if anything fails.
    Raises DuplicateScan when another import stored the same series or pixel data first.
    """
    on_fraction = on_fraction or (lambda f: None)
    volume, grid = importing.working_volume(read, on_fraction=lambda f: on_fraction(0.6 * f))
    reference = None
    if labels is not None:
        label_set = label_set or label_set_for_pool(pool)
        allowed = {0, *label_set.labels.values_list("value", flat=True)}
        reference = importing.read_reference_labels(labels.path, labels.name, read, grid, allowed=allowed)
        if labelled_slices is not None:
            reference.slices = _checked_slices(labels.name, labelled_slices, grid.n_slices)
    warning = _outside_warning(labels, reference, label_set, grid)
    written: list[str] = []
    try:
        scan = _scan_row(pool, read, user, grid, warning)
        scan.volume.name = save_array(volume, scan.volume.field.generate_filename(scan, f"{uuid.uuid4().hex}.npy"))
        written.append(scan.volume.name)
        del volume
        files = _store_originals(read.source, written, lambda f: on_fraction(0.6 + 0.4 * f))
        label_name = None
        if reference is not None:
            label_name = save_array(reference.labels, ReferenceLabelMap.labels.field.generate_filename(
                None, f"{uuid.uuid4().hex}.npy"))
            written.append(label_name)
        _save_rows(read, user, scan, files, reference, label_set, label_name, labels)
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise
    return CreatedScan(scan, reference.outside if reference is not None else {}, warning)


def _outside_warning(labels: ImportInput | None, reference: ReferenceLabels | None, label_set,
                     grid: WorkingGrid) -> str:
    if reference is None or not reference.outside:
        return ""
    names = dict(label_set.labels.filter(value__in=reference.outside).values_list("value", "name"))
    return importing.labels_outside_text(labels.name, reference.outside, grid, names)


def _save_rows(read, user: User, scan, files, reference, label_set, label_name, labels) -> None:
    try:
        with transaction.atomic():
            check_not_duplicate(read, user)
            scan.save()
            ScanFile.objects.bulk_create([ScanFile(scan=scan, **f) for f in files])
            if reference is not None:
                ReferenceLabelMap.objects.create(scan=scan, label_set=label_set, labels=label_name,
                                                 labelled_slices=reference.slices, source_name=labels.name)
    except IntegrityError:
        # A concurrent import committed the same series or pixels after our check: say so as above.
        error = duplicate_of(read, user)
        if error is None:
            raise
        raise error from None


def _scan_row(pool: Pool, read: ReadSource, user: User, grid: WorkingGrid, warning: str) -> Scan:
    ids = read.source.identifiers
    log = (f"imported from {read.source.name}; original grid {read.geometry.shape} (z, y, x) "
           f"at {tuple(round(s, 4) for s in read.geometry.spacing)} mm; dtype {read.hu.dtype}; "
           f"working grid {grid.shape}: slices {grid.z_start} to {grid.z_indices[-1]} step {grid.z_step}, "
           f"rows {grid.rows[0]}-{grid.rows[1] - 1}, columns {grid.cols[0]}-{grid.cols[1] - 1}")
    if warning:
        log += "\n" + warning
    return Scan(
        pool=pool, name=read.source.scan_name[:255], original_geometry=read.geometry.to_dict(),
        geometry=grid.geometry.to_dict(), working_grid=grid.to_dict(), patient_id=ids.get("PatientID", "")[:64],
        study_uid=ids.get("StudyInstanceUID", "")[:64], series_uid=read.source.series_uid[:64],
        modality=ids.get("Modality", "CT" if read.source.source_format == "dicom" else "")[:16],
        manufacturer=ids.get("Manufacturer", "")[:128], series_description=ids.get("SeriesDescription", "")[:255],
        source_format=read.source.source_format, content_hash=read.content_hash, imported_by=user,
        import_log=log,
    )


def _store_originals(source: Source, written: list[str], on_fraction) -> list[dict]:
    """Copy the source's files to storage under generated names; rows keep the names they came with."""
    folder = uuid.uuid4().hex[:12]
    rows = []
    for k, (path, shown) in enumerate(source.files):
        target = ScanFile.file.field.generate_filename(None, f"{folder}/{k:05d}{_kept_suffix(shown)}")
        with open(path, "rb") as fh:
            stored = default_storage.save(target, File(fh, name=Path(target).name),
                                          max_length=ScanFile._meta.get_field("file").max_length)
        written.append(stored)
        rows.append({"file": stored, "original_name": shown, "size": path.stat().st_size})
        on_fraction((k + 1) / len(source.files))
    return rows


def _kept_suffix(name: str) -> str:
    suffix = suffix_of(name)
    return suffix if _KEPT_SUFFIX.fullmatch(suffix) else ""


def _checked_slices(name: str, slices: list[int], depth: int) -> list[int]:
    bad = [s for s in slices if not 0 <= int(s) < depth]
    if bad:
        raise MyoLabelError(f"{name}: labelled slices {bad[:10]} are outside the working grid's 0-{depth - 1}")
    return sorted({int(s) for s in slices})

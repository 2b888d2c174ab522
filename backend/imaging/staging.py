"""The staging folder of an upload: names, declared sizes, and how files group into inputs.

A job's staging folder holds ``files/`` (the uploaded files under their relative
names), ``totals/`` (the size the client declared for each file, same names),
``options`` (the series UID asked for) and, once the upload is completed, the
manifest ``import.json``. Loose DICOM files move to ``loose/`` when the job is made.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from backend.imaging.importing import ImportInput, is_companion
from backend.imaging.models import ImportJob
from mltasks.io.files import READ_SUFFIXES, suffix_of

# Longest name one folder entry may have on the file systems staging and media live on (ext4, XFS, APFS).
NAME_MAX_BYTES = 255


def files_dir(job: ImportJob) -> Path:
    return Path(job.staging_dir) / "files"


def clean_name(raw: str) -> str:
    """A relative upload name, refused when absolute, climbing out ('..') or too long for a disk."""
    raw = raw.replace("\\", "/")
    parts = PurePosixPath(raw).parts
    bad = not parts or raw.startswith("/") or ".." in parts or "\x00" in raw or len(raw) > 500
    if bad:
        raise serializers.ValidationError({"name": f"{raw!r} is not a valid relative file name"})
    long = [p for p in parts if len(p.encode()) > NAME_MAX_BYTES]
    if long:
        raise serializers.ValidationError({"name": (
            f"{long[0][:60]}...: a file or folder name longer than the {NAME_MAX_BYTES} bytes a disk stores; "
            "rename it, or upload the series as a zip")})
    return "/".join(parts)


def received(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def declared_total(job: ImportJob, name: str) -> int | None:
    path = Path(job.staging_dir) / "totals" / name
    return int(path.read_text()) if path.exists() else None


def all_declared(job: ImportJob) -> dict[str, int]:
    root = Path(job.staging_dir) / "totals"
    return {p.relative_to(root).as_posix(): int(p.read_text()) for p in root.rglob("*") if p.is_file()}


def declare_total(job: ImportJob, name: str, total: int) -> None:
    path = Path(job.staging_dir) / "totals" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(total))


def upload_inputs(folder: Path, *, labels: str | None = None) -> tuple[list[ImportInput], ImportInput | None]:
    """Group the files of an upload into inputs and the label map.

    Every zip and every image file (with the .raw of a .mhd) is one input, and the
    remaining (DICOM) files form one more.
    """
    every = sorted(p for p in folder.rglob("*") if p.is_file())
    label_input = None
    if labels:
        path = folder / clean_name(labels)
        if path not in every:
            raise ValidationError(f"labels: no uploaded file is named {labels!r}")
        every.remove(path)
        label_input = ImportInput(path, labels)
    inputs, loose = [], []
    for path in every:
        suffix = suffix_of(path)
        if suffix == ".zip" or (suffix in READ_SUFFIXES and suffix != ".raw"):
            inputs.append(ImportInput(path, path.relative_to(folder).as_posix()))
        elif not is_companion(path, every):
            loose.append(path)
    if len(loose) == 1:
        inputs.append(ImportInput(loose[0], loose[0].relative_to(folder).as_posix()))
    elif loose:
        inputs.append(_loose_input(folder, loose))
    return inputs, label_input


def _loose_input(folder: Path, loose: list[Path]) -> ImportInput:
    # Loose files go to a folder of their own so that zips and images beside them stay out.
    target_root = folder.parent / "loose"
    for path in loose:
        target = target_root / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
    tops = {p.relative_to(folder).parts[0] for p in loose}
    single_top = len(tops) == 1 and all(len(p.relative_to(folder).parts) > 1 for p in loose)
    name = tops.pop() if single_top else f"{len(loose)} files"
    return ImportInput(target_root / name if single_top else target_root, name)


# --- removal ---------------------------------------------------------------------------------


def remove_staging_after_commit(folders: Iterable[str]) -> None:
    """Remove import staging folders (uploaded files) once the transaction commits."""
    root = Path(settings.MYOLABEL_STAGING_DIR).resolve()
    # Only folders under the staging root: a job row must never make us remove anything else.
    inside = [Path(f) for f in folders if f and Path(f).resolve().is_relative_to(root) and Path(f).resolve() != root]
    if inside:
        transaction.on_commit(lambda: _remove_folders(inside), robust=True)


def _remove_folders(folders: list[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def orphan_staging_folders(*, min_age: timedelta) -> list[Path]:
    """Staging folders (uploads) of no import job and older than ``min_age``."""
    root = Path(settings.MYOLABEL_STAGING_DIR)
    if not root.is_dir():
        return []
    known = {Path(p).resolve() for p in ImportJob.objects.values_list("staging_dir", flat=True)}
    cutoff = (timezone.now() - min_age).timestamp()
    return sorted(p for p in root.iterdir()
                  if p.is_dir() and p.resolve() not in known and (min_age <= timedelta(0) or p.stat().st_mtime <= cutoff))

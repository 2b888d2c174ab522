"""Arrays in storage: .npy files written through ``default_storage`` and read back memory-mapped.

Works for local disk and S3 alike: with a storage that has local paths the .npy
is memory-mapped in place; otherwise it is downloaded once into
``MYOLABEL_CACHE_DIR`` (storage names are never overwritten, so a cached copy
never goes stale) and memory-mapped from there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db.models.fields.files import FieldFile

from backend.imaging.models import ReferenceLabelMap, Scan

_COPY_CHUNK = 8 * 2**20


def scan_volume(scan: Scan) -> np.ndarray:
    """The scan's working-grid volume: read-only (z, y, x) int16 HU, memory-mapped."""
    return stored_array(scan.volume)


def reference_labels(reference: ReferenceLabelMap) -> np.ndarray:
    """A reference label map on its scan's working grid: read-only (z, y, x) uint8."""
    return stored_array(reference.labels)


def stored_array(field_file: FieldFile) -> np.ndarray:
    """Memory-map the .npy behind a FileField (downloading it to the cache when remote)."""
    return np.load(local_path(field_file.name, storage=field_file.storage), mmap_mode="r")


def local_path(name: str, *, storage=None) -> Path:
    """A local path holding the stored file ``name``: its own, or a cached download."""
    storage = storage or default_storage
    try:
        return Path(storage.path(name))
    except NotImplementedError:
        pass
    cached = Path(settings.MYOLABEL_CACHE_DIR) / "storage" / name
    if not cached.exists():
        cached.parent.mkdir(parents=True, exist_ok=True)
        # Download beside the target, then rename: readers never see a partial file.
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, storage.open(name, "rb") as src:
                shutil.copyfileobj(src, out, _COPY_CHUNK)
            os.replace(tmp, cached)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return cached


def save_array(array: np.ndarray, name: str, *, storage=None) -> str:
    """Write ``array`` as .npy to ``name`` in storage (via a temporary file); return the stored name."""
    storage = storage or default_storage
    tmp_dir = Path(settings.FILE_UPLOAD_TEMP_DIR)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".npy") as tmp:
        np.save(tmp, np.ascontiguousarray(array), allow_pickle=False)
        tmp.flush()
        tmp.seek(0)
        return storage.save(name, File(tmp, name=Path(name).name), max_length=100)  # FileField default

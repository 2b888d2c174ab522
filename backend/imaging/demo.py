"""Demo data of the imaging app: a pool of small labelled phantoms (not registered in SEEDERS yet).

Idempotent: a phantom whose scan already exists in the pool is skipped, so the
seeder may run on every start. The phantoms go through the same import service
as uploads (as NIfTI with a full reference label map of the default label set).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from backend.imaging.models import Pool
from backend.imaging.services import DEFAULT_LABEL_SET, ImportInput, scan_import_file
from backend.projects.models import LabelSet
from mltasks.phantom import generate_phantom, write_phantom

DEMO_POOL = "Demo phantoms"
PHANTOM_FOV_MM = 380.0


def seed_demo_pool(
    admin,
    *,
    n: int = 3,
    shape: tuple[int, int, int] = (40, 128, 128),
    slice_mm: float = 2.5,
) -> Pool:
    """Create the pool ``Demo phantoms`` with ``n`` phantoms (seeds 0..n-1) and their reference labels.

    Args:
        admin: the user recorded as creator and importer.
        shape: (z, y, x) voxels of each phantom; ``slice_mm`` apart in z, 380 mm in-plane
            (the defaults give 100 mm of hip in 40 slices, all kept by the working grid, with the
            body's box of the 128 x 128 pixels in-plane: about 1.2 MB per scan).
    Raises:
        RuntimeError if a phantom fails to import (a bug, since phantoms are valid input).
    """
    pool, _ = Pool.objects.get_or_create(
        name=DEMO_POOL, defaults={"created_by": admin, "description": "Synthetic hip CTs with exact labels."})
    label_set = LabelSet.objects.get(name=DEFAULT_LABEL_SET)
    spacing = (slice_mm, PHANTOM_FOV_MM / shape[1], PHANTOM_FOV_MM / shape[2])
    for seed in range(n):
        name = f"phantom-{seed:03d}"
        if pool.scans.filter(name=name).exists():
            continue
        phantom = generate_phantom(seed, shape=shape, spacing=spacing)
        with tempfile.TemporaryDirectory(prefix="myolabel-seed-") as tmp:
            paths = write_phantom(phantom, tmp, name)
            ct = Path(tmp) / f"{name}.nii.gz"
            paths["ct"].rename(ct)
            results = scan_import_file(
                pool=pool, path=ct, name=ct.name, user=admin, label_set=label_set,
                labels=ImportInput(paths["labels"], paths["labels"].name),
            )
        failed = [r["error"] for r in results if r["status"] != "imported"]
        if failed:
            raise RuntimeError(f"demo phantom {name} did not import: {'; '.join(failed)}")
    return pool

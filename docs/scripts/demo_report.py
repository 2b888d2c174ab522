"""The atrophy and fat report of the demo project, written to docs/reports/.

    .venv/bin/python docs/scripts/demo_report.py            # or: --out some/folder

Runs on a throw-away data folder: migrates a fresh SQLite database and builds the
demo project exactly as ``./dev up`` seeds it (``backend.acquisition.demo.phantom_project``
with the demo's arguments; no acquisition step is started, so no model is trained).
The report is then made by the same service as the download
(``backend.acquisition.outputs.report``) for a segmentation of the first pool phantom
(``phantom-1``) that holds its exact phantom labels, the stand-in for a model's result
in a script that trains none.

A phantom has no patient identity; the script gives phantom-1 one (``DEMO-0001``) and
adds a second scan of that "patient", a simulated follow-up: the same phantom with its
muscles eroded by one voxel in-plane and a tenth of their remaining voxels turned to fat
(-80 HU), so that the page shows how a second scan of the same patient appears beside the
first. Both are said to be simulated on the page's scan names.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def setup_django(data_dir: Path) -> None:
    sys.path.insert(0, str(REPO))
    for key in ("DATABASE_URL", "REDIS_URL", "MYOLABEL_MODE"):
        os.environ.pop(key, None)
    os.environ.update({"MYOLABEL_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "backend.myolabel.settings"})
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)


def segmentation_of(project, scan, labels: np.ndarray, version):
    from django.utils import timezone

    from backend.acquisition.models import Segmentation
    from backend.imaging.volumes import save_array

    return Segmentation.objects.create(
        project=project, model_version=version, scan=scan, status=Segmentation.Status.DONE, finished=timezone.now(),
        labels=save_array(np.asarray(labels, np.uint8), "acquisition/segmentations/labels.npy"),
        uncertainty=save_array(np.zeros(labels.shape, np.float16), "acquisition/segmentations/u.npy"))


def follow_up(hu: np.ndarray, labels: np.ndarray, muscles: list[int], seed: int = 0):
    """(hu, labels) of a simulated later scan: muscles eroded by one voxel in-plane, 10 % of the rest fat."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    hu, labels = hu.copy(), labels.copy()
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    for value in muscles:
        mask = labels == value
        lost = mask & ~ndimage.binary_erosion(mask, in_plane)
        labels[lost] = 0
        hu[lost] = -90  # what replaces the muscle's rim: fat
        kept = np.flatnonzero((labels == value).ravel())
        fat = rng.choice(kept, size=len(kept) // 10, replace=False)
        hu.ravel()[fat] = -80
    return hu, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "reports")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        setup_django(Path(tmp))
        write_reports(args.out)


def write_reports(out: Path) -> None:
    import hashlib

    from django.contrib.auth import get_user_model

    from backend.acquisition import demo
    from backend.acquisition.models import ModelVersion
    from backend.acquisition.outputs.report import fat_range, muscle_report_csv, muscle_report_html
    from backend.imaging.models import ReferenceLabelMap, Scan
    from backend.imaging.volumes import reference_labels, save_array, scan_volume

    admin = get_user_model().objects.create_superuser("admin", "admin@example.org", "demo-report")
    project = demo.phantom_project(name=demo.DEMO_NAME, admin=admin, n_pool=3, n_test=1, shape=(24, 128, 128),
                                   seed_fraction=demo.DEMO_SEED_FRACTION, network_profile=demo.DEMO_PROFILE,
                                   network_config=demo.DEMO_NETWORK)
    version = ModelVersion.objects.create(project=project, number=0, checkpoint="acquisition/models/none.pt",
                                          origin={"kind": "demo report", "note": "exact phantom labels"})
    scan = Scan.objects.get(name="phantom-1")
    Scan.objects.filter(pk=scan.pk).update(patient_id="DEMO-0001", name="phantom-1 (baseline)")
    scan.refresh_from_db()
    labels = np.asarray(reference_labels(ReferenceLabelMap.objects.get(scan=scan)))
    first = segmentation_of(project, scan, labels, version)
    muscles = list(project.label_set.labels.filter(kind="muscle").values_list("value", flat=True))
    hu, later_labels = follow_up(np.asarray(scan_volume(scan)), labels, muscles)
    later_scan = Scan.objects.create(
        pool=scan.pool, name="phantom-1 follow-up (simulated atrophy)", original_geometry=scan.geometry,
        geometry=scan.geometry, source_format="phantom", modality="CT", patient_id="DEMO-0001",
        series_description="simulated follow-up of phantom 1", volume=save_array(hu, "scans/phantoms/later.npy"),
        content_hash=hashlib.sha256(hu.tobytes()).hexdigest())
    segmentation_of(project, later_scan, later_labels, version)
    fat = fat_range()
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo-muscle-report.html").write_text(muscle_report_html(first, fat))
    (out / "demo-muscle-report.csv").write_text(muscle_report_csv(first, fat))
    print(f"wrote {out / 'demo-muscle-report.html'} and {out / 'demo-muscle-report.csv'}")


if __name__ == "__main__":
    main()

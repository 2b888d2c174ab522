"""Issue 15 item 12: labels of a reference map outside the working grid are counted and reported.

In-plane, the working grid keeps the box around everything denser than air (above
-500 HU) plus 10 mm. A label map drawn beyond it, into the air around the body, keeps
its scan, but the labels out there cannot be stored: the import result says how many
voxels of which labels were left out. (Labels on slices dropped by thinning a sub-
millimetre series: tests/backend/test_import_grid.py.)
"""

from __future__ import annotations

from io import StringIO

import numpy as np
import pytest
from django.core.management import call_command
from django.urls import reverse

from backend.imaging.models import ImportJob, ReferenceLabelMap, Scan
from backend.imaging.services import ImportInput, import_job_create, import_job_run
from backend.imaging.volumes import reference_labels
from mltasks.geometry import Geometry
from mltasks.io import write_volume
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db

# 20 x 24 voxels of 20 mm: 400 x 480 mm in plane, a body in rows 4-19 and columns 3-16, air
# around it. The working grid's box adds 10 mm, one voxel here: rows 3-20 and columns 2-17, so
# rows 0-2 and columns 0-1 lie outside.
WIDE = Geometry(shape=(5, 24, 20), spacing=(2.0, 20.0, 20.0), origin=(-190.0, -230.0, 0.0))


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def wide_ct_with_labels(tmp_path) -> tuple[ImportInput, ImportInput]:
    hu = np.full(WIDE.shape, -1000, np.int16)
    hu[:, 4:20, 3:17] = np.random.default_rng(0).integers(-100, 900, (5, 16, 14))
    labels = np.zeros(WIDE.shape, np.uint8)
    labels[1:4, 10:14, 1:3] = 2  # drawn into the air: column 1 outside -> 3 x 4 x 1 = 12 voxels lost, 2 kept
    labels[1:4, 0:5, 8:12] = 1  # rows 0-2 outside -> 3 x 3 x 4 = 36 voxels lost, rows 3-4 kept
    labels[2, 10:12, 10:12] = 3  # wholly inside
    ct = write_volume(hu, WIDE, tmp_path / "wide.nii.gz")
    label_map = write_volume(labels, WIDE, tmp_path / "labels.nii.gz")
    return ImportInput(ct, "wide.nii.gz"), ImportInput(label_map, "labels.nii.gz")


def test_labels_outside_the_working_grid_are_counted_in_the_result(client, tmp_path):
    label_set = LabelSetFactory(labels__n=3)
    pool = PoolFactory()
    user = UserFactory()
    MembershipFactory(user=user, project=ProjectFactory(pools=[pool], label_set=label_set), role="lead")
    ct, labels = wide_ct_with_labels(tmp_path)
    job = import_job_create(pool=pool, user=user, inputs=[ct], labels=labels, label_set=label_set, schedule=False)
    job = import_job_run(job=ImportJob.objects.get(pk=job.pk))
    assert job.status == "done", job.results
    [result] = job.results
    assert result["status"] == "imported"
    assert result["labels_outside"] == {"voxels": 48, "labels": [{"value": 1, "voxels": 36},
                                                                 {"value": 2, "voxels": 12}]}
    assert result["warning"] == (
        "labels.nii.gz: 48 labelled voxels lie outside the working grid (every acquired slice; in-plane, "
        "the box around everything above -500 HU plus 10 mm) and were left out (label 1 (structure 1): 36, label 2 (structure 2): 12); the stored reference lacks them")
    # The API gives the same result, and the scan's import log keeps the sentence.
    client.force_login(user)
    assert client.get(reverse("import-job", args=[job.pk])).json()["results"] == [result]
    scan = Scan.objects.get(pk=result["scan_id"])
    assert result["warning"] in scan.import_log
    # What lay inside is stored: every label, including the kept parts of labels 1 and 2.
    stored = reference_labels(ReferenceLabelMap.objects.get(scan=scan))
    assert set(np.unique(stored)) == {0, 1, 2, 3}


def test_a_label_map_wholly_inside_reports_nothing(tmp_path):
    hu = np.random.default_rng(1).integers(-900, 900, (4, 16, 16)).astype(np.int16)
    geometry = Geometry(shape=(4, 16, 16), spacing=(2.0, 10.0, 10.0))  # tissue everywhere: the box is the slice
    labels = np.zeros(geometry.shape, np.uint8)
    labels[:, :, :3] = 1  # up to the edge of the CT
    ct = write_volume(hu, geometry, tmp_path / "ct.nii.gz")
    label_map = write_volume(labels, geometry, tmp_path / "labels.nii.gz")
    job = import_job_create(pool=PoolFactory(), user=None, inputs=[ImportInput(ct, "ct.nii.gz")],
                            labels=ImportInput(label_map, "labels.nii.gz"), label_set=LabelSetFactory(labels__n=1),
                            schedule=False)
    [result] = import_job_run(job=ImportJob.objects.get(pk=job.pk)).results
    assert result["status"] == "imported"
    assert "labels_outside" not in result and "warning" not in result


def test_the_command_prints_the_labels_left_out(tmp_path):
    ct, labels = wide_ct_with_labels(tmp_path)
    label_set = LabelSetFactory(labels__n=3)
    out = StringIO()
    call_command("import_ct", str(ct.path), "--pool", "p", "--labels", str(labels.path),
                 "--label-set", label_set.name, stdout=out)
    assert "WARNING labels.nii.gz: 48 labelled voxels lie outside the working grid" in out.getvalue()
    assert "label 1 (structure 1): 36, label 2 (structure 2): 12" in out.getvalue()

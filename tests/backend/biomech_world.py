"""A project with a sided label set, a phantom-like scan and its finished segmentation, for the
biomechanics API tests (meshes, muscle report, Slicer files)."""

from __future__ import annotations

import numpy as np

from backend.imaging.volumes import save_array
from backend.projects.models import Label, LabelSet, Membership
from mltasks.geometry import Geometry
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    scan_with_volume,
    segmentation_with_uncertainty,
)

# (value, name, colour): a sided pair and a bone.
STRUCTURES = ((1, "psoas_left", "#ff0000"), (2, "psoas_right", "#00ff00"), (3, "femur", "#ffff00"))
GEOMETRY = Geometry(shape=(12, 24, 32), spacing=(2.0, 1.5, 1.25), origin=(-20.0, -18.0, 100.0))


def sided_label_set(name: str = "sided") -> LabelSet:
    label_set = LabelSet.objects.create(name=name)
    for value, label, colour in STRUCTURES:
        Label.objects.create(label_set=label_set, value=value, name=label, colour=colour,
                             kind="bone" if label == "femur" else "muscle")
    return label_set


def volumes() -> tuple[np.ndarray, np.ndarray]:
    """(labels, hu): psoas_left a 6 x 8 x 8 box, psoas_right 6 x 8 x 4, femur 4 x 4 x 4; the left box's
    first 2 of 8 columns are fat (-100 HU), its other voxels 50 HU; the right box all 40 HU; femur 700 HU."""
    labels = np.zeros(GEOMETRY.shape, np.uint8)
    hu = np.full(GEOMETRY.shape, -1000, np.int16)
    labels[3:9, 4:12, 4:12] = 1
    hu[3:9, 4:12, 4:12] = 50
    hu[3:9, 4:12, 4:6] = -100
    labels[3:9, 4:12, 20:24] = 2
    hu[3:9, 4:12, 20:24] = 40
    labels[4:8, 16:20, 14:18] = 3
    hu[4:8, 16:20, 14:18] = 700
    return labels, hu


def segmented(project, pool, *, name: str = "scan", patient_id: str = "", labels=None, hu=None):
    """A scan of ``pool`` with ``hu`` and a finished segmentation of it with ``labels`` in ``project``."""
    default_labels, default_hu = volumes()
    labels = default_labels if labels is None else labels
    hu = default_hu if hu is None else hu
    scan = scan_with_volume(pool, hu, name=name, geometry=GEOMETRY)
    if patient_id:
        scan.patient_id = patient_id
        scan.save(update_fields=["patient_id"])
    seg = segmentation_with_uncertainty(project, scan, np.zeros(GEOMETRY.shape, np.float16))
    seg.labels = save_array(np.asarray(labels, np.uint8), "acquisition/segmentations/labels.npy")
    seg.save(update_fields=["labels"])
    return seg


def world() -> dict:
    """A project on a sided label set with a lead, an annotator, an outsider's own project, and one segmentation."""
    label_set = sided_label_set()
    pool = PoolFactory()
    project = ProjectFactory(label_set=label_set, pools=[pool])
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD).user
    annotator = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    outsider = MembershipFactory(role=Membership.Role.LEAD).user  # lead of another project
    seg = segmented(project, pool, name="first", patient_id="PAT-0042")
    return {"project": project, "pool": pool, "label_set": label_set, "lead": lead, "annotator": annotator,
            "outsider": outsider, "seg": seg}


def url(seg, name: str) -> str:
    return f"/api/projects/{seg.project_id}/segmentations/{seg.id}/{name}"


def client(user):
    """An API client authenticated as ``user``."""
    from rest_framework.test import APIClient

    c = APIClient()
    c.force_authenticate(user)
    return c

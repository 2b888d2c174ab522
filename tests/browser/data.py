"""Rows the browser tests need, made through the ORM (no ML runs): a project whose step
waits for annotations, with 512 x 512 queries, and a lead's finished history for the charts."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.utils import timezone

from backend.acquisition import codec
from backend.acquisition.models import (
    AcquisitionStep,
    ModelVersion,
    Query,
    Segmentation,
    TrainingSlice,
)
from backend.acquisition.states import State
from backend.projects.models import Label, LabelSet, Membership
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    scan_with_volume,
)

PASSWORD = "pw-123456"
SIZE = 512
STRUCTURES = [("gluteus maximus", "#e6194b"), ("gluteus medius", "#3cb44b"), ("iliacus", "#4363d8"),
              ("psoas major", "#f58231"), ("femur", "#f0e68c"), ("pelvis", "#dcbeff")]


def label_set() -> LabelSet:
    ls = LabelSet.objects.create(name=f"browser test set {LabelSet.objects.count() + 1}")
    for value, (name, colour) in enumerate(STRUCTURES, start=1):
        Label.objects.create(label_set=ls, value=value, name=name, colour=colour,
                             kind="bone" if name in ("femur", "pelvis") else "muscle")
    return ls


def phantom_hu(depth: int = 5) -> np.ndarray:
    """(depth, 512, 512) int16: air, a body disc of soft tissue, two bright 'bones'."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    hu = np.full((depth, SIZE, SIZE), -1000, np.int16)
    body = (yy - 256) ** 2 / 200**2 + (xx - 256) ** 2 / 230**2 <= 1
    rng = np.random.default_rng(7)
    for z in range(depth):
        sl = hu[z]
        sl[body] = 40 + rng.normal(0, 12, int(body.sum())).astype(np.int16)
        sl[body & ((yy - 256) ** 2 / 185**2 + (xx - 256) ** 2 / 215**2 > 1)] = -90  # subcutaneous fat
        for cx in (170, 342):
            sl[(yy - 270) ** 2 + (xx - cx) ** 2 <= (26 + min(z, 20)) ** 2] = 700
    return hu


def query_rasters(z: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mask, predicted, uncertainty) of one 512 x 512 slice; the query is a 120 x 160 box."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    predicted = np.zeros((SIZE, SIZE), np.uint8)
    predicted[(yy - 256) ** 2 / 200**2 + (xx - 256) ** 2 / 230**2 <= 1] = 1
    predicted[(yy - 300) ** 2 + (xx - 256) ** 2 <= 60**2] = 3
    for cx in (170, 342):
        predicted[(yy - 270) ** 2 + (xx - cx) ** 2 <= (26 + z) ** 2] = 5
    mask = np.zeros((SIZE, SIZE), bool)
    mask[200:320, 180:340] = True
    u = np.exp(-(((yy - 260) / 60.0) ** 2 + ((xx - 260) / 80.0) ** 2)) * 0.01
    return mask, predicted, u.astype(np.float32)


def annotating_project(tmp_path, settings, depth: int = 5):
    """(project, annotator, lead, query ids): a step in state annotating with two open queries (z 2 and 3)
    on a phantom of ``depth`` slices."""
    from tests.backend.factories import use_tmp_storage

    use_tmp_storage(settings, tmp_path)
    pool = PoolFactory()
    project = ProjectFactory(label_set=label_set(), pools=[pool], name="Hip study")
    scan = scan_with_volume(pool, phantom_hu(depth), name="patient 007")
    annotator = UserFactory(username="anna")
    lead = UserFactory(username="leo")
    Membership.objects.create(project=project, user=annotator, role=Membership.Role.ANNOTATOR)
    Membership.objects.create(project=project, user=lead, role=Membership.Role.LEAD)
    step = AcquisitionStep.objects.create(
        project=project, number=1, state=State.ANNOTATING, strategy="tau", tau=project.tau,
        slices_per_step=2, k_uncertain=4, mc_samples=2, started_by=lead,
        transitions=[{"state": s, "at": timezone.now().isoformat()} for s in ("created", "inferring", "selecting",
                                                                               "annotating")])
    ids = []
    for z in (2, 3):
        mask, predicted, u = query_rasters(z)
        q = Query.objects.create(step=step, scan=scan, z=z, height=SIZE, width=SIZE, mask=codec.pack_mask(mask),
                                 predicted=codec.pack_labels(predicted), uncertainty=codec.pack_float16(u),
                                 n_queried=int(mask.sum()), n_pixels=SIZE * SIZE)
        ids.append(q.id)
    return project, annotator, lead, ids


def lead_history(tmp_path, settings, *, name: str = "Thigh study", strategy: str = "tau", gain: float = 0.1):
    """(project, lead): three finished steps with answered queries and model versions, ready to start step 4.

    ``gain``: how much the mean Dice grows per step (to tell compared strategies apart).
    """
    from tests.backend.factories import use_tmp_storage

    use_tmp_storage(settings, tmp_path)
    pool = PoolFactory()
    project = ProjectFactory(label_set=label_set(), pools=[pool], name=name, stop_target_dice=0.85,
                             strategy=strategy)
    scan = scan_with_volume(pool, phantom_hu(depth=4), name="patient 012")
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD, user=UserFactory(username="leo")).user
    annotators = [MembershipFactory(project=project, role=Membership.Role.ANNOTATOR,
                                    user=UserFactory(username=n)).user for n in ("anna", "ben")]
    rng = np.random.default_rng(1)
    mask, predicted, u = query_rasters(0)
    start = timezone.now() - timedelta(days=3)
    for number in (1, 2, 3):
        step = AcquisitionStep.objects.create(
            project=project, number=number, state=State.DONE, strategy=strategy, tau=project.tau, slices_per_step=4,
            k_uncertain=8, mc_samples=4, started_by=lead, percent=100.0, finished=start + timedelta(hours=number),
            transitions=[{"state": "done", "at": (start + timedelta(hours=number)).isoformat()}])
        for z in range(4):
            n_q = int(rng.integers(800, 6000) / number)
            Query.objects.create(
                step=step, scan=scan, z=z if number == 1 else z, height=SIZE, width=SIZE, mask=codec.pack_mask(mask),
                predicted=codec.pack_labels(predicted), uncertainty=codec.pack_float16(u), n_queried=n_q,
                n_pixels=SIZE * SIZE, status=Query.Status.ANSWERED, answered_by=annotators[z % 2],
                answered_at=start + timedelta(hours=number, minutes=z), seconds_spent=float(rng.integers(40, 200)))
        structures = {}
        for value, (name, _) in enumerate(STRUCTURES, start=1):
            dice = float(np.clip(0.55 + gain * number + rng.normal(0, 0.05) - (0.12 if value == 3 else 0), 0, 1))
            psv = float((1 - dice) * 0.02 + rng.normal(0, 0.0005))
            structures[str(value)] = {"name": name, "dice": dice, "asd": 2.0 / number, "psv": psv,
                                      "predicted_dice": float(np.clip(1 - psv / 0.02, 0, 1))}
        ModelVersion.objects.create(project=project, step=step, number=number, checkpoint="acquisition/models/x.pt",
                                    metrics={"structures": structures},
                                    calibration={"alpha": -50.0, "beta": 1.0, "pooled": True, "per_structure": {},
                                                 "n_pairs": 24, "correlation": -0.8, "mae": 0.02})
    TrainingSlice.objects.create(project=project, scan=scan, z=0, height=SIZE, width=SIZE,
                                 labels=codec.pack_labels(predicted), answered=codec.pack_mask(mask),
                                 source=TrainingSlice.Source.REFERENCE)
    return project, lead


def scan_segmentation(project) -> Segmentation:
    """A finished segmentation of the project's first scan by its newest model, with its report."""
    from backend.imaging.volumes import save_array

    scan = project.pools.first().scans.first()
    labels = np.stack([query_rasters(z)[1] for z in range(scan.shape[0])])
    u = np.stack([query_rasters(z)[2] for z in range(scan.shape[0])]).astype(np.float16)
    version = ModelVersion.objects.filter(project=project).order_by("-number").first()
    voxel_ml = float(np.prod(scan.geometry["spacing"])) / 1000.0
    report = []
    for value, (name, _) in enumerate(STRUCTURES, start=1):
        n = int((labels == value).sum())
        s = version.metrics["structures"][str(value)]
        report.append({"name": name, "value": value, "voxels": n, "volume_ml": n * voxel_ml, "mean_hu": 40.0,
                       "psv": s["psv"], "predicted_dice": s["predicted_dice"]})
    return Segmentation.objects.create(
        project=project, model_version=version, scan=scan, status="done",
        labels=save_array(labels.astype(np.uint8), "acquisition/segmentations/labels.npy"),
        uncertainty=save_array(u, "acquisition/segmentations/uncertainty.npy"), report=report,
        finished=timezone.now())


def labelled_slice(project, scan, z: int, labels: np.ndarray, *, source: str = TrainingSlice.Source.QUERY):
    """A training-set row for slice ``z`` of ``scan``: (H, W) uint8 ``labels``, answered wherever not 255."""
    return TrainingSlice.objects.create(project=project, scan=scan, z=z, height=labels.shape[0], width=labels.shape[1],
                                        labels=codec.pack_labels(labels), answered=codec.pack_mask(labels != 255),
                                        source=source)

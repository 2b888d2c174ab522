"""Demo data: a project on procedural phantoms, ready for its first acquisition step.

``seed_demo_project(admin)`` is the seeder for ``manage.py up`` (idempotent: a second
call returns the existing project). ``phantom_project`` builds the same kind of
project with other sizes (integration tests, simulate_annotators on phantoms).

The phantoms are written straight onto the working-grid convention (1 mm slices,
360 mm field of view) as a short slab around the hips; the reference label map
of every scan is complete, and the training set starts from ``seed_fraction`` of
each pool scan's slices.
"""

from __future__ import annotations

import hashlib

import numpy as np
from django.db import transaction

from backend.acquisition import ml_adapter

DEMO_NAME = "Demo: phantom hips"
FOV_MM = 360.0
# Small projects (tests, scripted runs): a tiny network that trains in seconds.
SMALL_NETWORK = {"matrix": 128, "max_epochs": 12, "batch_size": 8, "patience": 0, "augment": False,
                 "val_samples": 2}
# The README's demo: one step (bootstrap training, inference, selection, training,
# evaluation) within about 5 minutes on 2 cores (docs/acquisition.md), with a network
# that learns something. The `tiny` net reached a test Dice of 0.01 on the demo's
# labelled slices, `fast` on a 64 x 64 matrix with batch 4 and half of the pool
# labelled 0.23 (docs/scripts/demo_network.py, docs/acquisition.md), so that tau queries
# part of a slice instead of all of it.
DEMO_PROFILE = "fast"
DEMO_NETWORK = {"matrix": 64, "max_epochs": 40, "batch_size": 4, "patience": 0, "augment": False,
                "val_samples": 2}
DEMO_SEED_FRACTION = 0.5


def _phantom_scan(pool, seed: int, shape: tuple[int, int, int], label_set, user):
    from backend.imaging.models import ReferenceLabelMap, Scan
    from backend.imaging.volumes import save_array

    name = f"phantom-{seed}"
    existing = Scan.objects.filter(pool=pool, name=name).first()
    if existing is not None:
        return existing
    hu, labels, geometry = ml_adapter.phantom_volume(seed, shape=shape, fov_mm=FOV_MM)
    scan = Scan.objects.create(
        pool=pool, name=name, original_geometry=geometry, geometry=geometry, source_format="phantom",
        volume=save_array(hu, f"scans/phantoms/{name}.npy"), imported_by=user,
        content_hash=hashlib.sha256(hu.tobytes()).hexdigest(), modality="CT",
        series_description=f"procedural phantom, seed {seed}")
    ReferenceLabelMap.objects.create(scan=scan, label_set=label_set, labelled_slices=list(range(shape[0])),
                                     labels=save_array(labels, f"labels/phantoms/{name}.npy"),
                                     source_name=f"{name} (exact phantom labels)")
    return scan


@transaction.atomic
def phantom_project(
    *,
    name: str,
    admin,
    n_pool: int = 3,
    n_test: int = 2,
    shape: tuple[int, int, int] = (24, 128, 128),
    seed_fraction: float = 0.1,
    network_profile: str = "tiny",
    network_config: dict | None = None,
    first_seed: int = 1,
    **fields,
):
    """A project (admin as its admin) on ``n_pool`` + ``n_test`` phantoms of ``shape`` (z, y, x).

    Idempotent on ``name``. Phantom seeds are first_seed, first_seed + 1, ...; scans are
    named ``phantom-<seed>``, the last ``n_test`` are the project's test scans.
    """
    from backend.acquisition.steps.training_set import training_set_seed
    from backend.imaging.models import Pool
    from backend.projects.models import DEFAULT_LABEL_SET_NAME, LabelSet, Membership, Project

    project = Project.objects.filter(name=name).first()
    if project is not None:
        return project
    label_set = LabelSet.objects.get(name=DEFAULT_LABEL_SET_NAME)
    pool, _ = Pool.objects.get_or_create(name=f"{name} pool", defaults={"created_by": admin,
                                                                       "description": "procedural phantoms"})
    scans = [_phantom_scan(pool, first_seed + i, shape, label_set, admin) for i in range(n_pool + n_test)]
    defaults = {"slices_per_step": 4, "k_uncertain": 12, "mc_samples": 5, "tau": 2.5e-3}
    project = Project.objects.create(
        name=name, label_set=label_set, network_profile=network_profile,
        network_config=dict(SMALL_NETWORK if network_config is None else network_config), created_by=admin,
        description="Phantom CTs with exact labels: try one acquisition step.", **(defaults | fields))
    project.pools.add(pool)
    project.test_scans.add(*scans[n_pool:])
    Membership.objects.get_or_create(project=project, user=admin, defaults={"role": Membership.Role.ADMIN})
    training_set_seed(project=project, fraction=seed_fraction)
    return project


def seed_demo_project(admin):
    """The README's demo: 3 pool + 1 test phantoms (24 slices of 128 x 128), half of the pool slices labelled.

    The first acquisition step is started right away, so that the worker has queries
    ready for a first-time visitor within a few minutes.
    """
    from backend.acquisition.models import AcquisitionStep
    from backend.acquisition.steps.services import step_start

    project = phantom_project(name=DEMO_NAME, admin=admin, n_pool=3, n_test=1, shape=(24, 128, 128),
                              seed_fraction=DEMO_SEED_FRACTION, network_profile=DEMO_PROFILE,
                              network_config=DEMO_NETWORK)
    if not AcquisitionStep.objects.filter(project=project).exists():
        step_start(project=project, user=admin)
    return project


def reference_slice(scan, z: int) -> np.ndarray:
    """(y, x) uint8 reference labels of one slice (scripted annotators answer from these)."""
    from backend.imaging.models import ReferenceLabelMap

    ref = ReferenceLabelMap.objects.filter(scan=scan).first()
    return np.asarray(ml_adapter.reference_labels(ref)[z])

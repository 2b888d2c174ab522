"""factory-boy factories shared by the backend tests (add yours; keep the others)."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from backend.imaging.models import Pool
from backend.projects.models import DEFAULT_LABEL_SET_NAME, Label, LabelSet, Membership, Project


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password("pw-123456")


class LabelSetFactory(factory.django.DjangoModelFactory):
    """A small label set: values 1..n_labels (``labels__n`` on creation)."""

    class Meta:
        model = LabelSet
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"label set {n}")

    @factory.post_generation
    def labels(self, create, extracted, **kwargs):
        if not create:
            return
        for value in range(1, int(kwargs.get("n", 2)) + 1):
            Label.objects.create(label_set=self, value=value, name=f"structure {value}", colour="#ff0000")


class PoolFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pool

    name = factory.Sequence(lambda n: f"pool {n}")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"project {n}")
    label_set = factory.SubFactory(LabelSetFactory)

    @factory.post_generation
    def pools(self, create, extracted, **kwargs):
        if create and extracted:
            self.pools.add(*extracted)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.LEAD


# --- CT imports -------------------------------------------------------------------------


def use_tmp_storage(settings, tmp_path) -> None:
    """Media, staging, upload-temp and cache folders under ``tmp_path``; Celery runs eagerly."""
    for key, sub in (("MEDIA_ROOT", "media"), ("MYOLABEL_STAGING_DIR", "staging"),
                     ("FILE_UPLOAD_TEMP_DIR", "upload-tmp"), ("MYOLABEL_CACHE_DIR", "cache")):
        (tmp_path / sub).mkdir(exist_ok=True)
        setattr(settings, key, tmp_path / sub if key != "FILE_UPLOAD_TEMP_DIR" else str(tmp_path / sub))
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast factories


def stored_files(root) -> list[str]:
    """Every file under a media folder, as sorted relative paths."""
    from pathlib import Path

    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# --- acquisition ------------------------------------------------------------------------


def scan_with_volume(pool, hu, *, name: str = "", geometry=None, labels=None, label_set=None,
                     labelled_slices=None):
    """A ready Scan whose working-grid volume is ``hu`` (z, y, x) int16, optionally with a reference label map.

    Needs media storage in a temporary folder (``use_tmp_storage``).
    """
    import hashlib
    import uuid

    import numpy as np

    from backend.imaging.models import ReferenceLabelMap, Scan
    from backend.imaging.volumes import save_array
    from mltasks.geometry import Geometry

    hu = np.ascontiguousarray(hu, dtype=np.int16)
    geometry = geometry or Geometry(shape=hu.shape, spacing=(1.0, 360.0 / hu.shape[1], 360.0 / hu.shape[2]))
    scan = Scan.objects.create(
        pool=pool, name=name or f"scan {Scan.objects.count() + 1}", original_geometry=geometry.to_dict(),
        geometry=geometry.to_dict(), volume=save_array(hu, "scans/test.npy"), source_format="nifti",
        # Unique per scan: the database refuses the same pixel data twice, and tests reuse arrays.
        content_hash=hashlib.sha256(hu.tobytes() + uuid.uuid4().bytes).hexdigest())
    if labels is not None:
        ReferenceLabelMap.objects.create(
            scan=scan, label_set=label_set, labels=save_array(np.asarray(labels, np.uint8), "labels/test.npy"),
            labelled_slices=list(range(hu.shape[0])) if labelled_slices is None else list(labelled_slices))
    return scan


# One epoch never makes a model the guard trusts: these projects keep the paper's Eq. 7 so that their
# steps query pixels at tau (tests/backend/test_step_guard.py tests the guard itself).
TINY_NETWORK = {"max_epochs": 1, "batch_size": 8, "augment": False, "val_samples": 2, "patience": 0,
                "label_rule": "paper"}


def acquisition_project(*, n_pool: int = 2, n_test: int = 1, shape=(12, 64, 64), seed_fraction: float | None = 0.25,
                        **project_fields):
    """A project on tiny phantoms: pool scans and test scans with full references, a lead and two annotators.

    Returns (project, lead, annotators). The training set is seeded with ``seed_fraction``
    (None: not seeded). Needs ``use_tmp_storage``.
    """
    from backend.projects.models import LabelSet
    from mltasks.phantom import generate_phantom

    label_set = LabelSet.objects.get(name=DEFAULT_LABEL_SET_NAME)
    pool = PoolFactory()
    fields = {"network_profile": "tiny", "network_config": dict(TINY_NETWORK), "slices_per_step": 2,
              "k_uncertain": 4, "mc_samples": 2, "tau": 1e-3} | project_fields
    project = ProjectFactory(label_set=label_set, pools=[pool], **fields)
    for i in range(n_pool + n_test):
        ph = generate_phantom(100 + i, shape=shape)
        scan = scan_with_volume(pool, ph.hu, name=f"phantom {i}", labels=ph.labels, label_set=label_set)
        if i >= n_pool:
            project.test_scans.add(scan)
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD).user
    annotators = [MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user for _ in range(2)]
    if seed_fraction is not None:
        from backend.acquisition.steps.training_set import training_set_seed

        training_set_seed(project=project, fraction=seed_fraction)
    return project, lead, annotators


# --- REST API -----------------------------------------------------------------------------


def segmentation_with_uncertainty(project, scan, uncertainty):
    """A finished Segmentation of ``scan`` whose stored pixel uncertainty is ``uncertainty`` (z, y, x).

    Creates the ModelVersion it needs (with a placeholder checkpoint file). Needs ``use_tmp_storage``.
    """
    import numpy as np
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.utils import timezone

    from backend.acquisition.models import ModelVersion, Segmentation
    from backend.imaging.volumes import save_array

    number = ModelVersion.objects.filter(project=project).count() + 1
    # A placeholder file, so endpoints that send the checkpoint find one.
    checkpoint = default_storage.save("acquisition/models/placeholder.pt", ContentFile(b"not a checkpoint"))
    version = ModelVersion.objects.create(project=project, number=number, checkpoint=checkpoint)
    return Segmentation.objects.create(
        project=project, model_version=version, scan=scan, status=Segmentation.Status.DONE,
        uncertainty=save_array(np.asarray(uncertainty, np.float16), "acquisition/segmentations/u.npy"),
        finished=timezone.now())


def project_with_data(name: str) -> dict:
    """A project whose pool holds two scans with stored originals and references, a step, a query, a
    training slice and a segmentation (with its model version), plus an admin, a lead and an annotator.

    Returns {"project", "pool", "scans", "users": {role: user}}. Needs ``use_tmp_storage``.
    """
    import numpy as np
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from backend.acquisition import codec
    from backend.acquisition.models import AcquisitionStep, Query, TrainingSlice
    from backend.imaging.models import ScanFile

    label_set = LabelSetFactory(labels__n=2)
    pool = PoolFactory(name=f"{name} pool")
    project = ProjectFactory(name=name, label_set=label_set, pools=[pool])
    hu = np.arange(3 * 8 * 8, dtype=np.int16).reshape(3, 8, 8)
    scans = [scan_with_volume(pool, hu + k, name=f"{name} scan {k}", labels=(hu % 3).astype(np.uint8),
                              label_set=label_set) for k in range(2)]
    for scan in scans:
        stored = default_storage.save(f"originals/{name}/slice.dcm", ContentFile(b"DICM original"))
        ScanFile.objects.create(scan=scan, file=stored, original_name="slice.dcm", size=13)
    segmentation_with_uncertainty(project, scans[0], np.zeros(hu.shape, np.float32))
    step = AcquisitionStep.objects.create(project=project, number=1, strategy="tau", tau=1e-3,
                                          slices_per_step=1, k_uncertain=2, mc_samples=2)
    query = Query.objects.create(step=step, scan=scans[0], z=1, height=8, width=8,
                                 mask=codec.pack_mask(np.ones((8, 8), bool)),
                                 predicted=codec.pack_labels(np.zeros((8, 8), np.uint8)),
                                 uncertainty=codec.pack_float16(np.zeros((8, 8), np.float32)),
                                 n_queried=64, n_pixels=64)
    TrainingSlice.objects.create(project=project, scan=scans[0], z=0, height=8, width=8,
                                 labels=codec.pack_labels(np.ones((8, 8), np.uint8)),
                                 answered=codec.pack_mask(np.ones((8, 8), bool)), source="query", query=query)
    roles = (Membership.Role.ADMIN, Membership.Role.LEAD, Membership.Role.ANNOTATOR)
    users = {role: MembershipFactory(project=project, role=role).user for role in roles}
    return {"project": project, "pool": pool, "scans": scans, "users": users}


def one_torch_thread_with_tmp_storage(settings, tmp_path):
    """Body of a fixture (``yield from``): media in ``tmp_path`` and one torch thread while the
    test runs (the test machine's cores are shared), the thread count restored after."""
    import torch

    use_tmp_storage(settings, tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)

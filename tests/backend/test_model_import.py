"""A start from a previous CT: a project receives another project's model, or an uploaded checkpoint.

Every refusal is checked for its status, code and message, and for leaving nothing behind:
no ModelVersion row and no new file in storage.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from django.conf import settings
from django.core.files import File
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from rest_framework.test import APIClient

from backend.acquisition import ml_adapter
from backend.acquisition.models import AcquisitionStep, ModelVersion
from backend.acquisition.states import State
from backend.acquisition.steps.guarding import step_guard
from backend.acquisition.steps.services import step_start
from backend.projects.models import DEFAULT_LABEL_SET_NAME, LabelSet, Membership
from mltasks.checkpoint import save_checkpoint, validate_checkpoint
from mltasks.labels import LabelSet as MlLabelSet
from mltasks.nets import UNet
from tests.backend.factories import (
    TINY_NETWORK,
    LabelSetFactory,
    MembershipFactory,
    ProjectFactory,
    UserFactory,
    acquisition_project,
    one_torch_thread_with_tmp_storage,
    stored_files,
)
from tests.backend.test_acquisition_phases import answer_all, run_phase

pytestmark = pytest.mark.django_db

LEAD, ANNOTATOR = Membership.Role.LEAD, Membership.Role.ANNOTATOR


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    yield from one_torch_thread_with_tmp_storage(settings, tmp_path)


def _project(name: str, *, label_set=None, profile: str = "tiny", **config):
    """A project without scans (enough to give or receive a model)."""
    label_set = label_set or LabelSet.objects.get(name=DEFAULT_LABEL_SET_NAME)
    return ProjectFactory(name=name, label_set=label_set, network_profile=profile,
                          network_config=dict(TINY_NETWORK) | config)


def _configs(project):
    net, train = ml_adapter.network_configs(project.network_profile, project.network_config,
                                            ml_adapter.n_classes_of(project.label_set))
    return net, train, ml_adapter.pixel_mm_of(project.network_profile, project.network_config)


def _trained_version(project, *, number: int = 0, step=None, seed: int = 0) -> ModelVersion:
    """A model version as a step records it (steps.phases._save_version), without training."""
    net, train, pixel_mm = _configs(project)
    torch.manual_seed(seed)
    path = Path(settings.MYOLABEL_CACHE_DIR) / f"model-{project.pk}-{number}.pt"
    ml_adapter.save_model(path, UNet(net), label_set=ml_adapter.label_set_of(project.label_set), train_config=train,
                          provenance={"project": project.pk, "project_name": project.name, "model_number": number,
                                      "profile": project.network_profile, "pixel_mm": pixel_mm})
    version = ModelVersion(project=project, step=step, number=number, origin={"kind": "trained"},
                           config={"net": net.to_dict(), "train": train.to_dict(), "profile": project.network_profile,
                                   "pixel_mm": pixel_mm},
                           training={"val_dice_per_class": [0.9] * net.n_classes})
    with path.open("rb") as fh:
        version.checkpoint.save(f"project-{project.pk}-model-{number}.pt", File(fh), save=False)
    path.unlink()
    version.save()
    return version


def _client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _import_url(project) -> str:
    return reverse("acq-model-import", kwargs={"project_id": project.pk})


def _copy(user, project, version_id: int):
    return _client(user).post(_import_url(project), {"from_model_version": version_id}, format="json")


def _upload(user, project, content: bytes, name: str = "hip-ct-1.pt"):
    return _client(user).post(_import_url(project), {"checkpoint": SimpleUploadedFile(name, content)},
                              format="multipart")


def _checkpoint_bytes(net, label_set: MlLabelSet | None, **kw) -> bytes:
    torch.manual_seed(0)
    path = Path(settings.MYOLABEL_CACHE_DIR) / "upload.pt"
    save_checkpoint(path, UNet(net), label_set=label_set, **kw)
    content = path.read_bytes()
    path.unlink()
    return content


def _lead_of(*projects):
    user = UserFactory()
    for project in projects:
        MembershipFactory(project=project, user=user, role=LEAD)
    return user


class _RunsCode:
    """Unpickling this would create a file: proof that nothing of a refused upload ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _assert_refused(response, settings, before: list[str], project, *, status: int, code: str, says: str):
    assert response.status_code == status, response.content[:500]
    assert response.data["code"] == code, response.data
    assert says in response.data["detail"], response.data["detail"]
    assert not ModelVersion.objects.filter(project=project).exists()
    assert stored_files(settings.MEDIA_ROOT) == before  # not even a file without its row


# --- from another project -------------------------------------------------------------------


def test_a_copied_model_starts_the_next_ct_without_training_model_0(settings, monkeypatch):
    first = _project("hip CT 1")
    source = _trained_version(first, number=3)
    # Used as it is (adapt_imported off): test_model_transfer.py covers the adaptation on the seed.
    project, lead, (annotator, _) = acquisition_project(n_test=0)
    project.network_config = {**project.network_config, "adapt_imported": False}
    project.save(update_fields=["network_config"])
    MembershipFactory(project=first, user=lead, role=LEAD)

    response = _copy(lead, project, source.pk)
    assert response.status_code == 201, response.data
    imported = ModelVersion.objects.get(project=project)
    assert response.data["id"] == imported.pk and response.data["is_current"]
    assert imported.number == 0 and imported.step is None
    assert imported.origin == {"kind": "project", "project": first.pk, "project_name": "hip CT 1",
                               "model_version": source.pk, "number": 3}
    assert response.data["origin"] == imported.origin
    assert imported.config["net"] == source.config["net"] and imported.config["pixel_mm"] == 4.0
    # The guard does not trust Dice measured on another CT; the source's is kept to be shown.
    assert imported.training["imported"] and imported.training["val_dice_per_class"] is None
    assert imported.training["source_val_dice_per_class"] == source.training["val_dice_per_class"]
    stored = torch.load(imported.checkpoint.path, weights_only=True)
    assert stored["provenance"]["origin"] == imported.origin and "optimizer" not in stored
    assert all(torch.equal(v, stored["model"][k]) for k, v in
               torch.load(source.checkpoint.path, weights_only=True)["model"].items())

    loaded = []
    original = ml_adapter.load_model
    monkeypatch.setattr(ml_adapter, "load_model", lambda path: loaded.append(Path(path)) or original(path))
    step = step_start(project=project, user=lead)
    assert step.number == 1
    assert run_phase(step, State.INFERRING) == "done"
    step.refresh_from_db()
    assert step.state == State.SELECTING
    # No model 0 was trained: the pool was ranked with the imported model.
    assert list(ModelVersion.objects.filter(project=project).values_list("number", flat=True)) == [0]
    assert step.costs["inferring"]["first_model_seconds"] is None
    assert loaded == [Path(imported.checkpoint.path)]

    assert run_phase(step, State.SELECTING) == "done"
    answer_all(step, annotator)
    step.refresh_from_db()
    assert step.state == State.TRAINING
    assert run_phase(step, State.TRAINING) == "done"
    # Training warm-started from the imported weights; the trained model is the next number.
    assert loaded[-1] == Path(imported.checkpoint.path)
    versions = {v.number: v for v in ModelVersion.objects.filter(project=project)}
    assert sorted(versions) == [0, 1]
    assert versions[1].step_id == step.pk and versions[1].origin == {"kind": "trained"}
    provenance = torch.load(versions[1].checkpoint.path, weights_only=True)["provenance"]
    assert provenance == {"project": project.pk, "project_name": project.name, "model_number": 1,
                          "profile": "tiny", "pixel_mm": 4.0}


def test_an_import_after_the_projects_own_models_becomes_the_newest_and_the_next_step_passes_it():
    project, lead, _ = acquisition_project(n_pool=1, n_test=0)
    done = AcquisitionStep.objects.create(project=project, number=1, state=State.DONE, strategy="tau", tau=1e-3,
                                          slices_per_step=1, k_uncertain=2, mc_samples=2)
    _trained_version(project, number=0)
    _trained_version(project, number=1, step=done)
    first = _project("hip CT 1")
    MembershipFactory(project=first, user=lead, role=LEAD)
    response = _copy(lead, project, _trained_version(first, number=5).pk)
    assert response.status_code == 201, response.data
    assert response.data["number"] == 2 and response.data["is_current"]
    listed = _client(lead).get(reverse("acq-models", kwargs={"project_id": project.pk})).data
    assert [(m["number"], m["origin"]["kind"], m["is_current"]) for m in listed] == [
        (0, "trained", False), (1, "trained", False), (2, "project", True)]
    # Steps count steps; the step's model will take the next model number (3).
    step = step_start(project=project, user=lead)
    assert step.number == 2
    # Held-out Dice measured on another CT is not trusted: whole slices until this project trains its own.
    project.network_config = {k: v for k, v in project.network_config.items() if k != "label_rule"}
    assert step_guard(step)["mode"] == "whole_slices"


def test_a_model_of_a_project_with_another_label_set_is_refused_naming_the_difference(settings):
    other = LabelSetFactory(labels__n=2)
    source = _trained_version(_project("knee CT", label_set=other))
    project = _project("hip CT 2")
    lead = _lead_of(project, source.project)
    before = stored_files(settings.MEDIA_ROOT)
    response = _copy(lead, project, source.pk)
    _assert_refused(response, settings, before, project, status=400, code="label_set_mismatch",
                    says="model 0 of project 'knee CT' was trained on another label set: value 1 is ")
    assert "'structure 1' in the checkpoint" in response.data["detail"]
    assert "is missing from the checkpoint" in response.data["detail"]


def test_a_model_of_another_network_profile_is_refused_with_the_profile_to_choose(settings):
    source = _trained_version(_project("hip CT 1", profile="fast"))
    project = _project("hip CT 2", profile="tiny")
    lead = _lead_of(project, source.project)
    before = stored_files(settings.MEDIA_ROOT)
    response = _copy(lead, project, source.pk)
    _assert_refused(response, settings, before, project, status=400, code="architecture_mismatch",
                    says="has another network architecture than this project's (profile 'tiny'): "
                         "width 8 here, 16 in model 0 of project 'hip CT 1'")
    assert "set this project's network profile to 'fast'" in response.data["detail"]


def test_a_model_trained_at_another_pixel_size_is_refused(settings):
    source = _trained_version(_project("hip CT 1"))
    project = _project("hip CT 2", pixel_mm=2.0)
    lead = _lead_of(project, source.project)
    before = stored_files(settings.MEDIA_ROOT)
    _assert_refused(_copy(lead, project, source.pk), settings, before, project, status=400,
                    code="pixel_size_mismatch", says="was trained at 4.0 mm network pixels, this project trains at "
                                                     "2.0 mm network pixels")


def test_a_model_of_the_same_project_is_not_imported_again(settings):
    project = _project("hip CT 1")
    version = _trained_version(project)
    response = _copy(_lead_of(project), project, version.pk)
    assert response.status_code == 400 and response.data["code"] == "same_project", response.data
    assert "is already this project's" in response.data["detail"]
    assert ModelVersion.objects.filter(project=project).count() == 1


@pytest.mark.parametrize("source_role", [None, ANNOTATOR])
def test_the_source_project_must_be_led_by_the_caller(settings, source_role):
    source = _trained_version(_project("hip CT 1"))
    project = _project("hip CT 2")
    lead = _lead_of(project)
    if source_role is not None:
        MembershipFactory(project=source.project, user=lead, role=source_role)
    before = stored_files(settings.MEDIA_ROOT)
    response = _copy(lead, project, source.pk)
    if source_role is None:  # exactly as for a model version that does not exist
        _assert_refused(response, settings, before, project, status=404, code="not_found",
                        says="No model version matches the given query.")
        assert _copy(lead, project, source.pk + 1000).data == response.data
    else:
        _assert_refused(response, settings, before, project, status=403, code="permission_denied",
                        says="Copying a model needs the lead role or higher in its project 'hip CT 1'; "
                             "you are annotator there.")


def test_an_annotator_of_the_receiving_project_may_not_import(settings):
    source = _trained_version(_project("hip CT 1"))
    project = _project("hip CT 2")
    user = _lead_of(source.project)
    MembershipFactory(project=project, user=user, role=ANNOTATOR)
    before = stored_files(settings.MEDIA_ROOT)
    _assert_refused(_copy(user, project, source.pk), settings, before, project, status=403,
                    code="permission_denied", says="This needs the lead role or higher")


@pytest.mark.parametrize("how", ["copy", "upload"])
def test_no_model_is_imported_while_a_step_runs(settings, how):
    source = _trained_version(_project("hip CT 1"))
    project, lead, _ = acquisition_project(n_pool=1, n_test=0)
    MembershipFactory(project=source.project, user=lead, role=LEAD)
    step = step_start(project=project, user=lead)
    before = stored_files(settings.MEDIA_ROOT)
    if how == "copy":
        response = _copy(lead, project, source.pk)
    else:
        response = _upload(lead, project, Path(source.checkpoint.path).read_bytes())
    _assert_refused(response, settings, before, project, status=409, code="step_running",
                    says=f"step {step.number} is still inferring; a model can be imported between steps only")


# --- uploads ---------------------------------------------------------------------------------


def test_a_checkpoint_downloaded_from_one_installation_starts_a_project_in_another(settings):
    first = _project("hip CT 1")
    source = _trained_version(first, number=4)
    download = _client(_lead_of(first)).get(
        reverse("acq-model-checkpoint", kwargs={"project_id": first.pk, "version_id": source.pk}))
    assert download.status_code == 200
    content = b"".join(download.streaming_content)

    project = _project("hip CT 2")
    response = _upload(_lead_of(project), project, content, name="project-1-model-4.pt")
    assert response.status_code == 201, response.data
    imported = ModelVersion.objects.get(project=project)
    assert imported.number == 0 and response.data["is_current"]
    assert imported.origin == {
        "kind": "upload", "filename": "project-1-model-4.pt", "sha256": hashlib.sha256(content).hexdigest(),
        "provenance": {"project": first.pk, "project_name": "hip CT 1", "model_number": 4, "profile": "tiny",
                       "pixel_mm": 4.0}}
    assert imported.config == {"net": source.config["net"], "train": source.config["train"], "profile": "tiny",
                               "pixel_mm": 4.0}
    assert imported.training == {"imported": True, "val_dice_per_class": None}
    # Stored in the registry's own format, with the chain of provenance.
    model, info = validate_checkpoint(Path(imported.checkpoint.path),
                                      label_set=ml_adapter.label_set_of(project.label_set))
    assert info["provenance"]["origin"] == imported.origin and info["provenance"]["project"] == project.pk
    weights = torch.load(source.checkpoint.path, weights_only=True)["model"]
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_a_checkpoint_without_provenance_takes_the_projects_pixel_size(settings):
    project = _project("hip CT 2")
    net, _, _ = _configs(project)
    content = _checkpoint_bytes(net, ml_adapter.label_set_of(project.label_set))
    response = _upload(_lead_of(project), project, content)
    assert response.status_code == 201, response.data
    assert response.data["config"]["pixel_mm"] == 4.0 and response.data["origin"]["provenance"] is None


def _renamed(label_set: MlLabelSet) -> MlLabelSet:
    return MlLabelSet(tuple(replace(lab, name="iliopsoas") if lab.value == 7 else lab for lab in label_set.labels))


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("scan/readme.txt", "not weights")
    return buffer.getvalue()


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


# (what, the file's bytes from (project, marker path), code, a part of the message)
BAD_UPLOADS = [
    ("random bytes", lambda p, m: os.urandom(300), "not_a_checkpoint",
     "hip-ct-1.pt: not a readable MyoLabel checkpoint"),
    ("a zip", lambda p, m: _zip(), "not_a_checkpoint", "hip-ct-1.pt: not a readable MyoLabel checkpoint"),
    ("a plain pickle", lambda p, m: pickle.dumps({"format": "myolabel-unet/1", "model": _RunsCode(m)}),
     "not_a_checkpoint", "hip-ct-1.pt: not a readable MyoLabel checkpoint"),
    ("pickled code in a torch file", lambda p, m: _torch_bytes({"format": "myolabel-unet/1", "model": _RunsCode(m)}),
     "unsafe_checkpoint", "hip-ct-1.pt: refused: the file holds pickled code or objects"),
    ("another torch file", lambda p, m: _torch_bytes({"state_dict": {}}), "not_a_checkpoint",
     "hip-ct-1.pt: not a MyoLabel U-Net checkpoint"),
    ("a renamed structure", lambda p, m: _checkpoint_bytes(_configs(p)[0], _renamed(ml_adapter.label_set_of(p.label_set))),
     "label_set_mismatch", "its label set differs from this project's: value 7 is 'iliacus' here but 'iliopsoas'"),
    ("no label set", lambda p, m: _checkpoint_bytes(_configs(p)[0], None), "label_set_mismatch",
     "stores no label set"),
    ("another architecture", lambda p, m: _checkpoint_bytes(replace(_configs(p)[0], width=4),
                                                            ml_adapter.label_set_of(p.label_set)),
     "architecture_mismatch", "other network architecture: width 8 expected, 4 in the checkpoint; set this "
                              "project's network profile and network_config to the checkpoint's network"),
    ("another pixel size", lambda p, m: _checkpoint_bytes(_configs(p)[0], ml_adapter.label_set_of(p.label_set),
                                                          provenance={"pixel_mm": 2.0}),
     "pixel_size_mismatch", "hip-ct-1.pt was trained at 2.0 mm network pixels, this project trains at 4.0 mm"),
]


@pytest.mark.parametrize(("what", "content", "code", "says"), BAD_UPLOADS, ids=[row[0] for row in BAD_UPLOADS])
def test_a_bad_upload_is_refused_with_its_reason_and_nothing_stored(settings, tmp_path, what, content, code, says):
    project = _project("hip CT 2")
    marker = tmp_path / "ran"
    before = stored_files(settings.MEDIA_ROOT)
    response = _upload(_lead_of(project), project, content(project, marker))
    _assert_refused(response, settings, before, project, status=400, code=code, says=says)
    assert not marker.exists()  # nothing of a pickled object ran
    assert not any(Path(settings.FILE_UPLOAD_TEMP_DIR).iterdir())  # no temporary copy left either


def test_an_oversized_checkpoint_is_refused_before_it_is_read(settings):
    project = _project("hip CT 2")
    lead = _lead_of(project)
    settings.MYOLABEL_MAX_CHECKPOINT_BYTES = 1000
    before = stored_files(settings.MEDIA_ROOT)
    _assert_refused(_upload(lead, project, b"x" * 2000), settings, before, project, status=413, code="too_large",
                    says="hip-ct-1.pt: 2000 bytes, more than the 1000 a checkpoint may have")
    # A request body over the limit (and its multipart framing) is refused on its Content-Length.
    _assert_refused(_upload(lead, project, b"x" * 100_000), settings, before, project, status=413,
                    code="too_large", says="a checkpoint may have at most 1000 (MYOLABEL_MAX_CHECKPOINT_BYTES)")


@pytest.mark.parametrize("body", [{}, "both"])
def test_the_request_names_exactly_one_source(settings, body):
    project = _project("hip CT 2")
    lead = _lead_of(project)
    if body == "both":
        body = {"from_model_version": 1, "checkpoint": SimpleUploadedFile("a.pt", b"x")}
    response = _client(lead).post(_import_url(project), body, format="multipart")
    assert response.status_code == 400 and response.data["code"] == "invalid", response.data
    assert "send either from_model_version (JSON) or a checkpoint file (multipart), not both" in response.data["detail"]
    assert not ModelVersion.objects.filter(project=project).exists()

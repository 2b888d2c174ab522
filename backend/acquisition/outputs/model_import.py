"""A start from a previous CT: a model copied from another project, or an uploaded checkpoint.

The second CT of a study should begin where the first ended: its project receives the
first project's model (or a checkpoint file from another installation) as its newest
model version. The first step then ranks the pool with it instead of training model 0,
and training warm-starts from it (``steps.phases._train``), which needs the same
network configuration and network pixel size; a model that would not warm-start is
refused here rather than silently ignored later.

Nothing of a refused model is stored: every check (access, label set, architecture,
pixel size, the file itself through ``mltasks.checkpoint.validate_checkpoint``, loaded
with ``weights_only=True`` only) runs before the one transaction that writes the file
and the row. The stored file is always re-saved in the registry's own format (weights
and provenance, no optimizer state), whatever the uploaded file held besides.

The held-out Dice of an imported model is not carried into ``training.val_dice_per_class``
(the guard's input): it was measured on another CT, so the guard asks whole slices until
this project's own model is trained (docs/acquisition.md).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files import File
from django.db import transaction
from django.db.models import Max
from django.http import Http404

from backend.acquisition import ml_adapter
from backend.acquisition.errors import StepConflict
from backend.acquisition.models import AcquisitionStep, ModelVersion
from backend.acquisition.states import FINAL
from backend.projects.access import Role, role_in
from backend.projects.models import ROLE_RANK

if TYPE_CHECKING:  # annotations only
    from django.contrib.auth.models import User
    from django.core.files.uploadedfile import UploadedFile

    from backend.projects.models import Project

# Stored as the upload's provenance at most this long (JSON characters): it is shown, never used.
MAX_PROVENANCE_CHARS = 20_000


class CheckpointTooLarge(ValidationError):
    """The uploaded file is larger than MYOLABEL_MAX_CHECKPOINT_BYTES (HTTP 413)."""


def max_checkpoint_bytes() -> int:
    return int(settings.MYOLABEL_MAX_CHECKPOINT_BYTES)


def source_version_for(user: User, version_id: int) -> ModelVersion:
    """The model version to copy, if ``user`` is lead or admin of its project.

    A version that does not exist and one of a project the user is not a member of get the
    same 404, as everywhere (``projects.access``): nobody learns that a foreign model exists.
    """
    version = (ModelVersion.objects.select_related("project", "project__label_set")
               .filter(pk=version_id).first())
    _require_lead(user, version)
    return version


def _require_lead(user: User, version: ModelVersion | None) -> None:
    role = role_in(user, version.project) if version is not None else None
    if role is None:
        raise Http404("No model version matches the given query.")
    if ROLE_RANK[role] < ROLE_RANK[Role.LEAD]:
        raise PermissionDenied(f"Copying a model needs the lead role or higher in its project "
                               f"{version.project.name!r}; you are {role} there.")


def model_version_import(project: Project, *, from_version: ModelVersion | None = None,
                         upload: UploadedFile | None = None, user: User) -> ModelVersion:
    """Make ``from_version`` (another project's model) or ``upload`` (a checkpoint file) the
    newest model version of ``project``; the caller checked that ``user`` leads ``project``.

    Raises:
        StepConflict (409 ``step_running``): a step of the project is unfinished.
        ValidationError (400) with code ``label_set_mismatch``, ``architecture_mismatch``,
            ``pixel_size_mismatch``, ``not_a_checkpoint``, ``unsafe_checkpoint`` or ``same_project``.
        CheckpointTooLarge (413 ``too_large``); Http404 / PermissionDenied for the source.
    """
    if (from_version is None) == (upload is None):
        raise ValidationError("give either from_model_version or a checkpoint file (not both)", code="invalid")
    _refuse_running_step(project)  # early and cheap; checked again under the lock before writing
    net_cfg, _ = ml_adapter.network_configs(project.network_profile, project.network_config,
                                            ml_adapter.n_classes_of(project.label_set))
    pixel_mm = ml_adapter.pixel_mm_of(project.network_profile, project.network_config)
    if from_version is not None:
        raw, name, origin, training = _from_project(project, from_version, user, net_cfg, pixel_mm)
    else:
        raw, name, origin, training = _from_upload(upload)
    try:
        model, info = ml_adapter.checkpoint_validate(raw, name=name, django_label_set=project.label_set,
                                                     net_config=net_cfg, max_bytes=max_checkpoint_bytes())
    except ml_adapter.CheckpointRefused as exc:
        advice = _ARCHITECTURE_ADVICE if exc.code == "architecture_mismatch" else ""
        raise ValidationError(f"{exc}{advice}", code=exc.code) from None
    if upload is not None:
        _check_pixel_size(info.get("provenance"), pixel_mm, name)
        origin["provenance"] = _plain_provenance(info.get("provenance"))
    config = {"net": info["net_config"], "train": info.get("train_config"),
              "profile": project.network_profile, "pixel_mm": pixel_mm}
    return _store(project, model, config=config, origin=origin, training=training)


_ARCHITECTURE_ADVICE = ("; set this project's network profile and network_config to the checkpoint's network "
                        "(acquisition settings), then upload it again")


def _refuse_running_step(project: Project) -> None:
    running = AcquisitionStep.objects.filter(project=project).exclude(state__in=FINAL).first()
    if running is not None:
        raise StepConflict(f"step {running.number} is still {running.state}; a model can be imported between "
                           "steps only: let it finish or cancel it first", code="step_running")


def _from_project(project: Project, source: ModelVersion, user: User, net_cfg, pixel_mm):
    """(checkpoint bytes, name, origin, training) of another project's model, after every check."""
    _require_lead(user, source)  # the view found it through source_version_for; a service checks anyway
    what = f"model {source.number} of project {source.project.name!r}"
    if source.project_id == project.pk:
        raise ValidationError(f"{what} is already this project's; choose a model of another project",
                              code="same_project")
    if source.project.label_set_id != project.label_set_id:
        changes = ml_adapter.label_set_changes(project.label_set, source.project.label_set)
        if changes:
            raise ValidationError(f"{what} was trained on another label set: {'; '.join(changes)}; a model "
                                  "can start only a project with the same structures (names and values)",
                                  code="label_set_mismatch")
    want, got = net_cfg.to_dict(), dict(source.config.get("net") or {})
    differences = [f"{key} {want[key]} here, {got.get(key)} in {what}" for key in want if got.get(key) != want[key]]
    if differences:
        raise ValidationError(
            f"{what} has another network architecture than this project's (profile "
            f"{project.network_profile!r}): {'; '.join(differences)}; set this project's network profile to "
            f"{source.config.get('profile')!r} (and network_config as in that project), then import again",
            code="architecture_mismatch")
    source_pixel = ml_adapter.model_pixel_mm(source.config)
    if source_pixel != pixel_mm:
        raise ValidationError(_pixel_message(what, source_pixel, pixel_mm), code="pixel_size_mismatch")
    try:
        with source.checkpoint.open("rb") as fh:
            raw = fh.read(max_checkpoint_bytes() + 1)  # one more byte: an oversized file is refused by size
    except OSError:  # a registry file lost from storage: say so rather than fail with a server error
        raise ValidationError(f"{what}: its checkpoint file is missing from storage", code="not_a_checkpoint") from None
    origin = {"kind": "project", "project": source.project_id, "project_name": source.project.name,
              "model_version": source.pk, "number": source.number}
    # Shown, not used: the guard must not trust classes for Dice measured on another CT.
    training = {"imported": True, "val_dice_per_class": None,
                "source_val_dice_per_class": (source.training or {}).get("val_dice_per_class")}
    return raw, what, origin, training


def _from_upload(upload: UploadedFile):
    """(checkpoint bytes, name, origin, training) of an uploaded file, size-checked before it is read."""
    name = Path(upload.name or "checkpoint").name[:200] or "checkpoint"
    limit = max_checkpoint_bytes()
    if upload.size is not None and upload.size > limit:
        raise CheckpointTooLarge(f"{name}: {upload.size} bytes, more than the {limit} a checkpoint may have "
                                 "(MYOLABEL_MAX_CHECKPOINT_BYTES)", code="too_large")
    upload.seek(0)
    raw = upload.read(limit + 1)
    origin = {"kind": "upload", "filename": name, "sha256": hashlib.sha256(raw).hexdigest()}
    return raw, name, origin, {"imported": True, "val_dice_per_class": None}


def _pixel_message(what: str, found, expected) -> str:
    def words(mm):
        return "each scan's own pixels" if mm is None else f"{mm} mm network pixels"
    return (f"{what} was trained at {words(found)}, this project trains at {words(expected)}: its training "
            f"could not continue from it; set network_config.pixel_mm (or the profile) to match, then import again")


def _check_pixel_size(provenance, pixel_mm, name: str) -> None:
    """Refuse a checkpoint whose provenance names another network pixel size; without one, the
    project's is assumed (checkpoints saved before provenance was written carry none)."""
    if not isinstance(provenance, dict) or "pixel_mm" not in provenance:
        return
    found = provenance["pixel_mm"]
    if found is not None and (isinstance(found, bool) or not isinstance(found, int | float) or not found > 0):
        raise ValidationError(f"{name}: its provenance names an invalid pixel size {found!r}", code="not_a_checkpoint")
    if (None if found is None else float(found)) != pixel_mm:
        raise ValidationError(_pixel_message(name, found, pixel_mm), code="pixel_size_mismatch")


def _plain_provenance(provenance):
    """The upload's own provenance as stored JSON: plain values only, and not too long (else None)."""
    try:
        text = json.dumps(provenance, allow_nan=False)
    except (TypeError, ValueError):  # tensors or NaN in it: not worth refusing the model for
        return None
    return provenance if len(text) <= MAX_PROVENANCE_CHARS else None


def _store(project: Project, model, *, config: dict, origin: dict, training: dict) -> ModelVersion:
    """Write the checkpoint and the row in one transaction, under the project's lock (as step_start)."""
    with tempfile.TemporaryDirectory(dir=settings.FILE_UPLOAD_TEMP_DIR) as tmp:
        version = ModelVersion(project=project, config=config, training=training, origin=origin)
        try:
            with transaction.atomic():
                type(project).objects.select_for_update().get(pk=project.pk)  # no step starts meanwhile
                _refuse_running_step(project)
                last = ModelVersion.objects.filter(project=project).aggregate(m=Max("number"))["m"]
                # Number 0 when it is the project's first model: it plays model 0's part.
                version.number = 0 if last is None else last + 1
                path = Path(tmp) / "model.pt"
                ml_adapter.save_imported_model(
                    path, model, django_label_set=project.label_set, train_config=config["train"],
                    provenance={"project": project.pk, "project_name": project.name, "model_number": version.number,
                                "profile": project.network_profile, "pixel_mm": config["pixel_mm"], "origin": origin})
                with path.open("rb") as fh:
                    version.checkpoint.save(f"project-{project.pk}-model-{version.number}.pt", File(fh), save=False)
                version.save()
        except BaseException:
            if version.checkpoint.name:  # a refused or failed write leaves no file behind
                version.checkpoint.storage.delete(version.checkpoint.name)
            raise
    return version

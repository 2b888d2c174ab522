"""The "new" arm of ``bench/step_cost.py``: the product's own code path, in this process.

Django runs embedded against a fresh data folder (``MYOLABEL_DATA_DIR``, set by the
parent with no database, Redis or S3 variables, so SQLite, local media and the
filesystem broker). Then, through the services the API and the command line call:

- setup (not timed as a phase): ``migrate``, a superuser, a pool and a project
  (``projects.services.project_create``: profile ``fast``, the default label set,
  the Project model's step defaults unless ``--t`` / ``--epochs`` / ``--new-config``);
- import: ``manage.py import_ct <dicom folder> --pool ... --labels <nifti>``
  (``call_command``: the import job runs here, as the command runs it);
- seed: ``acquisition.steps.training_set.training_set_seed(fraction=...)``;
- ``acquisition.steps.services.step_start`` (what "start next step" calls). Its
  phase task is queued on the filesystem broker, which no worker reads here; each
  phase is run instead by ``acquisition.steps.phases.phase_execute`` with this
  process as runner, so nothing runs twice;
- inferring (model 0 is timed inside it by wrapping ``phases._train``, or read from
  its training history), selecting;
- answers (timed, excluded): ``annotation.services.query_claim_next`` + ``query_submit``
  with the reference labels inside each query mask, until no query is left (the last
  answer moves the step to training, as in the product);
- training, evaluating (no test scan). The step must end ``done``.
"""

from __future__ import annotations

import io
import json
import secrets
import time
from pathlib import Path

import numpy as np
from step_cost_probe import Recorder, acquired_slices

POOL = "step cost"


def run(args, work: Path, phantom: Path, rec: Recorder) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    user, project = setup(args)
    with rec.phase("import"):
        call_command("import_ct", str(phantom / "dicom"), "--pool", POOL, "--labels",
                     str(phantom / "labels.nii.gz"), "--user", user.username, stdout=io.StringIO())
    with rec.phase("seed"):
        added = seed(project, args.seed_fraction)
    step = start(project, user)
    timer = TrainTimer(rec).install()
    for phase in ("inferring", "selecting"):
        with rec.phase(phase):
            run_phase(step.id, phase)
    with rec.phase("answers"):
        answered = answer_all(project, user)
    for phase in ("training", "evaluating"):
        with rec.phase(phase):
            run_phase(step.id, phase)
    model0 = timer.seconds_in("inferring")
    rec.seconds["model0"] = model0 if model0 is not None else model0_from_history(project)
    rec.seconds["inference"] = rec.seconds["inferring"] - rec.seconds["model0"]
    rec.info.update(describe(project, step.id, added, answered, timer))


def setup(args):
    from django.contrib.auth import get_user_model

    from backend.imaging.models import Pool
    from backend.projects.models import DEFAULT_LABEL_SET_NAME, LabelSet
    from backend.projects.services import project_create

    user = get_user_model().objects.create_superuser("bench", "bench@example.org", secrets.token_urlsafe(16))
    pool = Pool.objects.create(name=POOL, created_by=user)
    config = json.loads(args.new_config) if args.new_config else {}
    if args.epochs:
        config["max_epochs"] = args.epochs
    fields = {"mc_samples": args.t} if args.t else {}
    project = project_create(user=user, name="step cost", label_set=LabelSet.objects.get(name=DEFAULT_LABEL_SET_NAME),
                             pools=[pool], network_profile="fast", network_config=config, **fields)
    return user, project


def seed(project, fraction: float) -> int:
    from backend.acquisition.steps.training_set import training_set_seed

    return training_set_seed(project=project, fraction=fraction)


def start(project, user):
    from backend.acquisition.steps.services import step_start

    return step_start(project=project, user=user)


def runner() -> str:
    try:
        from backend.acquisition.steps.leases import this_process
    except ImportError:
        return "bench"
    return this_process("bench")


def run_phase(step_id: int, phase: str) -> None:
    """``phase_execute`` when the step is in ``phase`` (selecting may skip annotating when
    every query answered itself); raises with the step's reason unless it is done."""
    from backend.acquisition.models import AcquisitionStep
    from backend.acquisition.steps.phases import phase_execute

    step = AcquisitionStep.objects.get(pk=step_id)
    if step.state != phase:
        raise RuntimeError(f"step {step_id} is {step.state}, not {phase}: {step.reason}")
    outcome = phase_execute(step_id=step_id, phase=phase, runner=runner())
    if outcome != "done":
        step.refresh_from_db()
        raise RuntimeError(f"{phase} ended {outcome}: step {step.state}: {step.reason}")


def answer_all(project, user) -> int:
    """Answer every open query of the annotating step from the reference labels; how many."""
    from backend.acquisition import codec
    from backend.acquisition.annotation.services import UNLABELLED, query_claim_next, query_submit
    from backend.imaging.models import ReferenceLabelMap
    from backend.imaging.volumes import reference_labels

    refs: dict[int, np.ndarray] = {}
    n = 0
    while (query := query_claim_next(project=project, user=user)) is not None:
        if query.scan_id not in refs:
            ref = ReferenceLabelMap.objects.get(scan_id=query.scan_id, label_set=project.label_set)
            refs[query.scan_id] = reference_labels(ref)
        mask = codec.unpack_mask(query.mask, (query.height, query.width))
        raster = np.where(mask, refs[query.scan_id][query.z], UNLABELLED).astype(np.uint8).ravel()
        query_submit(query=query, user=user, labels=raster, seconds_spent=None)
        n += 1
    return n


class TrainTimer:
    """Wall seconds of every ``phases._train`` call (model 0 inside inferring, then training)."""

    def __init__(self, rec: Recorder) -> None:
        self.rec = rec
        self.calls: list[tuple[str, float]] = []

    def install(self) -> TrainTimer:
        from backend.acquisition.steps import phases

        original = getattr(phases, "_train", None)
        if original is None:
            return self
        timer = self

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                timer.calls.append((timer.rec.current, time.perf_counter() - started))

        phases._train = timed
        return self

    def seconds_in(self, phase: str) -> float | None:
        found = [s for p, s in self.calls if p == phase]
        return sum(found) if found else None


def model0_from_history(project) -> float:
    """Model 0's training seconds from its stored history (when ``phases._train`` is not there)."""
    from backend.acquisition.models import ModelVersion

    training = ModelVersion.objects.get(project=project, number=0).training or {}
    if "seconds" in training:
        return float(training["seconds"])
    history = training.get("history") or [{}]
    return float(history[-1].get("seconds", 0.0))


def describe(project, step_id: int, added: int, answered: int, timer: TrainTimer) -> dict:
    from backend.acquisition.models import AcquisitionStep, ModelVersion, TrainingSlice
    from backend.acquisition.selectors import pool_scans, step_mac

    step = AcquisitionStep.objects.get(pk=step_id)
    scan = pool_scans(project).get()
    queries = list(step.queries.order_by("z").values_list("z", flat=True))
    mac = step_mac(step)
    return {
        "working_shape": list(scan.geometry["shape"]), "working_spacing_mm": list(scan.geometry["spacing"]),
        "original_shape": list(scan.original_geometry["shape"]), "seed_slices": added,
        "scored_slices": int(scan.geometry["shape"][0]) - added, "mc_samples": step.mc_samples,
        "queries": len(queries), "queried_slices": queries, "answered_by_script": answered,
        "queried_pixels": mac.get("queried_pixels"), "query_pixels": mac.get("slice_pixels"), "mac": mac.get("mac"),
        "acquired_queried_slices": acquired_or_none(queries, scan),
        "training_set": TrainingSlice.objects.filter(project=project).count(),
        "model0": summary(ModelVersion.objects.filter(project=project, number=0).first()),
        "model1": summary(ModelVersion.objects.filter(step=step).first()),
        "state": step.state, "timed_train_calls": timer.calls,
    }


def acquired_or_none(zs: list[int], scan) -> int | None:
    try:
        return acquired_slices(zs, scan.geometry, scan.original_geometry)
    except (KeyError, TypeError, ValueError):  # a geometry stored in another form
        return None


def summary(version) -> dict | None:
    if version is None:
        return None
    training = dict(version.training or {})
    training.pop("history", None)
    return {"training": training, "net": version.config.get("net"), "train": version.config.get("train")}

"""The worker phases of a step: inferring, selecting, training, evaluating.

``phase_execute`` is what every phase task calls. It takes the phase's lease
(a conditional UPDATE: a re-delivered or duplicated task for a phase that is
done, or held by a live process, does nothing; a phase whose runner is gone is
taken over, see ``leases``), runs the work with a ``PhaseReporter`` while a
``LeaseKeeper`` thread renews the heartbeat, and records the results in ONE
transaction at the end, after checking it still holds the lease. A worker killed
half-way leaves the step in its phase; the phase then restarts from its beginning
(training: from its last epoch checkpoint) when the task is delivered again or
re-scheduled by ``steps_take_over_orphans`` / ``steps_resume_stalled``.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import transaction

from backend.acquisition import codec, ml_adapter
from backend.acquisition.models import AcquisitionStep, ModelVersion, Query, TrainingSlice
from backend.acquisition.selectors import current_model, pool_scans
from backend.acquisition.states import State
from backend.acquisition.steps.progress import Cancelled, LeaseKeeper, PhaseReporter
from backend.acquisition.steps.services import (
    Claim,
    step_annotating_done,
    step_cancel_acknowledge,
    step_claim_phase,
    step_fail,
    step_transition,
)
from backend.acquisition.steps.training_set import queries_auto_answer_empty
from backend.imaging.volumes import local_path

if TYPE_CHECKING:  # annotations only
    from backend.projects.models import Project

log = logging.getLogger(__name__)


class PhaseLost(Exception):  # noqa: N818
    """The step left the phase (or another worker took it) before the results were recorded."""


def cache_dir() -> Path:
    path = Path(settings.MYOLABEL_CACHE_DIR) / "acquisition"
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_checkpoint(version: ModelVersion) -> Path:
    """A local file holding the version's checkpoint (an atomic cached download when stored remotely)."""
    return local_path(version.checkpoint.name, storage=version.checkpoint.storage)


def phase_execute(*, step_id: int, phase: str, runner: str) -> str:
    """Run ``phase`` of a step if it is still due; returns "done", "skipped", "cancelled" or "failed"."""
    claim = step_claim_phase(step_id=step_id, phase=phase, runner=runner)
    if claim is not Claim.TAKEN:
        why = "is done" if claim is Claim.DONE else "is running in a live worker"
        log.info("step %s: %s %s; nothing to do", step_id, phase, why)
        return "skipped"
    log.info("step %s: %s starts in %s", step_id, phase, runner)
    step = AcquisitionStep.objects.select_related("project", "project__label_set").get(pk=step_id)
    reporter = PhaseReporter(step_id=step.id, project_id=step.project_id, phase=phase, runner=runner)
    try:
        with LeaseKeeper(step_id=step_id, phase=phase, runner=runner):
            WORK[phase](step, reporter, runner)
    except (Cancelled, PhaseLost):
        step_cancel_acknowledge(step_id=step_id, phase=phase)
        return "cancelled"
    except Exception as exc:  # noqa: BLE001 - any failure is recorded on the step for the lead to see
        log.exception("step %s: %s failed", step_id, phase)
        step_fail(step_id=step_id, reason=f"{phase} failed: {type(exc).__name__}: {exc}")
        return "failed"
    return "done"


def _locked_step(step: AcquisitionStep, phase: str, runner: str) -> AcquisitionStep:
    """The step row locked for the final write, if this runner still holds ``phase``."""
    fresh = AcquisitionStep.objects.select_for_update().get(pk=step.pk)
    if fresh.state != phase or fresh.runner != runner or fresh.cancel_requested:
        raise PhaseLost(f"step {step.pk} is {fresh.state} (runner {fresh.runner!r}); results of {phase} dropped")
    return fresh


def _configs(project: Project):
    n_classes = ml_adapter.n_classes_of(project.label_set)
    return ml_adapter.network_configs(project.network_profile, project.network_config, n_classes)


def _training_data(project: Project) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) HU slices and uint8 labels of the whole training set."""
    images, labels = [], []
    rows = TrainingSlice.objects.filter(project=project).select_related("scan").order_by("scan_id", "z")
    volumes: dict[int, np.ndarray] = {}
    for row in rows:
        if row.scan_id not in volumes:
            volumes[row.scan_id] = ml_adapter.scan_hu(row.scan)
        images.append(np.asarray(volumes[row.scan_id][row.z]))
        labels.append(codec.unpack_labels(row.labels, (row.height, row.width)))
    if not images:
        raise ValueError("the training set is empty; seed it from reference label maps")
    return np.stack(images), np.stack(labels)


# Warm start by default: in the simulation it kept a higher Dice than re-initialising
# and took 56 % of the time (docs/simulation.md, run 4). ``network_config.warm_start =
# false`` re-initialises as the paper did.
WARM_START = True


def _train(step, reporter, *, path: Path):
    project = step.project
    net_cfg, train_cfg = _configs(project)
    images, labels = _training_data(project)
    init = None
    previous = current_model(project) if project.network_config.get("warm_start", WARM_START) else None
    # A changed architecture cannot start from the old weights: it is trained from scratch.
    if previous is not None and previous.config.get("net") == net_cfg.to_dict():
        init = ml_adapter.load_model(local_checkpoint(previous))
    return ml_adapter.train_model(images, labels, net_cfg, train_cfg, label_set=ml_adapter.label_set_of(project.label_set),
                              checkpoint_path=path, init_model=init, on_progress=reporter), net_cfg, train_cfg


def _save_version(project: Project, step, model, summary, net_cfg, train_cfg, number: int) -> ModelVersion:
    path = cache_dir() / f"step-{step.pk}-model-{number}.pt"
    ml_adapter.save_model(path, model, label_set=ml_adapter.label_set_of(project.label_set), train_config=train_cfg)
    version = ModelVersion(project=project, step=step if number else None, number=number,
                           config={"net": net_cfg.to_dict(), "train": train_cfg.to_dict(),
                                   "profile": project.network_profile},
                           training=summary)
    with path.open("rb") as fh:
        version.checkpoint.save(f"project-{project.pk}-model-{number}.pt", File(fh), save=False)
    version.save()
    return version


# --- inferring ------------------------------------------------------------------------

def run_inference(step: AcquisitionStep, reporter: PhaseReporter, runner: str) -> None:
    project = step.project
    version = current_model(project)
    bootstrap = None
    if version is None:
        reporter.segment(0, 50, "training the first model on the initial training set")
        bootstrap = _train(step, reporter, path=cache_dir() / f"step-{step.pk}-bootstrap.pt")
        model = bootstrap[0][0]
    else:
        model = ml_adapter.load_model(local_checkpoint(version))
    reporter.segment(50 if bootstrap else 0, 100, "MC-dropout inference over the pool")
    ranking = _rank_pool(step, model, reporter)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **ranking.to_arrays())
    with transaction.atomic():
        fresh = _locked_step(step, State.INFERRING, runner)
        if bootstrap is not None:
            (model, summary), net_cfg, train_cfg = bootstrap
            _save_version(project, fresh, model, summary, net_cfg, train_cfg, number=0)
        fresh.inference_file.save(f"step-{step.pk}.npz", ContentFile(buffer.getvalue()), save=False)
        step_transition(step=fresh, target=State.SELECTING)
    (cache_dir() / f"step-{step.pk}-bootstrap.pt").unlink(missing_ok=True)


def _rank_pool(step: AcquisitionStep, model, reporter: PhaseReporter) -> ml_adapter.SliceRanking:
    """Score every unlabelled pool slice, scan by scan, in the chunks the simulation uses."""
    labelled = set(TrainingSlice.objects.filter(project=step.project).values_list("scan_id", "z"))
    todo = [(scan, [z for z in range(scan.shape[0]) if (scan.id, z) not in labelled])
            for scan in pool_scans(step.project)]
    total = sum(len(zs) for _, zs in todo)
    if total == 0:
        raise ValueError("every pool slice is already in the training set; add scans to the pool")
    ranking = ml_adapter.SliceRanking(keep=step.k_uncertain)
    done = 0
    for scan, zs in todo:
        hu = ml_adapter.scan_hu(scan)
        for chunk in ml_adapter.slice_chunks(zs):
            scored = ml_adapter.score_hu_slices(np.asarray(hu[chunk]), model, t_samples=step.mc_samples, seed=step.pk)
            ranking.add([(scan.id, z) for z in chunk], scored)
            done += len(chunk)
            reporter.update(done / total)
    return ranking


# --- selecting ------------------------------------------------------------------------

def run_selection(step: AcquisitionStep, reporter: PhaseReporter, runner: str) -> None:
    reporter.segment(0, 100, "choosing representative uncertain slices")
    with step.inference_file.open("rb") as fh:
        ranking = ml_adapter.SliceRanking.from_arrays(dict(np.load(io.BytesIO(fh.read()))), keep=step.k_uncertain)
    plan = ml_adapter.step_plan(step)
    selection = ml_adapter.choose_slices(ranking.scores, ranking.descriptors, plan, seed=step.pk)
    reporter.update(0.5)
    keys, scores = ranking.keys, ranking.scores
    labels, u = _working_maps_of(step, ranking, selection.chosen)
    masks = ml_adapter.query_masks(u, plan, seed=step.pk)
    with transaction.atomic():
        fresh = _locked_step(step, State.SELECTING, runner)
        fresh.candidates = [[int(keys[i][0]), int(keys[i][1]), float(scores[i])] for i in selection.candidates]
        fresh.selected = [[int(keys[i][0]), int(keys[i][1])] for i in selection.chosen]
        Query.objects.bulk_create([
            Query(step=fresh, scan_id=int(keys[i][0]), z=int(keys[i][1]), height=masks[j].shape[0],
                  width=masks[j].shape[1], mask=codec.pack_mask(masks[j]), predicted=codec.pack_labels(labels[j]),
                  uncertainty=codec.pack_float16(u[j]), n_queried=int(masks[j].sum()), n_pixels=int(masks[j].size))
            for j, i in enumerate(selection.chosen)
        ])
        step_transition(step=fresh, target=State.ANNOTATING)
        queries_auto_answer_empty(step=fresh)
        step_annotating_done(step_id=fresh.id)  # every query answered itself: straight to training


def _working_maps_of(step, ranking, chosen: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels and u of the chosen slices on their scans' working grid (kept by the
    ranking, else predicted again as the simulation does)."""
    from backend.imaging.models import Scan

    if not chosen:
        return np.zeros((0, 0, 0), np.uint8), np.zeros((0, 0, 0), np.float32)
    keys = ranking.keys
    scans = {scan.pk: scan for scan in Scan.objects.filter(pk__in={int(keys[i][0]) for i in chosen})}
    model = None

    def rescore(i: int):
        nonlocal model
        model = model or ml_adapter.load_model(local_checkpoint(current_model(step.project)))
        scan_id, z = (int(v) for v in keys[i])
        hu = ml_adapter.scan_hu(scans[scan_id])
        return ml_adapter.score_hu_slices(np.asarray(hu[[z]]), model, t_samples=step.mc_samples, seed=step.pk)

    labels, u = ml_adapter.chosen_maps(ranking, chosen, rescore)
    working = [ml_adapter.working_maps(labels[[j]], u[[j]], tuple(scans[int(keys[i][0])].shape[1:]))
               for j, i in enumerate(chosen)]
    return np.concatenate([w[0] for w in working]), np.concatenate([w[1] for w in working])


# --- training -------------------------------------------------------------------------

def run_training(step: AcquisitionStep, reporter: PhaseReporter, runner: str) -> None:
    reporter.segment(0, 100, "training on the grown training set")
    path = cache_dir() / f"step-{step.pk}-train.pt"
    (model, summary), net_cfg, train_cfg = _train(step, reporter, path=path)
    with transaction.atomic():
        fresh = _locked_step(step, State.TRAINING, runner)
        ModelVersion.objects.filter(step=fresh).delete()  # a half-recorded earlier attempt, if any
        _save_version(fresh.project, fresh, model, summary, net_cfg, train_cfg, number=fresh.number)
        step_transition(step=fresh, target=State.EVALUATING)
    path.unlink(missing_ok=True)


# --- evaluating -----------------------------------------------------------------------

def run_evaluation(step: AcquisitionStep, reporter: PhaseReporter, runner: str) -> None:
    from backend.imaging.models import ReferenceLabelMap

    project = step.project
    version = ModelVersion.objects.get(step=step)
    model = ml_adapter.load_model(local_checkpoint(version))
    n_classes = ml_adapter.n_classes_of(project.label_set)
    refs = list(ReferenceLabelMap.objects.filter(scan__in=project.test_scans.all(), label_set=project.label_set)
                .select_related("scan").order_by("scan_id"))
    per_scan, psv_rows, dice_rows = [], [], []
    for k, ref in enumerate(refs):
        reporter.segment(100 * k / len(refs), 100 * (k + 1) / len(refs), f"segmenting test scan {ref.scan.name}")
        hu = ml_adapter.scan_hu(ref.scan)
        pred, u = ml_adapter.segment_volume(np.asarray(hu), model, t_samples=step.mc_samples, on_progress=reporter)
        metrics = ml_adapter.evaluate(pred, ml_adapter.reference_labels(ref), ref.scan.geometry["spacing"], n_classes)
        psv = ml_adapter.psv(pred, u, n_classes)
        dice = np.full(n_classes, np.nan)
        for value, m in metrics.items():
            dice[value] = m["dice"]
        psv_rows.append(psv)
        dice_rows.append(dice)
        per_scan.append({"scan": ref.scan_id, "name": ref.scan.name, "metrics": metrics, "psv": psv})
    calibration, why = ml_adapter.calibration_fit(psv_rows, dice_rows)
    structures = _structure_table(project, per_scan, calibration)
    stop = _stop_reached(project, structures)
    scans_json = [{"scan": s["scan"], "name": s["name"],
                   "dice": {str(v): m["dice"] for v, m in s["metrics"].items()},
                   "asd": {str(v): _finite(m["asd"]) for v, m in s["metrics"].items()},
                   "psv": [_finite(x) for x in s["psv"]]} for s in per_scan]
    with transaction.atomic():
        fresh = _locked_step(step, State.EVALUATING, runner)
        version.metrics = {"structures": structures, "scans": scans_json, "calibration_note": why,
                           # The fit's own MAE is in-sample; this one predicts each test scan
                           # from the line of the others.
                           "calibration_mae_held_out": ml_adapter.calibration_held_out_mae(psv_rows, dice_rows)}
        version.calibration = calibration
        version.save(update_fields=["metrics", "calibration"])
        fresh.stop_reached = stop
        step_transition(step=fresh, target=State.DONE)


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _mean(values) -> float | None:
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _structure_table(project: Project, per_scan: list[dict], calibration: dict | None) -> dict:
    """{value: {name, kind, dice, asd, psv, predicted_dice}} averaged over the test scans."""
    table = {}
    for label in project.label_set.labels.order_by("value"):
        v = label.value
        psvs = [s["psv"][v] for s in per_scan]
        predicted = [float(ml_adapter.predicted_dice(calibration, np.array([p]))[0]) if calibration and np.isfinite(p)
                     else None for p in psvs]
        table[str(v)] = {
            "name": label.name, "kind": label.kind,
            "dice": _mean(s["metrics"][v]["dice"] for s in per_scan if v in s["metrics"]),
            "asd": _mean(s["metrics"][v]["asd"] for s in per_scan if v in s["metrics"]),
            "psv": _mean(psvs),
            "predicted_dice": _mean(predicted),
        }
    return table


def _stop_reached(project: Project, structures: dict) -> bool:
    """The stopping rule: every muscle's mean predicted Dice on the test scans >= the target."""
    target = project.stop_target_dice
    muscles = [row for row in structures.values() if row["kind"] == "muscle"]
    if target is None or not muscles:
        return False
    return all(row["predicted_dice"] is not None and row["predicted_dice"] >= target for row in muscles)


WORK = {
    State.INFERRING: run_inference,
    State.SELECTING: run_selection,
    State.TRAINING: run_training,
    State.EVALUATING: run_evaluation,
}

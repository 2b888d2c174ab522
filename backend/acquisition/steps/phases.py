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
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import Max

from backend.acquisition import codec, ml_adapter
from backend.acquisition.held_out.selectors import held_out_excluded
from backend.acquisition.models import AcquisitionStep, ModelVersion, Query, TrainingSlice
from backend.acquisition.selectors import current_model, pool_scans
from backend.acquisition.states import State
from backend.acquisition.steps.coldstart import (
    cold_start_guard,
    cold_start_queries,
    cold_start_slices,
    needs_cold_start,
)
from backend.acquisition.steps.evaluation import evaluate_model
from backend.acquisition.steps.guarding import (
    adaptation_verdict,
    guarded_masks,
    guarded_predictions,
    step_guard,
)
from backend.acquisition.steps.progress import Cancelled, LeaseKeeper, PhaseReporter
from backend.acquisition.steps.scan_inputs import ScanInputs
from backend.acquisition.steps.selectors import WARM_START, adapts_import
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


def _configs(project: Project, *, first: bool):
    """(NetConfig, TrainConfig with this phase's training budget, network pixel mm) of a project."""
    n_classes = ml_adapter.n_classes_of(project.label_set)
    net_cfg, train_cfg = ml_adapter.network_configs(project.network_profile, project.network_config, n_classes)
    budget = ml_adapter.training_budget(project.network_config, first=first)
    train_cfg = replace(train_cfg, max_epochs=budget["max_epochs"], max_seconds=budget["max_seconds"])
    return net_cfg, train_cfg, ml_adapter.pixel_mm_of(project.network_profile, project.network_config)


def _training_data(project: Project, *, pixel_mm: float | None, depth: int) -> list:
    """Per scan of the training set: ((n, H, W) HU, (n, H, W) uint8 labels, its network grid, the n z)."""
    rows = TrainingSlice.objects.filter(project=project).select_related("scan").order_by("scan_id", "z")
    by_scan: dict[int, list] = {}
    for row in rows:
        by_scan.setdefault(row.scan_id, []).append(row)
    if not by_scan:
        raise ValueError("the training set is empty; seed it from reference label maps")
    samples = []
    for scan_rows in by_scan.values():
        scan = scan_rows[0].scan
        hu = ml_adapter.scan_hu(scan)
        images = np.stack([np.asarray(hu[row.z]) for row in scan_rows])
        labels = np.stack([codec.unpack_labels(row.labels, (row.height, row.width)) for row in scan_rows])
        grid = ml_adapter.network_grid(scan.geometry, pixel_mm=pixel_mm, depth=depth)
        samples.append((images, labels, grid, [row.z for row in scan_rows]))
    return samples


def _train(step, reporter, *, path: Path, first: bool):
    project = step.project
    net_cfg, train_cfg, pixel_mm = _configs(project, first=first)
    samples = _training_data(project, pixel_mm=pixel_mm, depth=net_cfg.depth)
    init = None
    previous = current_model(project) if project.network_config.get("warm_start", WARM_START) else None
    # A changed architecture or pixel size cannot start from the old weights: trained from scratch.
    if (previous is not None and previous.config.get("net") == net_cfg.to_dict()
            and ml_adapter.model_pixel_mm(previous.config) == pixel_mm):
        init = ml_adapter.load_model(local_checkpoint(previous))
    model, summary = ml_adapter.train_model(samples, net_cfg, train_cfg, checkpoint_path=path, init_model=init,
                                            label_set=ml_adapter.label_set_of(project.label_set), on_progress=reporter)
    return (model, summary), net_cfg, train_cfg, pixel_mm


def _save_version(project: Project, step, trained, *, of_step: bool, origin: dict | None = None) -> ModelVersion:
    """Store a trained network as the project's next model number (after any imported one);
    ``of_step``: the model the step trained (model 0 and an adapted import belong to no step)."""
    (model, summary), net_cfg, train_cfg, pixel_mm = trained
    last = ModelVersion.objects.filter(project=project).aggregate(m=Max("number"))["m"]
    number = 0 if last is None else last + 1
    path = cache_dir() / f"step-{step.pk}-model-{number}.pt"
    # Provenance in the file: a downloaded checkpoint imported elsewhere keeps its pixel size (model_import).
    ml_adapter.save_model(path, model, label_set=ml_adapter.label_set_of(project.label_set), train_config=train_cfg,
                          provenance={"project": project.pk, "project_name": project.name, "model_number": number,
                                      "profile": project.network_profile, "pixel_mm": pixel_mm})
    version = ModelVersion(project=project, step=step if of_step else None, number=number,
                           config={"net": net_cfg.to_dict(), "train": train_cfg.to_dict(),
                                   "profile": project.network_profile, "pixel_mm": pixel_mm},
                           training=summary, origin=origin or {"kind": "trained"})
    with path.open("rb") as fh:
        version.checkpoint.save(f"project-{project.pk}-model-{number}.pt", File(fh), save=False)
    version.save()
    return version


def model_and_pixel(version: ModelVersion):
    """(the version's network, the pixel size it was trained at)."""
    return ml_adapter.load_model(local_checkpoint(version)), ml_adapter.model_pixel_mm(version.config)


# --- inferring ------------------------------------------------------------------------

def run_inference(step: AcquisitionStep, reporter: PhaseReporter, runner: str) -> None:
    project = step.project
    if needs_cold_start(project):
        return _run_cold_start(step, reporter, runner)
    version = current_model(project)
    bootstrap, adapted_from, verdict = None, None, None
    if version is None:
        reporter.segment(0, 50, "training the first model on the initial training set", subphase="first_model")
        bootstrap = _train(step, reporter, path=cache_dir() / f"step-{step.pk}-bootstrap.pt", first=True)
        model, pixel_mm = bootstrap[0][0], bootstrap[3]
        first_seconds = bootstrap[0][1].get("seconds")
    elif adapts_import(project, version):
        # The project's first model of its own CT: it gets model 0's budget, not a step's.
        reporter.segment(0, 50, "adapting the imported model to this project's labelled slices", subphase="first_model")
        bootstrap, adapted_from = _train(step, reporter, path=cache_dir() / f"step-{step.pk}-bootstrap.pt",
                                         first=True), version
        model, pixel_mm, first_seconds = bootstrap[0][0], bootstrap[3], bootstrap[0][1].get("seconds")
        verdict = adaptation_verdict(step, version, model, pixel_mm, load_model=model_and_pixel)
        if verdict is not None:
            bootstrap[0][1].update(held_out_dice_per_class=verdict.pop("adapted_per_class"),
                                   held_out_slices=verdict["held_out_slices"])
        if verdict is not None and verdict["kept"] == "imported":  # never a worse model for a better one
            bootstrap, (model, pixel_mm) = None, model_and_pixel(version)
    else:
        (model, pixel_mm), first_seconds = model_and_pixel(version), None
    reporter.segment(50 if bootstrap else 0, 100, "MC-dropout inference over the pool's acquired slices",
                     subphase="ranking")
    started = time.monotonic()
    ranked, pixels = _rank_pool(step, model, pixel_mm, reporter)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **ranked.ranking.to_arrays())
    with transaction.atomic():
        fresh = _locked_step(step, State.INFERRING, runner)
        if bootstrap is not None:
            _save_version(project, fresh, bootstrap, of_step=False, origin=None if adapted_from is None else {
                "kind": "adapted", "from_model_version": adapted_from.pk, "from_number": adapted_from.number})
        elif verdict is not None:  # the import stays: the next step does not adapt it again
            version.training = {**(version.training or {}), "adaptation": verdict}
            version.save(update_fields=["training"])
        fresh.costs = {**fresh.costs, "inferring": {
            "seconds": round(time.monotonic() - started, 1), "slices": int(ranked.rescored.size),
            "slice_passes": int(ranked.passes), "network_pixels": pixels,
            "first_model_seconds": first_seconds, "adaptation": verdict}}
        fresh.inference_file.save(f"step-{step.pk}.npz", ContentFile(buffer.getvalue()), save=False)
        step_transition(step=fresh, target=State.SELECTING)
    (cache_dir() / f"step-{step.pk}-bootstrap.pt").unlink(missing_ok=True)


def _rank_pool(step: AcquisitionStep, model, pixel_mm, reporter: PhaseReporter):
    """Rank every unlabelled acquired slice of the pool (``mltasks.ranking``: a cheap pass over
    all of them, the full T for the most uncertain), scan by scan, as the simulation does.

    Returns (the ``RankedPool``, mean network pixels per slice).
    """
    labelled = set(TrainingSlice.objects.filter(project=step.project).values_list("scan_id", "z"))
    labelled |= held_out_excluded(step.project)  # never queried: they measure the model
    scans = {scan.id: scan for scan in pool_scans(step.project)}
    todo = [(scan.id, [z for z in range(scan.shape[0]) if (scan.id, z) not in labelled]) for scan in scans.values()]
    if not any(zs for _, zs in todo):
        raise ValueError("every pool slice is already in the training set; add scans to the pool")
    inputs = ScanInputs(scans, pixel_mm=pixel_mm, depth=model.config.depth, cache=cache_dir())

    def score(scan_id: int, zs: list[int], t_samples: int, maps: bool):
        grid, images, body = inputs(scan_id)
        return ml_adapter.score_network_slices(images[zs], body[zs], model, grid, t_samples=t_samples,
                                               seed=step.pk, maps=maps)

    ranked = ml_adapter.rank_pool(todo, score, n_candidates=step.k_uncertain, t_full=step.mc_samples,
                                  on_progress=reporter)
    shapes = [inputs.grid(scan_id).shape for scan_id, zs in todo if zs]
    return ranked, int(np.mean([h * w for h, w in shapes]))


# --- selecting ------------------------------------------------------------------------

def _run_cold_start(step: AcquisitionStep, reporter: PhaseReporter, runner: str) -> None:
    """Inferring with no model and no label: representative slices by their images (``steps.coldstart``)."""
    reporter.segment(0, 100, "choosing representative slices from the images (no model yet)")
    chosen = cold_start_slices(step, cache=cache_dir())
    with transaction.atomic():
        fresh = _locked_step(step, State.INFERRING, runner)
        fresh.costs = {**fresh.costs, "cold_start": {"chosen": chosen}}
        step_transition(step=fresh, target=State.SELECTING)


def run_selection(step: AcquisitionStep, reporter: PhaseReporter, runner: str) -> None:
    if "cold_start" in step.costs:
        return _select_cold_start(step, runner)
    reporter.segment(0, 100, "choosing representative uncertain slices", subphase="selecting")
    with step.inference_file.open("rb") as fh:
        ranking = ml_adapter.SliceRanking.from_arrays(dict(np.load(io.BytesIO(fh.read()))), keep=step.k_uncertain)
    plan = ml_adapter.step_plan(step)
    selection = ml_adapter.choose_slices(ranking.scores, ranking.descriptors, plan, seed=step.pk)
    reporter.update(0.5)
    keys, scores = ranking.keys, ranking.scores
    labels, u = _working_maps_of(step, ranking, selection.chosen)
    guard = step_guard(step, load_model=model_and_pixel, cache=cache_dir())
    masks = guarded_masks(_query_masks(u, plan, seed=step.pk), guard)
    chosen = [(int(keys[i][0]), int(keys[i][1])) for i in selection.chosen]
    stored = guarded_predictions(step, guard, chosen, labels, masks)
    with transaction.atomic():
        fresh = _locked_step(step, State.SELECTING, runner)
        fresh.candidates = [[int(keys[i][0]), int(keys[i][1]), float(scores[i])] for i in selection.candidates]
        fresh.selected = [list(key) for key in chosen]
        fresh.guard = guard
        Query.objects.bulk_create([
            Query(step=fresh, scan_id=scan_id, z=z, height=masks[j].shape[0], width=masks[j].shape[1],
                  mask=codec.pack_mask(masks[j]), predicted=codec.pack_labels(stored[j][0]),
                  uncertainty=codec.pack_float16(u[j]), n_queried=int(masks[j].sum()), n_pixels=int(masks[j].size),
                  n_auto_labelled=stored[j][1], n_auto_wrong=stored[j][2])
            for j, (scan_id, z) in enumerate(chosen)
        ])
        step_transition(step=fresh, target=State.ANNOTATING)
        queries_auto_answer_empty(step=fresh)
        step_annotating_done(step_id=fresh.id)  # every query answered itself: straight to training


def _select_cold_start(step: AcquisitionStep, runner: str) -> None:
    """The cold start's slices, asked for whole (nothing predicted, nothing auto-labelled)."""
    chosen = step.costs["cold_start"]["chosen"]
    with transaction.atomic():
        fresh = _locked_step(step, State.SELECTING, runner)
        fresh.selected, fresh.candidates = chosen, []
        fresh.guard = cold_start_guard(fresh.project)
        Query.objects.bulk_create(cold_start_queries(fresh, chosen))
        step_transition(step=fresh, target=State.ANNOTATING)


def _working_maps_of(step, ranking, chosen: list[int]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Predicted labels and u of the chosen slices on their scans' working grids (kept by the
    ranking, else predicted again as the simulation does); one (H, W) array per slice."""
    if not chosen:
        return [], []
    keys = ranking.keys
    scans = {scan.id: scan for scan in pool_scans(step.project)}
    inputs = None

    def rescore(i: int):
        nonlocal inputs
        if inputs is None:
            model, pixel_mm = model_and_pixel(current_model(step.project))
            inputs = (model, ScanInputs(scans, pixel_mm=pixel_mm, depth=model.config.depth, cache=cache_dir()))
        model, of_scan = inputs
        scan_id, z = (int(v) for v in keys[i])
        grid, images, body = of_scan(scan_id)
        return ml_adapter.score_network_slices(images[[z]], body[[z]], model, grid, t_samples=step.mc_samples,
                                               seed=step.pk)

    return ml_adapter.chosen_maps(ranking, chosen, rescore)


def _query_masks(u: list[np.ndarray], plan, *, seed: int) -> list[np.ndarray]:
    """The pixels to ask for in each chosen slice: one call per working-grid shape (scans
    differ), in the chosen order. The worker's plan has a fixed tau (no target MAC), so each
    slice's mask depends on that slice alone."""
    if not u:
        return []
    if len({m.shape for m in u}) == 1:
        return list(ml_adapter.query_masks(np.stack(u), plan, seed=seed))
    return [ml_adapter.query_masks(m[None], plan, seed=seed + k)[0] for k, m in enumerate(u)]


# --- training -------------------------------------------------------------------------

def run_training(step: AcquisitionStep, reporter: PhaseReporter, runner: str) -> None:
    reporter.segment(0, 100, "training on the grown training set", subphase="training")
    path = cache_dir() / f"step-{step.pk}-train.pt"
    trained = _train(step, reporter, path=path, first=current_model(step.project) is None)  # a cold start's first model
    with transaction.atomic():
        fresh = _locked_step(step, State.TRAINING, runner)
        ModelVersion.objects.filter(step=fresh).delete()  # a half-recorded earlier attempt, if any
        _save_version(fresh.project, fresh, trained, of_step=True)
        step_transition(step=fresh, target=State.EVALUATING)
    path.unlink(missing_ok=True)


# --- evaluating -----------------------------------------------------------------------

def run_evaluation(step: AcquisitionStep, reporter: PhaseReporter, runner: str) -> None:
    """Measure the step's model on the evaluation set (``steps.evaluation``) and record it."""
    version = ModelVersion.objects.get(step=step)
    model, pixel_mm = model_and_pixel(version)
    result = evaluate_model(step, model, pixel_mm, reporter)
    with transaction.atomic():
        fresh = _locked_step(step, State.EVALUATING, runner)
        version.metrics, version.calibration = result.metrics, result.calibration
        # The next step's guard decides on this figure instead of segmenting the slices again.
        version.training = {**(version.training or {}), **(result.held_out or {})}
        version.save(update_fields=["metrics", "calibration", "training"])
        fresh.stop_reached = result.stop_reached
        step_transition(step=fresh, target=State.DONE)


WORK = {
    State.INFERRING: run_inference,
    State.SELECTING: run_selection,
    State.TRAINING: run_training,
    State.EVALUATING: run_evaluation,
}

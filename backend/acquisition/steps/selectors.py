"""Reads of the step lifecycle: phases whose runner is gone, what a tau and the next step would cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.utils import timezone

from backend.acquisition import codec, ml_adapter
from backend.acquisition.errors import StepConflict
from backend.acquisition.held_out.selectors import evaluation_set, held_out_excluded
from backend.acquisition.models import AcquisitionStep, ModelVersion, TrainingSlice
from backend.acquisition.selectors import current_model, pool_scans
from backend.acquisition.states import WORKER_PHASES
from backend.acquisition.steps.leases import lease_gone

if TYPE_CHECKING:  # annotations only
    from backend.projects.models import Project


def orphaned_phases(now=None) -> list[tuple[AcquisitionStep, str]]:
    """Steps whose worker phase is held by a runner that is gone, each with why (leases.lease_gone)."""
    now = now or timezone.now()
    held = AcquisitionStep.objects.filter(state__in=WORKER_PHASES).exclude(runner="").order_by("id")
    found = ((step, lease_gone(step.runner, step.heartbeat, now)) for step in held)
    return [(step, why) for step, why in found if why]


def tau_preview(project: Project, tau: float, *, target_mac: float | None = None) -> dict:
    """How many pixels ``tau`` would query in the latest selected slices (and the tau of a target MAC).

    StepConflict ``no_maps`` before any step has selected slices.
    """
    step = (AcquisitionStep.objects.filter(project=project, queries__isnull=False)
            .order_by("-number").distinct().first())
    if step is None:
        raise StepConflict("no uncertainty maps yet: run a step up to its selection first", code="no_maps")
    maps = [codec.unpack_float16(q.uncertainty, (q.height, q.width)) for q in step.queries.all()]
    return ml_adapter.preview_tau(maps, tau, target_mac=target_mac) | {"slices": len(maps), "step": step.number}


# Warm start by default: in the simulation it kept a higher Dice than re-initialising
# and took 56 % of the time (docs/simulation.md, run 4). ``network_config.warm_start =
# false`` re-initialises as the paper did.
WARM_START = True
IMPORTED_ORIGINS = ("project", "upload")  # outputs.model_import's origin kinds


def adapts_import(project: Project, version: ModelVersion) -> bool:
    """Whether the next step first trains an imported current model on the project's labelled
    slices (warm start, model 0's budget): another CT's model, fitted to this CT's labels before
    it ranks the pool, so that the project starts where the other ended (docs/learning.md). Only
    when the project wants it (``network_config.adapt_imported``, default on), has labelled
    slices, the import has the project's network and pixel size (else step 1's training
    starts afresh anyway), and no earlier adaptation of it scored lower than it
    (``steps.guarding.adaptation_verdict``)."""
    config = project.network_config or {}
    if version.origin.get("kind") not in IMPORTED_ORIGINS or not config.get("adapt_imported", True):
        return False
    if (version.training or {}).get("adaptation", {}).get("kept") == "imported":  # tried: it scored lower
        return False
    if not config.get("warm_start", WARM_START) or not TrainingSlice.objects.filter(project=project).exists():
        return False
    n_classes = ml_adapter.n_classes_of(project.label_set)
    net_cfg, _ = ml_adapter.network_configs(project.network_profile, config, n_classes)
    pixel_mm = ml_adapter.pixel_mm_of(project.network_profile, config)
    return version.config.get("net") == net_cfg.to_dict() and ml_adapter.model_pixel_mm(version.config) == pixel_mm


def step_cost_estimate(project: Project) -> dict:
    """What the next step will cost before it starts, for the lead (the dashboard shows it).

    Training is a budget (``ml_adapter.training_budget``: epochs and seconds per phase and
    device; the first model, trained inside "inferring", gets the longer one). Inference is
    the slice passes ``rank_pool`` will make, times the seconds per pass measured on the
    project's latest step (None before any step was measured).
    """
    config = project.network_config or {}
    version = current_model(project)
    first = version is None or adapts_import(project, version)  # an import is adapted at model 0's budget
    scans = list(pool_scans(project))
    labelled = set(TrainingSlice.objects.filter(project=project, scan__in=scans).values_list("scan_id", "z"))
    depth = {scan.id: scan.shape[0] for scan in scans}
    # Held-out slices and their neighbours are never ranked either.
    off_limits = labelled | {(s, z) for s, z in held_out_excluded(project) if 0 <= z < depth.get(s, 0)}
    unlabelled = max(sum(depth.values()) - len(off_limits), 0)
    passes = ml_adapter.planned_passes(unlabelled, n_candidates=project.k_uncertain, t_full=project.mc_samples)
    evaluated = evaluation_set(project)
    test_slices = (sum(scan.shape[0] for scan in project.test_scans.all()) if evaluated == "test_scans"
                   else project.held_out_slices.count())
    test_passes = project.mc_samples * test_slices
    measured = _latest_inference_cost(project)
    rate = measured["seconds"] / measured["slice_passes"] if measured else None
    first_budget = ml_adapter.training_budget(config, first=True) if first else None
    step_budget = ml_adapter.training_budget(config, first=False)
    inference = None if rate is None else round(rate * passes, 1)
    evaluation = None if rate is None else round(rate * test_passes, 1)
    parts = [first_budget["max_seconds"] if first_budget else 0.0, step_budget["max_seconds"], inference, evaluation]
    return {
        "device": step_budget["device"], "first_model": first_budget, "training": step_budget,
        "unlabelled_slices": unlabelled, "slice_passes": passes, "test_slice_passes": test_passes,
        "seconds_per_slice_pass": None if rate is None else round(rate, 4),
        "measured_on_step": measured["step"] if measured else None,
        "inference_seconds": inference, "evaluation_seconds": evaluation,
        "total_seconds": None if None in parts else round(sum(parts), 1),
    }


def _latest_inference_cost(project: Project) -> dict | None:
    for step in AcquisitionStep.objects.filter(project=project).exclude(costs={}).order_by("-number")[:5]:
        cost = step.costs.get("inferring") or {}
        if cost.get("slice_passes") and cost.get("seconds") is not None:
            return {"seconds": float(cost["seconds"]), "slice_passes": int(cost["slice_passes"]), "step": step.number}
    return None

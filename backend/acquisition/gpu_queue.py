"""Reads: where a job stands on the ``gpu`` queue, and why nothing moves.

Step phases and whole-scan segmentations share the ``gpu`` queue and its workers, in
the order they were sent. The database knows every unfinished job (a step in a worker
phase, a pending or running segmentation) and whether a worker holds it, so the lead
can be told what a waiting job waits for. Jobs of other projects are counted, never
named.
"""

from __future__ import annotations

from django.utils import timezone

from backend.acquisition.models import AcquisitionStep, Segmentation
from backend.acquisition.states import WORKER_PHASES

# A worker takes a job within seconds; longer with nothing running means no worker is there.
GRACE_SECONDS = 30
# A running segmentation reports after every batch of slices; this long without a report is news.
STALLED_AFTER = 120
HEALTH = "check that a gpu worker is running (GET /api/health/ lists the worker phases it holds)"


def _describe_step(step: dict, project_id: int) -> str:
    if step["project_id"] != project_id:
        return "a step phase of another project"
    return f"the {step['state']} phase of step {step['number']}"


def _describe_segmentation(seg: dict, project_id: int) -> str:
    if seg["project_id"] != project_id:
        return "a segmentation of another project"
    return f"the segmentation of scan {seg['scan_id']}"


def _jobs(project_id: int, *, sent_before, exclude: tuple[str, int]) -> tuple[list[str], list[str]]:
    """(descriptions of the running jobs, of the queued jobs sent before ``sent_before``)."""
    running, ahead = [], []
    for step in AcquisitionStep.objects.filter(state__in=WORKER_PHASES).values(
            "id", "project_id", "number", "state", "runner", "updated").order_by("updated"):
        if ("step", step["id"]) == exclude:
            continue
        if step["runner"]:
            running.append(_describe_step(step, project_id))
        elif step["updated"] <= sent_before:
            ahead.append(_describe_step(step, project_id))
    for seg in Segmentation.objects.filter(status__in=[Segmentation.Status.PENDING, Segmentation.Status.RUNNING]
                                           ).values("id", "project_id", "scan_id", "status", "created").order_by("id"):
        if ("segmentation", seg["id"]) == exclude:
            continue
        if seg["status"] == Segmentation.Status.RUNNING:
            running.append(_describe_segmentation(seg, project_id))
        elif seg["created"] <= sent_before:
            ahead.append(_describe_segmentation(seg, project_id))
    return running, ahead


def _waiting(running: list[str], ahead: list[str], age: float) -> str:
    if running:
        more = f", and {len(ahead)} more job(s) are ahead of it" if ahead else ""
        return f"Waiting on the gpu queue: {'; '.join(running)} {'is' if len(running) == 1 else 'are'} running now{more}."
    if age < GRACE_SECONDS:
        return "Sent to the gpu queue; a worker takes it in a moment."
    if ahead:
        return (f"Waiting on the gpu queue behind {len(ahead)} job(s), but none is running after {int(age)} s: "
                f"{HEALTH}.")
    return f"Next on the gpu queue, but no worker has taken it after {int(age)} s: {HEALTH}."


def queued_place(project_id: int, *, kind: str, job_id: int, sent) -> dict:
    """{"position" (1 = next), "running": [...], "ahead", "waiting"} of a job nobody holds yet."""
    running, ahead = _jobs(project_id, sent_before=sent, exclude=(kind, job_id))
    age = (timezone.now() - sent).total_seconds()
    return {"position": len(ahead) + 1, "running": running, "ahead": len(ahead),
            "waiting": _waiting(running, ahead, age)}


def segmentation_queue(seg: Segmentation) -> dict | None:
    """Where a segmentation stands: queued (place and what runs), running (stalled?), or None when finished."""
    if seg.status == Segmentation.Status.PENDING:
        return queued_place(seg.project_id, kind="segmentation", job_id=seg.id, sent=seg.created)
    if seg.status == Segmentation.Status.RUNNING:
        last = seg.heartbeat or seg.started or seg.created
        quiet = (timezone.now() - last).total_seconds()
        waiting = (f"No progress for {int(quiet)} s: the worker may be overloaded or gone; {HEALTH}."
                   if quiet > STALLED_AFTER else None)
        return {"position": 0, "running": [], "ahead": 0, "waiting": waiting}
    return None


def step_queue(step: AcquisitionStep) -> dict | None:
    """Where a step's worker phase stands; None when no worker phase is pending (or a worker holds it)."""
    if step.state not in WORKER_PHASES or step.runner:
        return None
    return queued_place(step.project_id, kind="step", job_id=step.id, sent=step.updated)

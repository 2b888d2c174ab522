"""Websocket events of the acquisition loop, sent to the project's group (docs/api-acquisition.md)."""

from __future__ import annotations

from backend.core.realtime import project_group, publish


def publish_state(step) -> None:
    publish(project_group(step.project_id), {
        "type": "acquisition.state", "step": step.id, "number": step.number, "state": step.state,
        "reason": step.reason, "stop_reached": step.stop_reached,
    })


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def publish_progress(*, project_id: int, step_id: int, phase: str, percent: float, eta_seconds: float | None,
                     detail: str, info: dict, subphase: tuple[str, float, float | None] = ("", 0.0, None)) -> None:
    name, sub_percent, sub_eta = subphase
    publish(project_group(project_id), {
        "type": "acquisition.progress", "step": step_id, "phase": phase, "percent": round(percent, 1),
        "eta_seconds": _seconds(eta_seconds), "detail": detail, "info": info,
        "subphase": name, "subphase_percent": round(sub_percent, 1), "subphase_eta_seconds": _seconds(sub_eta),
    })


def publish_query(query, *, open_queries: int) -> None:
    publish(project_group(query.step.project_id), {
        "type": "acquisition.query", "step": query.step_id, "query": query.id, "status": query.status,
        "assignee": query.assignee_id, "open_queries": open_queries,
    })


def publish_segmentation(segmentation) -> None:
    publish(project_group(segmentation.project_id), {
        "type": "acquisition.segmentation", "segmentation": segmentation.id, "scan": segmentation.scan_id,
        "status": segmentation.status, "error": segmentation.error, "percent": round(segmentation.percent, 1),
        "eta_seconds": _seconds(segmentation.eta_seconds),
    })

"""Websocket events of the acquisition loop, sent to the project's group (docs/api-acquisition.md)."""

from __future__ import annotations

from backend.core.realtime import project_group, publish


def publish_state(step) -> None:
    publish(project_group(step.project_id), {
        "type": "acquisition.state", "step": step.id, "number": step.number, "state": step.state,
        "reason": step.reason, "stop_reached": step.stop_reached,
    })


def publish_progress(*, project_id: int, step_id: int, phase: str, percent: float, eta_seconds: float | None,
                     detail: str, info: dict) -> None:
    publish(project_group(project_id), {
        "type": "acquisition.progress", "step": step_id, "phase": phase, "percent": round(percent, 1),
        "eta_seconds": None if eta_seconds is None else round(eta_seconds, 1), "detail": detail, "info": info,
    })


def publish_query(query, *, open_queries: int) -> None:
    publish(project_group(query.step.project_id), {
        "type": "acquisition.query", "step": query.step_id, "query": query.id, "status": query.status,
        "assignee": query.assignee_id, "open_queries": open_queries,
    })


def publish_segmentation(segmentation) -> None:
    publish(project_group(segmentation.project_id), {
        "type": "acquisition.segmentation", "segmentation": segmentation.id, "scan": segmentation.scan_id,
        "status": segmentation.status, "error": segmentation.error,
    })

"""Progress of a worker phase: websocket events, heartbeat, cancellation, ETA.

``PhaseReporter`` is the ``on_progress`` callback handed to ``mltasks``. It maps the
library's per-phase fractions onto the step phase's 0-100 % through segments
(``segment(start, end, detail)``), publishes at most a few events per second,
and at most once a second writes a heartbeat that doubles as the cancel check:
when the lead cancelled (or another worker took the phase over) it raises
``Cancelled`` and the work stops between two chunks.
"""

from __future__ import annotations

import time

from backend.acquisition.events import publish_progress
from backend.acquisition.services_steps import step_heartbeat

PUBLISH_EVERY = 0.5
HEARTBEAT_EVERY = 1.0


class Cancelled(Exception):  # noqa: N818 - names the event, like Django's exceptions
    """The phase must stop: cancel requested, or its lease now belongs to someone else."""


class PhaseReporter:
    def __init__(self, *, step_id: int, project_id: int, phase: str, runner: str) -> None:
        self.step_id, self.project_id, self.phase, self.runner = step_id, project_id, phase, runner
        self.started = time.monotonic()
        self.start, self.end, self.detail = 0.0, 100.0, phase
        self.percent = 0.0
        self._published = self._beat = 0.0

    def segment(self, start: float, end: float, detail: str) -> None:
        self.start, self.end, self.detail = start, end, detail
        self.update(0.0, force=True)

    def __call__(self, progress) -> None:  # mltasks.progress.Progress
        info = {k: v for k, v in progress.info.items() if isinstance(v, int | float | str)}
        self.update(progress.fraction, info=info, force=progress.total > 0 and progress.done >= progress.total)

    def update(self, fraction: float, *, info: dict | None = None, force: bool = False) -> None:
        force = force or fraction >= 1.0  # the end of a segment is always reported
        self.percent = self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)
        elapsed = time.monotonic() - self.started
        eta = elapsed * (100.0 - self.percent) / self.percent if self.percent >= 1.0 else None
        now = time.monotonic()
        if force or now - self._beat >= HEARTBEAT_EVERY:
            self._beat = now
            if not step_heartbeat(step_id=self.step_id, phase=self.phase, runner=self.runner,
                                  percent=self.percent, eta=eta):
                raise Cancelled(f"step {self.step_id}: {self.phase} stopped (cancelled or taken over)")
        if force or now - self._published >= PUBLISH_EVERY:
            self._published = now
            publish_progress(project_id=self.project_id, step_id=self.step_id, phase=self.phase,
                             percent=self.percent, eta_seconds=eta, detail=self.detail, info=info or {})

"""Progress of a worker phase: websocket events, heartbeat, cancellation, ETA.

``PhaseReporter`` is the ``on_progress`` callback handed to ``mltasks``. It maps the
library's per-phase fractions onto the step phase's 0-100 % through segments
(``segment(start, end, detail)``), publishes at most a few events per second,
and at most once a second writes the percentage with a heartbeat that doubles as
the cancel check: when the lead cancelled (or another worker took the phase over)
it raises ``Cancelled`` and the work stops between two chunks.

Progress comes only between chunks and epochs (an epoch of the larger profiles
takes minutes), so ``LeaseKeeper`` also renews the heartbeat from a thread every
``leases.HEARTBEAT_EVERY`` seconds while the phase runs.

A phase may have named sub-phases (``SUBPHASES``): "inferring" first trains model 0
when there is none, then ranks the pool. Each has its own percent and ETA, written on
the step and sent with every event, so the lead sees which part runs and how long it
has left; the phase's own ETA extrapolates from the whole phase so far.
"""

from __future__ import annotations

import logging
import threading
import time

from django.db import DatabaseError, connection, connections

from backend.acquisition.events import publish_progress
from backend.acquisition.steps import leases
from backend.acquisition.steps.services import step_heartbeat, step_renew_lease

log = logging.getLogger(__name__)
PUBLISH_EVERY = 0.5
WRITE_EVERY = 1.0  # percentage + heartbeat + cancel check; the lease alone is renewed by LeaseKeeper
# Sub-phases of the worker phases, as the lead reads them (the API's ``subphase_label``).
SUBPHASES = {
    "first_model": "training model 0 on the initial training set",
    "ranking": "MC-dropout ranking of the pool's slices",
    "selecting": "choosing representative uncertain slices",
    "training": "training on the grown training set",
    "test_scans": "segmenting the test scans",
    "held_out": "segmenting the held-out slices",
}


class LeaseKeeper:
    """Renews a phase's heartbeat from a daemon thread until the ``with`` block ends.

    Not started when the caller is inside a transaction (as the unit tests run
    phases): the thread's own connection could not see a lease written in that
    transaction, and on PostgreSQL it would wait on that row's lock.
    """

    def __init__(self, *, step_id: int, phase: str, runner: str, every: float | None = None) -> None:
        self.step_id, self.phase, self.runner = step_id, phase, runner
        self.every = leases.HEARTBEAT_EVERY if every is None else every
        self.renewals = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LeaseKeeper:
        if not connection.in_atomic_block:
            self._thread = threading.Thread(target=self._run, name=f"lease-step-{self.step_id}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.every + 5.0)

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.every):
                try:
                    if not step_renew_lease(step_id=self.step_id, phase=self.phase, runner=self.runner):
                        return  # cancelled, finished or taken over: the phase learns it at its next report
                    self.renewals += 1
                except DatabaseError as exc:  # a busy or unreachable database: try again next time
                    log.warning("step %s: heartbeat not written (%s)", self.step_id, exc)
        finally:
            connections.close_all()  # this thread's connections only


class Cancelled(Exception):  # noqa: N818 - names the event, like Django's exceptions
    """The phase must stop: cancel requested, or its lease now belongs to someone else."""


class PhaseReporter:
    def __init__(self, *, step_id: int, project_id: int, phase: str, runner: str) -> None:
        self.step_id, self.project_id, self.phase, self.runner = step_id, project_id, phase, runner
        self.started = time.monotonic()
        self.start, self.end, self.detail = 0.0, 100.0, phase
        self.percent = 0.0
        self._published = self._beat = 0.0
        self.subphase, self.span, self.subphase_started = "", (0.0, 100.0), self.started

    def segment(self, start: float, end: float, detail: str, *, subphase: str = "",
                span: tuple[float, float] | None = None) -> None:
        """The next part of the phase: ``start``-``end`` % of it, with a ``detail`` text.

        ``subphase`` names it (``SUBPHASES``); ``span`` is the range of the phase's percent the
        whole sub-phase covers when several segments make it (test scans one by one).
        """
        if subphase != self.subphase:
            self.subphase_started = time.monotonic()
        self.start, self.end, self.detail = start, end, detail
        self.subphase, self.span = subphase, span or (start, end)
        self.update(0.0, force=True)

    def _subphase_progress(self, now: float) -> tuple[float, float | None]:
        """(percent, ETA seconds) of the running sub-phase."""
        low, high = self.span
        percent = 100.0 * min(max((self.percent - low) / (high - low), 0.0), 1.0) if high > low else 100.0
        elapsed = now - self.subphase_started
        return percent, elapsed * (100.0 - percent) / percent if percent >= 1.0 else None

    def __call__(self, progress) -> None:  # mltasks.progress.Progress
        info = {k: v for k, v in progress.info.items() if isinstance(v, int | float | str)}
        self.update(progress.fraction, info=info, force=progress.total > 0 and progress.done >= progress.total)

    def update(self, fraction: float, *, info: dict | None = None, force: bool = False) -> None:
        force = force or fraction >= 1.0  # the end of a segment is always reported
        self.percent = self.start + (self.end - self.start) * min(max(fraction, 0.0), 1.0)
        elapsed = time.monotonic() - self.started
        eta = elapsed * (100.0 - self.percent) / self.percent if self.percent >= 1.0 else None
        now = time.monotonic()
        sub_percent, sub_eta = self._subphase_progress(now)
        if force or now - self._beat >= WRITE_EVERY:
            self._beat = now
            if not step_heartbeat(step_id=self.step_id, phase=self.phase, runner=self.runner, percent=self.percent,
                                  eta=eta, subphase=(self.subphase, sub_percent, sub_eta)):
                raise Cancelled(f"step {self.step_id}: {self.phase} stopped (cancelled or taken over)")
        if force or now - self._published >= PUBLISH_EVERY:
            self._published = now
            publish_progress(project_id=self.project_id, step_id=self.step_id, phase=self.phase,
                             percent=self.percent, eta_seconds=eta, detail=self.detail, info=info or {},
                             subphase=(self.subphase, sub_percent, sub_eta))

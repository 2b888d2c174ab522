"""The acquisition app's health check: every running worker phase has a live runner.

Registered with ``backend.core.health`` when the app is ready, so the core app
knows nothing of steps.
"""

from __future__ import annotations

from backend.acquisition.steps.leases import TAKEOVER_SECONDS
from backend.acquisition.steps.selectors import orphaned_phases
from backend.core.health import CheckFailed

_ADVICE = (f"A worker takes such a phase over within {TAKEOVER_SECONDS:.0f} s; if none does, check that a "
           "worker serves the gpu queue, or cancel the step.")


def phases_check() -> str:
    """Raises ``CheckFailed`` naming the orphaned phases (for staff; a count for anyone)."""
    orphans = orphaned_phases()
    if orphans:
        lines = [f"step {step.number} of project {step.project_id} is {step.state} but its runner is gone "
                 f"({why})" for step, why in orphans]
        public = f"{len(orphans)} running phase(s) have no live runner. {_ADVICE}"
        raise CheckFailed("; ".join(lines) + f". {_ADVICE}", public=public)
    return "every running phase has a live runner"

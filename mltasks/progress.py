"""Progress reporting shared by every long-running function.

Long work takes ``on_progress: ProgressCallback | None`` and calls it with a
``Progress`` value. The command line turns it into a tqdm bar, a Celery task into
websocket events. Keeping it a plain callable keeps the library free of any
framework.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One progress report.

    Attributes:
        phase: short machine-readable name of the current phase, e.g. "train".
        done: units finished so far.
        total: units in the phase (0 when unknown).
        info: extra figures (epoch loss, validation Dice, ...), JSON-serialisable.
    """

    phase: str
    done: int
    total: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


ProgressCallback = Callable[[Progress], None]


def report(on_progress: ProgressCallback | None, phase: str, done: int, total: int, **info: Any) -> None:
    """Call ``on_progress`` if given; the one place that builds a ``Progress``."""
    if on_progress is not None:
        on_progress(Progress(phase=phase, done=done, total=total, info=info))


class TqdmProgress:
    """A ``ProgressCallback`` that draws one tqdm bar per phase (command line use)."""

    def __init__(self) -> None:
        self._bar = None
        self._phase: str | None = None

    def __call__(self, p: Progress) -> None:
        from tqdm import tqdm

        if p.phase != self._phase or self._bar is None:  # None: closed by the caller between runs
            self.close()
            self._phase = p.phase
            self._bar = tqdm(total=p.total or None, desc=p.phase, unit="it", leave=True)
        assert self._bar is not None
        if p.total and self._bar.total != p.total:
            self._bar.total = p.total
        self._bar.n = p.done
        if p.info:
            self._bar.set_postfix({k: v for k, v in p.info.items() if isinstance(v, int | float | str)})
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

"""Generic timing helper for the benchmarks in bench/.

Benchmarks print ratios measured side by side in the same run, never a lone
absolute time: the machine is shared and absolute times drift.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    """Run ``fn()`` ``repeats`` times; return (fastest wall time in s, last result).

    The minimum is the least noisy estimate on a shared machine: other work only
    ever adds time.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    best = float("inf")
    result: Any = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result

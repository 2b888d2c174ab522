"""Generation time of one 256 x 256 x 200 phantom on one core, against the 10 s budget.

    python bench/phantom_speed.py [--repeats 2]

Prints CPU time (process time: what one core spends, robust to other jobs on
the machine) and wall time, each beside the budget. Run with
OMP_NUM_THREADS=1 for a strict one-core figure (the generator itself uses
only single-threaded numpy / scipy code).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mltasks.phantom import generate_phantom  # noqa: E402

BUDGET_S = 10.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    generate_phantom(0, shape=(8, 32, 32))  # imports and caches
    for r in range(args.repeats):
        c, w = time.process_time(), time.perf_counter()
        generate_phantom(100 + r, shape=(200, 256, 256))
        cpu, wall = time.process_time() - c, time.perf_counter() - w
        print(f"256x256x200 seed {100 + r}: cpu {cpu:.2f} s, wall {wall:.2f} s; budget {BUDGET_S:.0f} s "
              f"(cpu / budget = {cpu / BUDGET_S:.2f})")


if __name__ == "__main__":
    main()

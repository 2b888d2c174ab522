"""Cold start without a model: do descriptor picks cover more anatomy than evenly spaced slices? (docs/learning.md)

For phantom CTs of ``--shape`` (seeds ``0 .. --phantoms - 1``) and n = 3 .. 6 picks,
compares ``mltasks.coldstart.select_cold_start`` (standardised 16 x 16 thumbnails,
"downsample", or their random projection, "projection") with n evenly spaced slices
(the simulation's start): the number of distinct structures that appear in the
picked slices (out of the 22 of the label set). Takes a few seconds.

    OMP_NUM_THREADS=1 python docs/scripts/coldstart_experiment.py [--shape 40 64 64] [--phantoms 6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402

from mltasks.coldstart import select_cold_start  # noqa: E402
from mltasks.phantom import generate_phantom  # noqa: E402
from mltasks.preprocess import normalise_hu  # noqa: E402


def structures(labels: np.ndarray, picks) -> int:
    return len(frozenset().union(*[frozenset(np.unique(labels[i]).tolist()) - {0} for i in picks]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(40, 64, 64))
    ap.add_argument("--phantoms", type=int, default=6)
    args = ap.parse_args()
    nz = args.shape[0]
    rows = {"downsample": [], "projection": []}
    print("| phantom | n | evenly spaced | downsample | projection |")
    print("|---|---|---|---|---|")
    for seed in range(args.phantoms):
        ph = generate_phantom(seed, shape=tuple(args.shape))
        images = normalise_hu(ph.hu)
        for n in (3, 4, 5, 6):
            even = structures(ph.labels, ((np.arange(n) + 0.5) * nz / n).astype(int))
            ours = {m: structures(ph.labels, select_cold_start(images, n, method=m)) for m in rows}
            for m, value in ours.items():
                rows[m].append(value - even)
            print(f"| {seed} | {n} | {even} | {ours['downsample']} | {ours['projection']} |")
    for m, diff in rows.items():
        d = np.array(diff)
        print(f"{m}: {np.sum(d > 0)} more, {np.sum(d == 0)} as many, {np.sum(d < 0)} fewer structures than "
              f"evenly spaced over {d.size} cases (mean {d.mean():+.2f})")


if __name__ == "__main__":
    main()

"""Benchmark: keep_largest_components against a per-label scipy.ndimage.label loop.

    /work/venv/bin/python bench/largest_components.py [--shape Z Y X] [--islands N]

Synthetic volume: 22 blobby structures filling an elliptic body cross-section
on a 512 x 512 x 500 grid, plus thousands of small random islands of random
labels. Goals: at most 3 s, and at least 10x faster than the reference
(for each label c: ndimage.label(labels == c) with 26-connectivity, keep the
largest). Both outputs must be equal.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cc3d
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.timing import best_of  # noqa: E402
from mltasks.postprocess import keep_largest_components  # noqa: E402

GOAL_SECONDS = 3.0
GOAL_SPEEDUP = 10.0


def synthetic_labels(
    shape: tuple[int, int, int], *, n_structures: int = 22, n_islands: int = 5000, seed: int = 0
) -> np.ndarray:
    """(Z, Y, X) uint8 labels: Voronoi-like blobs (built on an 8x coarser grid) plus islands."""
    rng = np.random.default_rng(seed)
    f = 8
    low = tuple(-(-s // f) for s in shape)
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in low], indexing="ij")
    body = (yy / 0.8) ** 2 + (xx / 0.9) ** 2 < 1
    noise = ndimage.gaussian_filter(rng.normal(size=(n_structures, *low)), (0, 2, 2, 2))
    seeds = rng.uniform(-0.8, 0.8, size=(n_structures, 3))
    dist = np.stack([(zz - a) ** 2 + (yy - b) ** 2 + (xx - c) ** 2 for a, b, c in seeds])
    coarse = (np.argmin(dist + 0.05 * noise, axis=0) + 1).astype(np.uint8)
    coarse[~body] = 0
    labels = (
        coarse.repeat(f, 0).repeat(f, 1).repeat(f, 2)[: shape[0], : shape[1], : shape[2]].copy()
    )
    for _ in range(n_islands):
        z, y, x = (int(rng.integers(0, s - 4)) for s in shape)
        dz, dy, dx = (int(v) for v in rng.integers(1, 4, size=3))
        labels[z : z + dz, y : y + dy, x : x + dx] = rng.integers(1, n_structures + 1)
    return labels


def reference(labels: np.ndarray) -> np.ndarray:
    """The straightforward way: one full-volume ndimage.label per label value."""
    out = np.zeros_like(labels)
    structure = np.ones((3, 3, 3), dtype=bool)
    for value in np.unique(labels):
        if value == 0:
            continue
        components, n = ndimage.label(labels == value, structure=structure)
        sizes = np.bincount(components.ravel(), minlength=n + 1)
        sizes[0] = 0
        out[components == int(np.argmax(sizes))] = value
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(500, 512, 512), metavar=("Z", "Y", "X")
    )
    parser.add_argument("--islands", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    labels = synthetic_labels(tuple(args.shape), n_islands=args.islands)
    print(
        f"volume {tuple(labels.shape)} (z, y, x), {len(np.unique(labels)) - 1} labels, {args.islands} islands"
    )
    fast_s, fast = best_of(lambda: keep_largest_components(labels, connectivity=26), args.repeats)
    cc_s, _ = best_of(lambda: cc3d.connected_components(labels, connectivity=26), args.repeats)
    ref_s, ref = best_of(lambda: reference(labels), 1)
    equal = bool(np.array_equal(fast, ref))
    ratio = ref_s / fast_s
    print(f"keep_largest_components (cc3d + runs):    {fast_s:.2f} s (best of {args.repeats})")
    print(f"  of which cc3d labelling alone:          {cc_s:.2f} s ({fast_s / cc_s:.2f}x of it)")
    print(f"reference (ndimage.label per label):      {ref_s:.2f} s")
    print(
        f"speed-up: {ratio:.1f}x; outputs equal: {equal}; removed voxels: {int(np.count_nonzero(labels != fast))}"
    )
    ok_time = fast_s <= GOAL_SECONDS
    ok_ratio = ratio >= GOAL_SPEEDUP
    print(f"goal <= {GOAL_SECONDS:.0f} s: {'PASS' if ok_time else 'FAIL'}")
    print(f"goal >= {GOAL_SPEEDUP:.0f}x faster: {'PASS' if ok_ratio else 'FAIL'}")
    print(f"goal outputs equal: {'PASS' if equal else 'FAIL'}")
    return 0 if (ok_time and ok_ratio and equal) else 1


if __name__ == "__main__":
    sys.exit(main())

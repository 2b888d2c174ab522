"""Time and peak memory of a phantom with a real hip CT's geometry, and what its working grid keeps.

    OMP_NUM_THREADS=1 nice -n 10 python bench/phantom_ct_geometry.py [--seed 1] [--slices 160] [--infer]

The geometry of the CT in issue 17: 160 axial slices of 512 x 512 at 0.98 x 0.98 x 3 mm
(500 mm field of view), with the scan table and both arms beside the body
(``generate_phantom(..., arms=True)``). Prints CPU and wall time and the peak
resident memory of this process (``ru_maxrss``, which includes Python, numpy and
scipy), then the working grid of ``mltasks.grid.working_grid`` (box, slices) and
how many voxels above -500 HU it keeps.

With ``--infer``: the inferring pass of one step on it, as the worker would run it
with ``mltasks.ranking`` (network grid at ``--pixel-mm`` of the working grid, an
untrained ``fast``-profile net: the same operations as a trained one, T = 10, the
95 % of slices a 5 % seed leaves unlabelled, one torch thread), with its time and the
peak memory after it.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mltasks.grid import working_grid  # noqa: E402
from mltasks.labels import default_label_set  # noqa: E402
from mltasks.netgrid import network_grid_of  # noqa: E402
from mltasks.nets import UNet, profile  # noqa: E402
from mltasks.phantom import generate_phantom  # noqa: E402
from mltasks.phantom.tissue import T  # noqa: E402
from mltasks.ranking import rank_pool, score_working_slices  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--slices", type=int, default=160)
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--fov-mm", type=float, default=500.0)
    ap.add_argument("--slice-mm", type=float, default=3.0)
    ap.add_argument("--infer", action="store_true", help="also time one step's inferring pass")
    ap.add_argument("--pixel-mm", type=float, default=2.0, help="network pixel (--infer)")
    ap.add_argument("--t", type=int, default=10, help="MC samples (--infer)")
    args = ap.parse_args()
    pixel = args.fov_mm / args.matrix
    shape = (args.slices, args.matrix, args.matrix)
    spacing = (args.slice_mm, pixel, pixel)
    before = peak_mb()
    cpu, wall = time.process_time(), time.perf_counter()
    ph = generate_phantom(args.seed, shape=shape, spacing=spacing, arms=True)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"phantom seed {args.seed}: {shape} voxels at {spacing[1]:.3f} x {spacing[2]:.3f} x {spacing[0]:.1f} mm "
          f"({args.fov_mm:g} mm field of view): cpu {cpu:.1f} s, wall {wall:.1f} s, "
          f"peak RSS {peak_mb():.0f} MB (before generating: {before:.0f} MB)")
    arms = ph.tissue >= T.ARM_SKIN
    table = (ph.tissue >= T.TABLE_SHELL) & ~arms
    print(f"arms: {int(arms.sum())} voxels on {int(arms.any(axis=(1, 2)).sum())} slices; "
          f"table: {int(table.sum())} voxels; body: {int(ph.body.sum())} voxels; "
          f"labelled slices {int(ph.labels.reshape(shape[0], -1).any(axis=1).sum())}")
    started = time.perf_counter()
    grid = working_grid(ph.hu, ph.geometry)
    dense = ph.hu > -500
    kept = int((grid.crop(ph.hu) > -500).sum())
    print(f"working grid ({time.perf_counter() - started:.2f} s): {grid.shape} voxels, rows {grid.rows}, "
          f"cols {grid.cols}, {grid.geometry.spacing[0]:g} mm slices; keeps {kept} of "
          f"{int(dense[grid.z_indices].sum())} voxels above -500 HU on its slices")
    edge = np.zeros(dense.shape[1:], bool)
    edge[:, [0, -1]] = True
    edge[[0, -1], :] = True
    print(f"voxels above -500 HU on the original field of view's edge: {int((dense & edge).sum())}")
    if args.infer:
        infer(grid.crop(ph.hu), grid, args)


def infer(hu: np.ndarray, grid, args) -> None:
    torch.set_num_threads(1)
    net = profile("fast", n_classes=default_label_set().n_classes)
    torch.manual_seed(0)
    model = UNet(net)
    ngrid = network_grid_of(grid.geometry, pixel_mm=args.pixel_mm, depth=net.depth)
    seeded = set(np.linspace(0, hu.shape[0] - 1, max(1, round(0.05 * hu.shape[0]))).round().astype(int).tolist())
    todo = [z for z in range(hu.shape[0]) if z not in seeded]

    def score(volume, zs, t, maps):
        return score_working_slices(hu[zs], model, ngrid, t_samples=t, seed=1, maps=maps)

    cpu, wall = time.process_time(), time.perf_counter()
    ranked = rank_pool([(0, todo)], score, n_candidates=50, t_full=args.t)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"inferring: {len(todo)} slices of {hu.shape[1:]} working -> {ngrid.shape} network "
          f"({ngrid.pixel_mm[0]:.2f} mm), fast profile, T = {args.t}, one thread: cpu {cpu:.1f} s, "
          f"wall {wall:.1f} s ({wall / len(todo):.2f} s per slice), {ranked.passes} network passes; "
          f"peak RSS {peak_mb():.0f} MB")


if __name__ == "__main__":
    main()

"""Do D_c and D_r of the cheap ranking (``mltasks.ranking.rank_pool``) agree with the full one?

A pool of phantom volumes (a small stand-in for real CTs, sizes printed) is seeded
with 5 % labelled slices per volume; a small Bayesian U-Net is trained on them for a
fixed budget; then, for several MC seeds, every unlabelled slice is ranked

- **full** (the reference): every slice with the full T (the product before the change);
- **full, other seed**: the same with other dropout masks (MC noise alone: the
  overlap no ranking can beat);
- **cheap**: every slice with ``t_cheap`` samples, the top ``factor`` x |D_c| again
  with the full T (``rank_pool``), with the other seed's masks too, so that it differs
  from "full, other seed" by the cheap pass alone,

through the worker's scoring path (``score_working_slices``: working grid -> network
grid -> MC dropout -> probabilities back). D_c and D_r come from
``mltasks.step.choose_slices``. Printed per configuration over the seeds: the overlap
|D_c cheap ∩ D_c full| / |D_c| and |D_r cheap ∩ D_r full| / |D_r| (mean, min, max);
how uncertain the chosen D_c is by the full ranking's own scores (mean score of D_c /
that of the full D_c); how representative D_r is by the full ranking's descriptors
(the set-cover objective F(D_r) / F(D_r full)); and the network passes (sum of T over
slices) and time relative to the full ranking.

    OMP_NUM_THREADS=1 nice -n 10 python docs/scripts/cheap_ranking_overlap.py [--seeds 5]
    python docs/scripts/cheap_ranking_overlap.py --quick    # smoke check; figures mean nothing
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mltasks.labels import default_label_set  # noqa: E402
from mltasks.netgrid import network_grid  # noqa: E402
from mltasks.nets import NetConfig  # noqa: E402
from mltasks.phantom import generate_phantom  # noqa: E402
from mltasks.ranking import rank_pool, score_working_slices  # noqa: E402
from mltasks.selection import unit_rows  # noqa: E402
from mltasks.step import StepPlan, choose_slices  # noqa: E402
from mltasks.train import TrainConfig, train  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_pool(args) -> tuple[list[np.ndarray], list[np.ndarray], list[list[int]], tuple[float, float]]:
    """HU and labels of every volume, the labelled slices of each, and the in-plane spacing."""
    hus, labels, seeded = [], [], []
    rng = np.random.default_rng(args.pool_seed)
    for v in range(args.volumes):
        ph = generate_phantom(1000 + v, shape=(args.slices, args.size, args.size))
        hus.append(ph.hu)
        labels.append(ph.labels)
        n_seed = max(1, round(args.seed_fraction * args.slices))
        seeded.append(sorted(int(z) for z in rng.choice(args.slices, n_seed, replace=False)))
    return hus, labels, seeded, tuple(ph.geometry.spacing[1:])


def train_model(args, grid, hus, labels, seeded):
    images = np.concatenate([grid.images_to_network(hu[zs]) for hu, zs in zip(hus, seeded, strict=True)])
    targets = np.concatenate([grid.labels_to_network(lab[zs]) for lab, zs in zip(labels, seeded, strict=True)])
    config = NetConfig(n_classes=default_label_set().n_classes, width=args.width, depth=args.depth,
                       matrix=grid.shape[0])
    log(f"training on {images.shape[0]} seed slices of {grid.shape}, budget {args.train_seconds} s")
    result = train(images, targets, config, config=TrainConfig(max_epochs=args.epochs, max_seconds=args.train_seconds,
                                                               patience=0, seed=args.pool_seed))
    log(f"trained {len(result.history)} epochs, best validation Dice {result.best_dice:.3f}")
    return result.model


def rank(volumes, hus, model, grid, *, seed: int, k: int, t: int, t_cheap: int, factor: float):
    def score(volume, zs, t_samples, maps):
        return score_working_slices(hus[volume][zs], model, grid, t_samples=t_samples, seed=seed, maps=maps)

    started = time.perf_counter()
    ranked = rank_pool(volumes, score, n_candidates=k, t_full=t, t_cheap=t_cheap, rescore_factor=factor)
    return ranked, time.perf_counter() - started


def chosen(ranked, plan: StepPlan, seed: int) -> tuple[set, set]:
    keys = [tuple(int(v) for v in key) for key in ranked.ranking.keys]
    sel = choose_slices(ranked.ranking.scores, ranked.ranking.descriptors, plan, seed=seed)
    return {keys[i] for i in sel.candidates}, {keys[i] for i in sel.chosen}


class Reference:
    """The full ranking's own view of a choice: its scores and its descriptors' set cover."""

    def __init__(self, full) -> None:
        keys = [tuple(int(v) for v in key) for key in full.ranking.keys]
        self.row = {key: i for i, key in enumerate(keys)}
        self.scores = full.ranking.scores
        self.units = unit_rows(full.ranking.descriptors)

    def uncertainty(self, d_c: set) -> float:
        return float(np.mean([self.scores[self.row[k]] for k in d_c]))

    def cover(self, d_r: set) -> float:
        """sum over the pool of max(0, max over D_r of the cosine similarity)."""
        sims = self.units @ self.units[[self.row[k] for k in d_r]].T
        return float(np.maximum(sims, 0.0).max(axis=1).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=6)
    ap.add_argument("--slices", type=int, default=50)
    ap.add_argument("--size", type=int, default=160, help="in-plane working matrix (380 mm field of view)")
    ap.add_argument("--pixel-mm", type=float, default=4.75, help="network pixel size")
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--train-seconds", type=float, default=150.0)
    ap.add_argument("--k", type=int, default=20, help="|D_c|")
    ap.add_argument("--n-select", type=int, default=5, help="|D_r|")
    ap.add_argument("--t", type=int, default=10)
    ap.add_argument("--t-cheap", default="2,3")
    ap.add_argument("--factors", default="1.5,2,3")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--pool-seed", type=int, default=0)
    ap.add_argument("--seed-fraction", type=float, default=0.05, help="labelled share of each volume")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.volumes, args.slices, args.size, args.epochs, args.train_seconds, args.seeds = 2, 24, 64, 2, 10, 1
        args.pixel_mm, args.k, args.n_select = 11.875, 4, 2
    torch.set_num_threads(1)
    hus, labels, seeded, spacing = build_pool(args)
    grid = network_grid((args.size, args.size), spacing, pixel_mm=args.pixel_mm, depth=args.depth)
    volumes = [(v, [z for z in range(args.slices) if z not in set(zs)]) for v, zs in enumerate(seeded)]
    n_pool = sum(len(zs) for _, zs in volumes)
    log(f"pool: {args.volumes} phantoms x {args.slices} slices of {args.size} x {args.size} "
        f"({spacing[0]:.3f} mm), network grid {grid.shape} ({grid.pixel_mm[0]:.2f} mm), "
        f"{n_pool} unlabelled slices; |D_c| = {args.k}, |D_r| = {args.n_select}, T = {args.t}")
    model = train_model(args, grid, hus, labels, seeded)
    plan = StepPlan("tau", 2.5e-3, n_select=args.n_select, n_candidates=args.k)
    configs = [("full, other seed", args.t, 1.0)] + [
        (f"cheap T={tc}, {f:g} x |D_c|", tc, f)
        for tc in (int(v) for v in args.t_cheap.split(",")) for f in (float(v) for v in args.factors.split(","))
    ]
    rows: dict[str, list[tuple[float, ...]]] = {name: [] for name, _, _ in configs}
    full_seconds = []
    for s in range(args.seeds):
        seed = 1000 + s
        full, secs = rank(volumes, hus, model, grid, seed=seed, k=args.k, t=args.t, t_cheap=args.t, factor=1.0)
        full_seconds.append(secs)
        ref_c, ref_r = chosen(full, plan, seed)
        ref = Reference(full)
        for name, tc, f in configs:
            ranked, secs = rank(volumes, hus, model, grid, seed=seed + 500, k=args.k, t=args.t, t_cheap=tc, factor=f)
            d_c, d_r = chosen(ranked, plan, seed)
            rows[name].append((len(d_c & ref_c) / args.k, len(d_r & ref_r) / args.n_select,
                               ref.uncertainty(d_c) / ref.uncertainty(ref_c), ref.cover(d_r) / ref.cover(ref_r),
                               ranked.passes / full.passes, secs))
        log(f"seed {seed}: full ranking {full_seconds[-1]:.1f} s; " + "; ".join(
            f"{name}: D_c {r[-1][0]:.2f} D_r {r[-1][1]:.2f}" for name, r in rows.items()))
    print(f"\nfull ranking: {full.passes} network passes, {np.mean(full_seconds):.1f} s per ranking (mean)")
    print(f"{'configuration':<26} {'D_c overlap (min-max)':>22} {'D_r overlap (min-max)':>22} "
          f"{'D_c score':>9} {'D_r cover':>9} {'passes':>7} {'time':>6}")
    for name, r in rows.items():
        a = np.array(r)
        print(f"{name:<26} {a[:, 0].mean():>9.3f} ({a[:, 0].min():.2f}-{a[:, 0].max():.2f})"
              f" {a[:, 1].mean():>9.3f} ({a[:, 1].min():.2f}-{a[:, 1].max():.2f})"
              f" {a[:, 2].mean():>9.3f} {a[:, 3].mean():>9.3f}"
              f" {a[:, 4].mean():>7.2f} {a[:, 5].mean() / np.mean(full_seconds):>6.2f}")
    print(f"(over {args.seeds} MC seeds; passes and time relative to the full ranking)")


if __name__ == "__main__":
    main()

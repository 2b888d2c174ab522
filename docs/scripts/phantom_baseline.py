"""How hard is the phantom? A per-voxel classifier on HU, local features and position.

Trains scikit-learn's HistGradientBoostingClassifier on voxels of some phantoms
and reports the 3D Dice per structure on other phantoms (shared left/right
labels). Features per voxel: HU, Gaussian-smoothed HU (sigma 1, 2, 4 voxels),
gradient magnitude, local standard deviation, and the voxel's position
relative to the body's bounding box (so the classifier also knows roughly
where each muscle lies).

    python docs/scripts/phantom_baseline.py [--train 6] [--test 3] [--shape 100 160 160]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402

from mltasks.phantom import generate_phantom  # noqa: E402


def features(hu: np.ndarray, body: np.ndarray) -> np.ndarray:
    """(n_body_voxels, 9) float32 features of the voxels inside the body."""
    x = np.clip(hu.astype(np.float32), -200, 400)
    feats = [x]
    for s in (1.0, 2.0, 4.0):
        feats.append(ndimage.gaussian_filter(x, (0, s, s)))
    feats.append(ndimage.gaussian_gradient_magnitude(x, (0, 1.0, 1.0)))
    mean2 = ndimage.uniform_filter(x * x, (1, 5, 5))
    mean = ndimage.uniform_filter(x, (1, 5, 5))
    feats.append(np.sqrt(np.maximum(mean2 - mean * mean, 0)))
    zz, yy, xx = np.nonzero(body)
    pos = []
    for coord, idx in ((zz, 0), (yy, 1), (xx, 2)):
        lo, hi = coord.min(), coord.max()
        pos.append((np.arange(body.shape[idx]) - lo) / max(hi - lo, 1))
    grids = np.meshgrid(*pos, indexing="ij")
    feats.extend(g.astype(np.float32) for g in grids)
    return np.stack([f[body] for f in feats], axis=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=6)
    ap.add_argument("--test", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=3, default=(100, 160, 160), metavar=("Z", "Y", "X"))
    ap.add_argument("--samples", type=int, default=400_000, help="training voxels in total")
    args = ap.parse_args()
    rng = np.random.Generator(np.random.PCG64(0))
    t0 = time.time()
    xs, ys = [], []
    per = args.samples // args.train
    for seed in range(1000, 1000 + args.train):
        ph = generate_phantom(seed, shape=tuple(args.shape))
        f, y = features(ph.hu, ph.body), ph.labels[ph.body]
        pick = rng.choice(len(y), size=min(per, len(y)), replace=False)
        xs.append(f[pick])
        ys.append(y[pick])
    clf = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.2, max_leaf_nodes=63, random_state=0)
    clf.fit(np.concatenate(xs), np.concatenate(ys))
    label_set = ph.label_set
    dice = {lab.name: [] for lab in label_set.labels}
    for seed in range(2000, 2000 + args.test):
        ph = generate_phantom(seed, shape=tuple(args.shape))
        pred = np.zeros_like(ph.labels)
        pred[ph.body] = clf.predict(features(ph.hu, ph.body))
        for lab in label_set.labels:
            a, b = ph.labels == lab.value, pred == lab.value
            dice[lab.name].append(2 * (a & b).sum() / max(a.sum() + b.sum(), 1))
    print(f"train seeds 1000..{999 + args.train}, test seeds 2000..{1999 + args.test}, shape {tuple(args.shape)}, "
          f"{args.samples} training voxels, {time.time() - t0:.0f} s")
    print_dice_table(dice, label_set)


def print_dice_table(dice: dict[str, list[float]], label_set) -> None:
    """Markdown table of the mean Dice per structure, then the muscle and bone means."""
    print("| structure | kind | Dice (mean over test phantoms) |\n|---|---|---|")
    for lab in label_set.labels:
        print(f"| {lab.name} | {lab.kind} | {np.mean(dice[lab.name]):.3f} |")
    muscles = [np.mean(dice[lab.name]) for lab in label_set.labels if lab.kind == "muscle"]
    bones = [np.mean(dice[lab.name]) for lab in label_set.labels if lab.kind == "bone"]
    print(f"\nmean muscle Dice {np.mean(muscles):.3f}; mean bone Dice {np.mean(bones):.3f}")


if __name__ == "__main__":
    main()

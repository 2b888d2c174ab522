"""How hard is the phantom for a small U-Net trained for a few minutes on CPU?

Trains the Bayesian U-Net of ``mltasks.nets`` (profile ``fast`` on a 128 x 128
matrix by default) for a fixed wall-clock budget on the slices of some
phantoms, then segments other phantoms with MC dropout and reports the 3D Dice
per structure (``mltasks.metrics.dice``, shared left/right labels) on the
phantom's own grid. Same seeds and shape as docs/scripts/phantom_baseline.py:
training seeds 1000.., held-out seeds 2000...

Like that baseline, the network only sees the inside of the true body mask
(training and test): the body net is not part of this measurement. The network
grid keeps the phantom's own slices (2D network, so no z resampling is needed).

    OMP_NUM_THREADS=1 python docs/scripts/phantom_unet_baseline.py [--train 5] [--test 3] [--minutes 5]
    python docs/scripts/phantom_unet_baseline.py --quick     # ~1 min smoke check; figures mean nothing
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from phantom_baseline import print_dice_table  # noqa: E402  (this folder; the same table as the classifier baseline)

from mltasks.infer import mc_predict_slices  # noqa: E402
from mltasks.metrics import dice  # noqa: E402
from mltasks.nets import profile  # noqa: E402
from mltasks.phantom import generate_phantom  # noqa: E402
from mltasks.postprocess import keep_largest_components  # noqa: E402
from mltasks.preprocess import Preprocessed, preprocess_volume, resample_labels_to_network  # noqa: E402
from mltasks.train import TrainConfig, train  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def network_slices(ph, matrix: int) -> tuple[Preprocessed, np.ndarray, np.ndarray, np.ndarray]:
    """(preprocessed CT, labels, body) on the network grid; the image is 0 outside the true body."""
    pre = preprocess_volume(
        ph.hu, ph.geometry, matrix=matrix, slice_interval_mm=ph.geometry.spacing[0]
    )
    labels = resample_labels_to_network(ph.labels, ph.geometry, pre.geometry)
    body = resample_labels_to_network(ph.body.astype(np.uint8), ph.geometry, pre.geometry) > 0
    image = np.where(body, pre.image, np.float32(0.0))
    return pre, image, labels, body


def training_data(seeds: range, shape: tuple, matrix: int) -> tuple[np.ndarray, np.ndarray, object]:
    images, labels = [], []
    for seed in seeds:
        ph = generate_phantom(seed, shape=shape)
        _, x, y, _ = network_slices(ph, matrix)
        images.append(x)
        labels.append(y)
        log(f"training phantom {seed}: {len(x)} slices")
    return np.concatenate(images), np.concatenate(labels), ph.label_set


def segment(ph, model, *, t_samples: int) -> np.ndarray:
    """(z, y, x) labels of one phantom on its own grid, 0 outside the true body."""
    pre, image, _, body = network_slices(ph, model.config.matrix)
    pred = mc_predict_slices(image, model, t_samples=t_samples, batch_size=4).labels
    pred[~body] = 0
    labels = pre.to_original(keep_largest_components(pred), interpolation="nearest")
    labels[~ph.body] = 0
    return labels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=5)
    ap.add_argument("--test", type=int, default=3)
    ap.add_argument("--shape", type=int, nargs=3, default=(100, 160, 160), metavar=("Z", "Y", "X"))
    ap.add_argument("--profile", default="fast")
    ap.add_argument("--matrix", type=int, default=128)
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-clock training budget")
    ap.add_argument("--samples", type=int, default=4, help="T, MC samples per slice")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="tiny everything: checks the script runs")
    args = ap.parse_args()
    if args.quick:
        args.train, args.test, args.shape, args.profile = 2, 1, (16, 64, 64), "tiny"
        args.matrix, args.minutes, args.samples = 64, 0.1, 2
    torch.set_num_threads(args.threads)
    t0 = time.time()
    shape = tuple(args.shape)
    x, y, label_set = training_data(range(1000, 1000 + args.train), shape, args.matrix)
    cfg = profile(args.profile, n_classes=label_set.n_classes, matrix=args.matrix)
    # A small validation subset of the training slices, only to pick the best epoch
    # cheaply; the held-out phantoms are never seen before testing.
    tcfg = TrainConfig(max_epochs=1000, patience=0, val_samples=1, max_seconds=args.minutes * 60)
    t_train = time.time()
    result = train(x, y, cfg, config=tcfg, label_set=label_set, validation=(x[::25], y[::25]))
    t_train = time.time() - t_train
    epochs = len(result.history)
    log(
        f"trained {t_train:.0f} s, {epochs} epoch(s) of {len(x)} slices, best val Dice {result.best_dice:.3f}"
    )

    scores = {lab.name: [] for lab in label_set.labels}
    for seed in range(2000, 2000 + args.test):
        ph = generate_phantom(seed, shape=shape)
        pred = segment(ph, result.model, t_samples=args.samples)
        for lab in label_set.labels:
            scores[lab.name].append(dice(pred == lab.value, ph.labels == lab.value))
        log(f"test phantom {seed} done")
    wall = time.time() - t0

    print(f"\nprofile {args.profile} (width {cfg.width}, depth {cfg.depth}, Bayesian {cfg.bayesian}) at "
          f"{cfg.matrix} x {cfg.matrix}; train seeds 1000..{999 + args.train} ({len(x)} slices), "
          f"test seeds 2000..{1999 + args.test}, shape {shape}; training {t_train:.0f} s "
          f"({epochs} epoch(s), budget {args.minutes:g} min, {torch.get_num_threads()} thread(s)), "
          f"T = {args.samples}; total wall time {wall:.0f} s")  # fmt: skip
    print_dice_table(scores, label_set)


if __name__ == "__main__":
    main()

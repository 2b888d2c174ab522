"""Model 0 from a few labelled slices of one CT: which training rules help? (docs/learning.md)

One phantom CT (``--shape``, default 96 x 128 x 128: about 3 mm slices over the
phantom's 290 mm), ``--seed-slices`` evenly spaced slices labelled (as a 5 % seed of
a 160-slice CT), the rest of the same CT held out. Each variant trains model 0 with
``mltasks.train.train`` under the same budget (``--seconds``, ``--epochs``) and is
scored on every slice that was not labelled: mean Dice over muscles and over all
structures present (per class over all held-out pixels, MC mean of 5 samples), for
the best-validation weights that ``train`` returns and for the last weights. With
``--cross-seed S`` the best weights are also scored on every slice of another
phantom (seed S): learning across scans.

    OMP_NUM_THREADS=1 nice -n 10 python docs/scripts/first_model_experiment.py \\
        [--matrix 64] [--seconds 90] [--variants legacy,rule,...] [--phantom-seed 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mltasks.infer import mc_predict_slices  # noqa: E402
from mltasks.nets import UNet, profile  # noqa: E402
from mltasks.phantom import generate_phantom  # noqa: E402
from mltasks.preprocess import preprocess_volume, resample_labels_to_network  # noqa: E402
from mltasks.train import TrainConfig, dice_per_class, train  # noqa: E402

LEGACY = {"patience_rule": "val", "dice_classes": "all", "augment_preset": "paper",
          "class_weighting": "none", "min_batches_per_epoch": 0}  # fmt: skip
E16 = {**LEGACY, "min_batches_per_epoch": 16}
RULE = {**E16, "patience_rule": "val_and_loss"}
# Each variant changes the former defaults ("legacy") one rule at a time; the bool says
# whether the validation slices are held out by position (``slice_keys``).
VARIANTS: dict[str, tuple[dict, bool]] = {
    "legacy": (LEGACY, False),
    "legacy+rule": ({**LEGACY, "patience_rule": "val_and_loss"}, False),
    "epoch16": (E16, False),
    "epoch16+rule": (RULE, False),
    "epoch16+rule+split": (RULE, True),
    "epoch16+rule+split+present": ({**RULE, "dice_classes": "present"}, True),
    "epoch16+rule+split+weights": ({**RULE, "class_weighting": "inverse_frequency"}, True),
    "epoch16+rule+split+within": ({**RULE, "augment_preset": "within_scan"}, True),
    "epoch16+rule+split+noaug": ({**RULE, "augment": False}, True),
    "epoch16+no_patience": ({**E16, "patience": 0}, True),
    "new_defaults": ({}, True),
    "new_defaults+paper_aug": ({"augment_preset": "paper"}, True),
    "new_defaults+no_aug": ({"augment": False}, True),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    return ((np.arange(k) + 0.5) * n / k).astype(np.int64)


def held_out_scores(model: UNet, images, labels, muscles: list[int]) -> tuple[float, float]:
    """(mean muscle Dice, mean Dice over all structures present) on (n, H, W) slices."""
    pred = mc_predict_slices(images, model, t_samples=5, batch_size=8, seed=0).labels
    dice = dice_per_class(pred, labels, model.config.n_classes)
    present = np.bincount(labels.reshape(-1), minlength=model.config.n_classes) > 0
    structures = [c for c in range(1, model.config.n_classes) if present[c]]
    return float(np.nanmean(dice[[c for c in muscles if present[c]]])), float(np.nanmean(dice[structures]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 128, 128))
    ap.add_argument("--matrix", type=int, default=64)
    ap.add_argument("--profile", default="fast")
    ap.add_argument("--seed-slices", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--phantom-seed", type=int, default=0)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cross-seed", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ph = generate_phantom(args.phantom_seed, shape=tuple(args.shape))
    pre = preprocess_volume(ph.hu, ph.geometry, matrix=args.matrix, fov_mm=380.0,
                            slice_interval_mm=ph.geometry.spacing[0])  # fmt: skip
    labels = resample_labels_to_network(ph.labels.astype(np.uint8), ph.geometry, pre.geometry)
    n = pre.image.shape[0]
    seed_idx = evenly_spaced(n, args.seed_slices)
    rest = np.setdiff1d(np.arange(n), seed_idx)
    muscles = ph.label_set.values_of_kind("muscle")
    other = None
    if args.cross_seed is not None:
        ph2 = generate_phantom(args.cross_seed, shape=tuple(args.shape))
        pre2 = preprocess_volume(ph2.hu, ph2.geometry, matrix=args.matrix, fov_mm=380.0,
                                 slice_interval_mm=ph2.geometry.spacing[0])  # fmt: skip
        other = (pre2.image, resample_labels_to_network(ph2.labels.astype(np.uint8), ph2.geometry, pre2.geometry))
    net = profile(args.profile, n_classes=ph.label_set.n_classes, matrix=args.matrix)
    log(f"phantom {args.phantom_seed} {tuple(ph.hu.shape)} -> {n} slices of {args.matrix}^2; "
        f"seed slices {seed_idx.tolist()}; {rest.size} held out; {args.profile} net, "
        f"{args.seconds:.0f} s / {args.epochs} epochs, patience {args.patience}")  # fmt: skip
    print("| variant | epochs | stop | s | best epoch | val Dice | held-out muscle Dice (best / last) "
          "| held-out all Dice (best / last) | other CT muscle / all Dice |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.variants.split(","):
        overrides, by_position = VARIANTS[name]
        config = replace(TrainConfig(max_epochs=args.epochs, patience=args.patience,
                                     max_seconds=args.seconds), **overrides)  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = Path(tmp) / "run.pt"
            result = train(pre.image[seed_idx], labels[seed_idx], net, config=config,
                           label_set=ph.label_set, slice_keys=seed_idx if by_position else None,
                           checkpoint_path=ckpt)  # fmt: skip
            last = UNet(net)
            last.load_state_dict(torch.load(ckpt, weights_only=True)["model"])
            last.mc_mode()
        best_m, best_a = held_out_scores(result.model, pre.image[rest], labels[rest], muscles)
        last_m, last_a = held_out_scores(last, pre.image[rest], labels[rest], muscles)
        cross = "-"
        if other is not None:
            cross = "{:.3f} / {:.3f}".format(*held_out_scores(result.model, *other, muscles))
        print(f"| {name} | {result.epochs} | {result.stop_reason} | {result.seconds:.0f} | "
              f"{result.best_epoch} | {result.best_dice:.3f} | {best_m:.3f} / {last_m:.3f} | "
              f"{best_a:.3f} / {last_a:.3f} | {cross} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

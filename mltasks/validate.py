"""Predicting labels for validation and scoring them against reference labels.

Arrays are (N, H, W) integer labels; reference pixels equal to ``IGNORE`` (255,
unlabelled) are left out of every count.
"""

from __future__ import annotations

import numpy as np
import torch

from mltasks.losses import IGNORE
from mltasks.nets import UNet


def dice_per_class(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes,) Dice of integer label arrays over pixels where ref != IGNORE; NaN if absent from both."""
    return overlaps(pred, ref, n_classes)[0]


def precision_per_class(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes,) share of the pixels predicted as c that ref labels c (ref != IGNORE); NaN if never predicted."""
    return overlaps(pred, ref, n_classes)[1]


def overlaps(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """((n_classes,) Dice, (n_classes,) precision) of ``pred`` against ``ref`` (any equal shapes)."""
    valid = ref != IGNORE
    p, r = pred[valid].astype(np.int64), ref[valid].astype(np.int64)
    n_p = np.bincount(p, minlength=n_classes)[:n_classes]
    n_r = np.bincount(r, minlength=n_classes)[:n_classes]
    n_both = np.bincount(p[p == r], minlength=n_classes)[:n_classes]
    total = n_p + n_r
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(total > 0, 2.0 * n_both / total, np.nan)
        precision = np.where(n_p > 0, n_both / n_p, np.nan)
    return dice, precision


@torch.no_grad()
def predict_labels(
    model: UNet, images: torch.Tensor, *, samples: int, seed: int, batch_size: int
) -> np.ndarray:
    """(N, H, W) uint8 argmax of the MC-mean (Bayesian) or plain (deterministic) softmax."""
    was_training = model.training
    model.mc_mode()
    generator = torch.Generator().manual_seed(seed)
    model.set_generator(generator)
    n_samples = samples if model.config.bayesian else 1
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size, None]
        mean = sum(torch.softmax(model(x), 1) for _ in range(n_samples)) / n_samples
        out.append(mean.argmax(1).to(torch.uint8))
    model.set_generator(None)
    model.train(was_training)
    return torch.cat(out).numpy()

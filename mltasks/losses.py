"""Segmentation losses of ``mltasks.train``: cross-entropy + soft Dice over labelled pixels.

A hip CT slice is about 80 % background and a small muscle covers 0.1-0.3 % of it,
so two options keep the small structures from drowning (docs/learning.md measures
them):

- ``class_weights_from_labels``: cross-entropy weights by inverse class frequency
  in the training labels, relative to the most frequent class (weight 1) and
  capped (``cap``) so that a structure seen on a handful of pixels cannot dominate;
- ``dice_classes="present"``: the soft Dice averaged only over the foreground
  classes present in the batch's labels. With ``"all"`` (the former rule), an absent
  class scores about 1 / (its predicted mass + 1) and dilutes the mean over the
  classes that are there.

Pixels labelled ``ignore_index`` (255: nobody labelled them) contribute nothing.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from mltasks.errors import InvalidTrainingData

IGNORE = 255
DICE_CLASSES = ("all", "present")


def class_weights_from_labels(
    labels: np.ndarray, n_classes: int, *, cap: float = 10.0, ignore_index: int = IGNORE
) -> np.ndarray:
    """(n_classes,) float32 weights max_f / f_c, capped at ``cap``; absent classes get ``cap``.

    Args:
        labels: (N, H, W) integer training labels; ``ignore_index`` pixels are not counted.
        cap: largest weight (>= 1); the most frequent class has weight 1.
    """
    if not cap >= 1.0:
        raise InvalidTrainingData(f"class weight cap must be >= 1, got {cap}")
    values = np.asarray(labels).reshape(-1)
    counts = np.bincount(values[values != ignore_index].astype(np.int64), minlength=n_classes)
    counts = counts[:n_classes].astype(np.float64)
    if counts.max() == 0:
        return np.ones(n_classes, np.float32)
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, counts.max() / counts, cap)
    return np.minimum(weights, cap).astype(np.float32)


def segmentation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    dice_weight: float = 1.0,
    class_weights: torch.Tensor | None = None,
    dice_classes: str = "all",
    ignore_index: int = IGNORE,
) -> torch.Tensor:
    """(Weighted) cross-entropy + ``dice_weight`` x (1 - soft Dice), over labelled pixels only.

    Args:
        logits: (B, C, H, W) float.
        labels: (B, H, W) integer; ``ignore_index`` marks unlabelled pixels.
        class_weights: (C,) cross-entropy weights; the weighted mean divides by the
            summed weights of the labelled pixels (None: every pixel weighs 1).
        dice_classes: "all" foreground classes, or only those "present" in ``labels``.
    Returns:
        Scalar loss; 0 (with a graph) when no pixel is labelled.
    """
    if dice_classes not in DICE_CLASSES:
        raise InvalidTrainingData(f"dice_classes must be one of {DICE_CLASSES}, got {dice_classes!r}")
    target = labels.long()
    valid = target != ignore_index
    n_valid = valid.sum()
    if n_valid == 0:
        return logits.sum() * 0.0
    if class_weights is None:
        ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum") / n_valid
    else:
        ce = F.cross_entropy(logits, target, weight=class_weights.to(logits.dtype), ignore_index=ignore_index)
    if dice_weight == 0:
        return ce
    n_classes = logits.shape[1]
    probs = torch.softmax(logits, dim=1) * valid[:, None]
    onehot = (
        F.one_hot(torch.where(valid, target, 0), n_classes).permute(0, 3, 1, 2) * valid[:, None]
    )
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    present = onehot.sum(dims)
    dice = (2.0 * inter + 1.0) / (probs.sum(dims) + present + 1.0)
    if dice_classes == "all":
        return ce + dice_weight * (1.0 - dice[1:].mean())
    chosen = present[1:] > 0
    if not bool(chosen.any()):  # background only: cross-entropy alone
        return ce
    return ce + dice_weight * (1.0 - dice[1:][chosen].mean())

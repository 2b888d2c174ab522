"""Held-out slices of a scan: which to keep out of training, and a model's Dice on them.

The guard of Eq. 7 (``mltasks.guard``) decides on a model's Dice measured on slices it
never trained on. A 5 % seed validates on one or two slices, too noisy for a decision
worth a million expert pixels; several labelled slices spread along the scan, none of
them in or next to the training set, are the product's evidence (the worker's
``held_out`` app) and the simulation's (``mltasks.simulate``).
"""

from __future__ import annotations

import numpy as np
import torch

from mltasks.infer import mc_predict_slices
from mltasks.nets import UNet
from mltasks.validate import dice_per_class

# Slices on each side of a training slice that may not be held out (nearly the same image).
HELD_OUT_MARGIN = 1


def spread(candidates: list[int], count: int) -> list[int]:
    """``count`` of the sorted ``candidates``, evenly spread along them (the middle of each of
    ``count`` equal runs), or all of them when there are not more."""
    if count >= len(candidates):
        return list(candidates)
    return [candidates[int((i + 0.5) * len(candidates) / count)] for i in range(count)]


def choose_held_out(
    labelled: np.ndarray, count: int, *, eligible: np.ndarray | None = None, margin: int = HELD_OUT_MARGIN
) -> np.ndarray:
    """Slices of one scan to hold out, spread along the ones that qualify.

    Args:
        labelled: (Z,) bool, the scan's training slices.
        count: how many to hold out.
        eligible: (Z,) bool, slices that may be held out (for example: a structure in the
            reference); None: all.
        margin: no held-out slice within this many slices of a training slice.
    Returns:
        (k,) int64 sorted slice indices, k <= count (fewer when fewer qualify).
    """
    labelled = np.asarray(labelled, bool)
    blocked = np.convolve(labelled, np.ones(2 * margin + 1), mode="same") > 0
    free = ~blocked if eligible is None else ~blocked & np.asarray(eligible, bool)
    return np.asarray(spread(np.flatnonzero(free).tolist(), count), np.int64)


def pooled_dice_of(
    model: UNet, images: np.ndarray, truth: np.ndarray, *, t_samples: int, seed: int = 0, batch_size: int = 8
) -> np.ndarray:
    """(n_classes,) Dice per class of ``model`` over the pixels of all ``images`` together (NaN
    where a class is in neither the prediction nor ``truth``), MC mean of ``t_samples``.

    Args:
        images: (n, H, W) float32 network-grid slices.
        truth: (n, H, W) uint8 reference labels.
    """
    with torch.inference_mode():
        predicted = mc_predict_slices(images, model, t_samples=t_samples, batch_size=batch_size, seed=seed).labels
    return dice_per_class(predicted.ravel(), np.asarray(truth).ravel(), model.config.n_classes)

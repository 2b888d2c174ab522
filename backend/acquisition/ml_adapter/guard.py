"""Eq. 7's guard and the cold start, between the step code (``steps.guarding``,
``steps.coldstart``) and ``mltasks.guard`` / ``mltasks.coldstart``."""

from __future__ import annotations

import numpy as np

from mltasks import coldstart as mlcoldstart
from mltasks import guard as mlguard

# Re-exported: the held-out app chooses its slices by the library's rule, as the simulation does.
from mltasks.held_out import HELD_OUT_MARGIN as HELD_OUT_MARGIN
from mltasks.held_out import spread as spread

LABEL_RULES = mlguard.RULES


def guard_decision(held_out_dice: list | None, *, rule: str, strategy: str) -> dict:
    """Eq. 7's guard for a step (``mltasks.guard.decide``) from the current model's held-out
    Dice per class (None: no model or no held-out slice yet), as a dict with the rule."""
    dice = None if held_out_dice is None else np.array([np.nan if v is None else v for v in held_out_dice], float)
    decision = mlguard.decide(dice, config=mlguard.GuardConfig(rule=rule), strategy=strategy)
    return {**decision.to_dict(), "rule": rule}


def guard_query(
    predicted: np.ndarray, mask: np.ndarray, hu_slice: np.ndarray, guard: dict, *, pixel_scale: float,
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, int, int | None]:
    """A query's stored prediction under the step's guard (``mltasks.guard.guarded_prediction``).

    Args:
        predicted, mask: (H, W) of the chosen slice on its working grid.
        hu_slice: (H, W) HU of that slice (the air outside the body is background).
        guard: ``guard_decision``'s dict.
        pixel_scale: working pixels per network pixel (scales the guard's boundary margin).
        reference: (H, W) reference labels of that slice, when the scan has them.
    Returns:
        (labels (H, W) uint8, IGNORE where untrusted; auto-labelled pixels; how many of
        those differ from ``reference``, None without one).
    """
    decision = mlguard.GuardDecision.from_dict(guard)
    air = mlguard.air_outside_body(np.asarray(hu_slice)[None])[0]
    labels, provenance = mlguard.guarded_prediction(predicted, mask, decision, air=air, pixel_scale=pixel_scale)
    wrong = None if reference is None else mlguard.auto_label_errors(labels, provenance, np.asarray(reference))
    return labels, mlguard.auto_labelled(provenance), wrong


def cold_start_descriptors(images: np.ndarray) -> np.ndarray:
    """(n, d) centred thumbnail descriptors of one scan's (n, h, w) network images (no model)."""
    return mlcoldstart.slice_descriptors(images)


def cold_start_cover(features: np.ndarray, n: int, *, keys: np.ndarray, exclude: list[int]) -> np.ndarray:
    """Indices of the ``n`` slices to ask for first: D_r's set cover, no two picks adjacent."""
    return mlcoldstart.spread_cover(features, n, keys=keys, exclude=exclude)

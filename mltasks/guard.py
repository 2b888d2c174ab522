"""Eq. 7 with a guard: which unqueried pixels of a step may take the model's label.

The paper's Eq. 7 gives every pixel with u < tau the predicted label. That assumes
a model whose confident pixels are right; an undertrained network is confidently
wrong (method.md §4: a validation Dice of 0.04, a median u of 2e-5, half of every
slice wrong). The guard decides, from the current model's held-out Dice per class
(``TrainResult.val_dice_per_class``: slices held out of its training and not next
to a training slice) and optionally its PSV per class, what a step may do:

- ``whole_slices``: the model is not trustworthy yet (no held-out Dice, or a mean
  held-out foreground Dice below ``min_model_dice``): the step asks for whole
  slices (the manual fallback) and nothing is auto-labelled;
- ``auto_label``: the unqueried pixels whose *predicted* class is trusted (held-out
  Dice >= ``min_dice``, background >= ``min_background_dice``, and PSV <= ``max_psv``
  when given) take that label, provided every pixel within ``boundary_margin``
  pixels predicts the same class (the model's confident mistakes sit on the borders
  between structures); unqueried pixels of air outside the body
  (``air_outside_body``, when ``apply_guard`` is given it) are background whatever
  the model says (``background_outside_body``); the other unqueried pixels are
  left out of training (``IGNORE``);
- ``masked`` (``rule="masked"``, or no class trusted and ``background_outside_body``
  off): only the answered pixels train (masked loss).

``rule="paper"`` is the paper's unguarded Eq. 7, kept so the paper can be
reproduced. Defaults were chosen by docs/scripts/guard_experiment.py (docs/learning.md).

Arrays: slices (H, W); per-class tables (n_classes,) indexed by class value, 0 =
background, NaN = unknown (a class absent from the held-out slices is not trusted).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from mltasks.errors import InvalidQuery
from mltasks.losses import IGNORE
from mltasks.query import ANSWERED, PREDICTED, merge_answers

# Provenance of a pixel the guard left out of training (label IGNORE); query.py has
# PREDICTED (0, auto-labelled) and ANSWERED (1).
UNTRUSTED = np.uint8(2)
RULES = ("guard", "paper", "masked")
MODES = ("auto_label", "masked", "whole_slices")
WHOLE_SLICE_STRATEGIES = ("manual", "random_slices")


@dataclass(frozen=True)
class GuardConfig:
    """Settings of the guard; plain values (a project's setting).

    Attributes:
        rule: "guard" (default), "paper" (unguarded Eq. 7) or "masked" (never auto-label).
        min_dice: held-out Dice a structure needs before its predicted pixels are auto-labelled.
        min_background_dice: the same for predicted background (class 0).
        max_psv: when set, a structure also needs a PSV at most this.
        min_model_dice: below this mean held-out foreground Dice, steps ask for whole slices.
        boundary_margin: a predicted pixel is auto-labelled only when every pixel within
            this many pixels of the network grid (a square) predicts the same class
            (0: no margin); ``apply_guard``'s ``pixel_scale`` converts it to the grid
            the labels are on.
        background_outside_body: unqueried pixels of air outside the body (``air_outside_body``)
            are labelled background.
    """

    rule: str = "guard"
    min_dice: float = 0.8
    min_background_dice: float = 0.95
    max_psv: float | None = None
    min_model_dice: float = 0.5
    boundary_margin: int = 2
    background_outside_body: bool = True

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise InvalidQuery(f"unknown guard rule {self.rule!r}; choose one of {', '.join(RULES)}")
        for name in ("min_dice", "min_background_dice", "min_model_dice"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidQuery(f"guard {name} must lie in [0, 1], got {value}")
        if self.max_psv is not None and not (math.isfinite(self.max_psv) and self.max_psv >= 0):
            raise InvalidQuery(f"guard max_psv must be a number >= 0 or None, got {self.max_psv}")
        if self.boundary_margin < 0:
            raise InvalidQuery(f"guard boundary_margin must be >= 0 pixels, got {self.boundary_margin}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GuardConfig:
        return cls(**data)


@dataclass(frozen=True)
class GuardDecision:
    """What one step may do.

    Attributes:
        mode: "auto_label", "masked" or "whole_slices".
        trusted: class values whose predicted pixels may be auto-labelled (sorted);
            None means every class (the paper's rule); empty unless mode is "auto_label".
        reason: one sentence for the step's log and the dashboard.
        boundary_margin: ``GuardConfig.boundary_margin`` (0 under the paper's rule).
        background_outside_body: ``GuardConfig.background_outside_body`` (False under
            the paper's rule and in "masked" mode).
    """

    mode: str
    trusted: tuple[int, ...] | None
    reason: str
    boundary_margin: int = 0
    background_outside_body: bool = False

    @property
    def whole_slices(self) -> bool:
        return self.mode == "whole_slices"

    def to_dict(self) -> dict:
        return {"mode": self.mode, "trusted": None if self.trusted is None else list(self.trusted),
                "reason": self.reason, "boundary_margin": self.boundary_margin,
                "background_outside_body": self.background_outside_body}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> GuardDecision:
        trusted = data.get("trusted")
        return cls(data["mode"], None if trusted is None else tuple(int(c) for c in trusted), data["reason"],
                   int(data.get("boundary_margin", 0)), bool(data.get("background_outside_body", False)))  # fmt: skip


def _table(values: np.ndarray | None, what: str) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 2:
        raise InvalidQuery(f"{what} must be one value per class (n_classes,), got shape {arr.shape}")
    return arr


def decide(
    held_out_dice: np.ndarray | None,
    *,
    config: GuardConfig = GuardConfig(),
    strategy: str = "tau",
    psv: np.ndarray | None = None,
) -> GuardDecision:
    """The guard's decision for a step of ``strategy`` with the current model.

    Args:
        held_out_dice: (n_classes,) the current model's held-out Dice per class (NaN:
            not measured), or None when there is no model or no held-out slice.
        config: the guard's settings.
        strategy: the step's strategy ("tau", "random_pixels", "manual", "random_slices").
        psv: (n_classes,) PSV per class of the current model, used with ``config.max_psv``.
    Returns:
        A ``GuardDecision``.
    """
    dice = _table(held_out_dice, "held_out_dice")
    psv_table = _table(psv, "psv")
    if strategy in WHOLE_SLICE_STRATEGIES:
        return GuardDecision("whole_slices", (), f"strategy {strategy!r} asks for whole slices")
    if config.rule == "paper":
        return GuardDecision("auto_label", None, "the paper's unguarded Eq. 7: every unqueried pixel takes the prediction")
    if dice is None or not np.isfinite(dice[1:]).any():
        return GuardDecision("whole_slices", (), "the model has no held-out Dice yet: asking for whole slices")
    mean = float(np.nanmean(dice[1:]))
    if mean < config.min_model_dice:
        return GuardDecision("whole_slices", (), f"held-out mean Dice {mean:.3f} is below "
                             f"{config.min_model_dice:.2f}: asking for whole slices")  # fmt: skip
    if config.rule == "masked":
        return GuardDecision("masked", (), "rule 'masked': only answered pixels train")
    trusted = _trusted_classes(dice, psv_table, config)
    if not trusted and not config.background_outside_body:
        return GuardDecision("masked", (), f"no class reaches a held-out Dice of {config.min_dice:.2f}: "
                             "only answered pixels train")  # fmt: skip
    reason = (f"{len(trusted)} of {dice.size} classes trusted (held-out Dice >= {config.min_dice:.2f})"
              + ("; air outside the body is background" if config.background_outside_body else ""))  # fmt: skip
    return GuardDecision("auto_label", trusted, reason, config.boundary_margin, config.background_outside_body)


def _trusted_classes(dice: np.ndarray, psv: np.ndarray | None, config: GuardConfig) -> tuple[int, ...]:
    if psv is not None and psv.size != dice.size:
        raise InvalidQuery(f"psv has {psv.size} classes, held_out_dice {dice.size}; pass tables of one model")
    thresholds = np.full(dice.size, config.min_dice)
    thresholds[0] = config.min_background_dice
    ok = np.isfinite(dice) & (np.nan_to_num(dice, nan=-1.0) >= thresholds)
    if psv is not None and config.max_psv is not None:
        ok[1:] &= np.isfinite(psv[1:]) & (np.nan_to_num(psv[1:], nan=np.inf) <= config.max_psv)
    return tuple(int(c) for c in np.flatnonzero(ok))


def guard_query_mask(mask: np.ndarray, decision: GuardDecision) -> np.ndarray:
    """The pixels to ask for: the whole slice when the decision is "whole_slices", else ``mask``."""
    arr = np.asarray(mask, dtype=bool)
    return np.ones_like(arr) if decision.whole_slices else arr


def apply_guard(
    predicted: np.ndarray,
    mask: np.ndarray,
    answers: np.ndarray,
    decision: GuardDecision,
    *,
    air: np.ndarray | None = None,
    pixel_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A slice's training labels under the guard: answers inside the query; outside it
    the prediction where the decision trusts it (module docstring), ``IGNORE`` elsewhere.

    Args:
        predicted: (H, W) integer labels of the model.
        mask: (H, W) bool, the queried pixels.
        answers: (H, W) integer answers (negative: unanswered; values outside the query are ignored).
        decision: ``decide``'s result for this step.
        air: (H, W) bool air outside the body (``air_outside_body`` of the slice's HU), or None.
        pixel_scale: pixels of this slice per network-grid pixel (e.g. 2 for a 512 x 512
            working grid and a 256 x 256 network): the boundary margin is scaled by it.
    Returns:
        labels: (H, W) uint8 (``IGNORE`` = 255 where not trusted).
        provenance: (H, W) uint8: ``ANSWERED``, ``PREDICTED`` (auto-labelled) or ``UNTRUSTED``.
    Raises:
        MissingAnswers: a queried pixel is unanswered. InvalidQuery: shapes differ.
    """
    merged, provenance = merge_answers(predicted, mask, answers)
    pred = np.asarray(predicted)
    unqueried = provenance == PREDICTED
    if not (math.isfinite(pixel_scale) and pixel_scale > 0):
        raise InvalidQuery(f"pixel_scale must be a positive number, got {pixel_scale}")
    keep = _trusted_pixels(pred, decision, round(decision.boundary_margin * pixel_scale)) & unqueried
    if decision.mode == "auto_label" and decision.background_outside_body and air is not None:
        outside = np.asarray(air, dtype=bool)
        if outside.shape != pred.shape:
            raise InvalidQuery(f"air mask {outside.shape} differs from the slice {pred.shape}")
        merged = np.where(unqueried & outside, 0, merged)
        keep |= unqueried & outside
    labels = np.where(provenance == ANSWERED, merged, np.where(keep, merged, IGNORE)).astype(np.uint8)
    out = np.where(provenance == ANSWERED, ANSWERED, np.where(keep, PREDICTED, UNTRUSTED)).astype(np.uint8)
    return labels, out


def _trusted_pixels(pred: np.ndarray, decision: GuardDecision, margin: int) -> np.ndarray:
    """(H, W) bool: the predicted class is trusted and uniform within ``margin`` pixels."""
    if decision.mode != "auto_label":
        return np.zeros(pred.shape, dtype=bool)
    ok = np.ones(pred.shape, bool) if decision.trusted is None else np.isin(pred, np.array(decision.trusted, np.int64))
    if margin > 0:
        size = 2 * margin + 1
        ok &= (ndimage.maximum_filter(pred, size=size, mode="nearest") == pred) & (
            ndimage.minimum_filter(pred, size=size, mode="nearest") == pred
        )
    return ok


AIR_HU = -500.0


def air_outside_body(hu_slices: np.ndarray, *, threshold_hu: float = AIR_HU, margin: int = 2) -> np.ndarray:
    """(N, H, W) bool: air that lies outside every piece of the body, certainly background.

    Every region denser than ``threshold_hu`` counts (both legs, the table, a
    calibration phantom: not only the largest region, which would leave a leg
    "outside" on thigh slices), its holes are filled (bowel gas is inside), and it is
    grown by ``margin`` pixels so that a label reaching a pixel past the skin stays
    out of the air.

    Args:
        hu_slices: (N, H, W) HU of the slices the labels are on.
    """
    hu = np.asarray(hu_slices)
    if hu.ndim != 3:
        raise InvalidQuery(f"hu_slices must be (N, H, W), got shape {hu.shape}")
    out = np.zeros(hu.shape, dtype=bool)
    for i, dense in enumerate(hu >= threshold_hu):
        inside = ndimage.binary_fill_holes(dense)
        if margin > 0 and inside.any():
            inside = ndimage.binary_dilation(inside, iterations=margin)
        out[i] = ~inside
    return out


def auto_labelled(provenance: np.ndarray) -> int:
    """Number of auto-labelled pixels (provenance ``PREDICTED``) in any stack of slices."""
    return int(np.count_nonzero(np.asarray(provenance) == PREDICTED))


def auto_label_errors(labels: np.ndarray, provenance: np.ndarray, reference: np.ndarray) -> int:
    """Auto-labelled pixels whose label differs from ``reference`` (same shapes; reference
    pixels that are negative or ``IGNORE`` are unknown and not counted)."""
    lab, prov, ref = (np.asarray(a) for a in (labels, provenance, reference))
    if not lab.shape == prov.shape == ref.shape:
        raise InvalidQuery(f"shapes differ: labels {lab.shape}, provenance {prov.shape}, reference {ref.shape}")
    known = (ref >= 0) & (ref != IGNORE)
    return int(np.count_nonzero((prov == PREDICTED) & known & (lab.astype(np.int64) != ref.astype(np.int64))))


def guarded_prediction(
    predicted: np.ndarray,
    mask: np.ndarray,
    decision: GuardDecision,
    *,
    air: np.ndarray | None = None,
    pixel_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """A query's stored prediction: the model's labels inside the query (shown to the expert,
    replaced by the answers), ``apply_guard``'s training labels outside it.

    Made when the query is made, so merging the answers later (``query.merge_answers``)
    gives exactly ``apply_guard``'s labels without the worker.

    Args:
        predicted: (H, W) integer labels of the model.
        mask: (H, W) bool, the queried pixels.
        decision, air, pixel_scale: as ``apply_guard``.
    Returns:
        (labels (H, W) uint8 with ``IGNORE`` where the guard does not trust the model,
        provenance (H, W) uint8 outside the query: ``PREDICTED`` or ``UNTRUSTED``).
    """
    pred = np.asarray(predicted)
    labels, provenance = apply_guard(pred, mask, pred.astype(np.int64), decision, air=air, pixel_scale=pixel_scale)
    return labels, provenance

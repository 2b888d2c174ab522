"""Training a U-Net on 2D slices (method.md §2): Adam, cross-entropy + soft Dice,
early stopping on an honest validation split, resumable checkpoints.

Data: ``images`` (N, H, W) float32 in [0, 1] on the network matrix and
``labels`` (N, H, W) uint8, where ``IGNORE`` (255) marks pixels nobody labelled
(partly answered active-learning slices); they contribute nothing to the loss.

Validation slices: given explicitly, or held out of the training slices; with
``slice_keys`` (volume, z) no validation slice lies within ``val_gap`` slices of a
training slice (``mltasks.split``). Validation runs the Bayesian net in MC mode
(BN running statistics, dropout on, ``val_samples`` samples averaged, fixed seed)
because a deterministic pass is invalid for it (see ``mltasks.nets``); the
deterministic body net is validated in eval mode.

Stopping (docs/learning.md): training ends at ``max_epochs``, at ``max_seconds`` of
training (counted over resumed runs too), or by patience. Under the default
``patience_rule="val_and_loss"`` an epoch counts against patience only when neither
the validation Dice nor the training loss improved (the loss by more than
``loss_min_delta``, relative), so a few noisy validation slices cannot stop a model
that is still learning; ``"val"`` is the former rule. Patience never stops a run
before ``min_epochs``. ``TrainResult`` says which budget ended the run.

Determinism: one ``torch.Generator`` drives shuffling and augmentation and a
second the training dropout masks; both states go into every checkpoint, so
resuming continues exactly as an uninterrupted run would (same thread count).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from mltasks.augment import AUGMENT_PRESETS, augment_batch, augment_preset
from mltasks.checkpoint import load_checkpoint, save_checkpoint
from mltasks.errors import InvalidTrainingData
from mltasks.geometry import Geometry
from mltasks.labels import LabelSet
from mltasks.losses import DICE_CLASSES, IGNORE, class_weights_from_labels, segmentation_loss
from mltasks.nets import NetConfig, UNet
from mltasks.preprocess import preprocess_volume, resample_labels_to_network
from mltasks.progress import ProgressCallback, report
from mltasks.split import split_by_position, split_validation
from mltasks.stopping import RunState
from mltasks.validate import dice_per_class, overlaps, precision_per_class, predict_labels

__all__ = [
    "IGNORE", "TrainConfig", "TrainResult", "dice_per_class", "epoch_order", "precision_per_class",
    "predict_labels", "segmentation_loss", "slices_from_volume", "split_by_position", "split_validation",
    "train", "validation_dice", "validation_scores",
]  # fmt: skip

PATIENCE_RULES = ("val_and_loss", "val")
CLASS_WEIGHTING = ("none", "inverse_frequency")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; plain values (stored in checkpoints).

    Attributes:
        lr: Adam learning rate (1e-3 converged far faster than the paper's 1e-4 on CPU).
        batch_size: slices per step.
        max_epochs: epoch budget (one epoch = one pass over the training slices).
        patience: stop after this many epochs that count against it (0: never).
        val_fraction: share of slices held out for validation when no split is given.
        dice_weight: weight of the soft Dice term added to cross-entropy.
        augment: apply augmentation to training batches.
        val_samples: MC samples per validation slice (Bayesian net).
        seed: seed of the split, initialisation, shuffling, augmentation and dropout.
        max_seconds: wall-time budget of training (0: none), summed over resumed runs;
            training stops at the first batch that ends past it, then validates once more.
        patience_rule: "val_and_loss" (an epoch counts when neither the validation Dice
            nor the training loss improved) or "val" (validation Dice alone).
        loss_min_delta: relative fall of the best training loss that counts as improving.
        min_epochs: patience never stops a run before this many epochs.
        class_weighting: "none" or "inverse_frequency" cross-entropy weights (``mltasks.losses``).
        class_weight_cap: largest inverse-frequency weight.
        dice_classes: soft Dice over "all" foreground classes or those "present" in the batch.
        augment_preset: "within_scan" or "paper" ranges (``mltasks.augment``).
        val_gap: with slice keys, no validation slice within this many slices of a training slice.
        min_batches_per_epoch: an epoch of few slices repeats them (reshuffled, augmented
            anew) until it has this many batches (``epoch_order``); 0: one pass.
        keep_best_min_val: the best-validation weights are returned only when at least this
            many slices validate; one or two slices are no basis for choosing among epochs, so
            with fewer the last epoch's weights are returned (docs/learning.md, section 1).
    """

    lr: float = 1e-3
    batch_size: int = 8
    max_epochs: int = 50
    patience: int = 10
    val_fraction: float = 0.2
    dice_weight: float = 1.0
    augment: bool = True
    val_samples: int = 3
    seed: int = 0
    max_seconds: float = 0.0  # wall-time budget in s (0: none)
    patience_rule: str = "val_and_loss"
    loss_min_delta: float = 0.01
    min_epochs: int = 0
    class_weighting: str = "none"
    class_weight_cap: float = 10.0
    dice_classes: str = "all"
    augment_preset: str = "within_scan"
    val_gap: int = 1
    min_batches_per_epoch: int = 16
    keep_best_min_val: int = 3

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("patience_rule", self.patience_rule, PATIENCE_RULES),
            ("class_weighting", self.class_weighting, CLASS_WEIGHTING),
            ("dice_classes", self.dice_classes, DICE_CLASSES),
            ("augment_preset", self.augment_preset, AUGMENT_PRESETS),
        ):
            if value not in allowed:
                raise InvalidTrainingData(f"{name} {value!r} is not one of {', '.join(allowed)}")
        counts = ("max_epochs", "max_seconds", "min_epochs", "val_gap", "min_batches_per_epoch", "keep_best_min_val")
        if any(getattr(self, name) < 0 for name in counts):
            msg = f"{', '.join(f'{k} {getattr(self, k)}' for k in counts)}: none may be negative"
            raise InvalidTrainingData(msg)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return cls(**data)


@dataclass
class TrainResult:
    """Outcome of ``train``: ``model`` holds the best-validation weights, or the last epoch's
    when fewer than ``TrainConfig.keep_best_min_val`` slices validate.

    Attributes:
        history: one dict per epoch: epoch, loss, val_dice, seconds (cumulative).
        best_dice / best_epoch: validation Dice of the returned weights and their epoch.
        stopped_early: patience ended the run.
        stop_reason: "patience", "max_epochs" or "max_seconds".
        epochs / seconds: epochs run and training seconds used (over resumed runs too).
        max_epochs / max_seconds: the budgets the run was given (0 s: none).
        n_train / n_val: training and validation slices.
        val_dice_per_class / val_precision_per_class: (n_classes,) held-out Dice and
            precision of every class of the returned weights (NaN where undefined), or None
            without validation slices: the guard of Eq. 7 (``mltasks.guard``) reads them.
    """

    model: UNet
    history: list[dict] = field(default_factory=list)
    best_dice: float = float("nan")
    best_epoch: int = -1
    stopped_early: bool = False
    stop_reason: str = ""
    epochs: int = 0
    seconds: float = 0.0
    max_epochs: int = 0
    max_seconds: float = 0.0
    n_train: int = 0
    n_val: int = 0
    val_dice_per_class: np.ndarray | None = None
    val_precision_per_class: np.ndarray | None = None


def validation_scores(
    model: UNet, images: torch.Tensor, labels: np.ndarray, config: TrainConfig
) -> tuple[float, np.ndarray, np.ndarray]:
    """(mean foreground Dice, (n_classes,) Dice, (n_classes,) precision) on validation slices.

    The mean runs over foreground classes present in the labels or the prediction.
    """
    pred = predict_labels(
        model, images, samples=config.val_samples, seed=config.seed, batch_size=config.batch_size
    )
    dice, precision = overlaps(pred, labels, model.config.n_classes)
    fg = dice[1:]
    return (float(np.nanmean(fg)) if np.isfinite(fg).any() else 0.0), dice, precision


def validation_dice(
    model: UNet, images: torch.Tensor, labels: np.ndarray, config: TrainConfig
) -> float:
    """Mean foreground Dice over classes present in the validation labels or prediction."""
    return validation_scores(model, images, labels, config)[0]


def check_training_data(images: np.ndarray, labels: np.ndarray, n_classes: int) -> None:
    if images.ndim != 3 or images.shape != labels.shape:
        msg = f"images {images.shape} and labels {labels.shape} must both be (N, H, W) on the network matrix"
        raise InvalidTrainingData(msg)
    if images.dtype != np.float32:
        raise InvalidTrainingData(
            f"images must be float32 in [0, 1], got {images.dtype}; use preprocess_volume"
        )
    if labels.dtype != np.uint8:
        raise InvalidTrainingData(f"labels must be uint8 (255 = unlabelled), got {labels.dtype}")
    bad = (labels >= n_classes) & (labels != IGNORE)
    if bad.any():
        msg = f"labels hold values {np.unique(labels[bad])[:5].tolist()} outside [0, {n_classes}) and not {IGNORE}; check the label set"
        raise InvalidTrainingData(msg)


def _split(
    images: np.ndarray, labels: np.ndarray, config: TrainConfig, slice_keys: np.ndarray | None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((train images, labels), (validation images, labels)) held out of the training slices."""
    if slice_keys is None:
        train_idx, val_idx = split_validation(images.shape[0], config.val_fraction, config.seed)
    else:
        train_idx, val_idx = split_by_position(
            slice_keys, config.val_fraction, config.seed, gap=config.val_gap
        )
    return (images[train_idx], labels[train_idx]), (images[val_idx], labels[val_idx])


def train(
    images: np.ndarray,
    labels: np.ndarray,
    net_config: NetConfig,
    *,
    config: TrainConfig = TrainConfig(),
    label_set: LabelSet | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    slice_keys: np.ndarray | None = None,
    init_model: UNet | None = None,
    checkpoint_path: str | Path | None = None,
    resume: bool = False,
    max_epochs: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """Train a U-Net with early stopping; the returned model holds the best weights.

    Args:
        images: (N, H, W) float32 training slices in [0, 1], H = W = net_config.matrix.
        labels: (N, H, W) uint8; 255 = unlabelled pixel.
        net_config: architecture (n_classes, width, depth, ...).
        config: optimisation settings.
        label_set: stored in checkpoints; its ``flip_lut`` makes flips swap sided labels.
        validation: explicit (images, labels) validation slices; else ``config.val_fraction`` of N.
        slice_keys: (N, 2) int (volume, z) or (N,) z of the slices: the held-out slices are
            then never within ``config.val_gap`` slices of a training slice.
        init_model: warm start from these weights (active learning); else He initialisation.
        checkpoint_path: written after every epoch (resumable state + best weights).
        resume: continue from ``checkpoint_path`` (its config and state win over arguments).
        max_epochs: overrides ``config.max_epochs`` (e.g. to extend a resumed run).
        on_progress: phase "train", done = epochs, info: loss, val_dice.
    """
    state = load_checkpoint(checkpoint_path) if resume else None
    if state is not None:
        config = TrainConfig.from_dict(state["train_config"])
        net_config = NetConfig.from_dict(state["net_config"])
    if max_epochs is not None:
        config = replace(config, max_epochs=max_epochs)
    check_training_data(images, labels, net_config.n_classes)
    if validation is None:
        (images, labels), validation = _split(images, labels, config, slice_keys)
    val_images = torch.from_numpy(np.ascontiguousarray(validation[0]))
    val_labels = np.asarray(validation[1])

    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        model = UNet(net_config)
    if init_model is not None:
        model.load_state_dict(init_model.state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    data_gen = torch.Generator().manual_seed(config.seed)
    drop_gen = torch.Generator().manual_seed(config.seed + 1)
    run = RunState()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_gen.set_state(state["rng_data"])
        drop_gen.set_state(state["rng_dropout"])
        run = RunState.from_dict(state["run"])
        run.best_weights = state["best_model"]
    batches = _Batches(images, labels, config, label_set, net_config.n_classes)

    started = time.monotonic() - run.seconds
    while not run.finished(config):
        model.train()
        model.set_generator(drop_gen)
        deadline = started + config.max_seconds if config.max_seconds else None
        loss = _train_epoch(model, optimizer, batches, data_gen, config, deadline=deadline)
        model.set_generator(None)
        if len(val_labels):
            val, dice, precision = validation_scores(model, val_images, val_labels, config)
        else:  # nothing held out honestly: keep the weights of the lowest training loss
            val, dice, precision = -loss, None, None
        run.seconds = time.monotonic() - started
        run.update(run.epoch + 1, loss, val, model, config, per_class=(dice, precision))
        if checkpoint_path is not None:
            save_checkpoint(
                checkpoint_path, model, label_set=label_set, train_config=config,
                extra={"optimizer": optimizer.state_dict(), "rng_data": data_gen.get_state(),
                       "rng_dropout": drop_gen.get_state(), "run": run.to_dict(), "best_model": run.best_weights},
            )  # fmt: skip
        report(on_progress, "train", run.epoch, config.max_epochs, loss=round(loss, 5),
               val_dice=round(val, 4), seconds=round(run.seconds, 1))  # fmt: skip

    keep_last = len(val_labels) < config.keep_best_min_val
    if run.best_weights is not None and not keep_last:
        model.load_state_dict(run.best_weights)
    model.mc_mode()
    return run.result(model, config, n_train=int(images.shape[0]), n_val=int(len(val_labels)), last=keep_last)


class _Batches:
    """The training slices as tensors, with what every batch needs (flip map, class weights)."""

    def __init__(self, images, labels, config: TrainConfig, label_set, n_classes: int) -> None:
        self.x, self.y = torch.from_numpy(images), torch.from_numpy(labels)
        self.flip_lut = torch.from_numpy(label_set.flip_lut) if label_set is not None else None
        self.class_weights = None
        if config.class_weighting == "inverse_frequency":
            weights = class_weights_from_labels(labels, n_classes, cap=config.class_weight_cap)
            self.class_weights = torch.from_numpy(weights)


def _train_epoch(
    model: UNet,
    optimizer: torch.optim.Optimizer,
    batches: _Batches,
    generator: torch.Generator,
    config: TrainConfig,
    *,
    deadline: float | None = None,
) -> float:
    """One epoch (``epoch_order``), cut short at ``deadline``; mean batch loss."""
    order = epoch_order(batches.x.shape[0], config.batch_size, config.min_batches_per_epoch, generator)
    augment = augment_preset(config.augment_preset)
    losses = []
    for start in range(0, len(order), config.batch_size):
        idx = order[start : start + config.batch_size]
        x, y = batches.x[idx], batches.y[idx]
        if config.augment:
            x, y = augment_batch(x, y, generator, config=augment, flip_lut=batches.flip_lut)
        if x.shape[0] == 1:  # batch norm needs more than one value per channel
            x, y = torch.cat([x, x]), torch.cat([y, y])
        optimizer.zero_grad(set_to_none=True)
        loss = segmentation_loss(model(x[:, None]), y, dice_weight=config.dice_weight,
                                 class_weights=batches.class_weights, dice_classes=config.dice_classes)  # fmt: skip
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if deadline is not None and time.monotonic() > deadline:
            break
    return float(np.mean(losses)) if losses else float("nan")


def epoch_order(n: int, batch_size: int, min_batches: int, generator: torch.Generator) -> torch.Tensor:
    """Slice indices of one epoch, cut into batches of ``batch_size`` by the caller.

    One pass in random order; when that is fewer than ``min_batches`` batches (a few
    labelled slices), passes in fresh random orders are joined until ``min_batches``
    full batches are filled, so that an epoch, and patience counted in epochs, means
    a similar number of optimiser steps whatever the training set's size.
    """
    order = torch.randperm(n, generator=generator)
    if min_batches <= -(-n // batch_size):
        return order
    passes = [order] + [torch.randperm(n, generator=generator)
                        for _ in range(-(-min_batches * batch_size // n) - 1)]  # fmt: skip
    return torch.cat(passes)[: min_batches * batch_size]


def slices_from_volume(
    hu: np.ndarray, geometry: Geometry, labels: np.ndarray, *, matrix: int
) -> tuple[np.ndarray, np.ndarray]:
    """Training slices of one labelled CT on the network grid.

    Args:
        hu: (z, y, x) CT in HU on ``geometry``.
        labels: (z, y, x) integer labels on the same grid (255 = unlabelled).
        matrix: the network matrix (``NetConfig.matrix``).
    Returns:
        (images (z', matrix, matrix) float32 in [0, 1], labels (z', matrix, matrix) uint8).
    """
    pre = preprocess_volume(hu, geometry, matrix=matrix)
    net_labels = resample_labels_to_network(
        labels.astype(np.uint8, copy=False), geometry, pre.geometry
    )
    return pre.image, net_labels

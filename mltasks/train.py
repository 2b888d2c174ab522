"""Training a U-Net on 2D slices (method.md §2): Adam, cross-entropy + soft Dice,
early stopping on a validation split, resumable checkpoints.

Data: ``images`` (N, H, W) float32 in [0, 1] on the network matrix and
``labels`` (N, H, W) uint8, where ``IGNORE`` (255) marks pixels nobody labelled
(partly answered active-learning slices); they contribute nothing to the loss.

Validation runs the Bayesian net in MC mode (BN running statistics, dropout
on, ``val_samples`` samples averaged, fixed seed) because a deterministic pass
is invalid for it (see ``mltasks.nets``); the deterministic body net is
validated in eval mode.

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
from torch.nn import functional as F

from mltasks.augment import AugmentConfig, augment_batch
from mltasks.checkpoint import load_checkpoint, save_checkpoint
from mltasks.errors import InvalidTrainingData
from mltasks.geometry import Geometry
from mltasks.labels import LabelSet
from mltasks.nets import NetConfig, UNet
from mltasks.preprocess import preprocess_volume, resample_labels_to_network
from mltasks.progress import ProgressCallback, report

IGNORE = 255


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; plain values (stored in checkpoints).

    Attributes:
        lr: Adam learning rate (1e-3 converged far faster than the paper's 1e-4 on CPU).
        batch_size: slices per step.
        max_epochs: upper bound on epochs (one epoch = one pass over the training slices).
        patience: stop after this many epochs without a better validation Dice (0: never).
        val_fraction: share of slices held out for validation when no split is given.
        dice_weight: weight of the soft Dice term added to cross-entropy.
        augment: apply the §2 augmentation to training batches.
        val_samples: MC samples per validation slice (Bayesian net).
        seed: seed of the split, initialisation, shuffling, augmentation and dropout.
        max_seconds: wall-time budget (0: none); training stops at the first batch that
            ends past it, then validates once more (not resumable bit-for-bit).
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        return cls(**data)


@dataclass
class TrainResult:
    """Outcome of ``train``: ``model`` holds the best-validation weights."""

    model: UNet
    history: list[dict] = field(default_factory=list)
    best_dice: float = float("nan")
    best_epoch: int = -1
    stopped_early: bool = False


def segmentation_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    dice_weight: float = 1.0,
    ignore_index: int = IGNORE,
) -> torch.Tensor:
    """Cross-entropy + ``dice_weight`` x (1 - soft Dice), both over labelled pixels only.

    Args:
        logits: (B, C, H, W) float.
        labels: (B, H, W) integer; ``ignore_index`` marks unlabelled pixels.
    Returns:
        Scalar loss; 0 (with a graph) when no pixel is labelled.
    """
    target = labels.long()
    valid = target != ignore_index
    n_valid = valid.sum()
    if n_valid == 0:
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="sum") / n_valid
    if dice_weight == 0:
        return ce
    n_classes = logits.shape[1]
    probs = torch.softmax(logits, dim=1) * valid[:, None]
    onehot = (
        F.one_hot(torch.where(valid, target, 0), n_classes).permute(0, 3, 1, 2) * valid[:, None]
    )
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2.0 * inter + 1.0) / (denom + 1.0)
    return ce + dice_weight * (1.0 - dice[1:].mean())


def dice_per_class(pred: np.ndarray, ref: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes,) Dice of integer label arrays over pixels where ref != IGNORE; NaN if absent from both."""
    valid = ref != IGNORE
    p, r = pred[valid].astype(np.int64), ref[valid].astype(np.int64)
    n_p = np.bincount(p, minlength=n_classes)[:n_classes]
    n_r = np.bincount(r, minlength=n_classes)[:n_classes]
    n_both = np.bincount(p[p == r], minlength=n_classes)[:n_classes]
    total = n_p + n_r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * n_both / total, np.nan)


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


def validation_dice(
    model: UNet, images: torch.Tensor, labels: np.ndarray, config: TrainConfig
) -> float:
    """Mean foreground Dice over classes present in the validation labels or prediction."""
    pred = predict_labels(
        model, images, samples=config.val_samples, seed=config.seed, batch_size=config.batch_size
    )
    dsc = dice_per_class(pred, labels, model.config.n_classes)[1:]
    return float(np.nanmean(dsc)) if np.isfinite(dsc).any() else 0.0


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of ``n`` slices, shuffled with ``seed``; at least one each when n >= 2."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(max(int(round(n * fraction)), 1 if n >= 2 else 0), n - 1) if fraction > 0 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


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


def train(
    images: np.ndarray,
    labels: np.ndarray,
    net_config: NetConfig,
    *,
    config: TrainConfig = TrainConfig(),
    label_set: LabelSet | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
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
        train_idx, val_idx = split_validation(images.shape[0], config.val_fraction, config.seed)
        validation = (images[val_idx], labels[val_idx])
        images, labels = images[train_idx], labels[train_idx]
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
    run = _RunState()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_gen.set_state(state["rng_data"])
        drop_gen.set_state(state["rng_dropout"])
        run = _RunState.from_dict(state["run"])
        run.best_weights = state["best_model"]
    flip_lut = torch.from_numpy(label_set.flip_lut) if label_set is not None else None
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)

    started = time.monotonic()
    while run.epoch < config.max_epochs and not run.stopped_early:
        model.train()
        model.set_generator(drop_gen)
        deadline = started + config.max_seconds if config.max_seconds else None
        loss = _train_epoch(
            model, optimizer, x_all, y_all, data_gen, config, flip_lut, deadline=deadline
        )
        model.set_generator(None)
        val = validation_dice(model, val_images, val_labels, config) if len(val_labels) else -loss
        run.update(run.epoch + 1, loss, val, model, config.patience)
        if checkpoint_path is not None:
            save_checkpoint(
                checkpoint_path, model, label_set=label_set, train_config=config,
                extra={"optimizer": optimizer.state_dict(), "rng_data": data_gen.get_state(),
                       "rng_dropout": drop_gen.get_state(), "run": run.to_dict(), "best_model": run.best_weights},
            )  # fmt: skip
        report(
            on_progress,
            "train",
            run.epoch,
            config.max_epochs,
            loss=round(loss, 5),
            val_dice=round(val, 4),
        )
        if config.max_seconds and time.monotonic() - started > config.max_seconds:
            break

    if run.best_weights is not None:
        model.load_state_dict(run.best_weights)
    model.mc_mode()
    return TrainResult(model, run.history, run.best_metric, run.best_epoch, run.stopped_early)


def _train_epoch(
    model: UNet,
    optimizer: torch.optim.Optimizer,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    generator: torch.Generator,
    config: TrainConfig,
    flip_lut: torch.Tensor | None,
    *,
    deadline: float | None = None,
) -> float:
    """One pass over the training slices in random order (cut short at ``deadline``); mean batch loss."""
    order = torch.randperm(x_all.shape[0], generator=generator)
    losses = []
    for start in range(0, len(order), config.batch_size):
        idx = order[start : start + config.batch_size]
        x, y = x_all[idx], y_all[idx]
        if config.augment:
            x, y = augment_batch(x, y, generator, config=AugmentConfig(), flip_lut=flip_lut)
        if x.shape[0] == 1:  # batch norm needs more than one value per channel
            x, y = torch.cat([x, x]), torch.cat([y, y])
        optimizer.zero_grad(set_to_none=True)
        loss = segmentation_loss(model(x[:, None]), y, dice_weight=config.dice_weight)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if deadline is not None and time.monotonic() > deadline:
            break
    return float(np.mean(losses)) if losses else float("nan")


@dataclass
class _RunState:
    """Early-stopping bookkeeping, saved in checkpoints (best weights separately)."""

    epoch: int = 0
    best_metric: float = float("-inf")
    best_epoch: int = -1
    since_best: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)
    best_weights: dict | None = None

    def update(self, epoch: int, loss: float, val: float, model: UNet, patience: int) -> None:
        self.epoch = epoch
        self.history.append({"epoch": epoch, "loss": loss, "val_dice": val})
        if val > self.best_metric:
            self.best_metric, self.best_epoch, self.since_best = val, epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.since_best += 1
            self.stopped_early = patience > 0 and self.since_best >= patience

    def to_dict(self) -> dict:
        names = ("epoch", "best_metric", "best_epoch", "since_best", "stopped_early", "history")
        return {name: getattr(self, name) for name in names}

    @classmethod
    def from_dict(cls, data: dict) -> _RunState:
        return cls(**data)


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

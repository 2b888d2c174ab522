"""When training stops: patience, epoch and seconds budgets (``mltasks.train``).

The rules (docs/learning.md measures them): an epoch counts against patience only
when the validation score did not improve and, under ``patience_rule="val_and_loss"``,
the training loss did not fall by more than ``loss_min_delta`` (relative) below its
best either; patience never stops a run before ``min_epochs``; ``max_epochs`` and
``max_seconds`` (training seconds summed over resumed runs) end it in any case.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mltasks.nets import UNet

if TYPE_CHECKING:
    from mltasks.train import TrainConfig, TrainResult


@dataclass
class RunState:
    """Stopping bookkeeping of ``train``, saved in checkpoints (best weights separately).

    After every epoch ``update`` records the loss and the validation score, keeps the
    best weights, and counts the epoch against patience per ``config.patience_rule``.
    """

    epoch: int = 0
    best_metric: float = float("-inf")
    best_epoch: int = -1
    since_best: int = 0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)
    best_loss: float = float("inf")
    seconds: float = 0.0
    best_dice_per_class: list | None = None
    best_precision_per_class: list | None = None
    last_dice_per_class: list | None = None
    last_precision_per_class: list | None = None
    best_weights: dict | None = None

    def update(self, epoch: int, loss: float, val: float, model: UNet, config: TrainConfig, *,
               per_class: tuple[np.ndarray | None, np.ndarray | None]) -> None:  # fmt: skip
        self.epoch = epoch
        self.history.append({"epoch": epoch, "loss": loss, "val_dice": val, "seconds": round(self.seconds, 3)})
        loss_fell = loss < self.best_loss * (1.0 - config.loss_min_delta)
        self.best_loss = min(self.best_loss, loss)
        dice, precision = (None if v is None else v.tolist() for v in per_class)
        self.last_dice_per_class, self.last_precision_per_class = dice, precision
        if val > self.best_metric:
            self.best_metric, self.best_epoch, self.since_best = val, epoch, 0
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.best_dice_per_class, self.best_precision_per_class = dice, precision
            return
        if not (config.patience_rule == "val_and_loss" and loss_fell):
            self.since_best += 1
        self.stopped_early = (
            config.patience > 0 and self.since_best >= config.patience and epoch >= config.min_epochs
        )

    def out_of_time(self, config: TrainConfig) -> bool:
        return bool(config.max_seconds) and self.seconds > config.max_seconds

    def finished(self, config: TrainConfig) -> bool:
        """Patience stopped the run, or a budget (epochs, seconds) is spent."""
        return self.stopped_early or self.epoch >= config.max_epochs or self.out_of_time(config)

    def result(self, model: UNet, config: TrainConfig, *, n_train: int, n_val: int, last: bool = False) -> TrainResult:
        """The run's outcome for ``model``, which holds the best weights, or the last epoch's (``last``)."""
        from mltasks.train import TrainResult  # train imports this module

        if self.stopped_early:
            reason = "patience"
        elif self.out_of_time(config):
            reason = "max_seconds"
        else:
            reason = "max_epochs"
        kept = ((self.last_dice_per_class, self.last_precision_per_class) if last
                else (self.best_dice_per_class, self.best_precision_per_class))
        per_class = [None if v is None else np.array(v, dtype=np.float64) for v in kept]
        if last:  # a run of no epoch (a budget spent before a resume) has no last score either
            metric, epoch = (self.history[-1]["val_dice"] if self.history else float("-inf")), self.epoch
        else:
            metric, epoch = self.best_metric, self.best_epoch
        return TrainResult(
            model, self.history, metric, epoch, self.stopped_early, reason,
            self.epoch, self.seconds, config.max_epochs, config.max_seconds, n_train, n_val, *per_class,
        )  # fmt: skip

    def to_dict(self) -> dict:
        names = ("epoch", "best_metric", "best_epoch", "since_best", "stopped_early", "history",
                 "best_loss", "seconds", "best_dice_per_class", "best_precision_per_class",
                 "last_dice_per_class", "last_precision_per_class")  # fmt: skip
        return {name: getattr(self, name) for name in names}

    @classmethod
    def from_dict(cls, data: dict) -> RunState:
        return cls(**data)

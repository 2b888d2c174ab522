"""Training's stopping: patience, minimum epochs, the epoch and seconds budgets (also over a
resume), and which weights come back (the best-validation ones, or the last epoch's)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mltasks.checkpoint import load_checkpoint
from mltasks.nets import UNet
from mltasks.stopping import RunState
from mltasks.train import TrainConfig, train
from tests.mltasks.test_train import CFG, FAST, disks


def test_early_stopping_stops_when_validation_stalls():
    images, labels = disks(n=6)
    events = []
    config = TrainConfig(min_batches_per_epoch=0, lr=0.0, max_epochs=20, patience=2, batch_size=4, augment=False,
                         keep_best_min_val=1)
    result = train(images, labels, CFG, config=config, on_progress=events.append)
    dice = [h["val_dice"] for h in result.history]
    assert result.stopped_early and len(dice) == result.best_epoch + 2 < 20
    assert max(dice[result.best_epoch :]) <= dice[result.best_epoch - 1] == result.best_dice
    assert [e.done for e in events] == list(range(1, len(dice) + 1)) and {
        "loss",
        "val_dice",
    } <= set(events[0].info)


def test_a_time_budget_stops_after_the_epoch_that_exceeds_it():
    images, labels = disks(n=6)
    result = train(
        images, labels, CFG, config=TrainConfig(max_epochs=50, batch_size=4, max_seconds=1e-9)
    )
    assert len(result.history) == 1


def _run_state_after(losses, vals, config):
    run = RunState()
    model = UNet(CFG)
    for epoch, (loss, val) in enumerate(zip(losses, vals, strict=True), start=1):
        run.update(epoch, loss, val, model, config, per_class=(None, None))
        if run.stopped_early:
            break
    return run


def test_patience_waits_while_the_training_loss_still_falls():
    losses = [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.5, 0.5, 0.5]
    vals = [0.1] + [0.05] * 8  # validation never improves after epoch 1
    rule = TrainConfig(patience=2, patience_rule="val_and_loss")
    assert _run_state_after(losses, vals, rule).epoch == 8  # two flat-loss epochs after 6
    assert _run_state_after(losses, vals, replace(rule, patience_rule="val")).epoch == 3


def test_a_loss_fall_below_the_minimum_delta_does_not_count_as_improving():
    losses = [1.0, 0.999, 0.998, 0.997]
    vals = [0.1, 0.0, 0.0, 0.0]
    config = TrainConfig(patience=2, loss_min_delta=0.01)
    assert _run_state_after(losses, vals, config).epoch == 3


def test_patience_never_stops_before_min_epochs():
    images, labels = disks(n=6)
    config = TrainConfig(min_batches_per_epoch=0, lr=0.0, max_epochs=20, patience=1, min_epochs=5, batch_size=4,
                         augment=False, patience_rule="val")  # fmt: skip
    result = train(images, labels, CFG, config=config)
    assert result.epochs == 5 and result.stop_reason == "patience" and result.stopped_early


def test_a_stalled_validation_with_a_falling_loss_runs_to_the_epoch_budget():
    images, labels = disks(n=8, seed=1)
    blind = (images[:2], np.full_like(labels[:2], 255))  # held-out Dice stays 0
    config = TrainConfig(lr=3e-3, max_epochs=6, patience=2, batch_size=4, augment=False,
                         val_samples=1, min_batches_per_epoch=4, loss_min_delta=0.0)  # fmt: skip
    result = train(images, labels, CFG, config=config, validation=blind)
    assert result.stop_reason == "max_epochs" and result.epochs == 6 == result.max_epochs
    stopped = train(images, labels, CFG, config=replace(config, patience_rule="val"), validation=blind)
    assert stopped.stop_reason == "patience" and stopped.epochs == 3


def test_the_result_reports_both_budgets_and_which_one_ended_the_run():
    images, labels = disks(n=6)
    by_time = train(images, labels, CFG, config=TrainConfig(max_epochs=50, batch_size=4, max_seconds=1e-9))
    assert by_time.stop_reason == "max_seconds" and by_time.epochs == 1
    assert by_time.max_epochs == 50 and by_time.max_seconds == 1e-9 and by_time.seconds > 0
    by_epochs = train(images, labels, CFG, config=replace(FAST, max_seconds=600.0))
    assert by_epochs.stop_reason == "max_epochs" and by_epochs.epochs == 2 and by_epochs.seconds < 600
    assert [h["epoch"] for h in by_epochs.history] == [1, 2]
    assert by_epochs.history[0]["seconds"] <= by_epochs.history[1]["seconds"]


def test_the_seconds_budget_counts_the_time_before_a_resume(tmp_path):
    images, labels = disks(n=6)
    ckpt = tmp_path / "run.pt"
    config = TrainConfig(batch_size=4, max_epochs=3, patience=0, val_samples=1)
    first = train(images, labels, CFG, config=config, checkpoint_path=ckpt, max_epochs=1)
    resumed = train(images, labels, CFG, config=config, checkpoint_path=ckpt, resume=True, max_epochs=3)
    assert resumed.epochs == 3 and resumed.seconds > first.seconds
    assert load_checkpoint(ckpt)["run"]["seconds"] == pytest.approx(resumed.seconds)


def test_a_resumed_run_whose_seconds_are_spent_trains_no_further(tmp_path):
    images, labels = disks(n=6)
    ckpt = tmp_path / "run.pt"
    config = TrainConfig(batch_size=4, max_epochs=5, max_seconds=1e-9, val_samples=1)
    train(images, labels, CFG, config=config, checkpoint_path=ckpt)
    resumed = train(images, labels, CFG, config=config, checkpoint_path=ckpt, resume=True)
    assert resumed.epochs == 1 and resumed.stop_reason == "max_seconds"


def test_the_result_keeps_the_held_out_dice_and_precision_of_every_class():
    images, labels = disks(n=10)
    result = train(images, labels, CFG, config=FAST)
    assert result.val_dice_per_class.shape == (3,) == result.val_precision_per_class.shape
    assert np.nanmean(result.val_dice_per_class[1:]) == pytest.approx(result.best_dice)


def test_with_too_few_validation_slices_the_last_epochs_weights_are_kept():
    # One validation slice (6 slices, val_fraction 0.2) is no basis for choosing among epochs.
    images, labels = disks(n=6)
    runs = {}
    for keep in (3, 1):
        config = TrainConfig(min_batches_per_epoch=0, max_epochs=10, patience=0, batch_size=4, augment=False,
                             keep_best_min_val=keep, lr=0.03)
        runs[keep] = train(images, labels, CFG, config=config)
    last, best = runs[3], runs[1]
    assert last.n_val == 1 and last.epochs == 10
    assert last.best_epoch == 10 and last.best_dice == last.history[-1]["val_dice"]
    vals = [h["val_dice"] for h in best.history]
    assert best.best_epoch == vals.index(max(vals)) + 1 and best.best_dice == max(vals)


def test_the_run_state_reports_the_kept_weights_best_or_last():
    from mltasks.stopping import RunState

    model, run, config = UNet(CFG), RunState(), TrainConfig(patience=0)
    for epoch, val in enumerate([0.5, 0.9, 0.4], start=1):
        per_class = (np.full(3, val), np.full(3, val / 2))
        run.update(epoch, 1.0 / epoch, val, model, config, per_class=per_class)
    best, last = run.result(model, config, n_train=4, n_val=1), run.result(model, config, n_train=4, n_val=1, last=True)
    assert (best.best_epoch, best.best_dice, list(best.val_dice_per_class)) == (2, 0.9, [0.9] * 3)
    assert (last.best_epoch, last.best_dice, list(last.val_precision_per_class)) == (3, 0.4, [0.2] * 3)
    assert RunState.from_dict(run.to_dict()).last_precision_per_class == [0.2] * 3  # resumable

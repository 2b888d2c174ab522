"""Training: masked loss, determinism, checkpoints, resume, warm start, early stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mltasks.checkpoint import load_checkpoint, load_model, save_checkpoint
from mltasks.errors import InvalidCheckpoint, InvalidTrainingData
from mltasks.labels import default_label_set
from mltasks.nets import UNet, profile
from mltasks.train import (
    TrainConfig,
    dice_per_class,
    predict_labels,
    segmentation_loss,
    split_validation,
    train,
)

CFG = profile("tiny", n_classes=3, width=4, matrix=32)
FAST = TrainConfig(batch_size=4, max_epochs=2, patience=0, val_samples=2, augment=True)


def disks(n: int = 10, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Bright disks (label 1) with a small core (label 2) on noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = (rng.random((n, size, size)) * 0.2).astype(np.float32)
    labels = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cx, cy = rng.integers(10, 22, 2)
        r2 = (xx - cx) ** 2 + (yy - cy) ** 2
        labels[i][r2 < 36] = 1
        labels[i][r2 < 6] = 2
        images[i] += 0.5 * (labels[i] > 0) + 0.2 * (labels[i] == 2)
    return images, labels


def test_loss_is_cross_entropy_of_uniform_logits():
    logits = torch.zeros(2, 4, 5, 5)
    labels = torch.randint(0, 4, (2, 5, 5))
    assert segmentation_loss(logits, labels, dice_weight=0).item() == pytest.approx(
        math.log(4), rel=1e-6
    )


def test_unlabelled_pixels_get_no_gradient_and_do_not_change_the_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (2, 8, 8), dtype=torch.uint8)
    labels[:, :, :4] = 255
    loss = segmentation_loss(logits, labels)
    loss.backward()
    assert logits.grad[:, :, :, :4].abs().max() == 0
    assert logits.grad[:, :, :, 4:].abs().max() > 0
    other = logits.detach().clone()
    other[:, :, :, :4] = torch.randn(2, 3, 8, 4) * 10
    assert segmentation_loss(other, labels).item() == pytest.approx(loss.item(), rel=1e-6)


def test_a_batch_with_no_labelled_pixel_gives_zero_loss_and_a_graph():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss = segmentation_loss(logits, torch.full((1, 4, 4), 255, dtype=torch.uint8))
    loss.backward()
    assert loss.item() == 0 and logits.grad.abs().max() == 0


def test_dice_per_class_by_hand():
    pred = np.array([[0, 1, 1, 2]])
    ref = np.array([[0, 1, 2, 255]])
    dsc = dice_per_class(pred, ref, 4)
    assert dsc[0] == 1.0 and dsc[1] == pytest.approx(2 / 3) and dsc[2] == 0.0 and np.isnan(dsc[3])


def test_split_keeps_every_slice_once():
    tr, va = split_validation(10, 0.2, seed=1)
    assert len(va) == 2 and sorted([*tr, *va]) == list(range(10))


def test_training_is_deterministic_for_a_seed():
    images, labels = disks()
    a = train(images, labels, CFG, config=FAST)
    b = train(images, labels, CFG, config=FAST)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert all(
        torch.equal(p, q)
        for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True)
    )


def test_resume_continues_to_the_uninterrupted_result(tmp_path):
    images, labels = disks()
    config = TrainConfig(batch_size=4, max_epochs=3, patience=0, val_samples=2)
    full = train(images, labels, CFG, config=config)
    ckpt = tmp_path / "run.pt"
    train(images, labels, CFG, config=config, checkpoint_path=ckpt, max_epochs=1)
    resumed = train(
        images, labels, CFG, config=config, checkpoint_path=ckpt, resume=True, max_epochs=3
    )
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for p, q in zip(
        full.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(p, q)


def test_checkpoint_loads_with_weights_only_and_keeps_config_and_labels(tmp_path):
    images, labels = disks(n=6)
    label_set = default_label_set()
    result = train(
        images, labels, CFG, config=FAST, checkpoint_path=tmp_path / "m.pt", label_set=label_set
    )
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert raw["net_config"] == CFG.to_dict() and raw["train_config"]["lr"] == FAST.lr
    model, loaded_set = load_model(tmp_path / "m.pt")
    assert loaded_set == label_set and model.config == CFG
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        for net in (model, result.model):
            net.set_generator(torch.Generator().manual_seed(0))
        assert torch.equal(model(x), result.model(x))


def test_loading_a_foreign_file_says_what_is_wrong(tmp_path):
    (tmp_path / "x.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InvalidCheckpoint, match="not a readable"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"a": 1}, tmp_path / "y.pt")
    with pytest.raises(InvalidCheckpoint, match="format"):
        load_checkpoint(tmp_path / "y.pt")


def test_save_and_load_a_plain_model(tmp_path):
    net = UNet(CFG)
    save_checkpoint(tmp_path / "p.pt", net)
    model, label_set = load_model(tmp_path / "p.pt")
    assert label_set is None
    assert all(
        torch.equal(p, q)
        for p, q in zip(net.state_dict().values(), model.state_dict().values(), strict=True)
    )


def test_warm_start_uses_the_given_weights():
    images, labels = disks(n=6)
    torch.manual_seed(42)
    start = UNet(CFG)
    result = train(
        images,
        labels,
        CFG,
        config=TrainConfig(lr=0.0, max_epochs=1, batch_size=4),
        init_model=start,
    )
    weights = {
        k: v
        for k, v in result.model.state_dict().items()
        if "running" not in k and "num_batches" not in k
    }
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in weights.items())


def test_early_stopping_stops_when_validation_stalls():
    images, labels = disks(n=6)
    events = []
    config = TrainConfig(lr=0.0, max_epochs=20, patience=2, batch_size=4, augment=False)
    result = train(images, labels, CFG, config=config, on_progress=events.append)
    dice = [h["val_dice"] for h in result.history]
    assert result.stopped_early and len(dice) == result.best_epoch + 2 < 20
    assert max(dice[result.best_epoch :]) <= dice[result.best_epoch - 1] == result.best_dice
    assert [e.done for e in events] == list(range(1, len(dice) + 1)) and {
        "loss",
        "val_dice",
    } <= set(events[0].info)


def test_training_learns_bright_disks():
    images, labels = disks(n=24, seed=3)
    config = TrainConfig(
        lr=3e-3, batch_size=4, max_epochs=12, patience=0, augment=False, val_samples=2
    )
    result = train(images, labels, profile("tiny", n_classes=3, matrix=32), config=config)
    assert result.best_dice > 0.8
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_it_rejects_labels_outside_the_label_set():
    images, labels = disks(n=4)
    labels[0, 0, 0] = 7
    with pytest.raises(InvalidTrainingData, match="outside"):
        train(images, labels, CFG, config=FAST)
    with pytest.raises(InvalidTrainingData, match="float32"):
        train(images.astype(np.float64), labels, CFG, config=FAST)


def test_a_time_budget_stops_after_the_epoch_that_exceeds_it():
    images, labels = disks(n=6)
    result = train(
        images, labels, CFG, config=TrainConfig(max_epochs=50, batch_size=4, max_seconds=1e-9)
    )
    assert len(result.history) == 1


def test_validation_predicts_in_mc_mode_with_dropout_active():
    torch.manual_seed(0)
    model = UNet(CFG)
    model.train()
    model(torch.rand(4, 1, 32, 32))  # move BN statistics away from their defaults
    x = torch.rand(4, 32, 32)
    a = predict_labels(model, x, samples=1, seed=1, batch_size=4)
    b = predict_labels(model, x, samples=1, seed=2, batch_size=4)
    assert not np.array_equal(a, b)  # dropout masks differ between seeds
    assert np.array_equal(a, predict_labels(model, x, samples=1, seed=1, batch_size=4))
    assert model.training  # the caller's mode is restored

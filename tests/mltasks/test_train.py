"""Training: masked loss, determinism, checkpoints, resume, warm start, honest validation, the loss
for small structures (stopping and budgets: test_train_stopping.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mltasks.checkpoint import load_checkpoint, load_model, save_checkpoint
from mltasks.errors import InvalidCheckpoint, InvalidTrainingData
from mltasks.labels import default_label_set
from mltasks.losses import class_weights_from_labels
from mltasks.nets import UNet, profile
from mltasks.train import (
    TrainConfig,
    dice_per_class,
    epoch_order,
    predict_labels,
    segmentation_loss,
    split_by_position,
    split_validation,
    train,
)

CFG = profile("tiny", n_classes=3, width=4, matrix=32)
FAST = TrainConfig(min_batches_per_epoch=0, batch_size=4, max_epochs=2, patience=0, val_samples=2, augment=True)


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
        config=TrainConfig(min_batches_per_epoch=0, lr=0.0, max_epochs=1, batch_size=4),
        init_model=start,
    )
    weights = {
        k: v
        for k, v in result.model.state_dict().items()
        if "running" not in k and "num_batches" not in k
    }
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in weights.items())


def test_training_learns_bright_disks():
    images, labels = disks(n=24, seed=3)
    config = TrainConfig(
        lr=3e-3, batch_size=4, max_epochs=12, patience=0, augment=False, val_samples=2, min_batches_per_epoch=0
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


# --- honest validation: slices held out by position -------------------------------------


def _too_close(keys: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, gap: int) -> bool:
    for v in val_idx:
        same = keys[train_idx, 0] == keys[v, 0]
        if (np.abs(keys[train_idx, 1] - keys[v, 1])[same] <= gap).any():
            return True
    return False


def test_no_validation_slice_lies_next_to_a_training_slice():
    rng = np.random.default_rng(0)
    for seed in range(40):
        z = np.sort(rng.choice(60, size=14, replace=False))
        keys = np.stack([rng.integers(0, 2, 14), z], axis=1)
        tr, va = split_by_position(keys, 0.25, seed, gap=1)
        assert not set(tr) & set(va) and set(tr) | set(va) <= set(range(14))
        assert va.size >= 1 and not _too_close(keys, tr, va, gap=1)


def test_whole_runs_of_neighbours_validate_together():
    z = np.array([3, 4, 5, 20, 30, 40, 50, 60, 70, 80])  # 3-5 is one run
    tr, va = split_by_position(z, 0.3, seed=2)
    assert not _too_close(np.stack([np.zeros(10, int), z], 1), tr, va, gap=1)
    assert {0, 1, 2} <= set(va.tolist()) or not {0, 1, 2} & set(va.tolist())
    assert va.size == 3 and tr.size == 7


def test_one_contiguous_block_is_cut_with_a_slice_left_out():
    tr, va = split_by_position(np.arange(10), 0.2, seed=0)
    assert va.tolist() == [8, 9] and tr.tolist() == list(range(7))  # slice 7 in neither


def test_nothing_is_held_out_when_no_slice_can_be_honest():
    tr, va = split_by_position(np.array([4, 5]), 0.5, seed=0)
    assert tr.tolist() == [0, 1] and va.size == 0


def test_bad_slice_keys_are_refused_with_the_shape_expected():
    with pytest.raises(InvalidTrainingData, match=r"slice_keys must be 3 integer rows \(volume, z\)"):
        split_by_position(np.zeros((3, 3), int), 0.2, seed=0)


def test_train_holds_out_by_position_when_given_slice_keys():
    images, labels = disks(n=10)
    config = TrainConfig(min_batches_per_epoch=0, batch_size=4, max_epochs=1, val_samples=1)
    result = train(images, labels, CFG, config=config, slice_keys=np.arange(10))
    assert (result.n_train, result.n_val) == (7, 2)
    result = train(images, labels, CFG, config=config, slice_keys=np.arange(0, 30, 3))
    assert (result.n_train, result.n_val) == (8, 2)


# --- epochs and settings -----------------------------------------------------------------


def test_a_small_training_set_repeats_to_the_minimum_batches_per_epoch():
    gen = torch.Generator().manual_seed(0)
    order = epoch_order(5, 4, 6, gen)
    assert order.numel() == 24
    passes = [order[i : i + 5] for i in range(0, 20, 5)]
    assert all(sorted(p.tolist()) == list(range(5)) for p in passes)  # whole passes in fresh orders
    assert sorted(epoch_order(30, 4, 6, gen).tolist()) == list(range(30))  # big sets: one pass


def test_training_settings_with_unknown_names_are_refused():
    with pytest.raises(InvalidTrainingData, match="patience_rule 'sometimes' is not one of val_and_loss, val"):
        TrainConfig(patience_rule="sometimes")
    with pytest.raises(InvalidTrainingData, match="augment_preset 'strong' is not one of paper, within_scan"):
        TrainConfig(augment_preset="strong")
    with pytest.raises(InvalidTrainingData, match="none may be negative"):
        TrainConfig(min_epochs=-1)


# --- the loss: small structures --------------------------------------------------------


def test_class_weights_are_inverse_frequency_capped():
    labels = np.zeros((1, 10, 10), np.uint8)
    labels[0, 0, :20 // 2] = 1  # 10 pixels of class 1
    labels[0, 1, :2] = 2  # 2 pixels of class 2
    labels[0, 9, :] = 255  # unlabelled: not counted
    weights = class_weights_from_labels(labels, 4, cap=10.0)
    assert weights.tolist() == pytest.approx([1.0, 78 / 10, 10.0, 10.0])  # 78 background pixels


def test_weighted_cross_entropy_is_the_weighted_mean_over_labelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4)
    labels = torch.randint(0, 3, (1, 4, 4))
    labels[0, 0, 0] = 255
    weights = torch.tensor([1.0, 2.0, 5.0])
    loss = segmentation_loss(logits, labels, dice_weight=0, class_weights=weights)
    valid = labels != 255
    ce = -torch.log_softmax(logits, 1).gather(1, labels.clamp(max=2)[:, None])[:, 0]
    w = weights[labels.clamp(max=2)]
    assert loss.item() == pytest.approx(float((ce * w)[valid].sum() / w[valid].sum()), rel=1e-5)


def test_present_dice_ignores_classes_absent_from_the_labels():
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    labels[0, :2, :2] = 1  # class 2 absent
    logits = torch.zeros(1, 3, 4, 4)
    other = logits.clone()
    other[:, 2] = 3.0  # much more mass on the absent class 2

    def dice_term(lg, mode):
        return (segmentation_loss(lg, labels, dice_classes=mode)
                - segmentation_loss(lg, labels, dice_weight=0)).item()  # fmt: skip

    probs = torch.softmax(other, 1)
    inter = float(probs[0, 1][labels[0] == 1].sum())
    expected = 1 - (2 * inter + 1) / (float(probs[0, 1].sum()) + 4 + 1)
    assert dice_term(other, "present") == pytest.approx(expected, rel=1e-5)
    assert dice_term(other, "all") != pytest.approx(dice_term(other, "present"))


def test_a_batch_of_background_only_has_no_present_dice_term():
    logits = torch.randn(1, 3, 4, 4)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    assert segmentation_loss(logits, labels, dice_classes="present").item() == pytest.approx(
        segmentation_loss(logits, labels, dice_weight=0).item()
    )


def test_training_with_class_weights_and_the_within_scan_preset_learns_disks():
    images, labels = disks(n=24, seed=3)
    config = TrainConfig(min_batches_per_epoch=0, lr=3e-3, batch_size=4, max_epochs=12, patience=0, val_samples=2,
                         class_weighting="inverse_frequency", augment_preset="within_scan")  # fmt: skip
    result = train(images, labels, profile("tiny", n_classes=3, matrix=32), config=config)
    assert result.best_dice > 0.7

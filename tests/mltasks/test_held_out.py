"""Held-out slices: which slices qualify, and a model's pooled Dice on them (mltasks.held_out)."""

from __future__ import annotations

import numpy as np
import torch

from mltasks.held_out import choose_held_out, pooled_dice_of, spread
from mltasks.nets import UNet, profile


def test_spread_takes_the_middle_of_equal_runs_or_everything_when_there_are_not_more():
    assert spread(list(range(10)), 2) == [2, 7]
    assert spread([4, 8], 5) == [4, 8]


def test_held_out_slices_are_never_training_slices_nor_next_to_one():
    labelled = np.zeros(30, bool)
    labelled[[5, 15, 25]] = True
    chosen = choose_held_out(labelled, 4)
    assert len(chosen) == 4 and np.all(np.diff(chosen) > 0)
    assert not ({int(z) + d for z in chosen for d in (-1, 0, 1)} & {5, 15, 25})


def test_only_eligible_slices_are_held_out_and_fewer_when_fewer_qualify():
    labelled = np.zeros(10, bool)
    labelled[4] = True
    eligible = np.zeros(10, bool)
    eligible[[0, 3, 8]] = True  # 3 is next to a training slice
    assert choose_held_out(labelled, 5, eligible=eligible).tolist() == [0, 8]


def test_the_pooled_dice_counts_the_pixels_of_all_slices_together():
    torch.manual_seed(0)
    model = UNet(profile("tiny", n_classes=3, width=4, matrix=32))
    model.mc_mode()
    images = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    truth = np.zeros((3, 32, 32), np.uint8)
    truth[0, :8] = 2
    dice = pooled_dice_of(model, images, truth, t_samples=2)
    assert dice.shape == (3,)
    assert np.isfinite(dice[0]) and 0.0 <= dice[0] <= 1.0
    assert np.isnan(dice[1]) or dice[1] == 0.0  # not in the truth: NaN unless predicted somewhere

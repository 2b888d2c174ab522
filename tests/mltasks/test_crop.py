"""Training batches cut to their content (mltasks.crop, TrainConfig.crop_to_content)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mltasks.train as train_module
from mltasks.crop import content_window, crop_to_content
from mltasks.losses import IGNORE
from mltasks.nets import profile
from mltasks.train import TrainConfig, predict_labels, train


def axis(size: int, *present: int) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[list(present)] = True
    return mask


def test_the_window_holds_the_content_and_its_margin_in_a_multiple_of_the_unets_factor():
    window = content_window(axis(256, 100, 140), 256, multiple=16, margin=8)
    assert (window.stop - window.start) % 16 == 0
    assert window.start <= 92 and window.stop >= 149
    assert window.stop - window.start == 64  # 57 pixels of content and margin, rounded up once


def test_a_window_at_the_edge_stays_inside_the_slice():
    assert content_window(axis(64, 0, 3), 64, multiple=16, margin=8) == slice(0, 16)
    assert content_window(axis(64, 60, 63), 64, multiple=16, margin=8) == slice(48, 64)


def test_content_wider_than_the_slice_keeps_the_whole_axis_and_no_content_keeps_it_too():
    assert content_window(axis(64, 2, 61), 64, multiple=16, margin=8) == slice(0, 64)
    assert content_window(torch.zeros(64, dtype=torch.bool), 64, multiple=16, margin=8) == slice(0, 64)


def test_a_batch_keeps_the_union_of_its_slices_tissue_and_structure_labels():
    images = torch.zeros(2, 128, 128)
    labels = torch.zeros(2, 128, 128, dtype=torch.uint8)
    images[0, 40:50, 30:60] = 0.5  # tissue in one slice
    labels[1, 90:95, 70:80] = 3  # a structure labelled on air still counts
    labels[1, 120:, :] = IGNORE  # unlabelled pixels do not
    x, y = crop_to_content(images, labels, multiple=16, margin=4)
    assert x.shape == y.shape and x.shape[1] % 16 == 0 and x.shape[2] % 16 == 0
    assert x.shape[1] < 128 and x.shape[2] < 128
    assert float(x.sum()) == pytest.approx(float(images.sum()))
    assert int((y == 3).sum()) == 50


def test_training_passes_only_the_cropped_batch_and_the_model_still_segments_whole_slices(monkeypatch):
    size = 64
    images = np.zeros((6, size, size), np.float32)
    labels = np.zeros((6, size, size), np.uint8)
    images[:, 24:40, 20:44] = 0.6  # a body in the middle of air
    labels[:, 28:36, 26:38] = 1
    images[labels == 1] = 0.9
    seen = []

    def spy(x, y, *, multiple):
        out = crop_to_content(x, y, multiple=multiple)
        seen.append(tuple(out[0].shape[1:]))
        return out

    monkeypatch.setattr(train_module, "crop_to_content", spy)
    net = profile("tiny", n_classes=2, width=4, matrix=size)
    config = TrainConfig(min_batches_per_epoch=0, batch_size=3, max_epochs=2, patience=0, augment=False,
                         val_fraction=0.0)
    result = train(images, labels, net, config=config)
    assert seen and all(h < size and w < size for h, w in seen)
    whole = predict_labels(result.model, torch.from_numpy(images[:2]), samples=2, seed=0, batch_size=2)
    assert whole.shape == (2, size, size)

    seen.clear()
    train(images, labels, net, config=TrainConfig(**{**config.to_dict(), "crop_to_content": False}))
    assert seen == []

"""Augmentation keeps image and labels aligned and swaps sided labels on flips."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from mltasks.augment import (
    AugmentConfig,
    AugmentParams,
    apply_augmentation,
    augment_batch,
    augment_preset,
    sample_params,
)
from mltasks.errors import InvalidArray
from mltasks.labels import default_label_set


def textured_square(n: int = 6, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Texture in [0, 0.4] with a labelled square (value 3) lifted above 0.6."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, size, size, generator=gen) * 0.4
    labels = torch.zeros(n, size, size, dtype=torch.uint8)
    labels[:, 20:40, 24:44] = 3
    images[labels == 3] += 0.6
    return images, labels


def test_identity_parameters_change_nothing():
    images, labels = textured_square()
    out_img, out_lab = apply_augmentation(images, labels, AugmentParams.identity(6))
    assert torch.allclose(out_img, images, atol=1e-4)
    assert torch.equal(out_lab, labels)


def test_labels_stay_on_the_structure_they_label():
    images, labels = textured_square(n=16)
    params = sample_params(16, torch.Generator().manual_seed(1))
    out_img, out_lab = apply_augmentation(images, labels, params, image_mode="nearest")
    assert torch.equal(out_lab == 3, out_img > 0.5)
    assert (out_lab == 3).any(
        dim=(1, 2)
    ).float().mean() > 0.5  # the square is usually still in view


def test_bilinear_image_disagrees_with_labels_only_on_edges():
    images, labels = textured_square(n=8)
    out_img, out_lab = apply_augmentation(
        images, labels, sample_params(8, torch.Generator().manual_seed(2))
    )
    mismatch = ((out_lab == 3) != (out_img > 0.5)).float().mean().item()
    assert mismatch < 0.01


def test_translation_of_a_quarter_moves_a_64_matrix_by_16_pixels():
    images, labels = textured_square(n=1)
    params = replace(AugmentParams.identity(1), tx=torch.tensor([0.25]), ty=torch.tensor([-0.25]))
    _, out_lab = apply_augmentation(images, labels, params)
    expected = torch.zeros_like(labels)
    expected[:, 4:24, 40:60] = 3
    assert torch.equal(out_lab, expected)


def test_rotation_by_90_degrees_turns_the_slice():
    images, labels = textured_square(n=1)
    params = replace(AugmentParams.identity(1), angle=torch.tensor([math.pi / 2]))
    out_img, out_lab = apply_augmentation(images, labels, params, image_mode="nearest")
    # Output (x, y) samples input (y, -x): a counter-clockwise quarter turn on screen (y down).
    assert torch.equal(out_lab[0], torch.rot90(labels[0], k=1, dims=(1, 0)))


def test_flip_mirrors_and_swaps_left_and_right_values():
    label_set = default_label_set(sided=True)
    left, right = (
        label_set.value_of("gluteus_medius_left"),
        label_set.value_of("gluteus_medius_right"),
    )
    labels = torch.zeros(1, 8, 8, dtype=torch.uint8)
    labels[0, 2:5, 0:2] = left
    labels[0, 6, 3] = 255  # unlabelled stays unlabelled
    images = labels.float() / 255
    params = replace(AugmentParams.identity(1), flip=torch.tensor([True]))
    _, out = apply_augmentation(
        images, labels, params, flip_lut=torch.from_numpy(label_set.flip_lut)
    )
    expected = torch.zeros_like(labels)
    expected[0, 2:5, 6:8] = right
    expected[0, 6, 4] = 255
    assert torch.equal(out, expected)


def test_parameters_are_seeded_and_within_the_ranges():
    cfg = AugmentConfig()
    a = sample_params(500, torch.Generator().manual_seed(5), config=cfg)
    b = sample_params(500, torch.Generator().manual_seed(5), config=cfg)
    assert all(
        torch.equal(getattr(a, f), getattr(b, f))
        for f in ("tx", "ty", "angle", "scale", "shear", "flip")
    )
    assert a.tx.abs().max() <= 0.25 and a.ty.abs().max() <= 0.25
    assert a.angle.abs().max() <= math.radians(10) + 1e-6
    assert 0.65 - 1e-6 <= a.scale.min() and a.scale.max() <= 1.35 + 1e-6
    assert a.shear.abs().max() <= math.pi / 8 + 1e-6
    assert 0.4 < a.flip.float().mean() < 0.6
    assert (
        a.scale.max() > 1.3 and a.shear.abs().max() > 0.35
    )  # the ranges are used, not just bounded


def test_augment_batch_is_reproducible_for_a_seed():
    images, labels = textured_square()
    one = augment_batch(images, labels, torch.Generator().manual_seed(9))
    two = augment_batch(images, labels, torch.Generator().manual_seed(9))
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])
    assert np.unique(one[1].numpy()).tolist() in ([0, 3], [0])


def test_the_paper_preset_is_the_default_and_within_scan_is_milder():
    assert AugmentConfig.paper() == AugmentConfig() == augment_preset("paper")
    mild = augment_preset("within_scan")
    assert mild == AugmentConfig.within_scan()
    paper = AugmentConfig.paper()
    for name in ("translation", "rotation_deg", "scaling", "shear_rad"):
        assert 0 < getattr(mild, name) < getattr(paper, name)


def test_within_scan_parameters_stay_in_its_ranges():
    p = sample_params(500, torch.Generator().manual_seed(5), config=AugmentConfig.within_scan())
    assert p.tx.abs().max() <= 0.05 and p.ty.abs().max() <= 0.05
    assert p.angle.abs().max() <= math.radians(5) + 1e-6 and p.shear.abs().max() <= 0.05 + 1e-6
    assert 0.9 - 1e-6 <= p.scale.min() and p.scale.max() <= 1.1 + 1e-6
    assert p.tx.abs().max() > 0.045  # the range is used


def test_an_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(InvalidArray, match="unknown augmentation preset 'strong'; choose one of paper, within_scan"):
        augment_preset("strong")

"""Training-time augmentation of 2D slices (method.md §2), label-preserving.

One random affine per slice, applied to image and labels alike with
``torch.nn.functional.affine_grid`` + ``grid_sample`` (batched): bilinear for
the image, nearest neighbour for the labels, and a left-right flip that also
swaps sided label values (``LabelSet.flip_lut``).

Two named presets (``AUGMENT_PRESETS``, ``augment_preset``):

- ``paper``: the paper's ranges, for generalising across patients: translation
  +-25 % of the matrix, rotation +-10 deg, isotropic scaling +-35 %, shear
  +-pi/8 rad. ``AugmentConfig()`` is this preset.
- ``within_scan``: milder ranges for learning the rest of one scan from a few of
  its slices, where every slice shares the patient's position, size and shape:
  translation +-5 %, rotation +-5 deg, scaling +-10 %, shear +-0.05 rad, flip.
  docs/learning.md measures both.

Choosing parameters (``sample_params``, seeded) is separate from applying them
(``apply_augmentation``, deterministic), so the geometry is testable.

Coordinates: ``affine_grid`` works in normalised (x, y) in [-1, 1]; slices are
square, so one normalised unit is the same length along x and y.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F

from mltasks.errors import InvalidArray


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transform (each parameter uniform in [-range, +range])."""

    translation: float = 0.25  # fraction of the matrix size
    rotation_deg: float = 10.0
    scaling: float = 0.35  # scale factor in [1 - s, 1 + s]
    shear_rad: float = math.pi / 8
    flip: bool = True  # left-right flip with probability 0.5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def paper(cls) -> AugmentConfig:
        """The paper's ranges (method.md §2): generalising across patients."""
        return cls()

    @classmethod
    def within_scan(cls) -> AugmentConfig:
        """Milder ranges for learning within one scan (module docstring)."""
        return cls(translation=0.05, rotation_deg=5.0, scaling=0.10, shear_rad=0.05, flip=True)


AUGMENT_PRESETS = ("paper", "within_scan")


def augment_preset(name: str) -> AugmentConfig:
    """The ``AugmentConfig`` of a preset name ("paper" or "within_scan")."""
    if name not in AUGMENT_PRESETS:
        msg = f"unknown augmentation preset {name!r}; choose one of {', '.join(AUGMENT_PRESETS)}"
        raise InvalidArray(msg)
    return getattr(AugmentConfig, name)()


@dataclass(frozen=True)
class AugmentParams:
    """Per-slice transform parameters, each a (N,) float32 tensor (flip: bool)."""

    tx: torch.Tensor  # fraction of the matrix size, + = towards higher x
    ty: torch.Tensor
    angle: torch.Tensor  # rad
    scale: torch.Tensor
    shear: torch.Tensor  # rad
    flip: torch.Tensor  # bool

    @classmethod
    def identity(cls, n: int) -> AugmentParams:
        z = torch.zeros(n)
        return cls(
            tx=z, ty=z, angle=z, scale=torch.ones(n), shear=z, flip=torch.zeros(n, dtype=torch.bool)
        )


def sample_params(
    n: int, generator: torch.Generator, *, config: AugmentConfig = AugmentConfig()
) -> AugmentParams:
    """Draw transform parameters for ``n`` slices from ``generator``."""

    def uniform(half_range: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2.0 - 1.0) * half_range

    flip = torch.rand(n, generator=generator) < 0.5
    return AugmentParams(
        tx=uniform(config.translation),
        ty=uniform(config.translation),
        angle=uniform(math.radians(config.rotation_deg)),
        scale=1.0 + uniform(config.scaling),
        shear=uniform(config.shear_rad),
        flip=flip if config.flip else torch.zeros(n, dtype=torch.bool),
    )


def forward_matrices(params: AugmentParams) -> torch.Tensor:
    """(N, 3, 3) maps from input to output normalised (x, y, 1) coordinates.

    Order: flip, shear, scale, rotate, then translate.
    """
    n = params.tx.shape[0]
    eye = torch.eye(3).expand(n, 3, 3).clone()
    flip = eye.clone()
    flip[:, 0, 0] = torch.where(params.flip, -1.0, 1.0)
    shear = eye.clone()
    shear[:, 0, 1] = torch.tan(params.shear)
    scale = eye.clone()
    scale[:, 0, 0] = params.scale
    scale[:, 1, 1] = params.scale
    rot = eye.clone()
    c, s = torch.cos(params.angle), torch.sin(params.angle)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = c, -s, s, c
    shift = eye.clone()
    shift[:, 0, 2] = 2.0 * params.tx  # the normalised axis spans 2 units
    shift[:, 1, 2] = 2.0 * params.ty
    return shift @ rot @ scale @ shear @ flip


def apply_augmentation(
    images: torch.Tensor,
    labels: torch.Tensor,
    params: AugmentParams,
    *,
    flip_lut: torch.Tensor | None = None,
    image_mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Transform a batch of slices and their labels with the same affine per slice.

    Args:
        images: (N, H, W) float32.
        labels: (N, H, W) integer labels (255 = unlabelled stays 255).
        params: N transforms (``sample_params``).
        flip_lut: (n_classes,) int map value -> mirrored value, applied to flipped slices.
        image_mode: grid_sample mode for the image ("bilinear" or "nearest").
    Returns:
        (images (N, H, W) float32, labels (N, H, W) of the input dtype). Pixels that
        come from outside the slice are 0 in both (air, background).
    """
    if images.dim() != 3 or images.shape != labels.shape:
        msg = (
            f"images {tuple(images.shape)} and labels {tuple(labels.shape)} must both be (N, H, W)"
        )
        raise InvalidArray(msg)
    n = images.shape[0]
    theta = torch.linalg.inv(forward_matrices(params))[:, :2, :]
    grid = F.affine_grid(theta, [n, 1, *images.shape[1:]], align_corners=False)
    out_img = F.grid_sample(
        images[:, None].float(), grid, mode=image_mode, padding_mode="zeros", align_corners=False
    )
    out_lab = F.grid_sample(
        labels[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    out_lab = out_lab[:, 0].round().to(labels.dtype)
    if flip_lut is not None and bool(params.flip.any()):
        out_lab = _flip_values(out_lab, params.flip, flip_lut)
    return out_img[:, 0], out_lab


def _flip_values(
    labels: torch.Tensor, flipped: torch.Tensor, flip_lut: torch.Tensor
) -> torch.Tensor:
    lut = torch.arange(256, dtype=torch.long)
    lut[: flip_lut.numel()] = flip_lut.long()
    swapped = lut[labels.long()].to(labels.dtype)
    return torch.where(flipped[:, None, None], swapped, labels)


def augment_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    *,
    config: AugmentConfig = AugmentConfig(),
    flip_lut: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``sample_params`` then ``apply_augmentation``: the training loop's one call."""
    params = sample_params(images.shape[0], generator, config=config)
    return apply_augmentation(images, labels, params, flip_lut=flip_lut)

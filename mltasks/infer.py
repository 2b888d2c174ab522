"""Inference (method.md §1 steps 4-7, §3): body mask, MC-dropout segmentation,
uncertainty, largest components, back onto the CT's own grid.

Memory stays bounded: slices go through the network ``batch_size`` at a time
and only that chunk's running sum and sum of squares of the softmax
(2 x B x C x H x W float64) are kept, never T samples of the volume. MC
sampling loops over T with the whole chunk as one batch (fastest on CPU), on a
``FastMC`` copy of the net (batch norm folded, channels-last, cheap dropout
masks, first block shared by the T samples).

Statistics follow ``mltasks.uncertainty`` (Eq. 4): mean pbar = S1 / T,
Var(c) = S2 / T - pbar^2 (clamped at 0), u = sum_c Var(c).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mltasks.errors import BadNetConfig
from mltasks.fold import FastMC
from mltasks.geometry import Geometry
from mltasks.netgrid import NetworkGrid
from mltasks.nets import UNet
from mltasks.postprocess import keep_largest_components
from mltasks.preprocess import preprocess_volume, resample
from mltasks.progress import ProgressCallback, report


@dataclass
class SlicePrediction:
    """Network-grid outputs of ``mc_predict_slices`` for N slices.

    Attributes:
        labels: (N, H, W) uint8 argmax of the mean softmax.
        pixel_uncertainty: (N, H, W) float32 u = sum_c Var(c).
        descriptors: (N, d) float32 bottleneck features averaged over the slice and the T samples.
        mean_probs: (N, C, H, W) float32 mean softmax, only with ``return_probs``.
    """

    labels: np.ndarray
    pixel_uncertainty: np.ndarray
    descriptors: np.ndarray
    mean_probs: np.ndarray | None = None


@dataclass
class Prediction:
    """Result of ``predict_volume``.

    On the CT's own grid (z, y, x):
        labels: uint8 labels after largest-component post-processing.
        pixel_uncertainty: float32 u (0 outside the body).
        probabilities: (C, z, y, x) float32 mean softmax, only with ``return_probs``.
        body: bool body mask, or None without a body model.
    On the network grid (z', m, m), for active learning:
        network_geometry: that grid.
        network_labels, network_uncertainty: as above, before resampling.
        slice_descriptors: (z', d) float32 per-slice descriptors.
        slice_uncertainty: (z',) float32 mean u inside the body (whole slice without body model).
    """

    labels: np.ndarray
    pixel_uncertainty: np.ndarray
    probabilities: np.ndarray | None
    body: np.ndarray | None
    network_geometry: Geometry
    network_labels: np.ndarray
    network_uncertainty: np.ndarray
    slice_descriptors: np.ndarray
    slice_uncertainty: np.ndarray


def mc_predict_slices(
    slices: np.ndarray,
    model: UNet,
    *,
    t_samples: int = 10,
    batch_size: int = 8,
    seed: int = 0,
    return_probs: bool = False,
    fast: bool = True,
    on_progress: ProgressCallback | None = None,
) -> SlicePrediction:
    """MC-dropout prediction of slices on the network grid.

    Args:
        slices: (N, H, W) float32 in [0, 1] (``preprocess_volume`` output).
        model: a ``UNet``; a deterministic net gets one plain pass (u = 0).
        t_samples: T, MC samples per slice.
        batch_size: slices per network batch (4-8 is fastest on CPU).
        seed: seed of the dropout masks (same seed, same result).
        return_probs: also return the (N, C, H, W) mean softmax (memory: N x C x H x W
            floats; ``iter_mc_batches`` gives them one batch at a time instead).
        fast: use ``FastMC``; False runs the module itself in MC mode (reference path).
        on_progress: phase "predict", done = slices finished.
    """
    if slices.ndim != 3:
        raise BadNetConfig(f"slices must be (N, H, W), got shape {slices.shape}")
    n = slices.shape[0]
    labels = np.empty(slices.shape, np.uint8)
    u = np.empty(slices.shape, np.float32)
    desc = np.empty((n, model.config.descriptor_size), np.float32)
    probs = (
        np.empty((n, model.config.n_classes, *slices.shape[1:]), np.float32)
        if return_probs
        else None
    )
    batches = iter_mc_batches(slices, model, t_samples=t_samples, batch_size=batch_size, seed=seed,
                              fast=fast, on_progress=on_progress)  # fmt: skip
    for batch in batches:
        sl = slice(batch.start, batch.stop)
        labels[sl] = batch.mean_probs.argmax(1).astype(np.uint8)
        u[sl] = batch.pixel_uncertainty
        desc[sl] = batch.descriptors
        if probs is not None:
            probs[sl] = batch.mean_probs
    return SlicePrediction(labels, u, desc, probs)


@dataclass
class McBatch:
    """MC-dropout statistics of slices ``start`` .. ``stop - 1`` (B = stop - start).

    Attributes:
        mean_probs: (B, C, H, W) float32 mean softmax pbar.
        pixel_uncertainty: (B, H, W) float32 u = sum_c Var(c).
        descriptors: (B, d) float32 bottleneck features averaged over the slice and the T samples.
    """

    start: int
    stop: int
    mean_probs: np.ndarray
    pixel_uncertainty: np.ndarray
    descriptors: np.ndarray


def iter_mc_batches(
    slices: np.ndarray,
    model: UNet,
    *,
    t_samples: int = 10,
    batch_size: int = 8,
    seed: int = 0,
    fast: bool = True,
    on_progress: ProgressCallback | None = None,
) -> Iterator[McBatch]:
    """MC-dropout prediction, one network batch at a time, mean probabilities included.

    The same masks and numbers as ``mc_predict_slices`` with the same arguments, but
    memory stays at one batch: a caller that brings probabilities back to a finer grid
    (``mltasks.netgrid.NetworkGrid.to_working``) never holds N x C x H x W floats.

    Args:
        slices: (N, H, W) float32 in [0, 1] on the network grid.
        t_samples, batch_size, seed, fast: as ``mc_predict_slices``.
        on_progress: phase "predict", done = slices finished (reported after each batch).
    Yields:
        ``McBatch`` in slice order.
    """
    if slices.ndim != 3:
        raise BadNetConfig(f"slices must be (N, H, W), got shape {slices.shape}")
    n = slices.shape[0]
    bayesian = model.config.bayesian and t_samples > 1
    generator = torch.Generator().manual_seed(seed)
    sampler = _Sampler(
        model, generator, fast=fast and bayesian and model.config.depth >= 2, bayesian=bayesian
    )
    report(on_progress, "predict", 0, n)
    try:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            x = torch.from_numpy(np.ascontiguousarray(slices[start:stop], dtype=np.float32))[:, None]
            mean, var_sum, features = sampler.run(x, t_samples if bayesian else 1)
            yield McBatch(start, stop, mean.numpy(), var_sum.numpy(), features.numpy())
            report(on_progress, "predict", stop, n)
    finally:
        model.set_generator(None)


def predict_working_slices(
    hu_slices: np.ndarray,
    model: UNet,
    grid: NetworkGrid,
    *,
    t_samples: int = 10,
    batch_size: int = 8,
    seed: int = 0,
    on_progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """MC-dropout segmentation of working-grid HU slices, at the working grid's resolution.

    The slices go to the network grid (``grid.images_to_network``), then through the
    net batch by batch; each batch's mean probabilities go back to the working grid
    (``NetworkGrid.to_working``: argmax of the upsampled probabilities, bilinear u)
    before the next batch runs, so memory holds one batch's probabilities, never the
    volume's. Same masks as ``mc_predict_slices`` on the network images.

    Args:
        hu_slices: (n, H, W) HU on the working grid (a whole volume, or some slices).
        model: a ``UNet`` whose depth fits ``grid``'s padding.
        grid: the scan's network grid.
        t_samples, batch_size, seed, on_progress: as ``iter_mc_batches``.
    Returns:
        (labels (n, H, W) uint8, u (n, H, W) float32) on the working grid.
    """
    images = grid.images_to_network(hu_slices)
    labels = np.empty((images.shape[0], *grid.working_shape), np.uint8)
    u = np.empty((images.shape[0], *grid.working_shape), np.float32)
    batches = iter_mc_batches(images, model, t_samples=t_samples, batch_size=batch_size, seed=seed,
                              on_progress=on_progress)  # fmt: skip
    for b in batches:
        labels[b.start:b.stop], u[b.start:b.stop] = grid.to_working(b.mean_probs, b.pixel_uncertainty)
    return labels, u


class _Sampler:
    """Runs T samples on one chunk and returns its statistics."""

    def __init__(
        self, model: UNet, generator: torch.Generator, *, fast: bool, bayesian: bool
    ) -> None:
        self.model = model
        self.runner = FastMC(model) if fast else None
        if self.runner is not None:
            self.runner.generator = generator
        else:
            model.mc_mode()
            model.set_generator(generator)

    @torch.inference_mode()
    def run(self, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean (B, C, H, W) float32, u (B, H, W) float32, features (B, d) float32)."""
        state = self.runner.prepare(x) if self.runner is not None else None
        total = total_sq = feat = None
        for _ in range(t):
            logits, f = (
                self.runner.sample(state)
                if state is not None
                else self.model(x, return_features=True)
            )
            p = torch.softmax(logits, dim=1).double()
            if total is None:
                total, total_sq, feat = p.clone(), p * p, f.clone()
            else:
                total.add_(p)
                total_sq.addcmul_(p, p)
                feat.add_(f)
        mean = total / t
        var = (total_sq / t - mean * mean).clamp_(min=0.0)
        return mean.float().contiguous(), var.sum(1).float(), (feat / t).float()


def predict_body(slices: np.ndarray, body_model: UNet, *, batch_size: int = 8) -> np.ndarray:
    """(N, H, W) bool body mask of network-grid slices (deterministic pass, class 1 = body)."""
    pred = mc_predict_slices(slices, body_model, t_samples=1, batch_size=batch_size, fast=False)
    return pred.labels == 1


def predict_volume(
    hu: np.ndarray,
    geometry: Geometry,
    model: UNet,
    *,
    body_model: UNet | None = None,
    t_samples: int = 10,
    batch_size: int = 8,
    seed: int = 0,
    return_probs: bool = False,
    postprocess: bool = True,
    on_progress: ProgressCallback | None = None,
) -> Prediction:
    """Segment a CT: body mask, MC-dropout muscle net, largest components, original grid.

    Args:
        hu: (z, y, x) CT in HU on ``geometry``.
        model: the Bayesian muscle U-Net (its ``config.matrix`` sets the network grid).
        body_model: deterministic 2-class body U-Net; pixels outside its (largest)
            body component are set to air before segmentation and to 0 after.
        t_samples, batch_size, seed: as ``mc_predict_slices``.
        return_probs: also resample the mean softmax to the CT grid (C x volume floats).
        postprocess: keep the largest 3D connected component of every structure.
        on_progress: phases "body", "predict", "postprocess".
    """
    pre = preprocess_volume(hu, geometry, matrix=model.config.matrix)
    image = pre.image
    body_net = None
    if body_model is not None:
        body_net = _body_mask(
            hu, geometry, body_model, pre.geometry, batch_size=batch_size, on_progress=on_progress
        )
        image = np.where(body_net, image, np.float32(0.0))
    pred = mc_predict_slices(
        image, model, t_samples=t_samples, batch_size=batch_size, seed=seed,
        return_probs=return_probs, on_progress=on_progress,
    )  # fmt: skip
    labels, u = pred.labels, pred.pixel_uncertainty
    if body_net is not None:
        labels[~body_net] = 0
        u[~body_net] = 0.0
    report(on_progress, "postprocess", 0, 1)
    if postprocess:
        labels = keep_largest_components(labels)
    if body_net is not None:
        inside = body_net.reshape(body_net.shape[0], -1)
        slice_u = (u.reshape(u.shape[0], -1) * inside).sum(1) / np.maximum(inside.sum(1), 1)
    else:
        slice_u = u.reshape(u.shape[0], -1).mean(1)
    probs = (
        pre.to_original(pred.mean_probs.transpose(1, 0, 2, 3), interpolation="linear")
        if return_probs
        else None
    )
    result = Prediction(
        labels=pre.to_original(labels, interpolation="nearest"),
        pixel_uncertainty=pre.to_original(u, interpolation="linear"),
        probabilities=probs,
        body=pre.to_original(body_net, interpolation="nearest") if body_net is not None else None,
        network_geometry=pre.geometry,
        network_labels=labels,
        network_uncertainty=u,
        slice_descriptors=pred.descriptors,
        slice_uncertainty=slice_u.astype(np.float32),
    )
    report(on_progress, "postprocess", 1, 1)
    return result


def _body_mask(
    hu: np.ndarray,
    geometry: Geometry,
    body_model: UNet,
    target: Geometry,
    *,
    batch_size: int,
    on_progress: ProgressCallback | None,
) -> np.ndarray:
    """Body mask on the muscle net's grid ``target`` (the body net may use another matrix)."""
    pre = preprocess_volume(hu, geometry, matrix=body_model.config.matrix)
    report(on_progress, "body", 0, 1)
    mask = predict_body(pre.image, body_model, batch_size=batch_size)
    mask = keep_largest_components(mask.astype(np.uint8)).astype(bool)
    if pre.geometry != target:
        mask = resample(mask, pre.geometry, target, interpolation="nearest")
    report(on_progress, "body", 1, 1)
    return mask

"""MC inference: statistics, seeding, bounded chunks, body mask, original grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mltasks import infer
from mltasks.geometry import Geometry
from mltasks.infer import mc_predict_slices, predict_volume
from mltasks.nets import UNet, profile
from mltasks.uncertainty import mc_statistics


def net(n_classes: int = 4, *, bayesian: bool = True, matrix: int = 32, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    model = UNet(profile("tiny", n_classes=n_classes, bayesian=bayesian, matrix=matrix))
    return model.mc_mode()


def constant_body_net(inside: bool) -> UNet:
    """A body net whose head ignores its input: everything body (inside) or nothing."""
    model = net(2, bayesian=False)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 5.0] if inside else [5.0, 0.0]))
    return model


def slices(n: int = 5, size: int = 32) -> np.ndarray:
    return np.random.default_rng(0).random((n, size, size), dtype=np.float32)


def test_statistics_equal_the_uncertainty_module_on_the_same_samples():
    model, x = net(), slices(3)
    out = mc_predict_slices(
        x, model, t_samples=4, batch_size=3, seed=11, fast=False, return_probs=True
    )
    model.set_generator(torch.Generator().manual_seed(11))
    with torch.no_grad():
        samples = [torch.softmax(model(torch.from_numpy(x)[:, None]), 1).numpy() for _ in range(4)]
    mean, _, u = mc_statistics(np.stack(samples).transpose(0, 2, 1, 3, 4))  # (T, C, N, H, W)
    assert np.allclose(out.mean_probs, mean.transpose(1, 0, 2, 3), atol=1e-6)
    assert np.allclose(out.pixel_uncertainty, u, atol=1e-6)
    assert np.array_equal(out.labels, mean.argmax(0))
    assert out.descriptors.shape == (3, model.config.descriptor_size)


def test_same_seed_same_result_other_seed_other_uncertainty():
    model, x = net(), slices()
    a = mc_predict_slices(x, model, t_samples=3, seed=1)
    b = mc_predict_slices(x, model, t_samples=3, seed=1)
    c = mc_predict_slices(x, model, t_samples=3, seed=2)
    assert np.array_equal(a.pixel_uncertainty, b.pixel_uncertainty) and np.array_equal(
        a.labels, b.labels
    )
    assert not np.array_equal(a.pixel_uncertainty, c.pixel_uncertainty)
    assert (a.pixel_uncertainty > 0).all()


def test_fast_and_reference_paths_agree_in_distribution():
    model, x = net(seed=3), slices(4)
    fast = mc_predict_slices(x, model, t_samples=48, seed=1, return_probs=True)
    ref = mc_predict_slices(x, model, t_samples=48, seed=2, fast=False, return_probs=True)
    ref_other_seed = mc_predict_slices(
        x, model, t_samples=48, seed=3, fast=False, return_probs=True
    )
    seed_noise = np.abs(ref_other_seed.mean_probs - ref.mean_probs).mean()
    assert np.abs(fast.mean_probs - ref.mean_probs).mean() < 1.25 * seed_noise
    assert fast.pixel_uncertainty.mean() == pytest.approx(ref.pixel_uncertainty.mean(), rel=0.03)


def test_deterministic_net_has_zero_uncertainty():
    out = mc_predict_slices(slices(), net(2, bayesian=False), t_samples=10)
    assert not out.pixel_uncertainty.any()


def test_chunks_never_exceed_the_batch_size(monkeypatch):
    seen = []
    original = infer._Sampler.run

    def spy(self, x, t):
        seen.append((x.shape[0], t))
        mean, u, f = original(self, x, t)
        assert mean.shape[0] == x.shape[0]  # accumulators are per chunk, with no T axis
        return mean, u, f

    monkeypatch.setattr(infer._Sampler, "run", spy)
    progress = []
    out = mc_predict_slices(
        slices(7), net(), t_samples=3, batch_size=3, on_progress=progress.append
    )
    assert seen == [(3, 3), (3, 3), (1, 3)]
    assert [p.done for p in progress] == [0, 3, 6, 7]
    assert out.labels.shape == (7, 32, 32) and out.mean_probs is None


def volume() -> tuple[np.ndarray, Geometry]:
    """A 6 x 20 x 24 CT, 2 mm slices of 0.9 x 0.8 mm pixels, a soft-tissue block in air."""
    hu = np.full((6, 20, 24), -1000, np.int16)
    hu[:, 5:15, 6:18] = 40
    geometry = Geometry(shape=(6, 20, 24), spacing=(2.0, 0.9, 0.8), origin=(10.0, -5.0, 3.0))
    return hu, geometry


def test_predict_volume_returns_everything_on_the_original_grid():
    hu, geometry = volume()
    model = net(matrix=32)
    pred = predict_volume(hu, geometry, model, t_samples=2, batch_size=4)
    assert pred.labels.shape == pred.pixel_uncertainty.shape == hu.shape
    assert pred.labels.dtype == np.uint8 and pred.probabilities is None and pred.body is None
    n_net = pred.network_geometry.shape[0]
    assert n_net == 11  # 10 mm of slices every 1 mm
    assert pred.network_labels.shape == (11, 32, 32)
    assert pred.slice_descriptors.shape == (11, model.config.descriptor_size)
    assert pred.slice_uncertainty.shape == (11,)
    assert np.allclose(
        pred.slice_uncertainty, pred.network_uncertainty.mean(axis=(1, 2)), rtol=1e-5
    )


def test_body_mask_outside_everything_clears_labels_and_uncertainty():
    hu, geometry = volume()
    pred = predict_volume(hu, geometry, net(), body_model=constant_body_net(False), t_samples=2)
    assert not pred.labels.any() and not pred.pixel_uncertainty.any() and not pred.body.any()
    assert not pred.slice_uncertainty.any()


def test_body_mask_everywhere_keeps_the_plain_prediction():
    hu, geometry = volume()
    plain = predict_volume(hu, geometry, net(), t_samples=2, seed=4)
    masked = predict_volume(
        hu, geometry, net(), body_model=constant_body_net(True), t_samples=2, seed=4
    )
    assert masked.body.all()
    assert np.array_equal(plain.labels, masked.labels)


def test_largest_component_postprocessing_leaves_one_blob_per_label():
    import cc3d

    hu, geometry = volume()
    pred = predict_volume(hu, geometry, net(seed=5), t_samples=2)
    for value in np.unique(pred.network_labels)[1:]:
        assert cc3d.connected_components(pred.network_labels == value, connectivity=26).max() == 1

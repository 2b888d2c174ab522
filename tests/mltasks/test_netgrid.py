"""The network grid: resampled, padded network inputs; probabilities back at full resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry
from mltasks.infer import iter_mc_batches, mc_predict_slices, predict_working_slices
from mltasks.netgrid import network_grid, network_grid_of
from mltasks.nets import NetConfig, UNet
from mltasks.preprocess import normalise_hu


def _hu(n: int = 3, shape: tuple[int, int] = (100, 120)) -> np.ndarray:
    """Air around an elliptic body of soft tissue with a bright bone."""
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    body = ((yy - shape[0] / 2) / (shape[0] / 3)) ** 2 + ((xx - shape[1] / 2) / (shape[1] / 3)) ** 2 <= 1
    hu = np.where(body, 40, -1000).astype(np.int16)
    hu[shape[0] // 2 - 3:shape[0] // 2 + 3, shape[1] // 2 - 3:shape[1] // 2 + 3] = 700
    return np.repeat(hu[None], n, axis=0)


def test_shapes_and_the_air_padding():
    grid = network_grid((100, 120), (1.0, 1.0), pixel_mm=2.0, depth=4)
    assert grid.content_shape == (50, 60) and grid.shape == (56, 64) and grid.offset == (3, 2)
    assert grid.pixel_mm == (2.0, 2.0)
    images, body = grid.to_network(_hu())
    assert images.shape == body.shape == (3, 56, 64)
    assert images.dtype == np.float32 and body.dtype == bool
    assert 0.0 <= images.min() and images.max() <= 1.0
    content = np.zeros((56, 64), bool)
    content[3:53, 2:62] = True
    assert (images[:, ~content] == 0.0).all() and not body[:, ~content].any()
    assert body[:, 28, 32].all() and not body[:, 5, 5].any()


@pytest.mark.parametrize("depth", [3, 4, 5])
def test_padding_fits_any_depth(depth):
    f = 2 ** (depth - 1)
    grid = network_grid((437, 389), (0.98, 0.98), pixel_mm=2.0, depth=depth)
    assert grid.content_shape == (214, 191)
    h, w = grid.shape
    assert h % f == 0 and w % f == 0
    assert 0 <= h - 214 < f and 0 <= w - 191 < f
    model = UNet(NetConfig(n_classes=3, width=2, depth=depth, matrix=f))
    images, _ = grid.to_network(_hu(1, (437, 389)))
    pred = mc_predict_slices(images, model, t_samples=2)
    assert pred.labels.shape == (1, h, w)


def test_the_scans_own_pixels_keep_the_image_unchanged():
    hu = _hu(2, (60, 52))
    grid = network_grid((60, 52), (0.7, 0.7), pixel_mm=None, depth=3)
    assert grid.content_shape == (60, 52) and grid.shape == (60, 52)
    images, _ = grid.to_network(hu)
    np.testing.assert_array_equal(images, normalise_hu(hu))


def test_images_are_area_averaged():
    hu = np.full((1, 8, 8), -150, np.int16)
    hu[0, ::2, ::2] = 350
    hu[0, 1::2, 1::2] = 350  # a checkerboard of the window's two ends
    grid = network_grid((8, 8), (1.0, 1.0), pixel_mm=2.0, depth=1)
    np.testing.assert_allclose(grid.images_to_network(hu), 0.5)


def test_a_constant_probability_image_comes_back_unchanged():
    grid = network_grid((100, 120), (1.0, 1.0), pixel_mm=2.0, depth=4)
    probs = np.random.default_rng(0).random((2, 3, *grid.shape)).astype(np.float32)  # garbage in the padding
    top, left = grid.offset
    inside = (slice(None), slice(None), slice(top, top + 50), slice(left, left + 60))
    probs[inside] = np.array([0.2, 0.5, 0.3], np.float32)[None, :, None, None]
    u = np.random.default_rng(1).random((2, *grid.shape)).astype(np.float32)
    u[:, top:top + 50, left:left + 60] = 0.125
    labels, u_work = grid.to_working(probs, u)
    assert labels.shape == u_work.shape == (2, 100, 120)
    assert labels.dtype == np.uint8 and u_work.dtype == np.float32
    assert (labels == 1).all()
    np.testing.assert_allclose(u_work, 0.125, rtol=1e-6)


def test_labels_follow_a_sharp_probability_edge_within_one_working_pixel():
    grid = network_grid((64, 64), (1.0, 1.0), pixel_mm=2.0, depth=1)
    assert grid.shape == (32, 32)
    x_net = np.arange(32) + 0.5  # network pixel centres, in network pixels
    for edge in (16.0, 11.3, 20.75):  # where p(class 1) crosses 0.5, in network pixels
        p1 = 1.0 / (1.0 + np.exp(-(x_net - edge) * 8.0))
        probs = np.stack([1 - p1, p1]).astype(np.float32)[None, :, None, :].repeat(32, axis=2)
        labels, _ = grid.to_working(probs, np.zeros((1, 32, 32), np.float32))
        first = np.argmax(labels[0, 10] == 1)  # first working column labelled 1
        assert (labels[0, :, first:] == 1).all() and (labels[0, :, :first] == 0).all()
        edge_working = edge * 2.0  # the same physical position in working pixels
        assert abs(first - edge_working) <= 1.0, (edge, first)
    # a step edge on a network pixel boundary lands exactly on the working boundary
    probs = np.zeros((1, 2, 32, 32), np.float32)
    probs[0, 0, :, :16], probs[0, 1, :, 16:] = 1.0, 1.0
    labels, _ = grid.to_working(probs, np.zeros((1, 32, 32), np.float32))
    assert (labels[0, :, :32] == 0).all() and (labels[0, :, 32:] == 1).all()


def test_u_is_interpolated_bilinearly():
    grid = network_grid((40, 40), (1.0, 1.0), pixel_mm=2.0, depth=1)
    ramp = np.tile(np.arange(20, dtype=np.float32) * 0.01, (20, 1))[None]
    _, u = grid.to_working(np.ones((1, 2, 20, 20), np.float32) / 2, ramp)
    # working column j sits at network coordinate (j + 0.5) / 2 - 0.5
    j = np.arange(1, 39)
    np.testing.assert_allclose(u[0, 7, 1:39], ((j + 0.5) / 2 - 0.5) * 0.01, atol=1e-7)
    assert u.min() >= 0.0 and u.max() <= 0.19 + 1e-7


def test_labels_to_network_are_nearest_and_padded_with_background():
    grid = network_grid((100, 120), (1.0, 1.0), pixel_mm=2.0, depth=4)
    labels = np.zeros((1, 100, 120), np.uint8)
    labels[0, 40:60, 50:70] = 5
    net = grid.labels_to_network(labels)
    assert net.shape == (1, 56, 64) and set(np.unique(net)) == {0, 5}
    assert (net[0, 3 + 20:3 + 30, 2 + 25:2 + 35] == 5).all()
    assert (net == 5).sum() == 100


def test_network_grid_of_a_geometry_uses_its_in_plane_shape_and_spacing():
    g = Geometry(shape=(30, 360, 500), spacing=(3.0, 0.98, 0.98))
    grid = network_grid_of(g, pixel_mm=2.0, depth=4)
    assert grid.content_shape == (176, 245) and grid.shape == (176, 248)


def test_batches_give_the_same_numbers_as_the_whole_prediction():
    torch.manual_seed(0)
    model = UNet(NetConfig(n_classes=3, width=4, depth=3, matrix=16))
    slices = np.random.default_rng(0).random((5, 16, 16)).astype(np.float32)
    whole = mc_predict_slices(slices, model, t_samples=3, batch_size=2, seed=4, return_probs=True)
    batches = list(iter_mc_batches(slices, model, t_samples=3, batch_size=2, seed=4))
    assert [(b.start, b.stop) for b in batches] == [(0, 2), (2, 4), (4, 5)]
    np.testing.assert_array_equal(np.concatenate([b.mean_probs for b in batches]), whole.mean_probs)
    np.testing.assert_array_equal(np.concatenate([b.pixel_uncertainty for b in batches]), whole.pixel_uncertainty)
    np.testing.assert_array_equal(np.concatenate([b.descriptors for b in batches]), whole.descriptors)
    np.testing.assert_array_equal(whole.labels, whole.mean_probs.argmax(1))
    with pytest.raises(Exception, match=r"slices must be \(N, H, W\)"):
        next(iter_mc_batches(slices[0], model))


def test_bad_inputs_are_refused_with_a_reason():
    with pytest.raises(InvalidArray, match="pixel_mm must be a positive size"):
        network_grid((10, 10), (1.0, 1.0), pixel_mm=0.0, depth=3)
    with pytest.raises(InvalidArray, match="depth must be >= 1"):
        network_grid((10, 10), (1.0, 1.0), pixel_mm=2.0, depth=0)
    with pytest.raises(InvalidArray, match="must be positive"):
        network_grid((0, 10), (1.0, 1.0), pixel_mm=2.0, depth=3)
    grid = network_grid((10, 10), (1.0, 1.0), pixel_mm=2.0, depth=3)
    with pytest.raises(InvalidArray, match=r"hu_slices shape \(1, 9, 10\) is not \(n, H, W\) = \(n, 10, 10\)"):
        grid.to_network(np.zeros((1, 9, 10)))
    with pytest.raises(InvalidArray, match=r"mean_probs shape .* is not \(n, C, 8, 8\)"):
        grid.to_working(np.zeros((1, 2, 5, 5)), np.zeros((1, 8, 8)))
    with pytest.raises(InvalidArray, match=r"u shape \(2, 8, 8\) is not"):
        grid.to_working(np.zeros((1, 2, 8, 8)), np.zeros((2, 8, 8)))


def test_a_whole_volume_is_segmented_at_the_working_resolution_batch_by_batch():
    torch.manual_seed(0)
    model = UNet(NetConfig(n_classes=3, width=4, depth=3, matrix=16))
    grid = network_grid((40, 44), (1.0, 1.0), pixel_mm=2.0, depth=3)
    hu = _hu(5, (40, 44))
    seen = []
    labels, u = predict_working_slices(hu, model, grid, t_samples=3, batch_size=2, seed=3, on_progress=seen.append)
    assert labels.shape == u.shape == (5, 40, 44) and labels.dtype == np.uint8 and u.dtype == np.float32
    ref = mc_predict_slices(grid.images_to_network(hu), model, t_samples=3, batch_size=2, seed=3, return_probs=True)
    ref_labels, ref_u = grid.to_working(ref.mean_probs, ref.pixel_uncertainty)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_array_equal(u, ref_u)
    assert seen[-1].done == seen[-1].total == 5


def test_the_network_never_runs_finer_than_the_scan():
    coarse = network_grid((64, 80), (5.6, 5.6), pixel_mm=4.0, depth=3)  # a 4 mm net on 5.6 mm pixels
    assert coarse.content_shape == (64, 80) and coarse.pixel_mm == (5.6, 5.6)
    mixed = network_grid((100, 100), (1.0, 3.0), pixel_mm=2.0, depth=1)
    assert mixed.content_shape == (50, 100)


def test_slices_of_scans_of_different_sizes_stack_with_air_padding():
    from mltasks.netgrid import stack_padded

    a = np.ones((2, 8, 12), np.float32)
    b = np.full((1, 16, 4), 0.5, np.float32)
    out = stack_padded([a, b], fill=0.0)
    assert out.shape == (3, 16, 12) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:2, :8, :12], a)
    assert (out[:2, 8:] == 0).all() and (out[2, :, 4:] == 0).all()
    np.testing.assert_array_equal(out[2, :, :4], b[0])
    with pytest.raises(InvalidArray, match="no slices"):
        stack_padded([], fill=0)

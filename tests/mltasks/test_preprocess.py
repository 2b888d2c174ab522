"""Network-space preprocessing (method.md §1 steps 2-3) and its inverse."""

from __future__ import annotations

import numpy as np
import pytest

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry
from mltasks.preprocess import (
    network_geometry,
    normalise_hu,
    preprocess_volume,
    resample_labels_to_network,
    to_original_grid,
)

ROTATED = (0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # in-plane 90 deg rotation


def centre_of_slices(geometry: Geometry) -> np.ndarray:
    """LPS position of the in-plane centre of the first slice."""
    nz, ny, nx = geometry.shape
    index = np.array([(nx - 1) / 2 * geometry.spacing[2], (ny - 1) / 2 * geometry.spacing[1], 0.0])
    return np.asarray(geometry.origin) + np.asarray(geometry.direction).reshape(3, 3) @ index


def sphere_labels(
    geometry: Geometry, centre_mm: tuple[float, float, float], radius_mm: float
) -> np.ndarray:
    zz, yy, xx = np.indices(geometry.shape, dtype=np.float64)
    pos = np.stack(
        [xx * geometry.spacing[2], yy * geometry.spacing[1], zz * geometry.spacing[0]], axis=-1
    )
    pos = pos @ np.asarray(geometry.direction).reshape(3, 3).T + np.asarray(geometry.origin)
    inside = np.linalg.norm(pos - np.asarray(centre_mm), axis=-1) < radius_mm
    labels = inside.astype(np.uint8) * 2
    labels[inside & (pos[..., 0] > centre_mm[0])] = 5  # two labels, to check values survive
    return labels


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.sum((a == b) & (a > 0)) / (np.sum(a > 0) + np.sum(b > 0))


def test_windowing_values_are_hand_computed():
    hu = np.array([-1000, -150, -100, 0, 100, 349, 350, 3000], dtype=np.int16)
    expected = np.array([0, 0, 50 / 500, 150 / 500, 250 / 500, 499 / 500, 1, 1], dtype=np.float32)
    out = normalise_hu(hu)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-7)
    assert normalise_hu(np.array([100.0]))[0] == pytest.approx(
        0.5
    )  # 127.5 / 255 of the paper's 8-bit scale


def test_network_geometry_keeps_the_slice_centre_and_directions():
    ct = Geometry(
        shape=(20, 512, 512),
        spacing=(2.0, 0.9765625, 0.9765625),
        origin=(-249.5, -437.5, -804.5),
        direction=ROTATED,
    )
    for matrix in (512, 256):
        target = network_geometry(ct, matrix=matrix)
        assert target.shape == (39, matrix, matrix)  # 38 mm of slices every 1 mm
        assert target.spacing == pytest.approx((1.0, 360.0 / matrix, 360.0 / matrix))
        assert target.direction == ct.direction
        np.testing.assert_allclose(centre_of_slices(target), centre_of_slices(ct), atol=1e-9)
        assert (np.asarray(target.origin) @ np.array([0, 0, 1.0])) == pytest.approx(
            -804.5
        )  # first slice kept


def test_identity_resampling_keeps_everything_exactly():
    ct = Geometry(shape=(7, 32, 32), spacing=(1.0, 1.0, 1.0), origin=(-15.5, -15.5, 40.0))
    target = network_geometry(ct, matrix=32, fov_mm=32.0)
    assert target == ct
    hu = np.random.default_rng(0).integers(-1024, 2000, size=ct.shape).astype(np.int16)
    pre = preprocess_volume(hu, ct, matrix=32, fov_mm=32.0)
    np.testing.assert_array_equal(pre.image, normalise_hu(hu))
    labels = sphere_labels(ct, (0.0, 0.0, 43.0), 9.0)
    assert set(np.unique(labels)) == {0, 2, 5}
    network = resample_labels_to_network(labels, ct, pre.geometry)
    np.testing.assert_array_equal(network, labels)
    np.testing.assert_array_equal(to_original_grid(network, pre.geometry, ct), labels)


def test_labels_round_trip_nearly_through_a_real_resampling():
    ct = Geometry(
        shape=(12, 40, 44), spacing=(2.5, 0.9, 0.8), origin=(-20.0, -15.0, 0.0), direction=ROTATED
    )
    centre = tuple(centre_of_slices(ct) + np.array([2.0, -3.0, 14.0]))
    labels = sphere_labels(ct, centre, 11.0)
    assert set(np.unique(labels)) == {0, 2, 5}
    target = network_geometry(ct, matrix=64, fov_mm=40.0)
    network = resample_labels_to_network(labels, ct, target)
    assert network.dtype == np.uint8 and set(np.unique(network)) == {0, 2, 5}
    back = to_original_grid(network, target, ct, interpolation="nearest")
    assert back.dtype == labels.dtype
    assert dice(back, labels) > 0.97
    assert np.mean(back == labels) > 0.99


def test_whole_slices_round_trip_exactly_when_the_interval_divides_the_spacing():
    ct = Geometry(shape=(5, 32, 32), spacing=(3.0, 1.0, 1.0))
    labels = np.random.default_rng(2).integers(0, 4, size=ct.shape).astype(np.uint8)
    pre_geometry = network_geometry(ct, matrix=32, fov_mm=32.0)
    network = resample_labels_to_network(labels, ct, pre_geometry)
    assert network.shape == (13, 32, 32)
    np.testing.assert_array_equal(network[::3], labels)  # original slices are hit exactly
    np.testing.assert_array_equal(to_original_grid(network, pre_geometry, ct), labels)


def test_linear_resampling_of_hu_between_slices():
    ct = Geometry(shape=(3, 16, 16), spacing=(2.0, 1.0, 1.0))
    hu = np.zeros(ct.shape, np.int16)
    hu[0], hu[1], hu[2] = -150, 50, 350
    pre = preprocess_volume(hu, ct, matrix=16, fov_mm=16.0)
    assert pre.image.shape == (5, 16, 16)
    # -150, (-150+50)/2 = -50, 50, (50+350)/2 = 200, 350 HU -> (hu + 150) / 500
    np.testing.assert_allclose(pre.image[:, 8, 8], [0.0, 0.2, 0.4, 0.7, 1.0], atol=1e-6)


def test_chunked_resampling_equals_one_whole_resampling():
    from mltasks.preprocess import resample

    ct = Geometry(
        shape=(40, 12, 14), spacing=(2.0, 1.3, 1.1), origin=(3.0, -4.0, 7.0), direction=ROTATED
    )
    hu = np.random.default_rng(3).integers(-300, 500, size=ct.shape).astype(np.int16)
    pre = preprocess_volume(hu, ct, matrix=16, fov_mm=20.0)
    assert pre.image.shape == (79, 16, 16)  # more than one chunk of output slices
    whole = resample(hu, ct, pre.geometry, interpolation="linear", default=-1024.0)
    np.testing.assert_allclose(pre.image, normalise_hu(whole), atol=1e-6)


def test_outside_the_ct_reads_as_air_and_uint8_follows_the_paper_scale():
    ct = Geometry(shape=(2, 10, 10), spacing=(1.0, 1.0, 1.0))
    hu = np.full(ct.shape, 100, np.int16)
    pre = preprocess_volume(hu, ct, matrix=20, fov_mm=20.0, dtype="uint8")
    assert pre.image.dtype == np.uint8
    assert pre.image[0, 10, 10] == 128  # round(0.5 * 255)
    assert pre.image[0, 0, 0] == 0  # padding beyond the CT is air
    assert pre.image[0, 5:15, 5:15].min() == 128


def test_probabilities_come_back_linearly_with_channels_first():
    ct = Geometry(shape=(4, 12, 12), spacing=(2.0, 1.5, 1.5), origin=(5.0, 5.0, 5.0))
    target = network_geometry(ct, matrix=16, fov_mm=18.0)
    probs = np.zeros((2, *target.shape), np.float32)
    probs[0], probs[1] = 0.25, 0.75
    ramp = np.linspace(0.0, 1.0, target.shape[0], dtype=np.float32)[:, None, None]
    probs[1] = np.broadcast_to(ramp, target.shape)
    back = to_original_grid(probs, target, ct, interpolation="linear")
    assert back.shape == (2, *ct.shape) and back.dtype == np.float32
    np.testing.assert_allclose(back[0], 0.25, atol=1e-6)
    # Slice k of the CT sits at 2k mm from the first network slice, i.e. at ramp index 2k.
    np.testing.assert_allclose(back[1][:, 6, 6], ramp.ravel()[::2], atol=1e-6)


@pytest.mark.shared_data
def test_preprocess_of_the_siemens_series_keeps_its_centre(shared_data):
    from mltasks.io import read_volume

    hu, geometry = read_volume(shared_data / "ct-dicom-siemens-abdomen")
    pre = preprocess_volume(hu, geometry, matrix=256)
    assert pre.image.shape == (39, 256, 256) and pre.image.dtype == np.float32
    assert 0.0 <= pre.image.min() and pre.image.max() <= 1.0
    np.testing.assert_allclose(
        centre_of_slices(pre.geometry), centre_of_slices(geometry), atol=1e-9
    )
    # Same physical point, same windowed value: the slice centre pixel of slice 2 (z = 2 mm) vs original slice 1.
    centre_hu = hu[1, 255:257, 255:257].astype(np.float64).mean()
    assert pre.image[2, 127:129, 127:129].mean() == pytest.approx(
        normalise_hu(np.array([centre_hu]))[0], abs=0.05
    )


def test_bad_arguments_are_reported():
    ct = Geometry(shape=(2, 4, 4), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(InvalidArray, match="does not match geometry shape"):
        preprocess_volume(np.zeros((3, 4, 4)), ct)
    with pytest.raises(InvalidArray, match="interpolation must be"):
        to_original_grid(np.zeros((2, 4, 4)), ct, ct, interpolation="cubic")


def test_body_from_hu_keeps_the_largest_region_with_its_holes_filled():
    from mltasks.preprocess import body_from_hu

    hu = np.full((2, 20, 30), -1000, np.int16)
    hu[0, 2:18, 2:20] = 40  # the body
    hu[0, 8:12, 8:12] = -900  # gas inside it: body
    hu[0, 2:18, 24:28] = 200  # a table beside it: not body
    body = body_from_hu(hu)
    expected = np.zeros((20, 30), bool)
    expected[2:18, 2:20] = True
    assert np.array_equal(body[0], expected)
    assert not body[1].any()  # nothing but air


def test_body_from_hu_refuses_a_volume_that_is_not_a_stack_of_slices():
    from mltasks.errors import InvalidArray
    from mltasks.preprocess import body_from_hu

    with pytest.raises(InvalidArray, match=r"\(N, H, W\)"):
        body_from_hu(np.zeros((4, 4)))

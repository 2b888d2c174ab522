"""Slice endpoints: windowing, raw bytes, label colours, uncertainty, and readable 404s."""

import io

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from backend.imaging.slices import window_to_uint8
from backend.projects.models import Membership
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    scan_with_volume,
    segmentation_with_uncertainty,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


@pytest.fixture
def world(client):
    label_set = LabelSetFactory(labels__n=2)
    pool = PoolFactory()
    project = ProjectFactory(label_set=label_set, pools=[pool])
    rng = np.random.default_rng(0)
    hu = rng.integers(-1024, 2000, size=(3, 512, 512)).astype(np.int16)
    hu[1, 0, :4] = [40, -160, 240, 1000]  # soft window (W 400, L 40): grey 128, 0, 255, 255
    labels = np.zeros(hu.shape, np.uint8)
    labels[1, 10:20, 10:20] = 2
    scan = scan_with_volume(pool, hu, labels=labels, label_set=label_set)
    user = MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user
    client.force_login(user)
    return {"project": project, "scan": scan, "hu": hu, "labels": labels, "label_set": label_set, "user": user}


def _png(response) -> np.ndarray:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def test_known_hu_maps_to_expected_grey_level():
    hu = np.array([[40, -160, 240, -161, 241, -1024, 3000, 39]], np.int16)
    grey = window_to_uint8(hu, window=400, level=40)
    # level -> middle grey (127.5 rounds to 128), level -/+ W/2 -> 0 / 255, clipped beyond
    assert grey.tolist() == [[128, 0, 255, 0, 255, 0, 255, 127]]


def test_png_slice_decodes_to_512_by_512_windowed_grey(client, world):
    scan = world["scan"]
    grey = _png(client.get(reverse("scan-slice-png", args=[scan.pk, 1])))
    assert grey.shape == (512, 512) and grey.dtype == np.uint8
    assert grey[0, :4].tolist() == [128, 0, 255, 255]
    np.testing.assert_array_equal(grey, window_to_uint8(world["hu"][1], window=400, level=40))


def test_window_and_level_parameters_and_presets_change_the_mapping(client, world):
    url = reverse("scan-slice-png", args=[world["scan"].pk, 1])
    custom = _png(client.get(url, {"window": 1000, "level": 500}))
    assert custom[0, :4].tolist() == [10, 0, 61, 255]  # round(hu / 1000 * 255), clipped
    bone = _png(client.get(url, {"preset": "bone"}))
    np.testing.assert_array_equal(bone, window_to_uint8(world["hu"][1], window=1800, level=400))


def test_bad_window_parameters_are_a_readable_400(client, world):
    url = reverse("scan-slice-png", args=[world["scan"].pk, 1])
    response = client.get(url, {"window": 400})
    assert response.status_code == 400
    assert "Give both window and level" in response.json()["errors"]["non_field_errors"][0]
    assert client.get(url, {"window": "nan", "level": 0}).status_code == 400
    assert client.get(url, {"window": 0, "level": 0}).status_code == 400
    assert client.get(url, {"preset": "lung"}).status_code == 400


def test_raw_slice_bytes_equal_the_volume_slice(client, world):
    response = client.get(reverse("scan-slice-raw", args=[world["scan"].pk, 2]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-Shape"] == "512,512" and response["X-Dtype"] == "<i2"
    values = np.frombuffer(response.content, dtype="<i2").reshape(512, 512)
    np.testing.assert_array_equal(values, world["hu"][2])


def test_z_out_of_range_is_a_404_that_says_the_valid_range(client, world):
    response = client.get(reverse("scan-slice-png", args=[world["scan"].pk, 3]))
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert "z=3 is outside" in response.json()["detail"]
    assert "z from 0 to 2" in response.json()["detail"]
    raw = client.get(reverse("scan-slice-raw", args=[world["scan"].pk, 99]))
    assert raw.status_code == 404 and "z from 0 to 2" in raw.json()["detail"]


def test_errors_are_json_even_when_the_client_accepts_only_png(client, world):
    response = client.get(reverse("scan-slice-png", args=[world["scan"].pk, 7]), HTTP_ACCEPT="image/png")
    assert response.status_code == 404 and "outside" in response.json()["detail"]


def test_label_slice_png_uses_the_label_set_colours_with_transparent_background(client, world):
    label = world["label_set"].labels.get(value=2)
    label.colour = "#12ab34"
    label.save()
    response = client.get(reverse("scan-labels-png", args=[world["scan"].pk, 1]))
    image = Image.open(io.BytesIO(response.content)).convert("RGBA")
    rgba = np.asarray(image)
    assert rgba.shape == (512, 512, 4)
    assert rgba[15, 15].tolist() == [0x12, 0xAB, 0x34, 255]
    assert rgba[0, 0, 3] == 0  # background is transparent


def test_label_slice_raw_equals_the_reference(client, world):
    response = client.get(reverse("scan-labels-raw", args=[world["scan"].pk, 1]))
    assert response["X-Dtype"] == "<u1"
    np.testing.assert_array_equal(np.frombuffer(response.content, np.uint8).reshape(512, 512), world["labels"][1])


def test_scan_without_reference_says_so(client, world):
    other = scan_with_volume(world["scan"].pool, world["hu"][:1], name="no labels")
    response = client.get(reverse("scan-labels-png", args=[other.pk, 0]))
    assert response.status_code == 404 and "has no reference label map" in response.json()["detail"]


def test_uncertainty_is_404_with_a_clear_message_until_a_map_exists(client, world):
    response = client.get(reverse("scan-uncertainty-png", args=[world["scan"].pk, 0]))
    assert response.status_code == 404
    assert "No uncertainty map exists for scan" in response.json()["detail"]


def test_uncertainty_slice_serves_the_stored_map(client, world):
    u = np.zeros((3, 512, 512), np.float32)
    u[1, 0, :3] = [0.0, 0.01, 0.02]
    segmentation_with_uncertainty(world["project"], world["scan"], u)
    raw = client.get(reverse("scan-uncertainty-raw", args=[world["scan"].pk, 1]))
    assert raw["X-Dtype"] == "<f4"
    values = np.frombuffer(raw.content, "<f4").reshape(512, 512)
    np.testing.assert_allclose(values[0, :3], [0.0, 0.01, 0.02], rtol=1e-3)  # stored as float16
    png = client.get(reverse("scan-uncertainty-png", args=[world["scan"].pk, 1]), {"vmax": 0.02})
    assert _png(png)[0, :3].tolist() == [0, 128, 255]

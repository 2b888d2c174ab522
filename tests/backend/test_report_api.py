"""The atrophy and fat report: CSV against hand-computed values, the one-page HTML, access and bad input."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pydicom
import pytest

from backend.acquisition.models import Segmentation
from backend.imaging.models import Scan
from backend.imaging.services import scan_import_file
from backend.imaging.volumes import save_array
from mltasks.geometry import Geometry
from mltasks.io.dicom_write import write_dicom_series
from tests.backend.biomech_world import client, segmented, url, volumes, world
from tests.backend.factories import PoolFactory, segmentation_with_uncertainty, use_tmp_storage

pytestmark = pytest.mark.django_db
VOXEL_ML = 2.0 * 1.5 * 1.25 / 1000.0  # biomech_world.GEOMETRY


@pytest.fixture
def w(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)
    return world()


def rows_of(response) -> dict[str, dict]:
    return {row["name"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}


def test_the_csv_has_the_hand_computed_figures(w):
    response = client(w["annotator"]).get(url(w["seg"], "muscle-report.csv"))
    assert response.status_code == 200 and response["Content-Type"] == "text/csv"
    rows = rows_of(response)
    left, right, femur = rows["psoas_left"], rows["psoas_right"], rows["femur"]
    # psoas_left: 6 x 8 x 8 = 384 voxels, a quarter (2 of 8 columns) at -100 HU, the rest 50 HU.
    assert int(left["voxels"]) == 384 and float(left["volume_ml"]) == pytest.approx(384 * VOXEL_ML)
    assert float(left["mean_hu"]) == pytest.approx(0.25 * -100 + 0.75 * 50)  # 12.5
    assert float(left["median_hu"]) == 50.0
    assert float(left["fat_fraction"]) == 0.25
    # psoas_right: 6 x 8 x 4 = 192 voxels at 40 HU, no fat; left/right = 384 / 192 on both twins.
    assert float(right["fat_fraction"]) == 0.0 and float(right["median_hu"]) == 40.0
    assert float(left["left_right_volume_ratio"]) == 2.0 and float(right["left_right_volume_ratio"]) == 2.0
    assert left["twin"] == "psoas_right" and femur["twin"] == "" and femur["left_right_volume_ratio"] == ""
    assert float(femur["mean_hu"]) == 700.0 and left["fat_hu_min"] == "-190.0" and left["fat_hu_max"] == "-30.0"


def test_the_fat_range_comes_from_the_settings_or_the_request(w, settings):
    settings.MYOLABEL_FAT_HU_MIN, settings.MYOLABEL_FAT_HU_MAX = -100.0, 45.0
    rows = rows_of(client(w["lead"]).get(url(w["seg"], "muscle-report.csv")))
    assert float(rows["psoas_left"]["fat_fraction"]) == 0.25  # -100 in, 50 out
    assert float(rows["psoas_right"]["fat_fraction"]) == 1.0  # 40 in
    rows = rows_of(client(w["lead"]).get(url(w["seg"], "muscle-report.csv") + "?fat_min=-150&fat_max=60"))
    assert float(rows["psoas_left"]["fat_fraction"]) == 1.0 and rows["psoas_left"]["fat_hu_max"] == "60.0"


@pytest.mark.parametrize(("query", "message"), [
    ("fat_min=-30&fat_max=-190", "fat range -30 to -190 HU: the lower bound must be below the upper one"),
    ("fat_max=-500", "fat range -190 to -500 HU: the lower bound must be below the upper one"),
    ("fat_min=abc", "fat_min: A valid number is required."),
    ("fat_min=-5000", "fat_min: Ensure this value is greater than or equal to -1024."),
])
def test_a_bad_fat_range_is_refused_with_a_message(w, query, message):
    for name in ("muscle-report.csv", "muscle-report.html"):
        response = client(w["lead"]).get(url(w["seg"], name) + "?" + query)
        assert response.status_code == 400, response.content
        assert response.json()["detail"] == message


def test_the_page_names_the_patient_and_embeds_its_figure_as_a_data_png(w):
    response = client(w["lead"]).get(url(w["seg"], "muscle-report.html"))
    assert response.status_code == 200 and response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "PAT-0042" in page and "first" in page and "psoas_left" in page
    assert re.search(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)
    # Nothing the pages' Content-Security-Policy would block: no script, no style, no remote resource.
    assert "<script" not in page and "<style" not in page and "style=" not in page and "http" not in page
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "Compared with" not in page  # the patient has no other scan


def test_the_same_patients_other_scan_is_shown_side_by_side(w):
    labels, hu = volumes()
    smaller = np.where(labels == 1, 0, labels).astype(np.uint8)  # the left psoas gone on the later scan
    later = segmented(w["project"], w["pool"], name="second", patient_id="PAT-0042", labels=smaller, hu=hu)
    segmented(w["project"], PoolFactory(), name="someone else", patient_id="PAT-9999")
    page = client(w["lead"]).get(url(later, "muscle-report.html")).content.decode()
    assert "Compared with" in page and "first (" in page and "someone else" not in page
    line = re.search(r"<th scope=\"row\">psoas_left</th>(.*?)</tr>", page, re.S).group(1)
    cells = re.findall(r"<td align=\"right\">(.*?)</td>", line)
    # This scan: no left psoas; the earlier one: 384 voxels, 12.5 HU mean, 25 % fat, left/right 2.00.
    assert cells[:5] == ["–"] * 5
    assert cells[5:] == [f"{384 * VOXEL_ML:.1f}", "12", "50", "25.0", "2.00"]


def test_a_scan_without_dicom_identity_says_so(w):
    other = segmented(w["project"], w["pool"], name="nifti scan")
    page = client(w["lead"]).get(url(other, "muscle-report.html")).content.decode()
    assert "not recorded (the scan was not imported from DICOM)" in page and "Compared with" not in page


def test_non_members_get_404_and_unfinished_segmentations_409(w):
    for name in ("muscle-report.csv", "muscle-report.html"):
        assert client(w["outsider"]).get(url(w["seg"], name)).status_code == 404
    Segmentation.objects.filter(pk=w["seg"].pk).update(status=Segmentation.Status.FAILED)
    response = client(w["lead"]).get(url(w["seg"], "muscle-report.csv"))
    assert response.status_code == 409 and response.json()["code"] == "not_done"


def test_a_dicom_import_is_named_by_its_original_files(w, tmp_path):
    """Name, birth date, sex and study date come from the stored DICOM files; XSS-proof on the page."""
    geometry = Geometry(shape=(4, 48, 48), spacing=(2.0, 5.0, 5.0), origin=(-120.0, -120.0, 10.0))
    hu = np.full(geometry.shape, -1000, np.int16)
    hu[:, 6:42, 6:42] = 40
    for path in write_dicom_series(hu, geometry, tmp_path / "ct", patient_id="PAT-7"):
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane<b>", "19500102", "F"
        ds.StudyDate = "20261130"
        ds.save_as(path)
    [result] = scan_import_file(pool=w["pool"], path=tmp_path / "ct", name="ct")
    assert result["status"] == "imported", result
    scan = Scan.objects.get(pk=result["scan_id"])
    seg = segmentation_with_uncertainty(w["project"], scan, np.zeros(scan.shape, np.float16))
    labels = np.zeros(scan.shape, np.uint8)
    labels[:, 4:10, 4:10] = 1
    seg.labels = save_array(labels, "acquisition/segmentations/labels.npy")
    seg.save(update_fields=["labels"])
    page = client(w["lead"]).get(url(seg, "muscle-report.html")).content.decode()
    assert "<th>Patient ID</th><td>PAT-7</td>" in page
    assert "<th>Patient name</th><td>Doe Jane&lt;b&gt;</td>" in page
    assert "<th>Birth date</th><td>1950-01-02</td>" in page and "<th>Sex</th><td>F</td>" in page
    assert "<th>Study date</th><td>2026-11-30</td>" in page

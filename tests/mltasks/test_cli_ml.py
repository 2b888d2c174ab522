"""``python -m mltasks train|segment|evaluate`` on a tiny synthetic CT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from mltasks.__main__ import main
from mltasks.geometry import Geometry
from mltasks.io import write_volume

# 45 deg about z: the outputs must keep a non-trivial direction, origin and spacing.
C = float(np.sqrt(0.5))
GEOMETRY = Geometry(
    shape=(6, 60, 60),
    spacing=(3.0, 6.0, 6.0),
    origin=(-170.0, 12.0, 40.0),
    direction=(C, -C, 0, C, C, 0, 0, 0, 1),
)


@pytest.fixture
def ct(tmp_path):
    """A body (40 HU) with a muscle block (label 4) and a bone (label 1) in air."""
    yy, xx = np.mgrid[:60, :60]
    body = (yy - 30) ** 2 / 20**2 + (xx - 30) ** 2 / 25**2 < 1
    hu = np.where(body, 40, -1000).astype(np.int16)
    labels = np.zeros(GEOMETRY.shape, np.uint8)
    labels[:, 22:36, 15:28] = 4
    labels[:, 25:32, 36:42] = 1
    hu = np.broadcast_to(hu, GEOMETRY.shape).copy()
    hu[labels == 1] = 700
    hu[labels == 4] = 60
    paths = {name: tmp_path / f"{name}.nii.gz" for name in ("ct", "labels", "body")}
    write_volume(hu, GEOMETRY, paths["ct"])
    write_volume(labels, GEOMETRY, paths["labels"])
    write_volume(np.broadcast_to(body, GEOMETRY.shape).astype(np.uint8), GEOMETRY, paths["body"])
    return paths


def assert_same_grid(path, geometry: Geometry) -> None:
    got = Geometry.from_sitk(sitk.ReadImage(str(path)))
    assert got.shape == geometry.shape
    assert np.allclose(got.spacing, geometry.spacing)
    assert np.allclose(got.origin, geometry.origin)
    assert np.allclose(got.direction, geometry.direction)


def _train_muscles(ct, model) -> list[str]:
    """argv of ``train`` on the phantom's muscle labels, writing ``model``."""
    return ["train", "--image", str(ct["ct"]), "--labels", str(ct["labels"]), "--out", str(model)]


def test_train_then_segment_writes_maps_on_the_input_grid(ct, tmp_path):
    common = ["--profile", "tiny", "--epochs", "2", "--batch-size", "4", "--threads", "1"]
    assert main([*_train_muscles(ct, tmp_path / "m.pt"), *common]) == 0
    body_args = ["--image", str(ct["ct"]), "--labels", str(ct["body"]), "--task", "body"]
    assert main(["train", *body_args, "--out", str(tmp_path / "b.pt"), *common]) == 0
    out = {
        "labels": tmp_path / "seg.nii.gz",
        "u": tmp_path / "u.nii.gz",
        "report": tmp_path / "r.json",
    }
    status = main([
        "segment", "--model", str(tmp_path / "m.pt"), "--body-model", str(tmp_path / "b.pt"),
        "--image", str(ct["ct"]), "--out-labels", str(out["labels"]), "--out-uncertainty", str(out["u"]),
        "--report", str(out["report"]), "--samples", "2",
    ])  # fmt: skip
    assert status == 0
    assert_same_grid(out["labels"], GEOMETRY)
    assert_same_grid(out["u"], GEOMETRY)
    assert sitk.ReadImage(str(out["u"])).GetPixelID() == sitk.sitkFloat32
    report = json.loads(out["report"].read_text())
    assert len(report["structures"]) == 22 and report["t_samples"] == 2
    row = report["structures"][0]
    assert {"name", "volume_ml", "mean_hu", "psv"} <= set(row)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out["labels"])))
    voxels = {r["value"]: r["voxels"] for r in report["structures"]}
    assert all(voxels[v] == int((labels == v).sum()) for v in voxels)


def test_resume_extends_a_training_run(ct, tmp_path):
    args = _train_muscles(ct, tmp_path / "m.pt")
    args += ["--profile", "tiny", "--batch-size", "4", "--threads", "1", "--patience", "0"]
    assert main([*args, "--epochs", "1"]) == 0
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    assert len(torch.load(tmp_path / "m.pt", weights_only=True)["run"]["history"]) == 2


def test_evaluate_scores_a_perfect_prediction(ct, tmp_path, capsys):
    assert main(["evaluate", "--pred", str(ct["labels"]), "--ref", str(ct["labels"])]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mean_dice"] == 1.0 and set(result["per_structure"]) == {"1", "4"}
    assert result["per_structure"]["4"]["asd"] == 0.0


def test_calibrate_fits_a_pdc_line_by_k_fold(ct, tmp_path):
    shifted = tmp_path / "ct2.nii.gz"
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(ct["ct"])))
    write_volume(np.roll(hu, 3, axis=2), GEOMETRY, shifted)
    labels2 = tmp_path / "labels2.nii.gz"
    write_volume(
        np.roll(sitk.GetArrayFromImage(sitk.ReadImage(str(ct["labels"]))), 3, axis=2),
        GEOMETRY,
        labels2,
    )
    out = tmp_path / "pdc.json"
    args = [
        "calibrate",
        "--image",
        str(ct["ct"]),
        "--labels",
        str(ct["labels"]),
        "--image",
        str(shifted),
    ]
    args += [
        "--labels",
        str(labels2),
        "--k",
        "2",
        "--profile",
        "tiny",
        "--epochs",
        "1",
        "--samples",
        "2",
    ]
    assert main([*args, "--batch-size", "4", "--threads", "1", "--out", str(out)]) == 0
    fitted = json.loads(out.read_text())
    assert fitted["n_pairs"] == 4  # 2 held-out volumes x 2 structures present
    assert {"alpha", "beta"} <= set(fitted)


def test_phantom_writes_every_one_of_several_phantoms(tmp_path, capsys):
    # Issue 15 item 13: the progress bar closed after the first phantom broke the second.
    assert main(["phantom", "--n", "2", "--out", str(tmp_path), "--size", "24", "24", "10", "--seed", "5"]) == 0
    printed = capsys.readouterr().out
    for seed in (5, 6):
        labels = sitk.ReadImage(str(tmp_path / f"phantom_{seed:05d}_labels.nii.gz"))
        assert sitk.GetArrayFromImage(labels).shape == (10, 24, 24)
        assert (tmp_path / f"phantom_{seed:05d}_ct.nii.gz").is_file()
        assert f"phantom_{seed:05d}_ct.nii.gz" in printed

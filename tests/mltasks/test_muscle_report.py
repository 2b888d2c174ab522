"""Atrophy and fat figures against values worked out by hand on a tiny volume."""

from __future__ import annotations

import numpy as np
import pytest

from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry
from mltasks.labels import Label, LabelSet
from mltasks.muscle_report import muscle_report, png_data_url, report_csv, report_figure_png

SIDED = LabelSet(labels=(
    Label(1, "psoas_left", "muscle", "#ff0000", "psoas", "left"),
    Label(2, "psoas_right", "muscle", "#00ff00", "psoas", "right"),
    Label(3, "sacrum", "bone", "#0000ff", "sacrum", ""),
    Label(4, "iliacus_left", "muscle", "#ffff00", "iliacus", "left"),  # no right twin
))
# 2 x 2 x 2 mm voxels: 8 uL = 0.008 mL each.
GEOMETRY = Geometry(shape=(1, 2, 6), spacing=(2.0, 2.0, 2.0))


def volume():
    labels = np.array([[[1, 1, 1, 1, 2, 2],
                        [3, 3, 3, 0, 0, 0]]], np.uint8)
    hu = np.array([[[-100, -190, 40, 60, -31, 50],
                    [700, 900, 1000, -1000, 0, 0]]], np.int16)
    return labels, hu


def by_name(rows):
    return {row["name"]: row for row in rows}


def test_volumes_hu_and_fat_match_the_hand_computed_values():
    rows = by_name(muscle_report(*volume(), GEOMETRY, SIDED))
    left, right, sacrum = rows["psoas_left"], rows["psoas_right"], rows["sacrum"]
    # psoas_left: HU -100, -190, 40, 60 -> mean -47.5, median (-100 + 40) / 2 = -30,
    # fat (-190..-30 inclusive): -100 and -190 -> 2 of 4.
    assert left["voxels"] == 4 and left["volume_ml"] == pytest.approx(0.032)
    assert left["mean_hu"] == pytest.approx(-47.5) and left["median_hu"] == -30.0
    assert left["fat_fraction"] == 0.5
    # psoas_right: -31 (fat) and 50 -> mean 9.5, median 9.5, fat 1 of 2.
    assert right["volume_ml"] == pytest.approx(0.016)
    assert right["mean_hu"] == pytest.approx(9.5) and right["median_hu"] == 9.5 and right["fat_fraction"] == 0.5
    # sacrum: 700, 900, 1000 -> median 900 (odd count), no fat.
    assert sacrum["median_hu"] == 900.0 and sacrum["mean_hu"] == pytest.approx(866.6667, abs=1e-3)
    assert sacrum["fat_fraction"] == 0.0


def test_twins_get_the_left_over_right_volume_ratio_and_others_none():
    rows = by_name(muscle_report(*volume(), GEOMETRY, SIDED))
    assert rows["psoas_left"]["left_right_volume_ratio"] == pytest.approx(2.0)
    assert rows["psoas_right"]["left_right_volume_ratio"] == pytest.approx(2.0)
    assert rows["psoas_left"]["twin"] == "psoas_right" and rows["psoas_right"]["twin"] == "psoas_left"
    assert rows["sacrum"]["twin"] is None and rows["sacrum"]["left_right_volume_ratio"] is None
    assert rows["iliacus_left"]["left_right_volume_ratio"] is None


def test_an_empty_structure_has_no_hu_figures():
    empty = by_name(muscle_report(*volume(), GEOMETRY, SIDED))["iliacus_left"]
    assert empty["voxels"] == 0 and empty["volume_ml"] == 0.0
    assert empty["mean_hu"] is None and empty["median_hu"] is None and empty["fat_fraction"] is None


def test_the_fat_range_is_a_parameter_and_inclusive():
    rows = by_name(muscle_report(*volume(), GEOMETRY, SIDED, fat_hu=(-100, 40)))
    # psoas_left: -100 and 40 are inside, -190 and 60 outside.
    assert rows["psoas_left"]["fat_fraction"] == 0.5
    assert rows["psoas_left"]["fat_hu_min"] == -100.0 and rows["psoas_left"]["fat_hu_max"] == 40.0
    assert rows["psoas_right"]["fat_fraction"] == 0.5  # -31 in, 50 out


def test_the_median_of_a_large_random_volume_equals_numpy():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, size=(6, 30, 30)).astype(np.uint8)
    hu = rng.integers(-1024, 1500, size=labels.shape).astype(np.int16)
    rows = muscle_report(labels, hu, Geometry(shape=labels.shape, spacing=(1.0, 1.0, 1.0)), SIDED)
    for row in rows:
        values = hu[labels == row["value"]]
        assert row["median_hu"] == float(np.median(values))
        assert row["mean_hu"] == pytest.approx(float(values.mean()))
        assert row["fat_fraction"] == pytest.approx(float(((values >= -190) & (values <= -30)).mean()))


@pytest.mark.parametrize("fat", [(-30, -190), (0, 0), (float("nan"), 1)])
def test_it_refuses_an_empty_or_reversed_fat_range(fat):
    with pytest.raises(ValueError, match="the lower bound must be below the upper one"):
        muscle_report(*volume(), GEOMETRY, SIDED, fat_hu=fat)


def test_it_refuses_arrays_of_different_shapes():
    labels, hu = volume()
    with pytest.raises(InvalidArray, match="must have one shape"):
        muscle_report(labels, hu[:, :1], GEOMETRY, SIDED)


def test_the_csv_has_one_line_per_structure_and_blank_for_none():
    lines = report_csv(muscle_report(*volume(), GEOMETRY, SIDED)).splitlines()
    assert lines[0].split(",")[:8] == ["name", "value", "kind", "voxels", "volume_ml", "mean_hu", "median_hu",
                                       "fat_fraction"]
    assert len(lines) == 5
    assert lines[4].startswith("iliacus_left,4,muscle,0,0.0,,,,")


def test_the_figure_is_a_png_for_one_or_two_scans():
    rows = muscle_report(*volume(), GEOMETRY, SIDED)
    for series in ([("scan 1", rows)], [("scan 1", rows), ("scan 2", rows[:2])]):
        png = report_figure_png(series)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png_data_url(b"\x89PNG").startswith("data:image/png;base64,iVBORw")

"""Slicer .seg.nrrd: written with Slicer's fields and geometry, read back to the same labels."""

from __future__ import annotations

import nrrd
import numpy as np
import pytest
import SimpleITK as sitk

from mltasks.errors import InvalidLabelMap
from mltasks.geometry import Geometry
from mltasks.labels import Label, LabelSet, default_label_set
from mltasks.slicer_seg import UnmappedSegments, read_seg_nrrd, seg_nrrd_labels, write_seg_nrrd

LABELS = LabelSet(labels=(Label(1, "psoas_left", "muscle", "#ff0000", "psoas", "left"),
                          Label(2, "psoas_right", "muscle", "#00ff80", "psoas", "right"),
                          Label(3, "never_used", "muscle", "#0000ff", "x", "")))
OBLIQUE = Geometry(shape=(4, 5, 6), spacing=(2.5, 0.7, 0.8), origin=(-100.0, 20.0, 300.0),
                   direction=(0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))


def labels():
    out = np.zeros(OBLIQUE.shape, np.uint8)
    out[1:3, 1:4, 0:2] = 1
    out[0, 4, 5] = 2
    return out


def write(tmp_path, content: bytes, name="x.seg.nrrd"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_the_header_has_slicer_segment_fields_and_lps_geometry(tmp_path):
    path = write(tmp_path, write_seg_nrrd(labels(), OBLIQUE, LABELS))
    data, header = nrrd.read(str(path), index_order="C")
    assert header["space"] == "left-posterior-superior"
    np.testing.assert_allclose(header["space origin"], OBLIQUE.origin)
    # x axis steps 0.8 mm along (0, 1, 0) of LPS, y 0.7 mm along (-1, 0, 0), z 2.5 mm along z.
    np.testing.assert_allclose(header["space directions"], [[0, 0.8, 0], [-0.7, 0, 0], [0, 0, 2.5]], atol=1e-12)
    assert header["Segment0_Name"] == "psoas_left" and header["Segment0_LabelValue"] == "1"
    assert header["Segment0_Layer"] == "0" and header["Segment0_Color"] == "1 0 0"
    assert header["Segment0_Extent"] == "0 1 1 3 1 2"  # x0 x1 y0 y1 z0 z1
    assert header["Segment1_Name"] == "psoas_right" and header["Segment1_Extent"] == "5 5 4 4 0 0"
    assert "Segment2_Name" not in header  # absent structures are not segments
    np.testing.assert_array_equal(data, labels())


def test_simpleitk_places_the_file_where_the_geometry_says(tmp_path):
    path = write(tmp_path, write_seg_nrrd(labels(), OBLIQUE, LABELS))
    image = sitk.ReadImage(str(path))
    np.testing.assert_allclose(image.GetDirection(), OBLIQUE.direction, atol=1e-12)
    np.testing.assert_allclose(image.GetOrigin(), OBLIQUE.origin)
    np.testing.assert_allclose(image.GetSpacing(), OBLIQUE.spacing[::-1])


def test_a_round_trip_gives_back_the_same_labels_and_grid(tmp_path):
    path = write(tmp_path, write_seg_nrrd(labels(), OBLIQUE, LABELS))
    back, geometry = seg_nrrd_labels(path, LABELS)
    np.testing.assert_array_equal(back, labels())
    assert geometry.shape == OBLIQUE.shape
    np.testing.assert_allclose(geometry.spacing, OBLIQUE.spacing)
    np.testing.assert_allclose(geometry.origin, OBLIQUE.origin)
    np.testing.assert_allclose(geometry.direction, OBLIQUE.direction, atol=1e-12)


def test_segments_map_by_name_onto_another_label_sets_values(tmp_path):
    path = write(tmp_path, write_seg_nrrd(labels(), OBLIQUE, LABELS))
    renumbered = LabelSet(labels=(Label(7, "psoas_right", "muscle", "#000000", "psoas", "right"),
                                  Label(9, "psoas_left", "muscle", "#000000", "psoas", "left")))
    back, _ = seg_nrrd_labels(path, renumbered)
    np.testing.assert_array_equal(back, np.select([labels() == 1, labels() == 2], [9, 7], 0))


def test_unmapped_segment_names_are_all_listed(tmp_path):
    path = write(tmp_path, write_seg_nrrd(labels(), OBLIQUE, LABELS))
    with pytest.raises(UnmappedSegments, match="segments 'psoas_left', 'psoas_right' have no structure") as caught:
        seg_nrrd_labels(path, default_label_set(), name="mine.seg.nrrd")
    assert caught.value.names == ["psoas_left", "psoas_right"]
    assert str(caught.value).startswith("mine.seg.nrrd: ")


def slicer_4d(tmp_path, layers: np.ndarray, segments: list[tuple[str, int, int]], space="right-anterior-superior"):
    """A 4D file as Slicer writes overlapping segments: layer axis first in NRRD order (kind list)."""
    header = {"space": space, "kinds": ["list", "domain", "domain", "domain"],
              "space directions": np.array([[np.nan] * 3, [-1.0, 0, 0], [0, -1.0, 0], [0, 0, 2.0]]),
              "space origin": np.array([50.0, 60.0, 7.0])}
    for k, (name, value, layer) in enumerate(segments):
        header |= {f"Segment{k}_Name": name, f"Segment{k}_LabelValue": str(value), f"Segment{k}_Layer": str(layer),
                   f"Segment{k}_Color": "0.5 0.5 0.5"}
    path = tmp_path / "four.seg.nrrd"
    nrrd.write(str(path), np.moveaxis(layers, 0, -1).copy(), header, index_order="C")
    return path


def test_a_4d_ras_file_with_layers_reads_in_lps(tmp_path):
    layers = np.zeros((2, 3, 4, 5), np.uint8)
    layers[0, 0, 0, 0] = 1
    layers[1, 2, 3, 4] = 1
    path = slicer_4d(tmp_path, layers, [("psoas_left", 1, 0), ("psoas_right", 1, 1)])
    back, geometry = seg_nrrd_labels(path, LABELS)
    assert back[0, 0, 0] == 1 and back[2, 3, 4] == 2 and back.sum() == 3
    np.testing.assert_allclose(geometry.origin, (-50.0, -60.0, 7.0))  # RAS -> LPS
    np.testing.assert_allclose(geometry.direction, (1, 0, 0, 0, 1, 0, 0, 0, 1), atol=1e-12)
    np.testing.assert_allclose(geometry.spacing, (2.0, 1.0, 1.0))


def test_overlapping_segments_are_refused(tmp_path):
    layers = np.ones((2, 2, 2, 2), np.uint8)
    path = slicer_4d(tmp_path, layers, [("psoas_left", 1, 0), ("psoas_right", 1, 1)])
    with pytest.raises(InvalidLabelMap, match="'psoas_right' overlaps other segments in 8 voxels"):
        seg_nrrd_labels(path, LABELS)


def test_a_file_that_is_not_nrrd_or_not_a_segmentation_is_refused(tmp_path):
    with pytest.raises(InvalidLabelMap, match="not a readable NRRD file"):
        read_seg_nrrd(write(tmp_path, b"hello"))
    plain = tmp_path / "plain.nrrd"
    nrrd.write(str(plain), np.zeros((2, 2, 2), np.uint8), {"space": "left-posterior-superior",
                                                           "space directions": np.eye(3), "space origin": [0, 0, 0]})
    with pytest.raises(InvalidLabelMap, match="no Segment0_Name field: not a Slicer segmentation"):
        read_seg_nrrd(plain)


def test_an_older_file_without_layer_fields_has_one_layer_per_segment(tmp_path):
    layers = np.zeros((2, 2, 3, 4), np.uint8)
    layers[0, 0, 0, 0] = 1
    layers[1, 1, 2, 3] = 1
    header = {"space": "left-posterior-superior", "kinds": ["list", "domain", "domain", "domain"],
              "space directions": np.array([[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]),
              "space origin": np.zeros(3), "Segment0_ID": "a", "Segment0_Name": "psoas_right",
              "Segment1_ID": "b", "Segment1_Name": "psoas_left"}
    path = tmp_path / "old.seg.nrrd"
    nrrd.write(str(path), np.moveaxis(layers, 0, -1).copy(), header, index_order="C")
    back, _ = seg_nrrd_labels(path, LABELS)
    assert back[0, 0, 0] == 2 and back[1, 2, 3] == 1 and np.count_nonzero(back) == 2

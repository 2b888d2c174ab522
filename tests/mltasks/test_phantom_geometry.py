"""A phantom with a real CT's geometry: wide field of view, 3 mm slices, table and both arms."""

from __future__ import annotations

import cc3d
import numpy as np
import pytest

from mltasks.grid import working_grid
from mltasks.phantom import generate_phantom
from mltasks.phantom.tissue import T

# A 160 x 512 x 512, 0.98 x 0.98 x 3 mm CT scaled down: the same 480 mm x 500 mm x 500 mm.
SHAPE = (32, 96, 96)
SPACING = (15.0, 500.0 / 96, 500.0 / 96)


@pytest.fixture(scope="module")
def pair():
    with_arms = generate_phantom(3, shape=SHAPE, spacing=SPACING, arms=True)
    without = generate_phantom(3, shape=SHAPE, spacing=SPACING)
    return with_arms, without


def _arms(ph) -> np.ndarray:
    return ph.tissue >= T.ARM_SKIN


def test_table_and_both_arms_are_dense_and_outside_the_body(pair):
    ph, _ = pair
    arms = _arms(ph)
    table = (ph.tissue >= T.TABLE_SHELL) & ~arms
    assert table.any() and arms.any()
    assert not (arms & ph.body).any() and not (table & ph.body).any()
    assert (ph.labels[arms] == 0).all()
    dense_outside = (ph.hu > -500) & ~ph.body
    assert dense_outside[arms].mean() > 0.9  # skin, fat, muscle and bone are all above -500 HU
    x = ph.geometry.origin[0] + np.arange(SHAPE[2]) * SPACING[2]
    midline = ph.params.shift[0]
    cols = np.flatnonzero(arms.any(axis=(0, 1)))
    assert (x[cols] < midline).any() and (x[cols] > midline).any()
    # the arm is skin, fat, muscle and bone
    for cls in (T.ARM_SKIN, T.ARM_FAT, T.ARM_MUSCLE, T.ARM_CORTEX, T.ARM_MARROW):
        assert (ph.tissue == cls).any(), cls.name


def test_each_arm_is_a_component_of_its_own(pair):
    ph, _ = pair
    arms = _arms(ph)
    cc = cc3d.connected_components(ph.tissue != T.AIR, connectivity=26)
    arm_components = set(np.unique(cc[arms]).tolist())
    table = (ph.tissue >= T.TABLE_SHELL) & ~arms
    assert not arm_components & set(np.unique(cc[ph.body]).tolist())
    assert not arm_components & set(np.unique(cc[table]).tolist())
    x = ph.geometry.origin[0] + np.arange(SHAPE[2]) * SPACING[2]
    right = arms & (x < ph.params.shift[0])[None, None, :]
    assert not set(np.unique(cc[right]).tolist()) & set(np.unique(cc[arms & ~right]).tolist())


def test_the_body_is_unchanged_by_the_arms(pair):
    ph, plain = pair
    np.testing.assert_array_equal(ph.labels, plain.labels)
    np.testing.assert_array_equal(ph.body, plain.body)
    np.testing.assert_array_equal(ph.hu[ph.body], plain.hu[plain.body])
    assert not _arms(plain).any()
    outside = ~_arms(ph)
    np.testing.assert_array_equal(ph.tissue[outside], plain.tissue[outside])


def test_the_working_grid_keeps_the_arms_and_the_table(pair):
    ph, _ = pair
    grid = working_grid(ph.hu, ph.geometry)
    dense = ph.hu > -500
    assert int((grid.crop(ph.hu) > -500).sum()) == int(dense[grid.z_indices].sum())
    assert grid.z_step == 1 and grid.geometry.spacing == ph.geometry.spacing


def test_arms_are_off_by_default_and_reproducible():
    a = generate_phantom(5, shape=(8, 48, 48), spacing=(60.0, 500 / 48, 500 / 48), arms=True)
    b = generate_phantom(5, shape=(8, 48, 48), spacing=(60.0, 500 / 48, 500 / 48), arms=True)
    assert a.hu.tobytes() == b.hu.tobytes()
    assert not (generate_phantom(5, shape=(8, 48, 48)).tissue >= T.ARM_SKIN).any()

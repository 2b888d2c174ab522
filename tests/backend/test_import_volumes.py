"""Stored volumes: slab-wise copy onto the working grid, memory-mapped reads, remote storage cache, demo seeding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.core.files.storage import FileSystemStorage, Storage

from backend.imaging import volumes
from backend.imaging.demo import seed_demo_pool
from backend.imaging.importing import ReadSource, Source, working_volume
from backend.imaging.models import ReferenceLabelMap, Scan
from backend.imaging.volumes import local_path, save_array, scan_volume
from mltasks.errors import InvalidArray
from mltasks.geometry import Geometry
from mltasks.grid import working_grid
from tests.backend.factories import UserFactory, stored_files, use_tmp_storage


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def _read(hu: np.ndarray, geometry: Geometry) -> ReadSource:
    return ReadSource(source=Source(name="ct.nii.gz", path=Path("ct.nii.gz")), hu=hu, geometry=geometry,
                      content_hash="")


def test_slab_wise_copy_equals_the_working_grids_crop():
    # Oblique, 0.35 mm slices: thinned to every third (1.05 mm), 67 working slices, so three slabs.
    c, s = np.cos(0.3), np.sin(0.3)
    geometry = Geometry(shape=(200, 40, 30), spacing=(0.35, 2.0, 2.5), origin=(10.0, -20.0, 5.0),
                        direction=(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    hu = np.full(geometry.shape, -1000.0, np.float32)
    hu[:, 10:30, 8:20] = np.random.default_rng(0).normal(0, 300, (200, 20, 12))
    fractions = []
    out, grid = working_volume(_read(hu, geometry), on_fraction=fractions.append)
    assert grid == working_grid(hu, geometry)
    assert (grid.z_step, grid.n_slices) == (3, 67)
    assert out.dtype == np.int16 and out.shape == grid.shape
    np.testing.assert_array_equal(out, np.rint(grid.crop(hu)).astype(np.int16))
    assert fractions == [32 / 67, 64 / 67, 1.0]


def test_int16_hu_are_copied_exactly():
    geometry = Geometry(shape=(3, 20, 20), spacing=(2.0, 1.0, 1.0))
    hu = np.full(geometry.shape, -1024, np.int16)
    hu[:, 5:15, 5:15] = np.random.default_rng(1).integers(-1000, 3000, (3, 10, 10))
    out, grid = working_volume(_read(hu, geometry))
    np.testing.assert_array_equal(out, grid.crop(hu))


def test_a_ct_of_air_only_fails_with_the_sources_name():
    geometry = Geometry(shape=(2, 8, 8), spacing=(2.0, 1.0, 1.0))
    with pytest.raises(InvalidArray, match=r"^ct\.nii\.gz: no voxel lies above -500 HU"):
        working_volume(_read(np.full(geometry.shape, -1000, np.int16), geometry))


class RemoteStorage(Storage):
    """A storage without local paths, like S3 (files kept in a folder behind it); counts downloads."""

    opened = 0

    def __init__(self, location) -> None:
        self.inner = FileSystemStorage(location=location)

    def _open(self, name, mode="rb"):
        RemoteStorage.opened += 1
        return self.inner._open(name, mode)

    def _save(self, name, content):
        return self.inner._save(name, content)

    def exists(self, name):
        return self.inner.exists(name)

    def delete(self, name):
        self.inner.delete(name)


def test_remote_arrays_are_downloaded_once_into_the_cache(settings, tmp_path):
    storage = RemoteStorage(location=tmp_path / "bucket")
    array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    name = save_array(array, "scans/a.npy", storage=storage)
    first = np.load(local_path(name, storage=storage), mmap_mode="r")
    second = local_path(name, storage=storage)
    np.testing.assert_array_equal(first, array)
    assert RemoteStorage.opened == 1
    assert second == settings.MYOLABEL_CACHE_DIR / "storage" / name
    assert not list((settings.MYOLABEL_CACHE_DIR / "storage" / "scans").glob("*.part"))


@pytest.mark.django_db
def test_scan_volume_is_memory_mapped_from_local_storage(settings):
    name = save_array(np.full((2, 2, 2), 7, np.int16), "scans/v.npy")
    scan = Scan(volume=name)
    volume = scan_volume(scan)
    assert isinstance(volume, np.memmap) and not volume.flags.writeable
    assert volume.sum() == 56 and volumes.local_path(name) == settings.MEDIA_ROOT / name


@pytest.mark.django_db
def test_demo_pool_seeding_is_idempotent(settings):
    admin = UserFactory(username="admin")
    pool = seed_demo_pool(admin, n=1, shape=(6, 48, 48), slice_mm=4.0)
    files = stored_files(settings.MEDIA_ROOT)
    assert seed_demo_pool(admin, n=1, shape=(6, 48, 48), slice_mm=4.0) == pool
    assert stored_files(settings.MEDIA_ROOT) == files
    scan = Scan.objects.get(pool=pool)
    # The phantom's own six 4 mm slices; in-plane the body's box (the phantom's field of view is wider).
    assert scan.name == "phantom-000" and scan.shape[0] == 6 and scan.working_grid is not None
    reference = ReferenceLabelMap.objects.get(scan=scan)
    assert reference.label_set.name == "Hip and thigh (Hiasa 2019)"
    assert reference.labelled_slices and max(reference.labelled_slices) < 6

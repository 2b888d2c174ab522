"""Stored volumes: slab-wise resampling, memory-mapped reads, remote storage cache, demo seeding."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.storage import FileSystemStorage, Storage

from backend.imaging import volumes
from backend.imaging.demo import seed_demo_pool
from backend.imaging.importing import working_volume
from backend.imaging.models import ReferenceLabelMap, Scan
from backend.imaging.volumes import local_path, save_array, scan_volume
from mltasks.geometry import Geometry
from mltasks.preprocess import AIR_HU, network_geometry, resample
from tests.backend.factories import UserFactory, stored_files, use_tmp_storage


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def test_slab_wise_resampling_equals_one_resample_of_the_whole_volume():
    # Oblique, 0.7 mm slices: 70 working slices, so three slabs with borders between source slices.
    c, s = np.cos(0.3), np.sin(0.3)
    geometry = Geometry(shape=(100, 40, 30), spacing=(0.7, 2.0, 2.5), origin=(10.0, -20.0, 5.0),
                        direction=(c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    hu = np.random.default_rng(0).normal(0, 300, geometry.shape).astype(np.float32)
    fractions = []
    out, target = working_volume(hu, geometry, on_fraction=fractions.append)
    assert target == network_geometry(geometry, matrix=512, fov_mm=360.0, slice_interval_mm=1.0)
    assert out.dtype == np.int16 and out.shape == (70, 512, 512)
    whole = resample(hu, geometry, target, interpolation="linear", default=AIR_HU)
    np.testing.assert_array_equal(out, np.rint(whole).astype(np.int16))
    assert fractions == [32 / 70, 64 / 70, 1.0]
    assert out[0, 0, 0] == -1024  # outside the CT reads as air


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
    assert scan.name == "phantom-000" and scan.shape == (21, 512, 512)
    reference = ReferenceLabelMap.objects.get(scan=scan)
    assert reference.label_set.name == "Hip and thigh (Hiasa 2019)"
    assert reference.labelled_slices and max(reference.labelled_slices) < 21

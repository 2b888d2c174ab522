"""Zip safety: unsafe member paths, symlinks and zip bombs are refused before extraction."""

from __future__ import annotations

import stat
import tempfile
import zipfile

import numpy as np
import pytest

from mltasks.errors import CorruptImage, NotAnImage, UnsafeZip
from mltasks.geometry import Geometry
from mltasks.io import read_volume, safe_extract_zip, write_dicom_series, write_volume


def make_zip(path, members: dict[str, bytes], *, compression=zipfile.ZIP_DEFLATED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return path


def test_a_normal_zip_is_extracted(tmp_path):
    archive = make_zip(tmp_path / "ok.zip", {"a/one.txt": b"1", "a/b/two.txt": b"22"})
    dest = tmp_path / "out"
    dest.mkdir()
    files = safe_extract_zip(archive, dest, max_total_bytes=100, max_ratio=100)
    assert sorted(p.relative_to(dest).as_posix() for p in files) == ["a/b/two.txt", "a/one.txt"]
    assert (dest / "a" / "b" / "two.txt").read_bytes() == b"22"


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "a\\..\\..\\evil.txt"])
def test_members_escaping_with_dotdot_are_refused(tmp_path, name):
    archive = make_zip(tmp_path / "up.zip", {"fine.txt": b"x", name: b"owned"})
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(
        UnsafeZip, match=r"up\.zip: member .*evil\.txt.* points outside the archive"
    ):
        safe_extract_zip(archive, dest, max_total_bytes=10**6, max_ratio=100)
    assert not (tmp_path / "evil.txt").exists()
    assert list(dest.iterdir()) == []  # nothing written before the checks passed


@pytest.mark.parametrize("name", ["/etc/evil.txt", "C:/evil.txt", "\\evil.txt"])
def test_members_with_absolute_paths_are_refused(tmp_path, name):
    archive = make_zip(tmp_path / "up.zip", {name: b"owned"})
    with pytest.raises(UnsafeZip, match="has an absolute path; the zip is refused"):
        safe_extract_zip(archive, tmp_path, max_total_bytes=10**6, max_ratio=100)


def test_symlink_members_are_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("series/passwd")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeZip, match=r"member 'series/passwd' is a symbolic link"):
        safe_extract_zip(archive, tmp_path, max_total_bytes=10**6, max_ratio=100)


def test_a_zip_bomb_is_refused_by_its_ratio(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"zeros.dcm": bytes(20 * 2**20)})
    assert archive.stat().st_size < 100_000
    with pytest.raises(
        UnsafeZip,
        match=r"member 'zeros\.dcm' expands \d+-fold \(limit 100\); this looks like a zip bomb",
    ):
        safe_extract_zip(archive, tmp_path, max_total_bytes=10**9, max_ratio=100)


def test_a_zip_too_large_in_total_is_refused(tmp_path):
    archive = make_zip(
        tmp_path / "big.zip", {f"f{i}.bin": np.random.default_rng(i).bytes(2**20) for i in range(3)}
    )
    with pytest.raises(UnsafeZip, match=r"expands to 3 MiB, more than the limit of 2 MiB"):
        safe_extract_zip(archive, tmp_path, max_total_bytes=2 * 2**20, max_ratio=100)


def test_a_member_larger_than_declared_is_caught(tmp_path):
    archive = make_zip(tmp_path / "lie.zip", {"a.bin": b"a" * 5000}, compression=zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    # Patch the declared uncompressed size (local header offset 22, central directory +24) down to 10.
    central = data.rfind(b"PK\x01\x02")
    data[22:26] = (10).to_bytes(4, "little")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    with pytest.raises((UnsafeZip, CorruptImage), match=r"lie\.zip: member 'a\.bin'"):
        safe_extract_zip(archive, tmp_path / "out", max_total_bytes=10**6, max_ratio=10**6)


def test_a_file_that_is_not_a_zip(tmp_path):
    (tmp_path / "x.zip").write_text("no zip")
    with pytest.raises(NotAnImage, match=r"x\.zip: not a readable zip archive"):
        safe_extract_zip(tmp_path / "x.zip", tmp_path, max_total_bytes=10, max_ratio=10)


def test_read_volume_refuses_an_unsafe_zip_and_cleans_its_temporary_folder(tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    archive = make_zip(tmp_path / "up.zip", {"ok.dcm": b"x", "../evil": b"y"})
    with pytest.raises(UnsafeZip):
        read_volume(archive)
    geometry = Geometry(shape=(3, 8, 8), spacing=(1.0, 1.0, 1.0))
    hu = np.arange(3 * 64, dtype=np.int16).reshape(3, 8, 8)
    files = write_dicom_series(hu, geometry, tmp_path / "series")
    with zipfile.ZipFile(tmp_path / "good.zip", "w") as zf:
        for f in files:
            zf.write(f, f"dicom/{f.name}")
    np.testing.assert_array_equal(read_volume(tmp_path / "good.zip")[0], hu)
    assert list(scratch.iterdir()) == []


def test_a_zip_with_one_nifti_reads_it(tmp_path):
    geometry = Geometry(shape=(3, 8, 8), spacing=(1.0, 1.0, 1.0), origin=(1.0, 2.0, 3.0))
    hu = np.arange(3 * 64, dtype=np.int16).reshape(3, 8, 8)
    path = write_volume(hu, geometry, tmp_path / "ct.nii.gz")
    with zipfile.ZipFile(tmp_path / "n.zip", "w") as zf:
        zf.write(path, "ct.nii.gz")
    back, back_geometry = read_volume(tmp_path / "n.zip")
    np.testing.assert_array_equal(back, hu)
    assert back_geometry.origin == pytest.approx((1.0, 2.0, 3.0))

"""Safe extraction of uploaded zip archives (DICOM series arrive zipped).

The backend extracts untrusted uploads with ``safe_extract_zip``; every check
runs before a byte is written, and the byte counts are enforced again while
streaming because the sizes declared in a zip's directory can lie.
"""

from __future__ import annotations

import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from mltasks.errors import CorruptImage, NotAnImage, UnsafeZip

DEFAULT_MAX_TOTAL_BYTES = 8 * 2**30  # 8 GiB: a 2000-slice 512 x 512 uncompressed CT is ~1 GiB
DEFAULT_MAX_RATIO = 250.0  # DICOM/NIfTI deflate 2-20x; bombs reach ~1000x per member
DEFAULT_MAX_MEMBERS = 100_000
_CHUNK = 1 << 20


def safe_extract_zip(
    path: str | Path,
    dest: str | Path,
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> list[Path]:
    """Extract ``path`` into the existing folder ``dest`` after checking it is safe.

    Refuses (``UnsafeZip``) members whose name is absolute or contains ``..``,
    symbolic links, encrypted members, more than ``max_members`` members, a total
    uncompressed size above ``max_total_bytes`` and any member whose
    uncompressed/compressed ratio exceeds ``max_ratio`` (zip bombs). A file that
    is not a zip raises ``NotAnImage``. Nothing is left in ``dest`` on failure
    except what the caller's temporary folder will remove.

    Returns:
        The extracted files (directories excluded), in archive order.
    """
    path, dest = Path(path), Path(dest)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        msg = f"{path}: not a readable zip archive ({exc}); upload a .zip of the DICOM folder"
        raise NotAnImage(msg) from exc
    with archive:
        members = archive.infolist()
        _check_members(
            path,
            members,
            max_total_bytes=max_total_bytes,
            max_ratio=max_ratio,
            max_members=max_members,
        )
        return _extract(path, archive, members, dest, max_total_bytes=max_total_bytes)


def _check_members(
    path: Path,
    members: list[zipfile.ZipInfo],
    *,
    max_total_bytes: int,
    max_ratio: float,
    max_members: int,
) -> None:
    if len(members) > max_members:
        msg = f"{path}: the zip holds {len(members)} entries, more than the limit of {max_members}; split the upload"
        raise UnsafeZip(msg)
    total = 0
    for info in members:
        _check_name(path, info)
        if info.flag_bits & 0x1:
            msg = f"{path}: member {info.filename!r} is encrypted; upload an unencrypted zip"
            raise UnsafeZip(msg)
        total += info.file_size
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > _CHUNK and ratio > max_ratio:
            msg = (
                f"{path}: member {info.filename!r} expands {ratio:.0f}-fold (limit {max_ratio:.0f}); "
                "this looks like a zip bomb and is refused; zip the original files instead"
            )
            raise UnsafeZip(msg)
    if total > max_total_bytes:
        msg = (
            f"{path}: the zip expands to {total / 2**20:.0f} MiB, more than the limit of "
            f"{max_total_bytes / 2**20:.0f} MiB; upload fewer series at once"
        )
        raise UnsafeZip(msg)


def _check_name(path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        msg = f"{path}: member {name!r} has an absolute path; the zip is refused, re-create it with relative paths"
        raise UnsafeZip(msg)
    if ".." in parts:
        msg = f"{path}: member {name!r} points outside the archive ('..'); the zip is refused"
        raise UnsafeZip(msg)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        msg = f"{path}: member {name!r} is a symbolic link; the zip is refused, zip the real files instead"
        raise UnsafeZip(msg)


def _extract(
    path: Path,
    archive: zipfile.ZipFile,
    members: list[zipfile.ZipInfo],
    dest: Path,
    *,
    max_total_bytes: int,
) -> list[Path]:
    root = dest.resolve()
    written = 0
    files: list[Path] = []
    for info in members:
        target = (root / info.filename.replace("\\", "/")).resolve()
        if not target.is_relative_to(root):  # defence in depth after _check_name
            raise UnsafeZip(
                f"{path}: member {info.filename!r} resolves outside the destination; refused"
            )
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(info) as src, open(target, "wb") as out:
                written = _copy_limited(path, info, src, out, written, max_total_bytes)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            msg = f"{path}: member {info.filename!r} is damaged ({exc}); upload the zip again"
            raise CorruptImage(msg) from exc
        files.append(target)
    return files


def _copy_limited(
    path: Path, info: zipfile.ZipInfo, src, out, written: int, max_total_bytes: int
) -> int:
    # The declared file_size can lie; zipfile checks CRC but only at the end of the member.
    member_bytes = 0
    while chunk := src.read(_CHUNK):
        member_bytes += len(chunk)
        written += len(chunk)
        if member_bytes > info.file_size or written > max_total_bytes:
            msg = f"{path}: member {info.filename!r} expands beyond its declared or allowed size; refused as a zip bomb"
            raise UnsafeZip(msg)
        out.write(chunk)
    return written


@contextmanager
def extracted_zip(path: str | Path, **limits) -> Iterator[Path]:
    """Extract ``path`` safely into a temporary folder, yield it, and delete it afterwards.

    ``limits`` are the keyword options of ``safe_extract_zip``.
    """
    with tempfile.TemporaryDirectory(prefix="myolabel-zip-") as tmp:
        safe_extract_zip(path, tmp, **limits)
        yield Path(tmp)

"""Single-file volumes (NIfTI, MetaImage, NRRD) through SimpleITK, with clear errors.

SimpleITK reads a truncated NIfTI without complaint and pads it with zeros, so
NIfTI files are checked against the size their header announces first.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from mltasks.errors import CorruptImage, InvalidArray, NotAnImage
from mltasks.geometry import Geometry

WRITE_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd")
READ_SUFFIXES = (*WRITE_SUFFIXES, ".nhdr")
_FORMATS_HELP = "MyoLabel reads DICOM (folder or .zip), NIfTI (.nii/.nii.gz), MetaImage (.mha/.mhd) and NRRD (.nrrd)"


def suffix_of(path: str | Path) -> str:
    """Lower-case suffix, treating ``.nii.gz`` as one suffix."""
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def read_image_file(path: Path) -> sitk.Image:
    """Read a 3D scalar image file; raise ``NotAnImage`` or ``CorruptImage`` with the reason."""
    if path.stat().st_size == 0:
        raise NotAnImage(f"{path}: the file is empty; upload the image again")
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise NotAnImage(f"{path}: not an image file MyoLabel can read. {_FORMATS_HELP}") from exc
    _check_shape(path, reader.GetDimension(), reader.GetSize(), reader.GetNumberOfComponents())
    if suffix_of(path) in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        msg = (
            f"{path}: the header is readable but the pixel data is missing, truncated or damaged "
            "(a .mhd needs its .raw/.zraw file beside it); upload the complete file again"
        )
        raise CorruptImage(msg) from exc


def _check_shape(path: Path, dimension: int, size: tuple[int, ...], components: int) -> None:
    if components != 1:
        raise NotAnImage(
            f"{path}: has {components} values per voxel (colour or vector image); a CT has one"
        )
    extra = [s for s in size[3:] if s != 1]
    if dimension < 3 or extra:
        msg = f"{path}: is a {dimension}D image of size {size}; MyoLabel needs a single 3D volume"
        raise NotAnImage(msg)


def image_to_hu(image: sitk.Image) -> tuple[np.ndarray, Geometry]:
    """(z, y, x) array (int16 when integral and in range, else float32) and geometry of a 3D image."""
    if image.GetDimension() > 3:
        image = image[:, :, :, 0]
    geometry = Geometry.from_sitk(image)
    array = sitk.GetArrayFromImage(image)
    del image
    if np.issubdtype(array.dtype, np.integer):
        if (
            array.dtype != np.int16
            and array.size
            and -32768 <= array.min()
            and array.max() <= 32767
        ):
            array = array.astype(np.int16)
        elif array.dtype != np.int16:
            array = array.astype(np.float32)
    elif array.dtype != np.float32:
        array = array.astype(np.float32)
    return array, geometry


def write_volume(
    array: np.ndarray, geometry: Geometry, path: str | Path, *, compress: bool = True
) -> Path:
    """Write a (z, y, x) array with its geometry; the format follows the suffix.

    Suffixes: .nii, .nii.gz, .mha, .mhd (+ .raw/.zraw beside it), .nrrd.
    ``compress`` applies to .mha/.mhd/.nrrd (.nii.gz is always compressed).
    Booleans are written as uint8 and float64 as float32.
    """
    path = Path(path)
    suffix = suffix_of(path)
    if suffix not in WRITE_SUFFIXES:
        msg = f"{path}: cannot write '{suffix}'; use one of {', '.join(WRITE_SUFFIXES)}"
        raise InvalidArray(msg)
    if array.shape != tuple(geometry.shape):
        raise InvalidArray(
            f"array shape {array.shape} does not match geometry shape {geometry.shape} (z, y, x)"
        )
    if array.dtype == bool:
        array = array.astype(np.uint8)
    elif array.dtype == np.float64:
        array = array.astype(np.float32)
    image = geometry.to_sitk(np.ascontiguousarray(array))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=compress and suffix != ".nii")
    return path


# --- NIfTI completeness -------------------------------------------------------

_NIFTI_BITPIX_OFFSETS = {348: (40, "8h", 72, "h", 108, "f"), 540: (16, "8q", 14, "h", 168, "q")}


def _nifti_expected_bytes(header: bytes) -> int | None:
    """Header + pixel bytes a NIfTI-1/-2 file should hold, or None if the header is unknown."""
    for endian in ("<", ">"):
        if len(header) < 4:
            return None
        sizeof_hdr = struct.unpack(endian + "i", header[:4])[0]
        layout = _NIFTI_BITPIX_OFFSETS.get(sizeof_hdr)
        if layout is None or len(header) < sizeof_hdr:
            continue
        dim_at, dim_fmt, bitpix_at, bitpix_fmt, offset_at, offset_fmt = layout
        dims = struct.unpack_from(endian + dim_fmt, header, dim_at)
        bitpix = struct.unpack_from(endian + bitpix_fmt, header, bitpix_at)[0]
        vox_offset = int(struct.unpack_from(endian + offset_fmt, header, offset_at)[0])
        n = int(
            np.prod([max(int(d), 1) for d in dims[1 : 1 + max(int(dims[0]), 0)]], dtype=np.int64)
        )
        return max(vox_offset, sizeof_hdr) + n * int(bitpix) // 8
    return None


def _check_nifti_complete(path: Path) -> None:
    truncated = (
        f"{path}: the NIfTI file is truncated (incomplete upload or copy); upload the complete file"
    )
    if suffix_of(path) == ".nii":
        with open(path, "rb") as f:
            expected = _nifti_expected_bytes(f.read(540))
        if expected is not None and path.stat().st_size < expected:
            raise CorruptImage(truncated)
        return
    try:
        with gzip.open(path, "rb") as f:
            expected = _nifti_expected_bytes(f.read(540))
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptImage(truncated) from exc
    if expected is None:
        return
    # gzip's trailer holds the uncompressed size mod 2**32: a cheap check that avoids
    # decompressing a complete file twice. Only on a mismatch do we stream it through.
    with open(path, "rb") as f:
        f.seek(-4, 2)
        if struct.unpack("<I", f.read(4))[0] == expected % 2**32:
            return
    if _gzip_length(path) < expected:
        raise CorruptImage(truncated)


def _gzip_length(path: Path) -> int:
    """Uncompressed length of a gzip file; -1 when its stream is cut short or damaged."""
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 22):
                total += len(chunk)
    except (OSError, EOFError, zlib.error):
        return -1
    return total

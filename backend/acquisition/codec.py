"""Compact binary forms of per-slice rasters, shared by storage and the REST API.

All rasters are one slice (H, W) in row-major (y, x) order, like numpy's default:
- mask: ``np.packbits`` of the flattened bool array, most significant bit first
  (bit 7 of byte 0 is pixel (0, 0)); trailing bits of the last byte are 0.
- labels: uint8 raster, zlib-compressed.
- uncertainty: float16 little-endian raster, zlib-compressed.
The API sends any of them as base64 text (docs/api-acquisition.md).

Inflating is always bounded by the size the raster must have: a client's zlib
stream that inflates to more is refused after ``size + 1`` bytes (RasterTooLarge),
however large it would grow.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np


class RasterTooLarge(ValueError):
    """A zlib stream inflates to more bytes than its raster has."""


def inflate(data: bytes, size: int) -> bytes:
    """The zlib stream ``data`` inflated, at most ``size`` bytes.

    RasterTooLarge if it holds more (only ``size + 1`` bytes are ever produced: a
    stream that would inflate to gigabytes costs no more than a raster);
    zlib.error if it is not zlib or ends early.
    """
    inflater = zlib.decompressobj()
    raw = inflater.decompress(data, size + 1)  # any bytes-like object: no copy of the input
    if len(raw) > size:
        raise RasterTooLarge(f"inflates to more than the {size} bytes of the raster")
    if not inflater.eof:
        raise zlib.error("incomplete or truncated zlib stream")
    return raw


def pack_mask(mask: np.ndarray) -> bytes:
    return np.packbits(np.asarray(mask, dtype=bool).reshape(-1)).tobytes()


def unpack_mask(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    n = int(np.prod(shape))
    bits = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8), count=n)
    return bits.astype(bool).reshape(shape)


def pack_labels(labels: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(labels, dtype=np.uint8).tobytes(), 6)


def unpack_labels(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    raw = np.frombuffer(inflate(data, int(np.prod(shape))), dtype=np.uint8)
    if raw.size != int(np.prod(shape)):
        msg = f"label raster holds {raw.size} pixels, the slice has {int(np.prod(shape))} ({shape[0]} x {shape[1]})"
        raise ValueError(msg)
    return raw.reshape(shape).copy()


def pack_float16(values: np.ndarray) -> bytes:
    return zlib.compress(np.ascontiguousarray(values, dtype="<f2").tobytes(), 6)


def unpack_float16(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    raw = inflate(data, 2 * int(np.prod(shape)))
    return np.frombuffer(raw, dtype="<f2").reshape(shape).astype(np.float32)


def b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)

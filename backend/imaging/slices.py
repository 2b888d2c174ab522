"""Slice rendering: CT windowing, label colouring, uncertainty scaling, PNG and raw encoding.

Pure numpy + zlib (no Django), so the slice endpoints stay fast and testable.
Every function takes one (y, x) slice of the working grid.
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import numpy as np

# Display presets (window width, level) in HU: soft tissue and bone, as radiology viewers use.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {"soft": (400.0, 40.0), "bone": (1800.0, 400.0)}
DEFAULT_PRESET = "soft"
# Accepted window widths and levels, HU (the DRF query serializer and the fast path both check these).
WINDOW_RANGE = (1.0, 65536.0)
LEVEL_RANGE = (-32768.0, 32767.0)
# Slices never change once stored, so a browser may keep them; private: they are patient data.
CACHE_CONTROL = "private, max-age=3600"


def raw_headers(shape: tuple[int, ...], dtype: str) -> dict[str, str]:
    """The headers of a raw slice response besides its content type: shape, dtype, caching."""
    return {"X-Shape": ",".join(str(n) for n in shape), "X-Dtype": dtype,
            "Access-Control-Expose-Headers": "X-Shape, X-Dtype", "Cache-Control": CACHE_CONTROL}

# zlib level of slice PNGs; 0 stores the pixels uncompressed. Any level >= 1 gives the same
# bytes, because deflate runs with run-length matching only (Z_RLE): on a 512 x 512 CT slice
# that took 1.2 ms for 107 kB where level 1's default string matching took 2.7 ms for 115 kB;
# a label slice comes out at half the bytes for 0.1 ms more (python bench/png_encode.py).
# MYOLABEL_PNG_LEVEL (settings) picks the level.
PNG_COMPRESS_LEVEL = 1

_INT16_OFFSET = 32768


@lru_cache(maxsize=64)
def _window_lut(window: float, level: float) -> np.ndarray:
    """(65536,) uint8 grey level of every int16 value, indexed by value + 32768."""
    hu = np.arange(-_INT16_OFFSET, _INT16_OFFSET, dtype=np.float64)
    lut = np.rint((hu - (level - window / 2.0)) / window * 255.0)
    lut = np.clip(lut, 0, 255).astype(np.uint8)
    lut.flags.writeable = False
    return lut


def window_to_uint8(hu: np.ndarray, *, window: float, level: float) -> np.ndarray:
    """Map HU to grey levels: ``level - window/2`` -> 0, ``level + window/2`` -> 255, linear, clipped.

    Args:
        hu: (Y, X) int16 HU.
        window: window width in HU (> 0).
        level: window centre in HU.
    Returns:
        (Y, X) uint8.
    """
    if window <= 0:
        raise ValueError(f"window width must be positive, not {window}")
    # A lookup table turns windowing into one gather: no float image is ever built.
    lut = _window_lut(float(window), float(level))
    if hu.dtype == np.int16:  # the bits of value + 32768 are those of value with the sign bit flipped
        return np.take(lut, hu.view(np.uint16) ^ np.uint16(0x8000))
    return lut[hu.astype(np.int32) + _INT16_OFFSET]


def encode_png(
    image: np.ndarray, *, palette: np.ndarray | None = None, level: int = PNG_COMPRESS_LEVEL
) -> bytes:
    """Encode a (Y, X) uint8 array as PNG: greyscale, or indexed when ``palette`` is given.

    Written by hand because Pillow tries every row filter, which costs 4 ms on a
    512 x 512 slice even with compression off; filter "none" plus zlib is what the
    slice endpoints need (CT noise leaves filters little to gain). Any decoder reads it.

    Args:
        image: (Y, X) uint8.
        palette: (256, 3) uint8 RGB colour of every value; value 0 is made transparent.
        level: zlib level: 0 stores the pixels (fastest, about their size); 1 to 9 compress
            with run-length matching (all give the same bytes).
    """
    pixels = np.asarray(image)
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"need a (Y, X) uint8 image, got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape
    rows = np.zeros((height, width + 1), dtype=np.uint8)  # byte 0 of each row: filter "none"
    rows[:, 1:] = pixels
    colour_type = 0 if palette is None else 3
    chunks = [_png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0))]
    if palette is not None:
        chunks.append(_png_chunk(b"PLTE", np.ascontiguousarray(palette, dtype=np.uint8).tobytes()))
        chunks.append(_png_chunk(b"tRNS", b"\x00"))  # entry 0 transparent, the rest opaque
    deflate = zlib.compressobj(level, zlib.DEFLATED, zlib.MAX_WBITS, 9, zlib.Z_RLE)
    chunks.append(_png_chunk(b"IDAT", deflate.compress(rows.tobytes()) + deflate.flush()))
    chunks.append(_png_chunk(b"IEND", b""))
    return _PNG_SIGNATURE + b"".join(chunks)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def label_palette(colours: dict[int, str]) -> np.ndarray:
    """(256, 3) uint8 palette from ``{value: "#rrggbb"}``; unknown values are magenta, so they show."""
    palette = np.zeros((256, 3), dtype=np.uint8)
    palette[1:] = (255, 0, 255)
    for value, colour in colours.items():
        palette[value] = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return palette


def scale_to_uint8(values: np.ndarray, *, vmax: float) -> np.ndarray:
    """Map [0, vmax] linearly to [0, 255], clipped; NaN becomes 0.

    Args:
        values: (Y, X) float (pixel uncertainty).
        vmax: value shown as 255 (> 0).
    Returns:
        (Y, X) uint8.
    """
    scaled = np.nan_to_num(values.astype(np.float32) * np.float32(255.0 / vmax), nan=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def raw_bytes(array: np.ndarray, dtype: str) -> bytes:
    """The array as C-order bytes of ``dtype`` (e.g. ``"<i2"``: little-endian int16)."""
    return np.ascontiguousarray(array, dtype=np.dtype(dtype)).tobytes()

"""Slice PNG encoding: run-length deflate (what the slice endpoints use) against zlib's default matching.

    python bench/png_encode.py [--repeats 50]

Encodes the same body-like 512 x 512 CT slice as bench/slice_latency.py (air around an
elliptic body with a bone disc, noise sd 20 HU, soft-tissue window) and a label slice
(two boxes), side by side in one run: milliseconds per encode and bytes, for zlib's
default string matching at level 1 and 6 and for Z_RLE (``backend.imaging.slices``).
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.imaging.slices import encode_png, window_to_uint8  # noqa: E402


def ct_slice() -> np.ndarray:
    yy, xx = np.mgrid[:512, :512]
    body = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 240.0) ** 2 < 1
    bone = ((yy - 256) ** 2 + (xx - 180) ** 2) < 30**2
    base = np.where(body, 40.0, -1000.0) + np.where(bone, 660.0, 0.0)
    hu = np.rint(base + np.random.default_rng(0).normal(0, 20, size=(512, 512))).astype(np.int16)
    return window_to_uint8(hu, window=400, level=40)


def label_slice() -> np.ndarray:
    labels = np.zeros((512, 512), np.uint8)
    labels[150:300, 120:260] = 3
    labels[320:420, 280:400] = 7
    return labels


def default_matching(image: np.ndarray, level: int) -> bytes:
    """The same PNG rows deflated with zlib's default strategy (the encoder before Z_RLE)."""
    rows = np.zeros((image.shape[0], image.shape[1] + 1), np.uint8)
    rows[:, 1:] = image
    return zlib.compress(rows.tobytes(), level)


def timed(fn, repeats: int) -> tuple[float, int]:
    size = len(fn())
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    print(f"{'slice':<6} {'encoding':<22} {'ms':>6} {'bytes':>8}")
    for name, image in (("CT", ct_slice()), ("labels", label_slice())):
        rle_ms, rle_bytes = timed(lambda image=image: encode_png(image, level=1), args.repeats)
        for label, fn in (("zlib level 1 (default)", lambda image=image: default_matching(image, 1)),
                          ("zlib level 6 (default)", lambda image=image: default_matching(image, 6))):
            ms, size = timed(fn, args.repeats)
            print(f"{name:<6} {label:<22} {ms:>6.2f} {size:>8}")
        print(f"{name:<6} {'Z_RLE (slice PNGs)':<22} {rle_ms:>6.2f} {rle_bytes:>8}")
        level1_ms, level1_bytes = timed(lambda image=image: default_matching(image, 1), args.repeats)
        print(f"{name:<6} Z_RLE against level 1: {level1_ms / rle_ms:.2f}x faster, "
              f"{rle_bytes / level1_bytes:.2f}x the bytes (PNG headers included on the Z_RLE side)")


if __name__ == "__main__":
    main()

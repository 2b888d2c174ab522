"""Benchmark: peak memory and time of reading a DICOM CT series, against SimpleITK's series reader.

    /work/venv/bin/python bench/io_read_memory.py [--slices 500] [--size 512]

Writes a synthetic int16 series (uncompressed, one file per slice) into a
temporary folder, then in fresh subprocesses measures the growth of peak RSS
while reading it, as a multiple of the returned array's bytes:
- mltasks.io.read_volume (header scan + slice-by-slice decode into one array),
- SimpleITK ImageSeriesReader + GetArrayFromImage (reference),
- mltasks.preprocess.preprocess_volume on the read volume (relative to its
  float32 output).
Goal: read_volume close to 1x (no needless copies), int16 output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mltasks.geometry import Geometry  # noqa: E402
from mltasks.io import write_dicom_series  # noqa: E402

CHILD = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import numpy as np, SimpleITK as sitk
from mltasks.io import read_volume
from mltasks.preprocess import preprocess_volume
folder, mode = {folder!r}, {mode!r}
def peak_bytes():  # VmHWM: this process's own peak RSS (ru_maxrss inherits the parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
if mode == "preprocess":
    hu, geometry = read_volume(folder)
before, start = peak_bytes(), time.perf_counter()
if mode == "read_volume":
    out, _ = read_volume(folder)
elif mode == "sitk":
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder))
    out = sitk.GetArrayFromImage(reader.Execute())
else:
    out = preprocess_volume(hu, geometry).image
seconds = time.perf_counter() - start
print(json.dumps({{"growth": peak_bytes() - before, "bytes": out.nbytes, "dtype": str(out.dtype), "s": seconds}}))
"""


def measure(folder: Path, mode: str) -> dict:
    code = CHILD.format(
        repo=str(Path(__file__).resolve().parent.parent), folder=str(folder), mode=mode
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=500)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    shape = (args.slices, args.size, args.size)
    rng = np.random.default_rng(0)
    hu = rng.integers(-1024, 1500, size=shape, dtype=np.int16)
    geometry = Geometry(shape=shape, spacing=(1.0, 0.7, 0.7), origin=(-180.0, -180.0, 0.0))
    with tempfile.TemporaryDirectory(prefix="bench-io-") as tmp:
        write_dicom_series(hu, geometry, tmp)
        del hu
        # Interleaved repeats, fastest kept: the machine is shared and load only adds time.
        runs = [
            measure(Path(tmp), mode)
            for _ in range(3)
            for mode in ("read_volume", "sitk", "preprocess")
        ]
        rows = {}
        for k, mode in enumerate(("read_volume", "sitk", "preprocess")):
            rows[mode] = min(runs[k::3], key=lambda r: r["s"])
    for mode, row in rows.items():
        print(
            f"{mode:12s} output {row['dtype']:8s} {row['bytes'] / 2**20:7.0f} MiB  "
            f"peak RSS growth = {row['growth'] / row['bytes']:.2f} x output"
        )
    ratio = rows["read_volume"]["s"] / rows["sitk"]["s"]
    print(f"read_volume time / SimpleITK series reader time = {ratio:.2f}")
    growth = rows["read_volume"]["growth"] / rows["sitk"]["growth"]
    print(f"read_volume peak growth / SimpleITK series reader peak growth = {growth:.2f}")


if __name__ == "__main__":
    main()

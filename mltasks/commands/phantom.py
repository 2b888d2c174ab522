"""``python -m mltasks phantom``: write synthetic labelled hip-and-thigh CTs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "phantom",
        help="write synthetic hip-and-thigh CTs with exact labels (NIfTI, optionally DICOM)",
        description="Write N synthetic CTs (seeds S .. S+N-1) as <name>_ct.nii.gz and <name>_labels.nii.gz.",
    )
    p.add_argument("--n", type=int, default=1, help="number of phantoms (default 1)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--size", type=int, nargs=3, default=(256, 256, 200), metavar=("X", "Y", "Z"),
                   help="matrix in voxels, x y z (default 256 256 200)")
    p.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    p.add_argument("--sided", action="store_true", help="separate label values for left and right")
    p.add_argument("--calibration-phantom", action="store_true", help="add a calibration block touching the back")
    p.add_argument("--streaks", action="store_true", help="add streak artefacts")
    p.add_argument("--dicom", action="store_true", help="also write the CT as a DICOM series folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mltasks.phantom import generate_phantom, write_phantom
    from mltasks.progress import TqdmProgress

    if args.n < 1 or min(args.size) < 8:
        print("--n must be at least 1 and every --size at least 8 voxels")
        return 2
    x, y, z = args.size
    bar = TqdmProgress()
    try:
        for i in range(args.n):
            seed = args.seed + i
            ph = generate_phantom(seed, shape=(z, y, x), sided=args.sided, calibration_phantom=args.calibration_phantom,
                                  streaks=args.streaks, on_progress=bar)
            paths = write_phantom(ph, args.out, f"phantom_{seed:05d}", dicom=args.dicom)
            bar.close()
            print(" ".join(str(p) for p in paths.values()))
    finally:
        bar.close()
    return 0

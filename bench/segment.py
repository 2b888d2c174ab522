"""Wall time and peak memory of ``python -m mltasks segment`` (T = 10), default profile vs paper.

    python bench/segment.py [--slices 160] [--paper-slices 16] [--threads 2] [--extrapolate 160]

A synthetic 512 x 512 x ``--slices`` CT (1 mm slices, 0.7 mm pixels: an
ellipse of soft tissue with noise in air) is written to NIfTI; untrained body
and muscle nets of a profile are saved as checkpoints (speed does not depend on
the weights); ``segment`` runs in a child process that reports its own peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) when it ends. The default profile runs ``--slices`` slices
(160: the whole 512 x 512 x 160 volume); the ``paper`` profile runs
``--paper-slices`` slices; both are also extrapolated linearly to
``--extrapolate`` slices (paper's full run takes hours on 2 cores). Both runs are
in this one invocation, so their ratio is measured under the same load.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mltasks.checkpoint import save_checkpoint  # noqa: E402
from mltasks.geometry import Geometry  # noqa: E402
from mltasks.io import write_volume  # noqa: E402
from mltasks.labels import default_label_set  # noqa: E402
from mltasks.nets import DEFAULT_PROFILE, UNet, profile  # noqa: E402


def synthetic_ct(n_slices: int) -> tuple[np.ndarray, Geometry]:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:512, :512]
    body = ((yy - 270) / 180.0) ** 2 + ((xx - 256) / 230.0) ** 2 < 1
    hu = np.where(body, 40, -1000).astype(np.int16)
    hu = np.broadcast_to(hu, (n_slices, 512, 512)).copy()
    hu += rng.normal(0, 20, hu.shape).astype(np.int16)
    return hu, Geometry(shape=(n_slices, 512, 512), spacing=(1.0, 0.7, 0.7))


def run_segment(folder: Path, name: str, n_slices: int, threads: int) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one ``segment`` child process (``python -m mltasks segment``)."""
    label_set = default_label_set()
    ct = folder / f"ct{n_slices}.nii.gz"
    if not ct.exists():
        write_volume(*synthetic_ct(n_slices), ct)
    torch.manual_seed(0)
    save_checkpoint(
        folder / f"{name}.pt",
        UNet(profile(name, n_classes=label_set.n_classes)),
        label_set=label_set,
    )
    save_checkpoint(folder / f"{name}_body.pt", UNet(profile(name, n_classes=2, bayesian=False)))
    args = [
        "segment", "--model", str(folder / f"{name}.pt"),
        "--body-model", str(folder / f"{name}_body.pt"), "--image", str(ct), "--samples", "10",
        "--out-labels", str(folder / "labels.nii.gz"), "--out-uncertainty", str(folder / "u.nii.gz"),
        "--report", str(folder / "report.json"), "--threads", str(threads),
    ]  # fmt: skip
    # The child prints its own peak RSS (kB): RUSAGE_CHILDREN would give the maximum over all children.
    code = (
        "import resource, sys; from mltasks.__main__ import main; rc = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(rc)"
    )
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, cwd=REPO, capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    return wall, int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slices", type=int, default=160)
    p.add_argument("--paper-slices", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--extrapolate", type=int, default=160, help="slices to extrapolate the wall time to"
    )
    args = p.parse_args()
    print(f"segment, 512 x 512 slices, T = 10, {args.threads} threads, untrained nets", flush=True)
    header = f"{'profile':>10} {'slices run':>10} {'wall s':>8} {'s/slice':>8} {'peak RSS MB':>12}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paper_wall, paper_peak = run_segment(folder, "paper", args.paper_slices, args.threads)
        print(header)
        print(
            f"{'paper':>10} {args.paper_slices:>10} {paper_wall:>8.1f} "
            f"{paper_wall / args.paper_slices:>8.2f} {paper_peak:>12.0f}",
            flush=True,
        )
        fast_wall, fast_peak = run_segment(folder, DEFAULT_PROFILE, args.slices, args.threads)
        print(
            f"{DEFAULT_PROFILE:>10} {args.slices:>10} {fast_wall:>8.1f} "
            f"{fast_wall / args.slices:>8.2f} {fast_peak:>12.0f}"
        )
    per_paper, per_fast = paper_wall / args.paper_slices, fast_wall / args.slices
    print(f"paper / {DEFAULT_PROFILE} time per slice: {per_paper / per_fast:.1f}x")
    print(
        f"extrapolated to {args.extrapolate} slices: {DEFAULT_PROFILE} {per_fast * args.extrapolate / 60:.1f} min, "
        f"paper {per_paper * args.extrapolate / 60:.1f} min (linear in slices)"
    )


if __name__ == "__main__":
    main()

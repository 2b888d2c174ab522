"""MC-dropout inference throughput: optimised path against a plain loop, same run.

    python bench/mc_inference.py [--samples 10] [--slices-256 4] [--slices-512 2] [--threads 2]

Network: the ``paper`` profile (5 levels, 32 filters, 23 classes), untrained
(speed does not depend on the weights). For each slice size both paths produce
the same statistics (mean softmax, sum and sum of squares over T samples):

- plain: T separate forward passes of the module, BN in eval mode, dropout via
  ``F.dropout`` (training mode), no folding, NCHW;
- optimised: ``mltasks.infer.mc_predict_slices`` (``FastMC``: BN folded,
  channels-last, bit-unpacked dropout masks with the scale folded into the next
  conv, first block shared by the T samples).

The two paths run alternately in two halves (plain, fast, fast, plain) so that
a load change on this shared machine hits both. Achieved GFLOP/s counts the
convolution FLOPs analytically (``mltasks.nets.conv_flops``) and is compared to
the float32 ``torch.mm`` GFLOP/s measured in the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mltasks.infer import mc_predict_slices  # noqa: E402
from mltasks.nets import UNet, conv_flops, profile  # noqa: E402


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2.0 * n**3 / best / 1e9


@torch.inference_mode()
def plain(model: UNet, x: np.ndarray, t: int) -> float:
    """Seconds for T plain forward passes plus the same float64 accumulation as the optimised path."""
    for d in model.dropouts:
        d.cheap_mask = False  # F.dropout, as a module in training mode does
    xt = torch.from_numpy(x)[:, None]
    start = time.perf_counter()
    total = total_sq = None
    for _ in range(t):
        p = torch.softmax(model(xt), dim=1).double()
        total = p.clone() if total is None else total.add_(p)
        total_sq = p * p if total_sq is None else total_sq.addcmul_(p, p)
    mean = total / t
    (total_sq / t - mean * mean).clamp_(min=0).sum(1)
    return time.perf_counter() - start


def fast(model: UNet, x: np.ndarray, t: int) -> float:
    start = time.perf_counter()
    mc_predict_slices(x, model, t_samples=t, batch_size=x.shape[0])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--slices-256", type=int, default=4)
    parser.add_argument("--slices-512", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = UNet(profile("paper", n_classes=23)).mc_mode()
    half = args.samples // 2
    mm_before = matmul_gflops()
    rows = []
    for size, n in ((256, args.slices_256), (512, args.slices_512)):
        x = np.random.default_rng(0).random((n, size, size), dtype=np.float32)
        fast(model, x, 1)  # warm-up: oneDNN primitive creation for this batch shape
        plain(model, x, 1)
        t_plain = plain(model, x, half)
        t_fast = fast(model, x, half) + fast(model, x, args.samples - half)
        t_plain += plain(model, x, args.samples - half)
        flops = conv_flops(model.config, size, size) * n * args.samples
        rows.append((size, n, t_plain, t_fast, flops))
    mm = max(mm_before, matmul_gflops())
    print(
        f"paper network, T = {args.samples}, {args.threads} threads; float32 torch.mm: {mm:.1f} GFLOP/s"
    )
    print(
        f"{'slice':>9} {'N':>3} {'plain s/slice':>14} {'fast s/slice':>13} {'speed-up':>9} {'plain GF/s':>11} {'fast GF/s':>10} {'fast/mm':>8}"
    )
    for size, n, tp, tf, flops in rows:
        print(
            f"{size:>4}x{size:<4} {n:>3} {tp / n:>14.2f} {tf / n:>13.2f} {tp / tf:>8.2f}x "
            f"{flops / tp / 1e9:>11.1f} {flops / tf / 1e9:>10.1f} {flops / tf / 1e9 / mm:>7.0%}"
        )


if __name__ == "__main__":
    main()

"""Training throughput with batches cut to their content (``TrainConfig.crop_to_content``) against
whole network slices, side by side in one run.

    OMP_NUM_THREADS=2 python bench/train_crop.py [--slices 16] [--pixel-mm 2.0] [--batches 8] [--threads 2]

Slices of the grid issue's phantom (512 x 512 at 500 mm field of view, table and arms,
``generate_phantom(arms=True)``) go through the product's network grid
(``mltasks.netgrid``) at ``--pixel-mm``; the ``fast`` profile's U-Net (16 filters, 4 levels,
23 classes) runs forward, loss and backward on batches of 8 with the within-scan
augmentation, exactly as ``mltasks.train`` does, with and without the crop. The two
ways alternate in blocks of ``--block`` batches (whole, cropped, cropped, whole, ...) so
that a change of the machine's load hits both; the median seconds per batch and their ratio are
printed, with the share of the slice's pixels a cropped batch keeps and the peak
resident memory of the process. The weights are not the point (speed does not depend
on them); docs/learning.md gives the Dice at equal epochs.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mltasks.augment import augment_batch, augment_preset  # noqa: E402
from mltasks.crop import crop_to_content  # noqa: E402
from mltasks.losses import segmentation_loss  # noqa: E402
from mltasks.netgrid import network_grid_of  # noqa: E402
from mltasks.nets import UNet, profile  # noqa: E402
from mltasks.phantom import generate_phantom  # noqa: E402


def network_slices(args) -> tuple[np.ndarray, np.ndarray, int]:
    """(images (n, h, w), labels (n, h, w), classes) of the phantom on the network grid."""
    fov = 500.0
    ph = generate_phantom(1, shape=(args.slices, 512, 512), spacing=(3.0, fov / 512, fov / 512), arms=True)
    grid = network_grid_of(ph.geometry, pixel_mm=args.pixel_mm, depth=profile("fast", n_classes=2).depth)
    images, _ = grid.to_network(ph.hu)
    return images, grid.labels_to_network(ph.labels.astype(np.uint8)), ph.label_set.n_classes


def one_batch(model, optimizer, x, y, *, crop: bool) -> tuple[float, int]:
    """(seconds of forward, loss, backward and step; pixels per slice the network saw)."""
    start = time.perf_counter()
    if crop:
        x, y = crop_to_content(x, y, multiple=2 ** (model.config.depth - 1))
    optimizer.zero_grad(set_to_none=True)
    segmentation_loss(model(x[:, None]), y).backward()
    optimizer.step()
    return time.perf_counter() - start, int(x.shape[1] * x.shape[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=16)
    ap.add_argument("--pixel-mm", type=float, default=2.0)
    ap.add_argument("--batches", type=int, default=16, help="batches timed per way")
    ap.add_argument("--block", type=int, default=4, help="batches in a row of one way")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    images, labels, n_classes = network_slices(args)
    model = UNet(profile("fast", n_classes=n_classes, matrix=images.shape[1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    gen = torch.Generator().manual_seed(0)
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    times: dict[bool, list[float]] = {False: [], True: []}
    pixels: dict[bool, list[int]] = {False: [], True: []}
    # Blocks of one way in a row (whole, cut, cut, whole, ...): changing the input shape costs
    # oneDNN a new plan, which a training run pays only when a batch's crop differs.
    order = [way for way in [False, True, True, False] * (-(-args.batches // (2 * args.block)))
             for _ in range(args.block)]
    one_batch(model, optimizer, x_all[:8], y_all[:8], crop=False)  # warm-up
    for k, crop in enumerate(order[: 2 * args.batches]):
        idx = torch.randperm(x_all.shape[0], generator=gen)[:8]
        x, y = augment_batch(x_all[idx], y_all[idx], gen, config=augment_preset("within_scan"))
        seconds, seen = one_batch(model, optimizer, x, y, crop=crop)
        times[crop].append(seconds)
        pixels[crop].append(seen)
        print(f"batch {k}: {'cropped' if crop else 'whole  '} {x.shape[1]}x{x.shape[2]} -> {seen} px, {seconds:.2f} s",
              flush=True)
    whole, cropped = float(np.median(times[False])), float(np.median(times[True]))
    share = float(np.mean(pixels[True])) / float(np.mean(pixels[False]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nnetwork slice {images.shape[1]} x {images.shape[2]} at {args.pixel_mm} mm, batches of 8, "
          f"{args.threads} threads, {args.batches} batches each")
    print("| way | median s per batch | pixels per slice (share) |")
    print("|---|---|---|")
    print(f"| whole slices | {whole:.2f} | {np.mean(pixels[False]):,.0f} (1.00) |")
    print(f"| cut to content | {cropped:.2f} | {np.mean(pixels[True]):,.0f} ({share:.2f}) |")
    print(f"speed-up {whole / cropped:.2f}x; peak resident memory {peak:,.0f} MiB")


if __name__ == "__main__":
    main()

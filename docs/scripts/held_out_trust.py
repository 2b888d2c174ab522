"""How far the Dice on held-out slices of one CT is from the Dice on a new patient.

    python docs/scripts/held_out_trust.py 60 fast 40 128    # epochs, profile, slices, matrix

One phantom CT (seed 100, slices x matrix x matrix, 360 mm field of view) stands for a
lab's only CT: 6 slices are held out as the product chooses them (evenly spread, each
with its neighbours kept out of training), and the network trains on every second
remaining slice. The mean per-slice muscle Dice (MC, T = 4) is then measured on the
held-out slices and on three other phantoms (new "patients", seeds 101-103): on the
same slice positions and on every slice (docs/acquisition.md, "Measuring accuracy").
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mltasks.active import ALConfig, TrainingSet, train_step  # noqa: E402
from mltasks.geometry import Geometry  # noqa: E402
from mltasks.infer import predict_working_slices  # noqa: E402
from mltasks.labels import default_label_set  # noqa: E402
from mltasks.metrics import evaluate_volume  # noqa: E402
from mltasks.netgrid import PROFILE_PIXEL_MM, network_grid_of  # noqa: E402
from mltasks.nets import profile  # noqa: E402
from mltasks.phantom import generate_phantom  # noqa: E402
from mltasks.train import TrainConfig  # noqa: E402

HELD_OUT, MARGIN = 6, 1
MUSCLES = [lab.value for lab in default_label_set().labels if lab.kind == "muscle"]


def phantom(seed: int, depth: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    ph = generate_phantom(seed, shape=(depth, size, size))
    return ph.hu.astype(np.int16), ph.labels.astype(np.uint8)


def muscle_dice(model, grid, hu, labels, zs, spacing) -> np.ndarray:
    """Per-slice Dice of every muscle present in reference or prediction, over the slices ``zs``."""
    pred, _ = predict_working_slices(hu[zs], model, grid, t_samples=4)
    values = []
    for i, z in enumerate(zs):
        metrics = evaluate_volume(pred[i], labels[z], spacing, 23)
        seen = set(np.unique(labels[z])) | set(np.unique(pred[i]))
        values += [metrics[c]["dice"] for c in MUSCLES if c in seen]
    return np.array(values)


def main() -> None:
    epochs, prof, depth, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(1)
    hu, labels = phantom(100, depth, size)
    net = profile(prof, n_classes=23)
    geometry = Geometry(shape=hu.shape, spacing=(1.0, 360 / size, 360 / size))
    grid = network_grid_of(geometry, pixel_mm=PROFILE_PIXEL_MM.get(prof), depth=net.depth)
    held = [int((i + 0.5) * depth / HELD_OUT) for i in range(HELD_OUT)]
    blocked = {z + d for z in held for d in range(-MARGIN, MARGIN + 1)}
    train_z = [z for z in range(depth) if z not in blocked][::2]
    started = time.monotonic()
    data = TrainingSet(grid.images_to_network(hu[train_z]), grid.labels_to_network(labels[train_z]),
                       np.zeros((len(train_z), *grid.shape), np.uint8))
    config = TrainConfig(max_epochs=epochs, batch_size=4, augment=False, val_samples=2, patience=0)
    model = train_step(None, data, ALConfig(net=net, train=config), warm_start=False).model
    print(f"trained on {len(train_z)} slices, {epochs} epochs, {time.monotonic() - started:.0f} s")
    spacing = (360 / size, 360 / size)
    own = muscle_dice(model, grid, hu, labels, held, spacing)
    print(f"held-out slices of the training CT: mean muscle Dice {own.mean():.3f} "
          f"(sd {own.std(ddof=1):.3f}, n {own.size})")
    for seed in (101, 102, 103):
        hu2, labels2 = phantom(seed, depth, size)
        same = muscle_dice(model, grid, hu2, labels2, held, spacing)
        every = muscle_dice(model, grid, hu2, labels2, list(range(depth)), spacing)
        print(f"new CT {seed}: same z {same.mean():.3f}, every slice {every.mean():.3f}")


if __name__ == "__main__":
    main()

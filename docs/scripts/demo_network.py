"""Which network the demo project should use: test Dice after training on the demo's labelled slices.

    python docs/scripts/demo_network.py tiny 128 0.1 12 8     # the previous demo: profile, matrix,
    python docs/scripts/demo_network.py fast 64 0.5 40 4      # labelled fraction, epochs, batch size

The demo's data (3 pool + 1 test phantoms of 24 x 128 x 128, seeds 1-4): trains on
the evenly spaced labelled fraction of the pool slices, evaluates MC predictions
(T = 5) on the test phantom and prints the mean Dice and the training time (1 thread).
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mltasks.active import TestVolume, TrainingSet, evaluate, retrain  # noqa: E402
from mltasks.labels import default_label_set  # noqa: E402
from mltasks.simulate import SimulationConfig, al_config, evenly_spaced, load_volumes  # noqa: E402


def main() -> None:
    prof, matrix, fraction, epochs, batch = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(1)
    cfg = SimulationConfig(
        data={"kind": "phantoms", "pool": 3, "test": 1, "size": [24, 128, 128], "seed": 1},
        network={"profile": prof, "matrix": matrix, "slice_interval_mm": "native", "t_samples": 5, "batch_size": 8},
        training={"max_epochs": epochs, "patience": 0, "augment": False, "batch_size": batch, "val_samples": 2})
    base = al_config(cfg, default_label_set().n_classes, 1)
    pool, tests, label_set = load_volumes(cfg, base.net.matrix)
    base = replace(base, net=replace(base.net, n_classes=label_set.n_classes))
    picks = [evenly_spaced(v.images.shape[0], fraction) for v in pool]
    images = np.concatenate([v.images[i] for v, i in zip(pool, picks, strict=True)])
    labels = np.concatenate([v.labels[i] for v, i in zip(pool, picks, strict=True)])
    start = time.time()
    model, _ = retrain(None, TrainingSet(images, labels, np.ones(labels.shape, np.uint8)), base,
                       warm_start=False, label_set=label_set)
    seconds = time.time() - start
    ev = evaluate(model, [TestVolume(v.name, v.images, v.labels, v.spacing) for v in tests], t_samples=5,
                  batch_size=8, seed=0)
    print(f"{prof} matrix {matrix}, {len(images)} labelled slices, {epochs} epochs, batch {batch}: "
          f"test mean Dice {ev.mean_dice:.3f}, training {seconds:.0f} s")


if __name__ == "__main__":
    main()

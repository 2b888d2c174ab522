"""Dice of the models a ``bench/step_cost.py --keep-dir`` run trained, on the phantom's held-out slices.

    OMP_NUM_THREADS=1 nice -n 10 python docs/scripts/step_models_heldout.py /tmp/step-cost-XXXX \\
        [--arms new,new-oldtrain] [--t 10]

For each product arm (``new``, ``new-oldtrain``) it opens the arm's embedded database and
media, and scores every model version the step stored (model 0 from the 5 % seed, model 1
after the step's answers) on the scan's working slices that never were in that project's
training set: MC dropout (T) on the model's own network grid, probabilities back to the
working grid, then Dice per structure over all held-out slices together, against the
stored reference labels. Printed: mean Dice over the muscles present, over the bones,
the training slices and seconds the model had, and its stop reason.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mltasks.checkpoint import load_model  # noqa: E402
from mltasks.geometry import Geometry  # noqa: E402
from mltasks.infer import predict_working_slices  # noqa: E402
from mltasks.labels import default_label_set  # noqa: E402
from mltasks.netgrid import network_grid_of  # noqa: E402
from mltasks.train import dice_per_class  # noqa: E402


def arm_rows(data: Path) -> tuple[dict, list[dict], set[int]]:
    """(the scan row, the model version rows, the z of every training slice) of an arm's database."""
    db = sqlite3.connect(data / "db.sqlite3")
    db.row_factory = sqlite3.Row
    scan = dict(db.execute("select * from imaging_scan order by id limit 1").fetchone())
    ref = dict(db.execute("select * from imaging_referencelabelmap where scan_id = ?", (scan["id"],)).fetchone())
    versions = [dict(r) for r in db.execute("select * from acquisition_modelversion order by number")]
    trained = {int(r[0]) for r in db.execute("select z from acquisition_trainingslice where scan_id = ?",
                                             (scan["id"],))}
    scan["reference"] = ref["labels"]
    return scan, versions, trained


def score(model, hu: np.ndarray, ref: np.ndarray, geometry: Geometry, pixel_mm, t: int) -> np.ndarray:
    grid = network_grid_of(geometry, pixel_mm=pixel_mm, depth=model.config.depth)
    labels, _ = predict_working_slices(hu, model, grid, t_samples=t)
    return dice_per_class(labels, ref, model.config.n_classes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, help="the folder bench/step_cost.py --keep-dir printed")
    ap.add_argument("--arms", default="new,new-oldtrain")
    ap.add_argument("--t", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    labels = default_label_set()
    muscles, bones = labels.values_of_kind("muscle"), labels.values_of_kind("bone")
    for arm in [a.strip() for a in args.arms.split(",") if a.strip()]:
        data = args.work / arm / "data"
        if not (data / "db.sqlite3").is_file():
            print(f"{arm}: no database in {data}; skipped")
            continue
        scan, versions, trained = arm_rows(data)
        media = data / "media"
        hu = np.load(media / scan["volume"], mmap_mode="r")
        ref = np.load(media / scan["reference"], mmap_mode="r")
        geometry = Geometry.from_dict(json.loads(scan["geometry"]))
        held = [z for z in range(hu.shape[0]) if z not in trained and ref[z].any()]
        print(f"{arm}: working grid {hu.shape}, {len(trained)} training slices, {len(held)} held-out slices")
        for v in versions:
            config, training = json.loads(v["config"]), json.loads(v["training"])
            model, _ = load_model(media / v["checkpoint"])
            dice = score(model, np.asarray(hu[held]), np.asarray(ref[held]), geometry, config.get("pixel_mm"), args.t)
            present = np.isfinite(dice)
            m = [c for c in muscles if present[c]]
            b = [c for c in bones if present[c]]
            print(f"  model {v['number']}: muscle Dice {np.nanmean(dice[m]):.3f} ({len(m)} muscles), "
                  f"bone Dice {np.nanmean(dice[b]):.3f}; trained on {training.get('slices')} slices, "
                  f"{training.get('epochs')} epochs, {training.get('seconds')} s, stop: {training.get('stop_reason')}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()

"""End-to-end accuracy experiment on phantoms, and the profile speed/accuracy comparison.

Accuracy experiment (writes docs/ml_experiment.md):

    python docs/scripts/ml_experiment.py                 # full run: about 5-6 h on 2 idle cores
                                                         # (6 nets x --minutes-per-net, then inference)
    python docs/scripts/ml_experiment.py --quick         # ~2 min smoke check, tiny profile

1. generate phantoms (``mltasks.phantom.generate_phantom``): training and held-out;
2. preprocess them onto the network grid (``mltasks.train.slices_from_volume``);
3. train the body net (deterministic) and the muscle net (Bayesian);
4. MC inference on the held-out phantoms (``mltasks.infer.predict_volume``);
5. Dice per structure (``mltasks.metrics``), PSV (``mltasks.uncertainty``) and
   the PSV-Dice Pearson r;
6. K-fold PDC on the training phantoms (``mltasks.calibration.kfold_calibrate``),
   its mean absolute error on the held-out phantoms.
Targets (issue 3): mean muscle Dice >= 0.90, r <= -0.5, PDC MAE <= 0.03.

Profile comparison (writes docs/profiles.md):

    python docs/scripts/ml_experiment.py --compare-profiles [--minutes 3]

trains each candidate configuration for the same wall time on the same phantom
slices and reports training throughput, MC inference throughput (T = 10) and
validation Dice side by side.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from mltasks.calibration import kfold_calibrate  # noqa: E402
from mltasks.commands.ml import psv_and_dice  # noqa: E402
from mltasks.infer import mc_predict_slices  # noqa: E402
from mltasks.nets import NetConfig, profile  # noqa: E402
from mltasks.phantom import generate_phantom  # noqa: E402
from mltasks.train import TrainConfig, slices_from_volume, train  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def phantoms(seeds: range, shape: tuple[int, int, int]) -> list:
    out = []
    for seed in seeds:
        ph = generate_phantom(seed, shape=shape)
        out.append((ph.hu, ph.geometry, ph.labels, ph.body, ph.label_set))
        log(f"phantom {seed} {shape}")
    return out


def training_slices(
    volumes: list, matrix: int, *, body: bool, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Network-grid slices; muscle slices are masked with the true body, as inference masks with the body net."""
    images, labels = [], []
    for hu, geometry, lab, body_mask, _ in volumes:
        x, inside = slices_from_volume(hu, geometry, body_mask.astype(np.uint8), matrix=matrix)
        if body:
            y = inside
        else:
            y = slices_from_volume(hu, geometry, lab, matrix=matrix)[1]
            x = np.where(inside > 0, x, np.float32(0.0))
        images.append(x[::step])
        labels.append(y[::step])
    return np.concatenate(images), np.concatenate(labels)


def train_net(volumes: list, cfg: NetConfig, tcfg: TrainConfig, *, body: bool, step: int):
    x, y = training_slices(volumes, cfg.matrix, body=body, step=step)
    label_set = None if body else volumes[0][4]
    result = train(x, y, cfg, config=tcfg, label_set=label_set)
    log(
        f"{'body' if body else 'muscle'} net: {len(x)} slices, best val Dice {result.best_dice:.3f} at epoch {result.best_epoch}"
    )
    return result.model


def run_experiment(args: argparse.Namespace) -> None:
    start = time.time()
    n_train, n_test = args.n_train, args.n_test
    volumes = phantoms(range(n_train + n_test), tuple(args.shape))
    train_vols, test_vols = volumes[:n_train], volumes[n_train:]
    label_set = volumes[0][4]
    matrix = {"matrix": args.matrix} if args.matrix else {}
    muscle_cfg = profile(args.profile, n_classes=label_set.n_classes, **matrix)
    body_cfg = profile(args.profile, n_classes=2, bayesian=False, **matrix)
    tcfg = TrainConfig(
        lr=args.lr,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        max_seconds=args.minutes_per_net * 60,
    )
    body_tcfg = replace(
        tcfg, max_seconds=tcfg.max_seconds / 4
    )  # the body is an easy two-class task
    body_model = train_net(train_vols, body_cfg, body_tcfg, body=True, step=args.slice_step)
    model = train_net(train_vols, muscle_cfg, tcfg, body=False, step=args.slice_step)

    muscles = label_set.values_of_kind("muscle")
    psv_rows, dice_rows = [], []
    for hu, geometry, lab, _, _ in test_vols:
        psv, dice = psv_and_dice(
            (hu, geometry, lab), model, t_samples=args.samples, body_model=body_model
        )
        psv_rows.append(psv)
        dice_rows.append(dice)
        log(f"held-out volume: mean muscle Dice {np.nanmean(dice[muscles]):.3f}")
    psv_t, dice_t = np.stack(psv_rows), np.stack(dice_rows)
    ok = np.isfinite(psv_t[:, 1:]) & np.isfinite(dice_t[:, 1:])
    r = float(np.corrcoef(psv_t[:, 1:][ok], dice_t[:, 1:][ok])[0, 1])

    def fold(train_ids: list, held_out: list) -> list:
        net = train_net(
            [train_vols[i] for i in train_ids], muscle_cfg, tcfg, body=False, step=args.slice_step
        )
        return [
            psv_and_dice(train_vols[i][:3], net, t_samples=args.samples, body_model=body_model)
            for i in held_out
        ]

    calibration = kfold_calibrate(list(range(n_train)), args.k, fold)
    structures = np.broadcast_to(np.arange(psv_t.shape[1]), psv_t.shape)
    predicted = calibration.predict(psv_t[:, 1:][ok], structures=structures[:, 1:][ok])
    mae = float(np.mean(np.abs(predicted - dice_t[:, 1:][ok])))
    wall = time.time() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_report(args, dice_t, muscles, label_set, r, calibration, mae, wall, peak_mb)


def write_report(args, dice_t, muscles, label_set, r, calibration, mae, wall, peak_mb) -> None:
    mean_muscle = float(np.nanmean(dice_t[:, muscles]))
    command = "python docs/scripts/ml_experiment.py " + " ".join(sys.argv[1:])
    budget = (
        f"at most {args.minutes_per_net:g} min per muscle net"
        if args.minutes_per_net
        else "no time limit"
    )
    lines = [
        "# ML accuracy experiment on phantoms" + (" (quick smoke run)" if args.quick else ""),
        "",
        f"Command: `{command.strip()}` (2-core CPU, {torch.get_num_threads()} torch threads).",
        "",
        f"Setup: {args.n_train} training + {args.n_test} held-out phantoms of shape {tuple(args.shape)}, "
        f"profile `{args.profile}`{f' on a {args.matrix} x {args.matrix} matrix' if args.matrix else ''}, "
        f"up to {args.epochs} epochs (lr {args.lr}, patience {args.patience}, "
        f"every {args.slice_step}. slice, {budget}), "
        f"T = {args.samples}, K = {args.k} folds for PDC.",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| mean muscle Dice (held-out) | {mean_muscle:.3f} | >= 0.90 |",
        f"| PSV-Dice Pearson r (held-out, all structures) | {r:.3f} | <= -0.5 |",
        f"| PDC MAE (held-out; K-fold fit, {calibration.n_pairs} pairs) | {mae:.3f} | <= 0.03 |",
        f"| PDC line | Dice = {calibration.alpha:.2f} x PSV + {calibration.beta:.3f} | |",
        f"| wall time | {wall / 60:.1f} min | |",
        f"| peak memory (max RSS) | {peak_mb:.0f} MB | |",
        "",
        "Dice per structure (mean over held-out phantoms):",
        "",
        "| structure | Dice |",
        "|---|---|",
    ]
    for lab in label_set.labels:
        lines.append(f"| {lab.name} | {np.nanmean(dice_t[:, lab.value]):.3f} |")
    if args.quick:
        lines += ["", "Quick mode uses the tiny profile and a few epochs: it checks that the pipeline runs, "
                  "its accuracy figures mean nothing."]  # fmt: skip
    out = REPO / "docs" / "ml_experiment.md"
    out.write_text("\n".join(lines) + "\n")
    log(
        f"wrote {out}: muscle Dice {mean_muscle:.3f}, r {r:.3f}, PDC MAE {mae:.3f}, {wall / 60:.1f} min, {peak_mb:.0f} MB"
    )


CANDIDATES = {
    "paper@256": dict(width=32, depth=5, matrix=256),
    "w16-d5@256": dict(width=16, depth=5, matrix=256),
    "w16-d4@256 (fast)": dict(width=16, depth=4, matrix=256),
    "w8-d4@256": dict(width=8, depth=4, matrix=256),
}


def compare_profiles(args: argparse.Namespace) -> None:
    volumes = phantoms(range(3), (100, 256, 256))
    label_set = volumes[0][4]
    x_tr, y_tr = training_slices(volumes[:2], 256, body=False, step=3)
    x_va, y_va = training_slices(volumes[2:], 256, body=False, step=24)
    rows = []
    for name, kw in CANDIDATES.items():
        cfg = profile("paper", n_classes=label_set.n_classes, **kw)
        rows.append((name, cfg, *train_for(cfg, x_tr, y_tr, x_va, y_va, args.minutes * 60)))
        log(f"{name}: {rows[-1][2:]}")
    lines = [
        "# Network profiles: speed against accuracy on this 2-core CPU",
        "",
        f"Command: `python docs/scripts/ml_experiment.py --compare-profiles --minutes {args.minutes}` "
        f"({torch.get_num_threads()} torch threads; the machine was shared with other jobs, so absolute "
        "times are noisy; all candidates ran back to back in one process).",
        "",
        f"Each candidate trained for {args.minutes} min wall time (Adam 1e-3, batch 8, augmentation on) on "
        f"{len(x_tr)} slices of 2 phantoms (256 matrix), validated (MC, T = 2) on {len(x_va)} slices "
        "of a third phantom. Inference: `mc_predict_slices`, T = 10, batch of 2 slices.",
        "",
        "| candidate | width | depth | train slices/s (incl. validation) | epochs done | MC inference s/slice (T=10) | val mean Dice |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, cfg, tput, epochs, infer_s, dice in rows:
        lines.append(
            f"| {name} | {cfg.width} | {cfg.depth} | {tput:.2f} | {epochs:.2f} | {infer_s:.2f} | {dice:.3f} |"
        )
    (REPO / "docs" / "profiles.md").write_text("\n".join(lines) + "\n")
    log("wrote docs/profiles.md")


def train_for(cfg, x_tr, y_tr, x_va, y_va, seconds: float) -> tuple[float, int, float, float]:
    """Train ``cfg`` for about ``seconds``; (train slices/s, epochs, MC s/slice, val Dice)."""
    start = time.time()
    steps = {"n": 0}
    original = torch.optim.Adam.step

    def counting_step(self, *a, **kw):
        steps["n"] += 1
        return original(self, *a, **kw)

    tcfg = TrainConfig(
        batch_size=8, max_epochs=1000, patience=0, val_samples=2, max_seconds=seconds
    )
    torch.optim.Adam.step = counting_step
    try:
        result = train(x_tr, y_tr, cfg, config=tcfg, validation=(x_va, y_va))
    finally:
        torch.optim.Adam.step = original
    tput = steps["n"] * tcfg.batch_size / (time.time() - start)
    t0 = time.time()
    mc_predict_slices(x_va[:2], result.model, t_samples=10, batch_size=2)
    infer_s = (time.time() - t0) / 2
    return tput, steps["n"] * tcfg.batch_size / len(x_tr), infer_s, result.best_dice


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--quick", action="store_true", help="tiny profile, small phantoms: a ~2 min smoke check"
    )
    p.add_argument("--compare-profiles", action="store_true")
    p.add_argument("--minutes", type=float, default=3.0, help="training time per profile candidate")
    p.add_argument("--n-train", type=int, default=8)
    p.add_argument("--n-test", type=int, default=4)
    p.add_argument("--shape", type=int, nargs=3, default=[200, 256, 256])
    p.add_argument("--profile", default="fast")
    p.add_argument("--matrix", type=int, default=0, help="network matrix (0: the profile's own)")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--slice-step", type=int, default=3, help="train on every n-th network slice")
    p.add_argument(
        "--minutes-per-net",
        type=float,
        default=40.0,
        help="wall-time budget of each muscle net (6 with K = 4); the body net gets a quarter",
    )
    p.add_argument("--samples", type=int, default=10)
    p.add_argument("--k", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.n_train, args.n_test, args.shape, args.profile = 3, 1, [24, 64, 64], "tiny"
        args.epochs, args.patience, args.slice_step, args.samples, args.k = 2, 0, 6, 2, 3
        args.minutes_per_net = 0.0
    if args.compare_profiles:
        compare_profiles(args)
    else:
        run_experiment(args)


if __name__ == "__main__":
    main()

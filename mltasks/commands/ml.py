"""``train``, ``segment``, ``evaluate`` and ``calibrate`` sub-commands.

    python -m mltasks train --image ct1.nii.gz --labels lab1.nii.gz ... --out muscle.pt
    python -m mltasks train --task body --image ct1.nii.gz --labels body1.nii.gz --out body.pt
    python -m mltasks segment --model muscle.pt --body-model body.pt --image ct.nii.gz \\
        --out-labels labels.nii.gz --out-uncertainty u.nii.gz --report report.json
    python -m mltasks evaluate --pred labels.nii.gz --ref truth.nii.gz --out metrics.json
    python -m mltasks calibrate --image ... --labels ... --k 4 --out pdc.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PROFILE_HELP = "network profile: paper (authors'), fast (default), tiny (tests)"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train", help="train a muscle (Bayesian) or body U-Net on labelled CTs"
    )
    _add_data_args(p)
    _add_train_args(p)
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (.pt)")
    p.add_argument("--resume", action="store_true", help="continue the training stored in --out")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "segment", help="segment a CT: labels, uncertainty and a per-structure report"
    )
    p.add_argument("--model", required=True, type=Path, help="muscle net checkpoint")
    p.add_argument("--body-model", type=Path, help="body net checkpoint (recommended)")
    p.add_argument(
        "--image", required=True, type=Path, help="CT: DICOM folder/zip, NIfTI, MetaImage or NRRD"
    )
    p.add_argument(
        "--out-labels", required=True, type=Path, help="label map to write, on the CT's grid"
    )
    p.add_argument(
        "--out-uncertainty", type=Path, help="pixel uncertainty map to write, on the CT's grid"
    )
    p.add_argument(
        "--report", type=Path, help="JSON report per structure (volume, mean HU, PSV, PDC)"
    )
    p.add_argument("--calibration", type=Path, help="PDC calibration JSON from 'calibrate'")
    p.add_argument("--samples", type=int, default=10, help="MC dropout samples T (default 10)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.set_defaults(func=cmd_segment)

    p = subparsers.add_parser(
        "evaluate", help="Dice and ASD per structure of a label map against a reference"
    )
    p.add_argument("--pred", required=True, type=Path)
    p.add_argument("--ref", required=True, type=Path)
    p.add_argument("--n-classes", type=int, default=None, help="default: the default label set's")
    p.add_argument("--out", type=Path, help="JSON file (default: print)")
    p.set_defaults(func=cmd_evaluate)

    p = subparsers.add_parser(
        "calibrate", help="fit the predicted-Dice line (PDC) by K-fold cross-validation"
    )
    _add_data_args(p)
    _add_train_args(p)
    p.add_argument("--k", type=int, default=4, help="folds (paper: 4)")
    p.add_argument("--samples", type=int, default=10)
    p.add_argument(
        "--per-structure", action="store_true", help="one line per structure instead of pooled"
    )
    p.add_argument("--out", required=True, type=Path, help="calibration JSON to write")
    p.set_defaults(func=cmd_calibrate)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--image", required=True, action="append", type=Path, help="CT (repeat, one per volume)"
    )
    p.add_argument(
        "--labels", required=True, action="append", type=Path, help="its label map (same order)"
    )


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--task", choices=("muscle", "body"), default="muscle", help="body: labels are body masks"
    )
    p.add_argument("--profile", default="fast", help=PROFILE_HELP)
    p.add_argument(
        "--label-set", default="default", help="default, default-sided or a LabelSet JSON file"
    )
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads")


def _label_set(spec: str, task: str):
    from mltasks.labels import Label, LabelSet, default_label_set

    if task == "body":
        return LabelSet(labels=(Label(1, "body", "body", "#ffffff", "body", ""),))
    if spec in ("default", "default-sided"):
        return default_label_set(sided=spec == "default-sided")
    return LabelSet.from_dict(json.loads(Path(spec).read_text()))


def _threads(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def _volumes(args: argparse.Namespace) -> list[tuple]:
    """[(hu, geometry, labels)] of the --image / --labels pairs."""
    from mltasks.errors import InvalidTrainingData
    from mltasks.io import read_label_onto, read_volume

    if len(args.image) != len(args.labels):
        raise InvalidTrainingData(
            f"{len(args.image)} --image but {len(args.labels)} --labels; give one label map per CT"
        )
    out = []
    for image, labels in zip(args.image, args.labels, strict=True):
        hu, geometry = read_volume(image)
        lab = read_label_onto(labels, geometry)
        out.append((hu, geometry, (lab > 0).astype("uint8") if args.task == "body" else lab))
    return out


def _train_on(
    volumes: list[tuple],
    args: argparse.Namespace,
    *,
    checkpoint=None,
    resume=False,
    on_progress=None,
):
    import numpy as np

    from mltasks.nets import profile
    from mltasks.train import TrainConfig, slices_from_volume, train

    label_set = _label_set(args.label_set, args.task)
    net_config = profile(
        args.profile, n_classes=label_set.n_classes, bayesian=args.task == "muscle"
    )
    pairs = [slices_from_volume(hu, g, lab, matrix=net_config.matrix) for hu, g, lab in volumes]
    config = TrainConfig(
        lr=args.lr, batch_size=args.batch_size, max_epochs=args.epochs, patience=args.patience,
        augment=not args.no_augment, seed=args.seed,
    )  # fmt: skip
    return train(
        np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs]), net_config,
        config=config, label_set=label_set, checkpoint_path=checkpoint, resume=resume,
        max_epochs=args.epochs if resume else None, on_progress=on_progress,
    )  # fmt: skip


def cmd_train(args: argparse.Namespace) -> int:
    from mltasks.progress import TqdmProgress

    _threads(args)
    bar = TqdmProgress()
    try:
        result = _train_on(
            _volumes(args), args, checkpoint=args.out, resume=args.resume, on_progress=bar
        )
    finally:
        bar.close()
    print(
        f"best validation Dice {result.best_dice:.4f} at epoch {result.best_epoch}; model in {args.out}"
    )
    return 0


def cmd_segment(args: argparse.Namespace) -> int:
    from mltasks.calibration import PDCCalibration
    from mltasks.checkpoint import load_model
    from mltasks.infer import predict_volume
    from mltasks.io import read_volume, write_volume
    from mltasks.progress import TqdmProgress
    from mltasks.report import structure_report

    _threads(args)
    model, label_set = load_model(args.model)
    body_model = load_model(args.body_model)[0] if args.body_model else None
    hu, geometry = read_volume(args.image)
    bar = TqdmProgress()
    try:
        pred = predict_volume(
            hu, geometry, model, body_model=body_model, t_samples=args.samples,
            batch_size=args.batch_size, seed=args.seed, on_progress=bar,
        )  # fmt: skip
    finally:
        bar.close()
    write_volume(pred.labels, geometry, args.out_labels)
    if args.out_uncertainty:
        write_volume(pred.pixel_uncertainty.astype("float32"), geometry, args.out_uncertainty)
    if args.report:
        if label_set is None:
            label_set = _label_set("default", "muscle")
        calibration = (
            PDCCalibration.from_dict(json.loads(args.calibration.read_text()))
            if args.calibration
            else None
        )
        rows = structure_report(
            pred.labels, hu, pred.pixel_uncertainty, geometry, label_set, calibration=calibration
        )
        report = {
            "image": str(args.image),
            "model": str(args.model),
            "t_samples": args.samples,
            "structures": rows,
        }
        args.report.write_text(json.dumps(report, indent=2))
    print(f"labels written to {args.out_labels}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from mltasks.geometry import Geometry
    from mltasks.io import read_label_onto
    from mltasks.labels import default_label_set
    from mltasks.metrics import evaluate_volume

    ref_image = sitk.ReadImage(str(args.ref))
    geometry = Geometry.from_sitk(ref_image)
    ref = sitk.GetArrayFromImage(ref_image).astype("int64")
    pred = read_label_onto(args.pred, geometry).astype("int64")
    n_classes = args.n_classes or max(
        default_label_set().n_classes, int(max(ref.max(), pred.max())) + 1
    )
    results = evaluate_volume(pred, ref, geometry.spacing, n_classes)
    present = [c for c in results if (ref == c).any()]
    summary = {
        "mean_dice": float(sum(results[c]["dice"] for c in present) / len(present))
        if present
        else None,
        "per_structure": {str(c): results[c] for c in present},
    }
    text = json.dumps(summary, indent=2)
    if args.out:
        args.out.write_text(text)
    else:
        print(text)
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from mltasks.calibration import kfold_calibrate
    from mltasks.progress import TqdmProgress

    _threads(args)
    volumes = _volumes(args)

    def train_and_predict(train_ids: list, held_out: list) -> list:
        result = _train_on([volumes[i] for i in train_ids], args)
        return [psv_and_dice(volumes[i], result.model, t_samples=args.samples) for i in held_out]

    bar = TqdmProgress()
    try:
        calibration = kfold_calibrate(
            list(range(len(volumes))), args.k, train_and_predict, seed=args.seed,
            pooled=not args.per_structure, on_progress=bar,
        )  # fmt: skip
    finally:
        bar.close()
    args.out.write_text(json.dumps(calibration.to_dict(), indent=2))
    print(
        f"PDC: Dice = {calibration.alpha:.3f} * PSV + {calibration.beta:.3f} (r = {calibration.correlation:.3f})"
    )
    return 0


def psv_and_dice(volume: tuple, model, *, t_samples: int, body_model=None):
    """(PSV (n_classes,), Dice (n_classes,)) of one labelled volume; NaN where a structure is absent."""
    import numpy as np

    from mltasks.infer import predict_volume
    from mltasks.metrics import evaluate_volume
    from mltasks.uncertainty import structure_wise_variance

    hu, geometry, labels = volume
    n_classes = model.config.n_classes
    pred = predict_volume(hu, geometry, model, body_model=body_model, t_samples=t_samples)
    psv = structure_wise_variance(pred.labels, pred.pixel_uncertainty, n_classes)
    scores = evaluate_volume(pred.labels, labels.astype(np.int64), geometry.spacing, n_classes)
    dice = np.full(n_classes, np.nan)
    for c, row in scores.items():
        if (labels == c).any():
            dice[c] = row["dice"]
    return psv, dice

"""Grids, configuration, models, the step, evaluation and files: the bulk of ``ml_adapter``
(the package docstring says what the adapter is for)."""


from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from mltasks import query as mlquery
from mltasks.active import ALConfig, TrainingSet, train_step
from mltasks.calibration import PDCCalibration, fit_pdc, held_out_mae
from mltasks.checkpoint import load_model as ml_load_model
from mltasks.checkpoint import save_checkpoint
from mltasks.errors import CalibrationError, MyoLabelError
from mltasks.geometry import Geometry
from mltasks.infer import predict_working_slices
from mltasks.labels import Label as MlLabel
from mltasks.labels import LabelSet as MlLabelSet
from mltasks.metrics import evaluate_volume
from mltasks.netgrid import PROFILE_PIXEL_MM, NetworkGrid, network_grid_of, stack_padded
from mltasks.nets import NetConfig, UNet
from mltasks.nets import profile as net_profile
from mltasks.postprocess import keep_largest_components
from mltasks.progress import ProgressCallback, report
from mltasks.ranking import planned_passes, rank_pool, score_network_slices
from mltasks.report import structure_report
from mltasks.step import SliceRanking, StepPlan, choose_slices, chosen_maps, query_masks
from mltasks.train import IGNORE, TrainConfig
from mltasks.uncertainty import structure_wise_variance
from mltasks.validate import dice_per_class

__all__ = [
    "IGNORE", "MyoLabelError", "calibration_fit", "calibration_held_out_mae", "evaluate", "label_set_of",
    "load_model", "merge", "network_configs", "preview_tau", "psv", "query_masks", "report_rows", "save_model",
    "segment_volume", "SliceRanking", "choose_slices", "chosen_maps", "step_plan",
    "train_model", "predicted_dice", "NetworkGrid", "network_grid", "pixel_mm_of", "model_pixel_mm",
    "network_inputs", "planned_passes", "rank_pool",
    "score_network_slices", "training_budget", "segment_slices", "dice_per_class",
]

# Keys of Project.network_config that configure training rather than the architecture.
_TRAIN_KEYS = {f.name for f in fields(TrainConfig)}


# --- configuration --------------------------------------------------------------------

def network_configs(profile: str, overrides: dict, n_classes: int) -> tuple[NetConfig, TrainConfig]:
    """(NetConfig, TrainConfig) of a project: a named profile plus ``network_config`` overrides."""
    overrides = dict(overrides or {})
    train_over = {k: overrides.pop(k) for k in list(overrides) if k in _TRAIN_KEYS}
    for key in _NOT_NET_KEYS:
        overrides.pop(key, None)
    return net_profile(profile, n_classes=n_classes, **overrides), TrainConfig(**train_over)


# Keys of Project.network_config that belong to neither NetConfig nor TrainConfig.
_NOT_NET_KEYS = ("warm_start", "pixel_mm", "label_rule", "first_max_epochs", "first_max_seconds", "adapt_imported")


def pixel_mm_of(profile: str, overrides: dict) -> float | None:
    """The network pixel size (mm) a project trains at: ``network_config["pixel_mm"]`` or the
    profile's (None: each scan's own pixels)."""
    overrides = overrides or {}
    return float(overrides["pixel_mm"]) if overrides.get("pixel_mm") else PROFILE_PIXEL_MM.get(profile)


# Before network grids, every model ran on its square matrix over the 360 mm working slice.
_LEGACY_FOV_MM = 360.0


def model_pixel_mm(config: dict) -> float | None:
    """The network pixel size a model version was trained at (``ModelVersion.config``)."""
    if "pixel_mm" in config:
        return config["pixel_mm"]
    return _LEGACY_FOV_MM / int(config.get("net", {}).get("matrix", 256))


def network_grid(scan_geometry: dict, *, pixel_mm: float | None, depth: int) -> NetworkGrid:
    """The network grid of a scan (its stored working geometry) for a model's pixel size and depth."""
    return network_grid_of(Geometry.from_dict(scan_geometry), pixel_mm=pixel_mm, depth=depth)


def network_inputs(hu: np.ndarray, grid: NetworkGrid) -> tuple[np.ndarray, np.ndarray]:
    """(images (z, h, w) float32, body (z, h, w) bool) of a scan's working-grid HU volume."""
    return grid.to_network(hu)


# Training budget per phase and device (``TrainConfig.max_epochs``, ``max_seconds``), unless the
# project sets its own: the first model learns from the seed alone, so it gets the longer one.
TRAINING_BUDGETS = {
    "cpu": {"first": (200, 900.0), "step": (100, 300.0)},
    "cuda": {"first": (400, 900.0), "step": (200, 450.0)},
}


def device_kind() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def training_budget(overrides: dict, *, first: bool, device: str | None = None) -> dict:
    """{"max_epochs", "max_seconds", "device"} of one training phase: the project's own
    ``network_config`` values where set (``first_max_epochs`` / ``first_max_seconds`` for the first
    model, which falls back to ``max_epochs`` / ``max_seconds``), else the device's defaults."""
    device = device or device_kind()
    epochs, seconds = TRAINING_BUDGETS[device]["first" if first else "step"]
    overrides = dict(overrides or {})
    if first:  # model 0's own budget where set (it learns from the seed alone), else the project's
        overrides.update({k: overrides[f"first_{k}"] for k in ("max_epochs", "max_seconds") if f"first_{k}" in overrides})
    return {"max_epochs": int(overrides.get("max_epochs", epochs)),
            "max_seconds": float(overrides.get("max_seconds", seconds)), "device": device}


def label_set_of(django_label_set) -> MlLabelSet:
    """The library's LabelSet for a ``projects.LabelSet`` row (values as stored)."""
    labels = []
    for lab in django_label_set.labels.order_by("value"):
        labels.append(MlLabel(lab.value, lab.name, lab.kind, lab.colour, lab.name, lab.side or ""))
    return MlLabelSet(labels=tuple(labels))


def n_classes_of(django_label_set) -> int:
    top = django_label_set.labels.order_by("-value").values_list("value", flat=True).first() or 0
    return int(top) + 1


# --- models ---------------------------------------------------------------------------

def load_model(path: str | Path) -> UNet:
    model, _ = ml_load_model(path)
    return model


def save_model(path: str | Path, model: UNet, *, label_set: MlLabelSet, train_config: TrainConfig | None,
               provenance: dict | None = None) -> None:
    save_checkpoint(path, model, label_set=label_set, train_config=train_config, provenance=provenance)


def _threads() -> None:
    """Torch compute threads of a worker task: ``settings.MYOLABEL_TORCH_THREADS`` (default 1).

    One thread by default: on a small CPU host the web server and other workers share
    the cores, and OpenMP threads that spin on an oversubscribed machine run many
    times slower than a single thread.
    """
    from django.conf import settings

    torch.set_num_threads(max(1, int(getattr(settings, "MYOLABEL_TORCH_THREADS", 1))))


def train_model(
    samples: list[tuple[np.ndarray, np.ndarray, NetworkGrid]],
    net_config: NetConfig,
    train_config: TrainConfig,
    *,
    label_set: MlLabelSet,
    checkpoint_path: str | Path,
    init_model: UNet | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[UNet, dict]:
    """Train on the training slices of several scans.

    Args:
        samples: per scan, ((n, H, W) working-grid HU, (n, H, W) uint8 labels with
            255 = unlabelled, the scan's network grid, the n slice indices z); each goes
            to its network grid, then all are padded with air to one shape.
    Resumes from ``checkpoint_path`` when it holds a run of the same configuration
    (a worker killed mid-training continues from its last epoch).
    Returns (model with the best weights, summary dict).
    """
    _threads()
    images = stack_padded([grid.images_to_network(hu) for hu, _, grid, _ in samples], fill=0.0)
    targets = stack_padded([grid.labels_to_network(lab) for _, lab, grid, _ in samples], fill=0)
    # (scan, z) of every slice: the held-out slices are never next to a training slice.
    keys = np.array([(k, z) for k, (_, _, _, zs) in enumerate(samples) for z in zs], dtype=np.int64)
    path = Path(checkpoint_path)
    resume = path.is_file()
    # The simulation's training step: provenance is not used by training.
    labelled = TrainingSet(images, targets, np.zeros(targets.shape, np.uint8))
    result = train_step(init_model, labelled, ALConfig(net=net_config, train=train_config),
                        warm_start=init_model is not None, label_set=label_set, checkpoint_path=path,
                        slice_keys=keys, on_progress=on_progress)
    per_class = result.val_dice_per_class
    summary = {
        "slices": int(images.shape[0]),
        "network_shape": list(images.shape[1:]),
        "epochs": len(result.history) or None,
        "best_epoch": result.best_epoch,
        "best_validation_dice": None if math.isnan(result.best_dice) else float(result.best_dice),
        "stopped_early": bool(result.stopped_early),
        "stop_reason": result.stop_reason,
        "validation_slices": int(result.n_val),
        # Held-out Dice per class (None: not measured): the guard of Eq. 7 reads it.
        "val_dice_per_class": None if per_class is None else [None if not np.isfinite(v) else float(v) for v in per_class],
        "seconds": round(float(result.seconds), 1),
        "budget": {"max_epochs": train_config.max_epochs, "max_seconds": train_config.max_seconds},
        "resumed": resume,
        "history": result.history[-50:],
    }
    return result.model, summary


def segment_volume(
    hu: np.ndarray,
    model: UNet,
    grid: NetworkGrid,
    *,
    t_samples: int,
    batch_size: int = 8,
    on_progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment a working-grid volume: ((Z, Y, X) uint8 labels, (Z, Y, X) float32 u).

    MC dropout on the network grid, probabilities back on the working grid, then the
    largest 3D component of every structure (§1 step 6).
    """
    _threads()
    labels, u = predict_working_slices(hu, model, grid, t_samples=t_samples, batch_size=batch_size,
                                       on_progress=on_progress)
    report(on_progress, "postprocess", 0, 1)
    labels = keep_largest_components(labels)
    report(on_progress, "postprocess", 1, 1)
    return labels, u


def segment_slices(
    hu_slices: np.ndarray,
    model: UNet,
    grid: NetworkGrid,
    *,
    t_samples: int,
    batch_size: int = 8,
    on_progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Segment some working-grid slices (n, Y, X) on their own: ((n, Y, X) uint8 labels, u).

    The held-out slices of a scan: MC dropout as for a volume, but no largest-3D-component
    step (sparse slices have no 3D neighbourhood).
    """
    _threads()
    return predict_working_slices(hu_slices, model, grid, t_samples=t_samples, batch_size=batch_size,
                                  on_progress=on_progress)


# --- the active-learning step (mltasks.step, shared with the simulation) ---------------

def step_plan(step) -> StepPlan:
    """The ``mltasks.step`` plan of an ``AcquisitionStep`` row."""
    return StepPlan(step.strategy, step.tau, step.slices_per_step, step.k_uncertain)


def merge(predicted: np.ndarray, mask: np.ndarray, answers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, provenance: 1 answered / 0 predicted) of one slice (``merge_answers``)."""
    return mlquery.merge_answers(predicted, mask, answers)


def preview_tau(uncertainty: list[np.ndarray], tau: float, *, target_mac: float | None = None) -> dict:
    """How many pixels tau queries in these slices, and the tau for a target MAC."""
    total = int(sum(u.size for u in uncertainty))
    count = mlquery.query_count(uncertainty, tau) if uncertainty else 0
    out = {"tau": tau, "queried_pixels": count, "total_pixels": total, "mac": count / total if total else None}
    if target_mac is not None and uncertainty:
        suggested, n = mlquery.suggest_tau(uncertainty, target_mac)
        out["suggested_tau"] = suggested if math.isfinite(suggested) else None
        out["suggested_queried_pixels"] = n
    return out


# --- evaluation -----------------------------------------------------------------------

def evaluate(pred: np.ndarray, ref: np.ndarray, spacing, n_classes: int) -> dict[int, dict[str, float]]:
    return evaluate_volume(pred, ref, spacing, n_classes)


def psv(labels: np.ndarray, uncertainty: np.ndarray, n_classes: int) -> np.ndarray:
    return structure_wise_variance(labels, uncertainty, n_classes)


def calibration_fit(psv_rows: list[np.ndarray], dice_rows: list[np.ndarray]) -> tuple[dict | None, str]:
    """Pooled PDC fit (Eq. 6) on (PSV, Dice) tables; (None, why) when it cannot be fitted."""
    if not psv_rows:
        return None, "no test scan with reference labels"
    try:
        fitted = fit_pdc(np.stack(psv_rows), np.stack(dice_rows), pooled=True)
    except (CalibrationError, MyoLabelError) as exc:
        return None, str(exc)
    return fitted.to_dict(), ""


def calibration_held_out_mae(psv_rows: list[np.ndarray], dice_rows: list[np.ndarray]) -> float | None:
    """Leave-one-scan-out mean |PDC - Dice| over the test scans; None when it cannot be computed."""
    if len(psv_rows) < 2:
        return None
    mae = held_out_mae(np.stack(psv_rows), np.stack(dice_rows))
    return mae if math.isfinite(mae) else None


def predicted_dice(calibration: dict | None, psv_values: np.ndarray) -> np.ndarray | None:
    if not calibration:
        return None
    return PDCCalibration.from_dict(calibration).predict(psv_values)


def report_rows(labels, hu, uncertainty, geometry: dict, label_set: MlLabelSet, calibration: dict | None) -> list[dict]:
    cal = PDCCalibration.from_dict(calibration) if calibration else None
    return structure_report(labels, hu, uncertainty, Geometry.from_dict(geometry), label_set, calibration=cal)


# --- imaging adapter ------------------------------------------------------------------

def scan_hu(scan) -> np.ndarray:
    """(z, y, x) int16 HU of a scan on the working grid (read-only, memory-mapped)."""
    from backend.imaging.volumes import scan_volume

    return scan_volume(scan)


def reference_labels(reference) -> np.ndarray:
    """(z, y, x) uint8 labels of a ReferenceLabelMap (read-only, memory-mapped)."""
    from backend.imaging.volumes import reference_labels as stored_labels

    return stored_labels(reference)


# --- files ----------------------------------------------------------------------------

def write_nifti(array: np.ndarray, geometry: dict, path: str | Path) -> Path:
    """Write a (z, y, x) array on a scan's working grid as NIfTI (.nii.gz) with its geometry."""
    from mltasks.io.files import write_volume

    return write_volume(array, Geometry.from_dict(geometry), path)


def write_dicom_ct(hu: np.ndarray, geometry: dict, out_dir: str | Path, **identifiers) -> list[Path]:
    """Write a working-grid CT as a DICOM series (the source images a DICOM-SEG refers to)."""
    from mltasks.io.dicom_write import write_dicom_series

    return write_dicom_series(hu, Geometry.from_dict(geometry), out_dir, **identifiers)


def phantom_volume(seed: int, *, shape: tuple[int, int, int], fov_mm: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """A procedural phantom slab stored as it is: (hu int16, labels uint8, geometry dict).

    1 mm slices, ``fov_mm`` in-plane field of view on ``shape[1:]`` pixels, centred on the hips.
    """
    from mltasks.phantom import generate_phantom

    spacing = (1.0, fov_mm / shape[1], fov_mm / shape[2])
    ph = generate_phantom(seed, shape=shape, spacing=spacing)
    return ph.hu.astype(np.int16), ph.labels.astype(np.uint8), ph.geometry.to_dict()

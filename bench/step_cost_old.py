"""The "old" arm of ``bench/step_cost.py``: a library replica of the step at commit 0e81657.

What the product did before the working-grid rewiring, rebuilt from ``mltasks``
functions that stay (nothing from ``backend``):

- import: read the DICOM series (``mltasks.io.read_volume``), hash its pixels, resample
  it slab by slab (linear, as ``backend/imaging/importing.working_volume`` did) onto
  ``network_geometry(matrix=512, fov_mm=360, slice_interval_mm=1)``: interpolated 1 mm
  slices, a centred 360 mm crop; place the label map onto the CT and resample it
  (nearest) onto that grid, count the labels it drops; store both as .npy and copy the
  original files, then read the volume back memory-mapped as the worker did;
- seed: 5 % of the labelled working slices, evenly spaced (``training_set._evenly_spaced``);
- model 0: ``mltasks.train.train`` on the seed slices resized to the 256 network matrix,
  with the TrainConfig defaults before commit bc6544e (50 epochs, patience 10 on the
  validation Dice alone, one pass per epoch, the paper's augmentation ranges);
- inference: full-T MC dropout over every unlabelled working slice in
  ``mltasks.step.slice_chunks`` (``network_inputs`` + ``score_slices``), the ranking
  saved as a compressed .npz as the worker stored it;
- selection: ``choose_slices`` + ``chosen_maps``, the maps resized to the working grid,
  ``query_masks`` (Eq. 7 with the project's tau);
- answers (timed, excluded): the reference labels merged into the queried pixels;
- training: warm start from model 0 on the seed and answered slices, same settings;
- evaluation: no test scan, so only the model is loaded (as the worker did).

With ``--size`` below 512 (development) the working and network matrices scale by
``size / 512``, so the arm keeps its proportions on a small phantom.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from step_cost_probe import Recorder, acquired_slices

from mltasks.checkpoint import load_model, save_checkpoint
from mltasks.geometry import Geometry
from mltasks.io import labels_outside, read_label_onto, read_volume
from mltasks.labels import default_label_set
from mltasks.nets import NetConfig, profile
from mltasks.preprocess import (
    AIR_HU,
    network_geometry,
    normalise_hu,
    resample,
    resample_labels_to_network,
)
from mltasks.query import merge_answers
from mltasks.resize import network_inputs, resize_float, resize_images, resize_labels
from mltasks.step import (
    SliceRanking,
    StepPlan,
    choose_slices,
    chosen_maps,
    query_masks,
    score_slices,
    slice_chunks,
)
from mltasks.train import TrainConfig, train

# The old settings (commit 0e81657): backend/imaging/importing.WORKING_GRID, the ``fast``
# profile's network matrix, the Project model's step defaults, and (before bc6544e) the
# TrainConfig defaults that differ from today's.
OLD_GRID = {"matrix": 512, "fov_mm": 360.0, "slice_interval_mm": 1.0}
OLD_NETWORK_MATRIX = 256
OLD_STEP = {"tau": 2.5e-3, "slices_per_step": 10, "k_uncertain": 50, "mc_samples": 10}
OLD_TRAIN = {"max_epochs": 50, "patience": 10, "patience_rule": "val", "min_batches_per_epoch": 0,
             "augment_preset": "paper"}
STEP_SEED = 1  # the worker seeds a step with its primary key: 1 for the first step of a fresh database
SCAN_ID = 1
_SLAB = 32  # working slices resampled at a time, as the old importer did
LABELS = default_label_set()


@dataclass
class Imported:
    hu: np.ndarray  # (z', H, W) int16 working grid, memory-mapped
    labels: np.ndarray  # (z', H, W) uint8 reference on the working grid, memory-mapped
    labelled: list[int]
    geometry: Geometry
    original: Geometry


def run(args, work: Path, phantom: Path, rec: Recorder) -> None:
    torch.set_num_threads(args.threads)
    scale = args.size / 512
    grid = {**OLD_GRID, "matrix": round(OLD_GRID["matrix"] * scale)}
    matrix = max(8, 8 * round(OLD_NETWORK_MATRIX * scale / 8))
    net_cfg = net_config(matrix)
    config = train_config(args)
    t = args.t or OLD_STEP["mc_samples"]
    with rec.phase("import"):
        vol = import_ct(phantom, work, grid)
    with rec.phase("seed"):
        training = {z: np.array(vol.labels[z]) for z in evenly_spaced(vol.labelled, args.seed_fraction)}
    seed_slices = sorted(training)
    with rec.phase("model0"):
        model0 = train_model(vol.hu, training, net_cfg, matrix, config, work / "model-0.pt", init=None)
    todo = [z for z in range(vol.hu.shape[0]) if z not in training]
    with rec.phase("inference"):
        stored = rank_pool(vol.hu, model0.model, todo, matrix, t)
    with rec.phase("selecting"):
        chosen, predicted, masks = select(stored, vol.hu, model0.model, matrix, t)
    with rec.phase("answers"):
        answer(chosen, predicted, masks, vol.labels, training)
    with rec.phase("training"):
        model1 = train_model(vol.hu, training, net_cfg, matrix, config, work / "model-1.pt", init=model0.model)
    with rec.phase("evaluating"):
        load_model(work / "model-1.pt")  # no test scan: nothing to segment
    rec.seconds["inferring"] = rec.seconds["model0"] + rec.seconds["inference"]
    rec.info.update(describe(vol, seed_slices, todo, chosen, masks, model0, model1, config, t))


def net_config(matrix: int) -> NetConfig:
    """The ``fast`` profile on the old network matrix (``matrix`` only while NetConfig has one)."""
    known = {f.name for f in dataclasses.fields(NetConfig)}
    return profile("fast", n_classes=LABELS.n_classes, **({"matrix": matrix} if "matrix" in known else {}))


def train_config(args) -> TrainConfig:
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    old = {k: v for k, v in OLD_TRAIN.items() if k in known}
    if args.epochs:
        old["max_epochs"] = args.epochs
    return TrainConfig(**old)


# --- import ------------------------------------------------------------------------------

def import_ct(phantom: Path, work: Path, grid: dict) -> Imported:
    hu, geometry = read_volume(phantom / "dicom")
    hashlib.sha256(np.ascontiguousarray(hu).data).hexdigest()
    volume, target = working_volume(hu, geometry, grid)
    on_ct = read_label_onto(phantom / "labels.nii.gz", geometry)
    np.unique(on_ct)  # the importer checked the values against the label set
    on_ct = on_ct.astype(np.uint8)
    labels = resample_labels_to_network(on_ct, geometry, target)
    labels_outside(on_ct, geometry, target)
    labelled = [int(k) for k in np.flatnonzero(labels.reshape(labels.shape[0], -1).any(axis=1))]
    del hu, on_ct
    np.save(work / "volume.npy", volume)
    np.save(work / "labels.npy", labels)
    store_originals(phantom / "dicom", work / "originals")
    del volume, labels
    return Imported(np.load(work / "volume.npy", mmap_mode="r"), np.load(work / "labels.npy", mmap_mode="r"),
                    labelled, target, geometry)


def working_volume(hu: np.ndarray, geometry: Geometry, grid: dict) -> tuple[np.ndarray, Geometry]:
    """The old importer's resampling: linear, slab by slab, int16 HU on ``network_geometry(**grid)``."""
    target = network_geometry(geometry, **grid)
    out = np.empty(target.shape, dtype=np.int16)
    direction = np.asarray(geometry.direction, dtype=np.float64).reshape(3, 3)
    step = target.spacing[0] / geometry.spacing[0]
    for k0 in range(0, target.shape[0], _SLAB):
        k1 = min(k0 + _SLAB, target.shape[0])
        s0 = max(int(np.floor(k0 * step)) - 1, 0)
        s1 = min(int(np.ceil((k1 - 1) * step)) + 2, geometry.shape[0])
        slab = resample(hu[s0:s1], _sub(geometry, direction, s0, s1), _sub(target, direction, k0, k1),
                        interpolation="linear", default=AIR_HU)
        np.rint(slab, out=slab)
        np.clip(slab, -32768, 32767, out=slab)
        out[k0:k1] = slab
    return out, target


def _sub(geometry: Geometry, direction: np.ndarray, k0: int, k1: int) -> Geometry:
    origin = np.asarray(geometry.origin) + direction[:, 2] * geometry.spacing[0] * k0
    return Geometry(shape=(k1 - k0, *geometry.shape[1:]), spacing=geometry.spacing,
                    origin=tuple(float(v) for v in origin), direction=geometry.direction)


def store_originals(folder: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for k, path in enumerate(sorted(folder.iterdir())):
        shutil.copyfile(path, target / f"{k:05d}.dcm")


def evenly_spaced(zs: list[int], fraction: float) -> list[int]:
    """``backend.acquisition.steps.training_set._evenly_spaced`` at 0e81657."""
    count = max(1, int(round(fraction * len(zs))))
    picks = np.linspace(0, len(zs) - 1, count + 2)[1:-1] if count < len(zs) else np.arange(len(zs))
    return sorted({sorted(zs)[int(round(p))] for p in picks})


# --- the step ----------------------------------------------------------------------------

def train_model(hu, training: dict[int, np.ndarray], net_cfg, m: int, config: TrainConfig, path: Path, init):
    """The old ``ml_adapter.train_model``: working slices resized to the ``m`` x ``m`` network matrix, then ``train``."""
    zs = sorted(training)
    images = resize_images(normalise_hu(np.stack([np.asarray(hu[z]) for z in zs])), m)
    targets = resize_labels(np.stack([training[z] for z in zs]), (m, m))
    result = train(images, targets, net_cfg, config=config, label_set=LABELS, init_model=init,
                   checkpoint_path=path.with_suffix(".epochs.pt"))
    save_checkpoint(path, result.model, label_set=LABELS, train_config=config)
    return result


def score(hu, zs: list[int], model, matrix: int, t: int):
    images, body = network_inputs(np.asarray(hu[zs]), matrix)
    return score_slices(images, model, body=body, t_samples=t, seed=STEP_SEED)


def rank_pool(hu, model, todo: list[int], matrix: int, t: int) -> bytes:
    """Full-T scores of every unlabelled slice (the old ``phases._rank_pool``), stored as .npz."""
    ranking = SliceRanking(keep=OLD_STEP["k_uncertain"])
    for chunk in slice_chunks(todo):
        ranking.add([(SCAN_ID, z) for z in chunk], score(hu, chunk, model, matrix, t))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **ranking.to_arrays())
    return buffer.getvalue()


def plan() -> StepPlan:
    return StepPlan("tau", OLD_STEP["tau"], OLD_STEP["slices_per_step"], OLD_STEP["k_uncertain"])


def select(stored: bytes, hu, model, matrix: int, t: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(chosen z, predicted labels, query masks) on the working grid (the old ``run_selection``)."""
    ranking = SliceRanking.from_arrays(dict(np.load(io.BytesIO(stored))), keep=OLD_STEP["k_uncertain"])
    selection = choose_slices(ranking.scores, ranking.descriptors, plan(), seed=STEP_SEED)
    keys = ranking.keys
    labels, u = chosen_maps(ranking, selection.chosen, lambda i: score(hu, [int(keys[i][1])], model, matrix, t))
    labels, u = np.stack(labels), np.stack(u)  # one network matrix: one shape
    shape = tuple(hu.shape[1:])
    labels, u = resize_labels(labels, shape), resize_float(u, shape)
    return [int(keys[i][1]) for i in selection.chosen], labels, query_masks(u, plan(), seed=STEP_SEED)


def answer(chosen: list[int], predicted: np.ndarray, masks: np.ndarray, reference, training: dict) -> None:
    """Scripted answers: the reference inside each query, merged with the prediction (old ``merge``)."""
    for z, pred, mask in zip(chosen, predicted, masks, strict=True):
        answers = np.where(mask, np.asarray(reference[z]).astype(np.int16), -1)
        training[z] = merge_answers(pred, mask, answers)[0].astype(np.uint8)


def trained(result) -> dict:
    return {"epochs": len(result.history), "train_slices": getattr(result, "n_train", None),
            "validation_slices": getattr(result, "n_val", None), "stop": getattr(result, "stop_reason", None)}


def describe(vol: Imported, seed_slices, todo, chosen, masks, model0, model1, config, t: int) -> dict:
    return {
        "working_shape": list(vol.hu.shape), "working_spacing_mm": list(vol.geometry.spacing),
        "original_shape": list(vol.original.shape), "labelled_slices": len(vol.labelled),
        "seed_slices": len(seed_slices), "scored_slices": len(todo), "mc_samples": t,
        "queries": len(chosen), "queried_slices": chosen,
        "queried_pixels": int(masks.sum()), "query_pixels": int(masks.size),
        "mac": float(masks.sum() / masks.size) if masks.size else None,
        "acquired_queried_slices": acquired_slices(chosen, vol.geometry.to_dict(), vol.original.to_dict()),
        "model0": trained(model0), "model1": trained(model1),
        "train_config": config.to_dict(),
    }

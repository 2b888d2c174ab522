"""The paper's active-learning simulation (method.md §5) with an oracle answering from ground truth.

A pool of labelled volumes starts with ``initial_fraction`` of each volume's
slices labelled (evenly spaced, **choice**); every step adds, per strategy,
``step_fraction`` of each pool volume's slices (their sum, chosen over the whole
pool), the oracle answers the queried pixels from the ground truth, the other
pixels of those slices take the predicted label under the step's guard of Eq. 7
(``label_rule``: "guard" as the product's worker, "paper" unguarded, "masked";
``mltasks.guard``: whole slices while the model's held-out Dice is low, and only
trusted classes auto-labelled), and the network is retrained
(re-initialised as the paper, or warm-started) and evaluated on the test volumes.
The step-0 model is trained once and shared by all strategies.

Configuration: a JSON or TOML file whose keys mirror ``SimulationConfig`` with
sections ``data``, ``network``, ``training`` (see docs/simulation.md).
Outputs in the output folder: ``simulation.csv`` (one row per strategy and
step), ``psv_dice.csv`` (per test volume and structure) and the figures of
``mltasks.simulate_output.write_figures``.
"""

from __future__ import annotations

import json
import math
import time
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from mltasks.active import (
    ALConfig,
    Evaluation,
    SlicePool,
    TestVolume,
    TrainingSet,
    evaluate,
    propose_queries,
    train_step,
)
from mltasks.errors import InvalidSimulationConfig, MyoLabelError
from mltasks.guard import RULES, GuardConfig, decide
from mltasks.held_out import HELD_OUT_MARGIN, choose_held_out, pooled_dice_of
from mltasks.labels import LabelSet, default_label_set
from mltasks.losses import IGNORE
from mltasks.nets import UNet, profile
from mltasks.preprocess import body_from_hu, preprocess_volume, resample_labels_to_network
from mltasks.progress import ProgressCallback, report
from mltasks.query import ANSWERED, PREDICTED, UNANSWERED, manual_annotation_cost, merge_answers
from mltasks.simulate_output import write_figures, write_results
from mltasks.train import TrainConfig


@dataclass(frozen=True)
class SimulationConfig:
    """Everything a simulation run needs; plain values (from JSON/TOML).

    Attributes:
        steps: S, acquisition steps per strategy (paper: 19 after the start).
        strategies: "manual", "random_slices", "random_pixels" (count of the
            tau = ``random_pixels_tau`` query) or "tau=<value>".
        initial_fraction / step_fraction: share of each pool volume's slices labelled
            at the start / added per step (paper: 0.05 / 0.05).
        warm_start: retrain from the previous weights (default: run 4 of docs/simulation.md)
            instead of re-initialising as the paper did.
        initial_max_epochs: epochs of the step-0 training (None: ``training.max_epochs``),
            so warm-started runs can train the start model longer than each step.
        data: {"kind": "phantoms", "pool": 15, "test": 5, "size": [z, y, x], "seed": 0}
            or {"kind": "files", "pool": [{"ct": path, "labels": path}, ...], "test": [...]}
            (relative paths are relative to the configuration file).
        network: {"profile": "fast", "matrix": int?, "fov_mm": 360, "slice_interval_mm": 1.0
            or "native" (keep the volume's own z spacing), "t_samples": 10,
            "candidate_factor": 2, "batch_size": 8}.
        training: any ``TrainConfig`` field (max_epochs, patience, lr, augment, ...).
        label_rule: Eq. 7's guard, as the worker's ``network_config.label_rule``: "guard",
            "paper" (the unguarded Eq. 7 of the runs in docs/simulation.md) or "masked".
        held_out_slices: slices of each pool volume held out of training, spread along it and
            never next to a training slice (``mltasks.held_out``); they and their neighbours are
            never selected. The guard decides on the current model's Dice over them, as the
            worker decides on a project's held-out slices; 0: on the training's validation Dice.
    """

    steps: int = 19
    strategies: tuple[str, ...] = ("manual", "random_pixels", "tau=1e-3", "tau=2.5e-3", "tau=5e-3")
    initial_fraction: float = 0.05
    step_fraction: float = 0.05
    random_pixels_tau: float = 2.5e-3
    warm_start: bool = True
    initial_max_epochs: int | None = None
    seed: int = 0
    data: dict = field(
        default_factory=lambda: {"kind": "phantoms", "pool": 15, "test": 5, "size": [200, 256, 256]}
    )
    network: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    label_rule: str = "guard"
    held_out_slices: int = 4
    base_dir: str = "."


def load_simulation_config(path: str | Path) -> SimulationConfig:
    """Read a JSON (.json) or TOML (any other suffix) simulation configuration."""
    path = Path(path)
    try:
        text = path.read_text()
        raw = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (OSError, ValueError) as exc:
        raise InvalidSimulationConfig(
            f"{path}: cannot read the configuration ({exc}); fix the file"
        ) from exc
    known = {f.name for f in fields(SimulationConfig)} - {"base_dir"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidSimulationConfig(
            f"{path}: unknown keys {unknown}; known keys: {sorted(known)}"
        )
    if "strategies" in raw:
        raw["strategies"] = tuple(raw["strategies"])
    config = SimulationConfig(**raw, base_dir=str(path.parent))
    if config.label_rule not in RULES:
        raise InvalidSimulationConfig(f"{path}: label_rule {config.label_rule!r} is not one of {', '.join(RULES)}")
    for spec in config.strategies:
        strategy_config(spec, config)  # fail early on a bad name
    return config


def strategy_config(spec: str, config: SimulationConfig) -> tuple[str, float, float | None]:
    """(ALConfig strategy, tau, target MAC or None) of a strategy name.

    ``manual``, ``random_slices``, ``random_pixels`` (as many pixels as
    ``random_pixels_tau`` queries), ``tau=<t>``, and at a fixed MAC: ``mac=<m>`` (the tau
    that queries the fraction m of each step's selected pixels) and ``random_mac=<m>``
    (as many random pixels).
    """
    name, _, value = spec.partition("=")
    if name not in ("tau", "manual", "random_pixels", "random_slices", "mac", "random_mac"):
        raise InvalidSimulationConfig(
            f"unknown strategy {spec!r}; use manual, random_slices, random_pixels, tau=<value>, "
            "mac=<target MAC> or random_mac=<target MAC>"
        )
    try:
        number = float(value) if value else math.nan
    except ValueError as exc:
        raise InvalidSimulationConfig(f"strategy {spec!r}: {value!r} is not a number") from exc
    if name in ("mac", "random_mac"):
        if not 0.0 < number <= 1.0:
            raise InvalidSimulationConfig(f"strategy {spec!r} needs a target MAC in (0, 1], e.g. mac=0.05")
        return ("tau" if name == "mac" else "random_pixels"), 0.0, number
    tau = number if value else (config.random_pixels_tau if name == "random_pixels" else math.nan)
    if name == "tau" and not math.isfinite(tau):
        raise InvalidSimulationConfig(f"strategy {spec!r} needs a threshold, e.g. tau=2.5e-3")
    return name, (tau if math.isfinite(tau) else 0.0), None


@dataclass
class _Volume:
    name: str
    images: np.ndarray
    labels: np.ndarray
    body: np.ndarray
    spacing: tuple[float, float, float]


def _network_volume(name: str, hu, geometry, labels, net: dict, matrix: int) -> _Volume:
    interval = net.get("slice_interval_mm", 1.0)
    interval = geometry.spacing[0] if interval == "native" else float(interval)
    pre = preprocess_volume(
        hu,
        geometry,
        matrix=matrix,
        fov_mm=float(net.get("fov_mm", 360.0)),
        slice_interval_mm=interval,
    )
    lab = resample_labels_to_network(labels.astype(np.uint8), geometry, pre.geometry)
    # The body as the product finds it (from the HU), not a phantom's exact body: the
    # simulation scores slices as the worker does.
    body = resample_labels_to_network(body_from_hu(hu).astype(np.uint8), geometry, pre.geometry) > 0
    return _Volume(name, pre.image, lab, body, pre.geometry.spacing)


def load_volumes(
    config: SimulationConfig, matrix: int, *, on_progress: ProgressCallback | None = None
) -> tuple[list[_Volume], list[_Volume], LabelSet]:
    """(pool volumes, test volumes, label set) on the network grid."""
    data, net = config.data, config.network
    if data.get("kind", "phantoms") == "phantoms":
        from mltasks.phantom import generate_phantom

        n_pool, n_test = int(data.get("pool", 15)), int(data.get("test", 5))
        size, seed = (
            tuple(int(v) for v in data.get("size", (200, 256, 256))),
            int(data.get("seed", 0)),
        )
        vols = []
        for i in range(n_pool + n_test):
            ph = generate_phantom(seed + i, shape=size)
            vols.append(
                _network_volume(f"phantom_{seed + i}", ph.hu, ph.geometry, ph.labels, net, matrix)
            )
            report(on_progress, "volumes", i + 1, n_pool + n_test)
        return vols[:n_pool], vols[n_pool:], ph.label_set
    if data.get("kind") != "files":
        raise InvalidSimulationConfig(
            f"data.kind must be 'phantoms' or 'files', not {data.get('kind')!r}"
        )
    from mltasks.io import read_label_onto, read_volume

    def read(entries: list[dict]) -> list[_Volume]:
        out = []
        for entry in entries:
            ct, lab = (Path(config.base_dir) / entry[k] for k in ("ct", "labels"))
            hu, geometry = read_volume(ct)
            out.append(
                _network_volume(ct.name, hu, geometry, read_label_onto(lab, geometry), net, matrix)
            )
        return out

    return read(data["pool"]), read(data["test"]), default_label_set()


def evenly_spaced(n_slices: int, fraction: float) -> np.ndarray:
    k = min(n_slices, max(1, round(fraction * n_slices)))
    return ((np.arange(k) + 0.5) * n_slices / k).astype(np.int64)


def al_config(config: SimulationConfig, n_classes: int, n_select: int) -> ALConfig:
    net = dict(config.network)
    prof = net.pop("profile", "fast")
    overrides = {k: net[k] for k in ("matrix", "width", "depth", "dropout") if k in net}
    return ALConfig(
        n_select=n_select, candidate_factor=float(net.get("candidate_factor", 2.0)),
        t_samples=int(net.get("t_samples", 10)), batch_size=int(net.get("batch_size", 8)), seed=config.seed,
        net=profile(prof, n_classes=n_classes, **overrides),
        train=TrainConfig(**{"seed": config.seed, **config.training}),
    )  # fmt: skip


@dataclass
class SimulationResult:
    rows: list[dict]
    psv_rows: list[dict]
    out_dir: Path


def run_simulation(
    config: SimulationConfig, out_dir: str | Path, *, on_progress: ProgressCallback | None = None
) -> SimulationResult:
    """Run every strategy for ``config.steps`` steps; write CSVs and figures into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        base = al_config(config, default_label_set().n_classes, 1)
    except (TypeError, MyoLabelError) as exc:
        raise InvalidSimulationConfig(f"bad network/training settings: {exc}") from exc
    pool_vols, test_vols, label_set = load_volumes(config, base.net.matrix, on_progress=on_progress)
    base = replace(base, net=replace(base.net, n_classes=label_set.n_classes))
    images = np.concatenate([v.images for v in pool_vols])
    truth = np.concatenate([v.labels for v in pool_vols])
    body = np.concatenate([v.body for v in pool_vols])
    volumes = np.concatenate([np.full(v.images.shape[0], k) for k, v in enumerate(pool_vols)])
    starts = np.cumsum([0] + [v.images.shape[0] for v in pool_vols])[:-1]
    labelled0 = np.zeros(images.shape[0], bool)
    for s, v in zip(starts, pool_vols, strict=True):
        labelled0[s + evenly_spaced(v.images.shape[0], config.initial_fraction)] = True
    held, off_limits = _held_out(labelled0, truth, volumes, config.held_out_slices)
    n_select = sum(max(1, round(config.step_fraction * v.images.shape[0])) for v in pool_vols)
    tests = [TestVolume(v.name, v.images, v.labels, v.spacing) for v in test_vols]
    eval_kw = {"t_samples": base.t_samples, "batch_size": base.batch_size, "seed": config.seed}

    t0 = time.perf_counter()
    idx0 = np.flatnonzero(labelled0)
    start_set = TrainingSet(
        images[idx0], truth[idx0], np.full(truth[idx0].shape, ANSWERED, np.uint8)
    )
    epochs0 = config.initial_max_epochs or base.train.max_epochs
    first = replace(base, train=replace(base.train, max_epochs=epochs0))
    keys = np.stack([volumes, np.arange(images.shape[0]) - starts[volumes]], axis=1)
    trained0 = train_step(None, start_set, first, warm_start=False, label_set=label_set,
                          slice_keys=keys[idx0], on_progress=on_progress)  # fmt: skip
    model0 = trained0.model

    def guard_evidence(trained) -> np.ndarray | None:
        """The guard's input: Dice on the held-out slices, else the training's validation Dice."""
        if not held.size:
            return trained.val_dice_per_class
        return pooled_dice_of(trained.model, images[held], truth[held], t_samples=base.t_samples, seed=config.seed)

    evidence0 = guard_evidence(trained0)
    measured_on = f"{held.size} held-out slices" if held.size else "validation slices"
    ev0 = evaluate(model0, tests, **eval_kw)
    wall0 = time.perf_counter() - t0
    rows, psv_rows, runs = [], [], []
    for spec in config.strategies:
        name, tau, target_mac = strategy_config(spec, config)
        cfg = replace(base, strategy=name, tau=tau, target_mac=target_mac, n_select=n_select)
        no_guard = {"guard_mode": "", "auto_labelled": 0, "auto_wrong": 0, "guard_measured_on": ""}
        rows.append(_row(spec, 0, ev0, label_set, idx0.size, [], wall0) | no_guard)
        psv_rows += _psv_rows(spec, 0, ev0, label_set)
        runs.append(_Run(spec, cfg, model0, SlicePool(images, labelled0 | off_limits, body, volumes), start_set,
                         list(idx0), evidence0))
    # Steps outside, strategies inside: a run stopped early still compares every
    # strategy at the same step.
    for step in range(1, config.steps + 1):
        for run in runs:
            if run.done:
                continue
            t = time.perf_counter()
            guard = decide(run.held_out, config=GuardConfig(rule=config.label_rule), strategy=run.cfg.strategy)
            queries = propose_queries(run.model, run.pool, run.cfg, step=step, guard=guard)
            if not queries:
                run.done = True
                continue
            chosen = [q.slice_index for q in queries]
            labels, provenance = _oracle(queries, truth)
            run.tset = run.tset.added(images[chosen], labels, provenance)
            run.pool.labelled[chosen] = True
            run.indices += chosen
            trained = train_step(run.model, run.tset, run.cfg, warm_start=config.warm_start, label_set=label_set,
                                 slice_keys=keys[run.indices])  # fmt: skip
            run.model, run.held_out = trained.model, guard_evidence(trained)
            ev = evaluate(run.model, tests, **eval_kw)
            masks = [q.mask for q in queries]
            n_labelled = int(run.pool.labelled.sum() - off_limits.sum())
            rows.append(
                _row(run.spec, step, ev, label_set, n_labelled, masks, time.perf_counter() - t)
                | _auto_labels(guard.mode, labels, provenance, truth[chosen])
                | {"guard_measured_on": measured_on}
            )
            psv_rows += _psv_rows(run.spec, step, ev, label_set)
            write_results(out, rows, psv_rows)  # a crash or a kill keeps the finished steps
            report(
                on_progress,
                f"step {step} {run.spec}",
                step,
                config.steps,
                dice=round(ev.mean_dice, 4),
                mac=round(rows[-1]["mac"], 5),
            )
    write_results(out, rows, psv_rows)
    write_figures(rows, psv_rows, out)
    return SimulationResult(rows, psv_rows, out)


def _held_out(labelled: np.ndarray, truth: np.ndarray, volumes: np.ndarray,
              per_volume: int) -> tuple[np.ndarray, np.ndarray]:
    """(pool indices of the held-out slices, (N,) bool of the slices never selected for them:
    the held-out slices and their neighbours), per volume as ``mltasks.held_out`` chooses."""
    has_structure = truth.reshape(truth.shape[0], -1).max(axis=1) > 0
    held = []
    for v in np.unique(volumes):
        idx = np.flatnonzero(volumes == v)
        if per_volume > 0:
            held += idx[choose_held_out(labelled[idx], per_volume, eligible=has_structure[idx])].tolist()
    off = np.zeros(labelled.shape, bool)
    for i in held:  # a neighbour in another volume is not a neighbour
        near = np.arange(i - HELD_OUT_MARGIN, i + HELD_OUT_MARGIN + 1)
        near = near[(near >= 0) & (near < off.size)]
        off[near[volumes[near] == volumes[i]]] = True
    return np.asarray(held, np.int64), off & ~labelled


@dataclass
class _Run:
    """One strategy's state between steps."""

    spec: str
    cfg: ALConfig
    model: UNet
    pool: SlicePool
    tset: TrainingSet
    indices: list[int]  # pool index of every training slice, in the training set's order
    held_out: np.ndarray | None  # the model's held-out Dice per class: the guard's input
    done: bool = False


def _auto_labels(mode: str, labels: np.ndarray, provenance: np.ndarray, truth: np.ndarray) -> dict:
    """The step's guard mode, auto-labelled pixels and how many of them differ from the truth."""
    auto = (provenance == PREDICTED) & (labels != IGNORE)
    return {"guard_mode": mode, "auto_labelled": int(auto.sum()), "auto_wrong": int((auto & (labels != truth)).sum())}


def _oracle(queries, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, provenance) (n, H, W) of the queried slices: ground truth inside the queries."""
    merged = [
        merge_answers(q.predicted, q.mask, np.where(q.mask, truth[q.slice_index], UNANSWERED))
        for q in queries
    ]
    return np.stack([m[0] for m in merged]), np.stack([m[1] for m in merged])


def _row(
    spec: str,
    step: int,
    ev: Evaluation,
    label_set: LabelSet,
    n_labelled: int,
    masks: list,
    wall: float,
) -> dict:
    queried = int(sum(int(np.count_nonzero(m)) for m in masks))
    row = {
        "strategy": spec, "step": step, "labelled_slices": n_labelled, "added_slices": len(masks),
        "added_pixels": int(sum(m.size for m in masks)), "queried_pixels": queried,
        "mac": manual_annotation_cost(masks) if masks else math.nan, "mean_dice": ev.mean_dice,
    }  # fmt: skip
    per = ev.structure_dice
    for lab in label_set.labels:
        row[f"dice_{lab.name}"] = float(per[lab.value])
    row["wall_time_s"] = round(wall, 3)
    return row


def _psv_rows(spec: str, step: int, ev: Evaluation, label_set: LabelSet) -> list[dict]:
    return [
        {"strategy": spec, "step": step, "volume": name, "structure": lab.name,
         "psv": float(ev.psv[v, lab.value]), "dice": float(ev.dice[v, lab.value])}
        for v, name in enumerate(ev.names) for lab in label_set.labels
        if np.isfinite(ev.psv[v, lab.value]) and np.isfinite(ev.dice[v, lab.value])
    ]  # fmt: skip

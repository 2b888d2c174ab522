"""One active-learning step as functions a worker can call (method.md §4).

``propose_queries`` (model, pool, configuration) -> queries: MC inference over
the unlabelled slices, slice scores, D_c, D_r and pixel masks. ``retrain``
re-initialises (as the paper) or warm-starts the network on the grown training
set. ``evaluate`` measures Dice, ASD and PSV per structure on test volumes.

Slices are on the network grid: images (N, H, W) float32 in [0, 1], labels
uint8, H = W = the network matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mltasks.errors import InvalidQuery
from mltasks.guard import GuardDecision, guard_query_mask, guarded_prediction
from mltasks.infer import mc_predict_slices
from mltasks.labels import LabelSet
from mltasks.metrics import evaluate_volume
from mltasks.nets import NetConfig, UNet
from mltasks.postprocess import keep_largest_components
from mltasks.progress import ProgressCallback
from mltasks.ranking import DEFAULT_RESCORE_FACTOR, DEFAULT_T_CHEAP, rank_pool
from mltasks.step import (
    ScoredSlices,
    StepPlan,
    choose_slices,
    chosen_maps,
    query_masks,
    score_slices,
)
from mltasks.train import TrainConfig, TrainResult, train
from mltasks.uncertainty import structure_wise_variance

STRATEGIES = ("tau", "manual", "random_pixels", "random_slices")


@dataclass(frozen=True)
class ALConfig:
    """Settings of one acquisition step.

    Attributes:
        strategy: "tau" (proposed: pixels with u >= tau), "manual" (whole selected
            slices), "random_pixels" (the selected slices, as many random pixels as
            the tau query would send), "random_slices" (random slices, whole).
        tau: threshold of Eq. 7 (also sets the pixel count of "random_pixels").
        target_mac: when set, replaces ``tau`` at every step by the threshold that queries
            this fraction of the selected slices' pixels (``suggest_tau``), for "tau" and
            "random_pixels": the comparison of method.md §5 at a fixed MAC.
        n_select: |D_r|, slices added per step.
        candidate_factor: |D_c| = ceil(candidate_factor * n_select) (**choice**: 2,
            as Yang et al. 2017 took 16 uncertain and kept 8).
        t_samples: MC dropout samples per slice (T) of the candidates and chosen slices.
        t_cheap: MC samples of the ranking's cheap pass over every unlabelled slice.
        rescore_factor: the top rescore_factor x |D_c| slices of the cheap pass are
            scored again with T (``mltasks.ranking``).
        batch_size: slices per network batch.
        seed: seed of MC dropout and of the random baselines (mixed with the step).
        net: architecture used when ``retrain`` starts without a model.
        train: optimisation settings of ``retrain``.
    """

    strategy: str = "tau"
    tau: float = 2.5e-3
    target_mac: float | None = None
    n_select: int = 10
    candidate_factor: float = 2.0
    t_samples: int = 10
    t_cheap: int = DEFAULT_T_CHEAP
    rescore_factor: float = DEFAULT_RESCORE_FACTOR
    batch_size: int = 8
    seed: int = 0
    net: NetConfig | None = None
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            msg = f"unknown strategy {self.strategy!r}; choose one of {', '.join(STRATEGIES)}"
            raise InvalidQuery(msg)
        if self.target_mac is not None and not 0.0 < self.target_mac <= 1.0:
            raise InvalidQuery(f"target_mac must lie in (0, 1], got {self.target_mac}")
        if self.n_select < 1 or self.candidate_factor < 1 or not math.isfinite(self.tau):
            msg = f"need n_select >= 1, candidate_factor >= 1 and a finite tau; got {self.n_select}, {self.candidate_factor}, {self.tau}"
            raise InvalidQuery(msg)

    @property
    def n_candidates(self) -> int:
        return math.ceil(self.candidate_factor * self.n_select)

    @property
    def plan(self) -> StepPlan:
        return StepPlan(self.strategy, self.tau, self.n_select, self.n_candidates, self.target_mac)


@dataclass
class SlicePool:
    """All slices of the pool and which of them are labelled already.

    Attributes:
        images: (N, H, W) float32 network-grid slices.
        labelled: (N,) bool, True for slices in the training set.
        body: (N, H, W) bool body masks, or None (slice scores then average whole slices).
        volumes: (N,) int, the volume each slice belongs to (None: one volume); slices are
            scored volume by volume, in chunks, as the worker scores a scan.
    """

    images: np.ndarray
    labelled: np.ndarray
    body: np.ndarray | None = None
    volumes: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or self.labelled.shape != (self.images.shape[0],):
            msg = f"images must be (N, H, W) and labelled (N,); got {self.images.shape} and {self.labelled.shape}"
            raise InvalidQuery(msg)
        if self.body is not None and self.body.shape != self.images.shape:
            raise InvalidQuery(
                f"body {self.body.shape} must have the images' shape {self.images.shape}"
            )

    @property
    def unlabelled(self) -> np.ndarray:
        """(M,) int64 indices of the slices not yet labelled (D_u)."""
        return np.flatnonzero(~self.labelled)


@dataclass
class Query:
    """One slice sent to the expert.

    Attributes:
        slice_index: index into the pool.
        mask: (H, W) bool, the pixels the expert must label.
        predicted: (H, W) uint8 labels of the current model (kept outside the mask).
        score: the slice's uncertainty score (NaN for random slices).
    """

    slice_index: int
    mask: np.ndarray
    predicted: np.ndarray
    score: float

    @property
    def n_queried(self) -> int:
        return int(np.count_nonzero(self.mask))


@dataclass
class TrainingSet:
    """Labelled slices: images (N, H, W) float32, labels (N, H, W) uint8 (255 unlabelled),
    provenance (N, H, W) uint8 (``query.PREDICTED`` / ``query.ANSWERED``)."""

    images: np.ndarray
    labels: np.ndarray
    provenance: np.ndarray

    def added(self, images: np.ndarray, labels: np.ndarray, provenance: np.ndarray) -> TrainingSet:
        """A new set with (n, H, W) slices appended."""
        return TrainingSet(
            np.concatenate([self.images, images]),
            np.concatenate([self.labels, labels.astype(np.uint8)]),
            np.concatenate([self.provenance, provenance.astype(np.uint8)]),
        )


def step_seed(seed: int, step: int) -> int:
    """The seed of one step (MC dropout masks and the random baselines' draws)."""
    return seed * 1000 + step


def propose_queries(
    model: UNet,
    pool: SlicePool,
    config: ALConfig,
    *,
    step: int = 0,
    guard: GuardDecision | None = None,
    on_progress: ProgressCallback | None = None,
) -> list[Query]:
    """One acquisition step: the slices and pixels to send to the expert.

    Runs the step code the worker runs (``mltasks.ranking``, ``mltasks.step``): every
    volume's unlabelled slices ranked in chunks (a cheap pass of ``t_cheap`` samples,
    then the full T for the top ``rescore_factor`` x |D_c|), D_c and D_r chosen, the
    pixel query of each chosen slice.

    Args:
        model: the current (Bayesian) network.
        pool: all pool slices; only unlabelled ones are considered.
        config: strategy, tau, n_select, ...
        step: step number, mixed into the seeds so steps differ reproducibly.
        guard: Eq. 7's guard for this step (``mltasks.guard.decide``), as the worker
            applies it: whole slices while the model is untrusted, and each query's
            ``predicted`` holds ``IGNORE`` outside the query where the model is not
            trusted (``guarded_prediction``; no air rule here). None: the paper's Eq. 7.
        on_progress: phase "rank" (``mltasks.ranking.rank_pool``), done = slices scored
            over the cheap and the full pass.
    Returns:
        Queries in the order chosen (D_r's greedy order; drawn order for random
        slices); fewer than ``n_select`` when the pool runs out, none when empty.
    """
    unl = pool.unlabelled
    if unl.size == 0:
        return []
    seed = step_seed(config.seed, step)
    plan = config.plan
    volumes = np.zeros(pool.labelled.shape, np.int64) if pool.volumes is None else pool.volumes
    groups = [(int(v), [int(i) for i in unl[volumes[unl] == v]]) for v in np.unique(volumes[unl])]

    def score(volume: int, indices: list[int], t_samples: int, maps: bool) -> ScoredSlices:
        return _score(model, pool, indices, config, seed, t_samples)

    ranking = rank_pool(groups, score, n_candidates=plan.n_candidates, t_full=config.t_samples,
                        t_cheap=config.t_cheap, rescore_factor=config.rescore_factor,
                        on_progress=on_progress).ranking  # fmt: skip
    selection = choose_slices(ranking.scores, ranking.descriptors, plan, seed=seed)
    if not selection.chosen:
        return []
    keys = ranking.keys  # (volume, pool index)
    labels, u = chosen_maps(ranking, selection.chosen,
                            lambda i: score(0, [int(keys[i][1])], config.t_samples, True))  # fmt: skip
    labels, u = np.stack(labels), np.stack(u)  # one pool: one slice shape
    masks = query_masks(u, plan, seed=seed)
    if guard is not None:
        masks = np.stack([guard_query_mask(m, guard) for m in masks])
        labels = np.stack([guarded_prediction(lab, m, guard)[0] for lab, m in zip(labels, masks, strict=True)])
    scores = ranking.scores
    return [
        Query(int(keys[i][1]), masks[j], labels[j],
              math.nan if plan.strategy == "random_slices" else float(scores[i]))
        for j, i in enumerate(selection.chosen)
    ]  # fmt: skip


def _score(model: UNet, pool: SlicePool, indices: list[int], config: ALConfig, seed: int, t_samples: int) -> ScoredSlices:
    body = None if pool.body is None else pool.body[indices]
    return score_slices(pool.images[indices], model, body=body, t_samples=t_samples,
                        seed=seed, batch_size=config.batch_size)  # fmt: skip


def retrain(
    model_or_none: UNet | None,
    labelled: TrainingSet,
    config: ALConfig,
    *,
    warm_start: bool,
    label_set: LabelSet | None = None,
    on_progress: ProgressCallback | None = None,
) -> tuple[UNet, list[dict]]:
    """Train on the grown training set: from scratch (the paper) or from the previous weights.

    Args:
        model_or_none: the previous step's model, or None for the first step.
        labelled: the training slices.
        config: ``config.train`` (optimisation) and ``config.net`` (architecture
            when there is no model; otherwise the model's own).
        warm_start: start from ``model_or_none``'s weights instead of He initialisation.
        label_set: stored with the model; its flips swap sided labels.
        on_progress: phase "train".
    Returns:
        (the best-validation model in MC mode, per-epoch history).
    """
    result = train_step(model_or_none, labelled, config, warm_start=warm_start, label_set=label_set,
                        on_progress=on_progress)  # fmt: skip
    return result.model, result.history


def train_step(
    model_or_none: UNet | None,
    labelled: TrainingSet,
    config: ALConfig,
    *,
    warm_start: bool,
    label_set: LabelSet | None = None,
    checkpoint_path: str | Path | None = None,
    slice_keys: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
) -> TrainResult:
    """``retrain`` with the whole ``TrainResult``, as the worker's training phase runs it.

    ``checkpoint_path``: epoch checkpoints go there, and a run of the same
    configuration found there is resumed (a worker killed mid-training continues).
    ``slice_keys``: (N, 2) (volume, z) of the slices, for an honest held-out split
    (``mltasks.train.train``).
    """
    net_config = model_or_none.config if model_or_none is not None else config.net
    if net_config is None:
        raise InvalidQuery("retrain needs a model or ALConfig.net to build one; set ALConfig.net")
    path = None if checkpoint_path is None else Path(checkpoint_path)
    return train(
        labelled.images, labelled.labels, net_config, config=config.train, label_set=label_set,
        init_model=model_or_none if warm_start else None, checkpoint_path=path, slice_keys=slice_keys,
        resume=path is not None and path.is_file(), on_progress=on_progress,
    )  # fmt: skip


@dataclass
class TestVolume:
    """A labelled test volume on the network grid: images (z, H, W) float32,
    labels (z, H, W) uint8, spacing (z, y, x) mm of that grid."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]


@dataclass
class Evaluation:
    """Per-volume, per-class tables (n_volumes, n_classes); column 0 (background) is NaN,
    as is a structure absent from a volume's reference."""

    names: list[str]
    dice: np.ndarray
    asd: np.ndarray
    psv: np.ndarray

    @property
    def structure_dice(self) -> np.ndarray:
        """(n_classes,) mean Dice of every structure over the volumes (NaN if never present)."""
        counts = np.isfinite(self.dice).sum(axis=0)
        sums = np.nansum(self.dice, axis=0)
        return np.divide(sums, counts, out=np.full(sums.shape, np.nan), where=counts > 0)

    @property
    def mean_dice(self) -> float:
        """Mean over structures present in the references of the per-structure mean Dice."""
        d = self.structure_dice[1:]
        return float(np.nanmean(d)) if np.isfinite(d).any() else math.nan


def evaluate(
    model: UNet,
    volumes: list[TestVolume],
    *,
    t_samples: int = 10,
    batch_size: int = 8,
    seed: int = 0,
    largest_component: bool = True,
    on_progress: ProgressCallback | None = None,
) -> Evaluation:
    """Dice, ASD (mltasks.metrics) and PSV of the MC prediction of every test volume.

    The prediction keeps the largest 3D component of every structure (method.md §1.6)
    unless ``largest_component`` is False.
    """
    n_classes = model.config.n_classes
    shape = (len(volumes), n_classes)
    dice, asd, psv = np.full(shape, np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for v, vol in enumerate(volumes):
        pred = mc_predict_slices(vol.images, model, t_samples=t_samples, batch_size=batch_size,
                                 seed=seed, on_progress=on_progress)  # fmt: skip
        labels = keep_largest_components(pred.labels) if largest_component else pred.labels
        metrics = evaluate_volume(labels, vol.labels, vol.spacing, n_classes)
        present = np.bincount(vol.labels.reshape(-1), minlength=n_classes)[:n_classes] > 0
        for c in range(1, n_classes):
            if present[c]:
                dice[v, c], asd[v, c] = metrics[c]["dice"], metrics[c]["asd"]
        psv[v] = np.where(
            present, structure_wise_variance(labels, pred.pixel_uncertainty, n_classes), np.nan
        )
        psv[v, 0] = np.nan
    return Evaluation([vol.name for vol in volumes], dice, asd, psv)

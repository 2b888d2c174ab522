"""Ranking the unlabelled slices cheaply: few MC samples for all, the full T for the candidates.

The step (``mltasks.step``) needs, for every unlabelled slice, a score (mean pixel
uncertainty inside the body) and a descriptor, and the maps (labels, u) of the
most uncertain ones (D_c). ``rank_pool`` gets them in two passes:

1. **cheap pass**: every slice with ``t_cheap`` MC samples (3), no maps;
2. **full pass**: the ``rescore_factor`` x |D_c| slices (3 x) with the highest cheap
   scores again with the full T, with maps.

The result is a ``mltasks.step.SliceRanking`` over every slice: re-scored slices
carry their full-T score, descriptor and maps; the others their cheap descriptor and
their cheap score bias-corrected to T samples (the variance estimate of T samples,
sum/T - mean^2, is (T - 1)/T of the variance on average, so a T' score is scaled by
((T - 1)/T) / ((T' - 1)/T')) and capped just below the lowest re-scored score, so
D_c = the top |D_c| of the ranking always lies among the re-scored slices whenever
``rescore_factor`` >= 1. When the two passes would not save network passes
(t_cheap x N + T x M >= T x N, e.g. one CT whose candidates are most of its slices)
only the full pass runs, and the ranking is the full computation itself.

``score_working_slices`` is the scoring function of the worker: working-grid HU
slices -> network grid -> MC dropout batch by batch -> score on the network grid,
maps (argmax of the upsampled mean probabilities, upsampled u) on the working grid.
``score_network_slices`` starts from the network inputs, which a caller may keep
between steps (image-only work: they do not depend on the model).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from mltasks.errors import InvalidQuery
from mltasks.infer import iter_mc_batches
from mltasks.netgrid import NetworkGrid
from mltasks.nets import UNet
from mltasks.progress import ProgressCallback, report
from mltasks.query import select_uncertain, slice_scores
from mltasks.step import ScoredSlices, SliceRanking, slice_chunks

# score(volume, slice indices, t_samples, maps) -> ScoredSlices of those slices, in order.
# ``maps`` False: the labels and uncertainty may be on any grid (they are not kept).
ScoreFn = Callable[[int, list[int], int, bool], ScoredSlices]

DEFAULT_T_CHEAP = 3
DEFAULT_RESCORE_FACTOR = 3.0


@dataclass
class RankedPool:
    """Output of ``rank_pool``.

    Attributes:
        ranking: every slice, keys (volume, slice), in the order given.
        rescored: (N,) bool, True for slices scored with the full T.
        cheap_scores: (N,) float64 scores of the cheap pass (None when it did not run).
        passes: slice passes of the network run, summed over samples (sum of T per slice).
    """

    ranking: SliceRanking
    rescored: np.ndarray
    cheap_scores: np.ndarray | None
    passes: int


def rank_pool(
    volumes: Sequence[tuple[int, Sequence[int]]],
    score: ScoreFn,
    *,
    n_candidates: int,
    t_full: int,
    t_cheap: int = DEFAULT_T_CHEAP,
    rescore_factor: float = DEFAULT_RESCORE_FACTOR,
    on_progress: ProgressCallback | None = None,
) -> RankedPool:
    """Rank the unlabelled slices of several volumes (cheap pass, then full T for the top).

    Args:
        volumes: (volume id, unlabelled slice indices) per volume; chunks never mix volumes.
        score: scores one chunk of one volume (see ``ScoreFn``).
        n_candidates: |D_c|; the ranking keeps the maps of this many slices.
        t_full: T of the full pass (the step's MC samples).
        t_cheap: MC samples of the cheap pass, >= 2 (one sample has no variance).
        rescore_factor: re-score this many times |D_c| slices with the full T, >= 1.
        on_progress: phase "rank", done = slices finished over both passes, info
            ``pass`` = "cheap" or "full".
    """
    _check(n_candidates, t_full, t_cheap, rescore_factor)
    slices = [(int(v), [int(z) for z in zs]) for v, zs in volumes]
    n = sum(len(zs) for _, zs in slices)
    m = min(n, math.ceil(rescore_factor * n_candidates))
    if n == 0:
        return RankedPool(SliceRanking(keep=n_candidates), np.zeros(0, bool), None, 0)
    if not _two_passes_pay(n, m, t_full, t_cheap):
        ranking = _full_pass(slices, score, n_candidates, t_full, on_progress, done=0, total=n)
        return RankedPool(ranking, np.ones(n, bool), None, t_full * n)
    keys, cheap, descriptors = _cheap_pass(slices, score, t_cheap, on_progress, total=n + m)
    top = np.zeros(n, bool)
    top[select_uncertain(cheap, m)] = True
    chosen = _per_volume(keys, top)
    full = _full_pass(chosen, score, n_candidates, t_full, on_progress, done=n, total=n + m)
    ranking = _merge(keys, cheap, descriptors, top, full, n_candidates, t_cheap=t_cheap, t_full=t_full)
    return RankedPool(ranking, top, cheap, t_cheap * n + t_full * m)


def planned_passes(
    n_slices: int,
    *,
    n_candidates: int,
    t_full: int,
    t_cheap: int = DEFAULT_T_CHEAP,
    rescore_factor: float = DEFAULT_RESCORE_FACTOR,
) -> int:
    """Slice passes (network runs of one slice, summed over samples) ``rank_pool`` will make
    for ``n_slices`` unlabelled slices: what a step's inference costs, before running it."""
    _check(n_candidates, t_full, t_cheap, rescore_factor)
    m = min(n_slices, math.ceil(rescore_factor * n_candidates))
    return t_cheap * n_slices + t_full * m if _two_passes_pay(n_slices, m, t_full, t_cheap) else t_full * n_slices


def _two_passes_pay(n: int, m: int, t_full: int, t_cheap: int) -> bool:
    return t_cheap < t_full and t_cheap * n + t_full * m < t_full * n


def _check(n_candidates: int, t_full: int, t_cheap: int, rescore_factor: float) -> None:
    if n_candidates < 1 or t_full < 1:
        raise InvalidQuery(f"n_candidates ({n_candidates}) and t_full ({t_full}) must be >= 1")
    if t_cheap < 2:
        msg = f"t_cheap must be >= 2 (one MC sample has no variance to rank by), got {t_cheap}"
        raise InvalidQuery(msg)
    if not rescore_factor >= 1.0:
        msg = f"rescore_factor must be >= 1 so that D_c is re-scored with the full T, got {rescore_factor}"
        raise InvalidQuery(msg)


def _cheap_pass(slices, score: ScoreFn, t_cheap: int, on_progress, *, total: int):
    keys, scores, descriptors = [], [], []
    for volume, zs in slices:
        for chunk in slice_chunks(zs):
            scored = score(volume, chunk, t_cheap, False)
            keys.extend((volume, z) for z in chunk)
            scores.append(np.asarray(scored.scores, np.float64))
            descriptors.append(np.asarray(scored.descriptors, np.float32))
            report(on_progress, "rank", len(keys), total, **{"pass": "cheap"})
    return keys, np.concatenate(scores), np.concatenate(descriptors)


def _full_pass(slices, score: ScoreFn, keep: int, t_full: int, on_progress, *, done: int, total: int) -> SliceRanking:
    ranking = SliceRanking(keep=keep)
    for volume, zs in slices:
        for chunk in slice_chunks(zs):
            ranking.add([(volume, z) for z in chunk], score(volume, chunk, t_full, True))
            done += len(chunk)
            report(on_progress, "rank", done, total, **{"pass": "full"})
    return ranking


def _per_volume(keys: list[tuple[int, int]], mask: np.ndarray) -> list[tuple[int, list[int]]]:
    """The masked keys grouped by volume, volumes and slices in their original order."""
    out: dict[int, list[int]] = {}
    for (volume, z), keep in zip(keys, mask, strict=True):
        if keep:
            out.setdefault(volume, []).append(z)
    return list(out.items())


def score_bias(t_cheap: int, t_full: int) -> float:
    """Factor bringing a t_cheap-sample score to the scale of a t_full-sample one, on average."""
    return ((t_full - 1) / t_full) / ((t_cheap - 1) / t_cheap)


def _merge(keys, cheap, descriptors, top, full: SliceRanking, keep: int, *, t_cheap: int, t_full: int) -> SliceRanking:
    """One SliceRanking over every slice: full-T rows where re-scored, cheap rows elsewhere."""
    row_of = {key: i for i, key in enumerate(keys)}
    full_rows = np.array([row_of[tuple(int(v) for v in key)] for key in full.keys], dtype=np.int64)
    scores = cheap * score_bias(t_cheap, t_full)
    full_scores = full.scores
    # Never above a re-scored slice: D_c stays among the slices whose maps and full T exist.
    scores = np.minimum(scores, np.nextafter(full_scores.min(), -np.inf))
    scores[full_rows] = full_scores
    descriptors = descriptors.copy()
    descriptors[full_rows] = full.descriptors
    maps = {int(full_rows[i]): m for i, m in full.maps(range(len(full_rows))).items()}
    return SliceRanking.from_rows(keys, scores, descriptors, maps, keep=keep)


def score_working_slices(
    hu_slices: np.ndarray,
    model: UNet,
    grid: NetworkGrid,
    *,
    t_samples: int,
    seed: int,
    maps: bool = True,
    batch_size: int = 8,
    on_progress: ProgressCallback | None = None,
) -> ScoredSlices:
    """MC-dropout scores of (n, H, W) working-grid HU slices of one scan.

    ``grid.to_network`` then ``score_network_slices``; a caller that keeps the network
    inputs of a scan between steps (they do not depend on the model) calls the latter.

    Args:
        hu_slices: (n, H, W) HU on the scan's working grid (``grid.working_shape``).
        model: the Bayesian U-Net (its depth must match ``grid``'s padding).
        grid: the scan's network grid.
        t_samples, seed, maps, batch_size, on_progress: as ``score_network_slices``.
    """
    images, body = grid.to_network(hu_slices)
    return score_network_slices(images, body, model, grid, t_samples=t_samples, seed=seed, maps=maps,
                                batch_size=batch_size, on_progress=on_progress)  # fmt: skip


def score_network_slices(
    images: np.ndarray,
    body: np.ndarray,
    model: UNet,
    grid: NetworkGrid,
    *,
    t_samples: int,
    seed: int,
    maps: bool = True,
    batch_size: int = 8,
    on_progress: ProgressCallback | None = None,
) -> ScoredSlices:
    """MC-dropout scores of network inputs (``NetworkGrid.to_network`` output), batch by batch.

    Args:
        images: (n, h, w) float32 network images.
        body: (n, h, w) bool body mask on the network grid.
        t_samples, seed, batch_size, on_progress: as ``mltasks.infer.iter_mc_batches``.
        maps: bring labels and u back to the working grid (argmax of the upsampled
            mean probabilities, bilinear u); False returns the network-grid maps
            (n, h, w), cheaper, for a pass whose maps are not kept.
    Returns:
        ScoredSlices: scores (mean u inside the body, on the network grid),
        descriptors, labels and uncertainty on the working grid (``maps``) or the
        network grid.
    """
    n = images.shape[0]
    shape = grid.working_shape if maps else grid.shape
    labels = np.empty((n, *shape), np.uint8)
    u = np.empty((n, *shape), np.float32)
    scores = np.empty(n, np.float64)
    descriptors = np.empty((n, model.config.descriptor_size), np.float32)
    batches = iter_mc_batches(images, model, t_samples=t_samples, seed=seed, batch_size=batch_size,
                              on_progress=on_progress)  # fmt: skip
    for b in batches:
        sl = slice(b.start, b.stop)
        scores[sl] = slice_scores(b.pixel_uncertainty, body[sl])
        descriptors[sl] = b.descriptors
        if maps:
            labels[sl], u[sl] = grid.to_working(b.mean_probs, b.pixel_uncertainty)
        else:
            labels[sl], u[sl] = b.mean_probs.argmax(1), b.pixel_uncertainty
    return ScoredSlices(labels, u, scores, descriptors)

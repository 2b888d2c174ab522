"""The active-learning step that the worker and the simulation both run (method.md §4).

A step has two parts, which the worker runs as two phases (each can be cancelled,
resumed, and its inference spread over chunks of slices) and the simulation runs in
one call (``mltasks.active.propose_queries``):

- **scoring**: MC dropout over the unlabelled slices (``score_slices``), giving per
  slice a score (mean pixel uncertainty inside the body), a descriptor, and the
  predicted labels and uncertainty map. ``SliceRanking`` gathers the chunks and keeps
  the maps only of slices that can still be among the most uncertain (bounded memory).
- **choosing**: D_c (the most uncertain), D_r (a representative subset of D_c, or
  random slices for the baseline) with ``choose_slices``, then the pixels to ask for in
  each chosen slice with ``query_masks`` (Eq. 7 or a baseline).

Slices are on the network grid: images (N, H, W) float32 in [0, 1], H = W = the
network matrix. ``query_masks`` works on whatever grid its uncertainty maps are on
(the worker brings them back to the scan's working grid first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mltasks.infer import mc_predict_slices
from mltasks.nets import UNet
from mltasks.progress import ProgressCallback
from mltasks.query import (
    full_slice_mask,
    pixel_query_mask,
    random_pixel_mask,
    select_random,
    select_representative,
    select_uncertain,
    slice_scores,
    suggest_tau,
)


@dataclass(frozen=True)
class StepPlan:
    """What one step asks for: the strategy and its sizes.

    Attributes:
        strategy: "tau", "manual", "random_pixels" or "random_slices" (``active.STRATEGIES``).
        tau: threshold of Eq. 7 (also sets the pixel count of "random_pixels").
        n_select: |D_r|, slices sent to the expert.
        n_candidates: |D_c|, the most uncertain slices D_r is chosen from.
        target_mac: when set, replaces ``tau`` by the threshold that queries this share
            of the chosen slices' pixels ("tau" and "random_pixels").
    """

    strategy: str
    tau: float
    n_select: int
    n_candidates: int
    target_mac: float | None = None


@dataclass
class ScoredSlices:
    """Scoring output for n slices: labels (n, H, W) uint8, uncertainty (n, H, W) float32,
    scores (n,) float64, descriptors (n, d) float32."""

    labels: np.ndarray
    uncertainty: np.ndarray
    scores: np.ndarray
    descriptors: np.ndarray


def score_slices(
    images: np.ndarray,
    model: UNet,
    *,
    body: np.ndarray | None,
    t_samples: int,
    seed: int,
    batch_size: int = 8,
    on_progress: ProgressCallback | None = None,
) -> ScoredSlices:
    """MC-dropout prediction and slice scores of (n, H, W) network-grid images.

    ``body`` (n, H, W) bool restricts each slice's score to the body (None: whole slice).
    """
    pred = mc_predict_slices(images, model, t_samples=t_samples, batch_size=batch_size,
                             seed=seed, on_progress=on_progress)  # fmt: skip
    scores = slice_scores(pred.pixel_uncertainty, body)
    return ScoredSlices(pred.labels, pred.pixel_uncertainty, scores, pred.descriptors)


# Slices scored per call: MC-dropout masks are drawn per call from the step's seed, so the
# worker and the simulation cut every volume's unlabelled slices the same way to draw the
# same masks; between chunks the worker checks for cancellation and reports progress.
SCORE_CHUNK = 16


def slice_chunks(indices: Sequence[int]) -> list[list[int]]:
    """One volume's slice indices cut into runs of ``SCORE_CHUNK``, in order."""
    items = [int(i) for i in indices]
    return [items[start:start + SCORE_CHUNK] for start in range(0, len(items), SCORE_CHUNK)]


class SliceRanking:
    """Every scored slice's key, score and descriptor, and the maps of the top ones.

    Keys are rows of integers naming a slice (the worker: scan id and z; the
    simulation: the pool index). Maps (labels, uncertainty) are kept only
    for slices that can still be among the ``keep`` highest scores, so memory stays
    bounded however many slices are scored; a chosen slice whose map was dropped (only
    possible for random slices) is scored again by the caller.
    """

    def __init__(self, keep: int) -> None:
        self.keep = max(1, int(keep))
        self._keys: list[tuple[int, ...]] = []
        self._scores: list[float] = []
        self._descriptors: list[np.ndarray] = []
        self._maps: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def add(self, keys: Sequence[Sequence[int]], scored: ScoredSlices) -> None:
        """Append n slices named by ``keys`` (n rows) with their scoring output."""
        for i, key in enumerate(keys):
            self._maps[len(self._keys)] = (scored.labels[i], scored.uncertainty[i])
            self._keys.append(tuple(int(v) for v in key))
            self._scores.append(float(scored.scores[i]))
        self._descriptors.append(np.asarray(scored.descriptors, dtype=np.float32))
        self._prune()

    def _prune(self) -> None:
        if len(self._maps) <= 2 * self.keep:  # prune in batches, not after every chunk
            return
        order = sorted(self._maps, key=lambda i: (-self._scores[i], i))
        for i in order[self.keep:]:
            del self._maps[i]

    @property
    def keys(self) -> np.ndarray:
        """(N, key width) int64."""
        return np.array(self._keys, dtype=np.int64)

    @property
    def scores(self) -> np.ndarray:
        return np.array(self._scores, dtype=np.float64)

    @property
    def descriptors(self) -> np.ndarray:
        return np.concatenate(self._descriptors) if self._descriptors else np.zeros((0, 0), np.float32)

    def maps(self, indices: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """{index: (labels, uncertainty float32)} of those ``indices`` whose maps are kept."""
        return {int(i): (self._maps[int(i)][0], self._maps[int(i)][1].astype(np.float32))
                for i in indices if int(i) in self._maps}  # fmt: skip

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for ``np.savez`` (``from_arrays`` reads them back).

        Maps of scans with different working grids differ in shape, so they are stored
        flat, one after the other, with their (H, W) in ``map_shapes``.
        """
        kept = sorted(self._maps)
        maps = [self._maps[i] for i in kept]
        return {
            "keys": self.keys, "scores": self.scores, "descriptors": self.descriptors,
            "map_index": np.array(kept, dtype=np.int64),
            "map_shapes": np.array([m[0].shape for m in maps], dtype=np.int64).reshape(-1, 2),
            "map_labels": _flat([m[0] for m in maps], np.uint8),
            "map_u": _flat([m[1] for m in maps], np.float32),
        }  # fmt: skip

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray], *, keep: int) -> SliceRanking:
        """The ranking ``to_arrays`` wrote (also the stacked (k, H, W) maps of earlier files)."""
        labels, u = _unflat(data, "map_labels"), _unflat(data, "map_u")
        maps = {int(i): (labels[j], u[j]) for j, i in enumerate(data["map_index"])}
        keys = np.asarray(data["keys"]).reshape(len(data["scores"]), -1)
        return cls.from_rows(keys, data["scores"], data["descriptors"], maps, keep=keep)

    @classmethod
    def from_rows(
        cls, keys, scores, descriptors: np.ndarray, maps: dict[int, tuple[np.ndarray, np.ndarray]], *, keep: int
    ) -> SliceRanking:
        """A ranking of N slices: keys (N, width), scores (N,), descriptors (N, d), and the maps
        {row: (labels (H, W), u (H, W))} of some rows (kept whatever ``keep`` says)."""
        ranking = cls(keep)
        ranking._keys = [tuple(int(v) for v in row) for row in keys]
        ranking._scores = [float(v) for v in scores]
        ranking._descriptors = [np.asarray(descriptors, dtype=np.float32)]
        ranking._maps = dict(maps)
        return ranking


def _flat(arrays: list[np.ndarray], dtype) -> np.ndarray:
    if not arrays:
        return np.zeros(0, dtype)
    return np.concatenate([np.asarray(a, dtype=dtype).reshape(-1) for a in arrays])


def _unflat(data: dict[str, np.ndarray], name: str) -> list[np.ndarray]:
    """The maps stored under ``name``: flat with ``map_shapes``, or one stacked array."""
    values = data[name]
    if "map_shapes" not in data or np.ndim(values) != 1:
        return list(values)
    out, start = [], 0
    for h, w in np.asarray(data["map_shapes"]).reshape(-1, 2):
        out.append(values[start:start + h * w].reshape(int(h), int(w)))
        start += int(h) * int(w)
    return out


def chosen_maps(
    ranking: SliceRanking, chosen: Sequence[int], rescore
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(labels, uncertainty) of the chosen slices: one (H, W) uint8 and one (H, W) float32
    array per slice, in the chosen order (lists: slices of different scans differ in shape).

    Maps the ranking dropped are predicted again, one slice at a time, by
    ``rescore(index) -> ScoredSlices`` (only random slices can miss: D_c's maps are kept).
    """
    kept = ranking.maps(chosen)
    for i in chosen:
        if int(i) not in kept:
            again = rescore(int(i))
            kept[int(i)] = (again.labels[0], again.uncertainty[0])
    return [kept[int(i)][0] for i in chosen], [kept[int(i)][1].astype(np.float32) for i in chosen]


@dataclass
class Selection:
    """Indices into the ranking: D_c (empty for random slices) and D_r in the order chosen."""

    candidates: list[int]
    chosen: list[int]


def choose_slices(scores: np.ndarray, descriptors: np.ndarray, plan: StepPlan, *, seed: int) -> Selection:
    """D_c and D_r of scored slices (``SliceRanking.scores`` and ``.descriptors``)."""
    if scores.size == 0:
        return Selection([], [])
    if plan.strategy == "random_slices":
        drawn = select_random(scores.size, plan.n_select, rng=np.random.default_rng([seed, 1]))
        return Selection([], [int(i) for i in drawn])
    d_c = select_uncertain(scores, plan.n_candidates)
    d_r = select_representative(descriptors, d_c, min(plan.n_select, d_c.size))
    return Selection([int(i) for i in d_c], [int(i) for i in d_r])


def query_masks(uncertainty: np.ndarray, plan: StepPlan, *, seed: int) -> np.ndarray:
    """(n, H, W) bool pixels to ask for in the chosen slices, from their uncertainty (n, H, W).

    tau: Eq. 7 (u >= tau, or the tau of ``target_mac``); manual and random slices:
    whole slices; random pixels: as many random pixels as the tau query holds.
    """
    if plan.strategy in ("manual", "random_slices"):
        return full_slice_mask(uncertainty.shape)
    tau = plan.tau if plan.target_mac is None else suggest_tau(uncertainty, plan.target_mac)[0]
    tau_masks = pixel_query_mask(uncertainty, tau)
    if plan.strategy == "tau":
        return tau_masks
    count = int(np.count_nonzero(tau_masks))
    return random_pixel_mask(uncertainty.shape, count, rng=np.random.default_rng([seed, 2]))

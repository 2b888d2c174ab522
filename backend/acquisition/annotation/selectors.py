"""Reads of the annotation phase: the answered slices around a query (to copy and interpolate), the
coronal and sagittal planes through its scan (the anatomy around it), and the labels and predictions
shown on its neighbouring slices and on those planes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from backend.acquisition import codec
from backend.acquisition.models import HeldOutSlice, Query, Segmentation, TrainingSlice
from backend.imaging.models import ReferenceLabelMap
from backend.imaging.volumes import reference_labels, scan_volume, stored_array


def answered_slices_near(query: Query) -> list[TrainingSlice]:
    """The project's labelled slices of the query's scan nearest below and above the query's slice.

    At most one each side, never the query's own slice nor a held-out one (held-out labels measure
    accuracy: copied into an answer they would be trained on). Ordered by z.
    """
    project_id = query.step.project_id
    held = HeldOutSlice.objects.filter(project_id=project_id, scan_id=query.scan_id).values_list("z", flat=True)
    rows = (TrainingSlice.objects.filter(project_id=project_id, scan_id=query.scan_id,
                                         height=query.height, width=query.width)
            .exclude(z=query.z).exclude(z__in=list(held)))
    below = rows.filter(z__lt=query.z).order_by("-z").first()
    above = rows.filter(z__gt=query.z).order_by("z").first()
    return [s for s in (below, above) if s is not None]


PLANES = {"coronal": 1, "sagittal": 2}  # the volume axis (z, y, x) held fixed


def query_reformat(query: Query, plane: str, at: int) -> np.ndarray:
    """The coronal (``at`` = y) or sagittal (``at`` = x) plane through the query's scan: (Z, X) or (Z, Y)
    int16 HU on the working grid. ValueError with a sentence when ``at`` lies outside the scan."""
    volume = scan_volume(query.scan)
    _plane_shape(volume.shape, plane, at)
    return np.ascontiguousarray(volume[:, at, :] if PLANES[plane] == 1 else volume[:, :, at])


def _plane_shape(shape: tuple[int, int, int], plane: str, at: int) -> tuple[int, int]:
    """(Z, N) of the plane through a (Z, Y, X) volume; ValueError with a sentence when ``at`` is outside."""
    axis = PLANES[plane]
    size = shape[axis]
    if not 0 <= at < size:
        raise ValueError(f"{plane} plane {at} is outside the scan, whose {'y' if axis == 1 else 'x'} runs from "
                         f"0 to {size - 1}")
    return shape[0], shape[3 - axis]


# ---------- labels around the query: answered / reference rows and the model's prediction ----------

NO_LABEL = 255  # as in the training set: a pixel nobody labelled and nothing predicted


@dataclass(frozen=True)
class PredictionSource:
    """Where the predicted labels around a query come from: the project's newest finished segmentation
    of the scan (every slice), else the prediction the query's step stored with its queries (their
    slices only)."""

    kind: str  # "segmentation" or "step"
    description: str
    segmentation: Segmentation | None = None
    model_number: int | None = None
    step_number: int | None = None


def prediction_source(query: Query) -> PredictionSource:
    """The predictions shown on the query's neighbouring slices and reformats (see PredictionSource)."""
    segmentation = (Segmentation.objects.filter(project_id=query.step.project_id, scan_id=query.scan_id,
                                                status=Segmentation.Status.DONE)
                    .exclude(labels="").select_related("model_version")
                    .order_by("-model_version__number", "-finished", "-id").first())
    if segmentation is not None and tuple(query.scan.shape[1:]) == (query.height, query.width):
        number = segmentation.model_version.number
        return PredictionSource("segmentation", f"model {number}'s segmentation of this scan", segmentation,
                                model_number=number)
    number = query.step.number
    return PredictionSource("step", f"step {number}'s prediction (stored for its queried slices only)",
                            step_number=number)


def _step_predictions(query: Query, only: int | None = None) -> dict[int, np.ndarray]:
    """z -> (H, W) uint8 labels the query's step predicted for the slices of the scan it queried (``only``
    that z when given); a cold-start query (nothing predicted, every pixel NO_LABEL) gives none."""
    rows = Query.objects.filter(step_id=query.step_id, scan_id=query.scan_id, height=query.height, width=query.width)
    if only is not None:
        rows = rows.filter(z=only)
    rows = rows.order_by("z", "id").values_list("z", "predicted")
    out = {}
    for z, packed in rows:
        labels = codec.unpack_labels(packed, (query.height, query.width))
        if z not in out and (labels != NO_LABEL).any():
            out[z] = labels
    return out


def _check_z(query: Query, z: int) -> None:
    depth = query.scan.shape[0]
    if not 0 <= z < depth:
        raise ValueError(f"slice {z} is outside the scan, whose z runs from 0 to {depth - 1}")


@dataclass(frozen=True)
class PredictedSlice:
    z: int
    source: PredictionSource
    labels: np.ndarray | None  # (H, W) uint8; None where nothing is predicted for this slice


def predicted_slice(query: Query, z: int) -> PredictedSlice:
    """The model's labels of slice ``z`` of the query's scan (PredictionSource says from where).
    ValueError with a sentence when ``z`` lies outside the scan."""
    _check_z(query, z)
    source = prediction_source(query)
    if source.segmentation is not None:
        return PredictedSlice(z, source, np.array(stored_array(source.segmentation.labels)[z], dtype=np.uint8))
    return PredictedSlice(z, source, _step_predictions(query, only=z).get(z))


@dataclass(frozen=True)
class ReformatLabels:
    """The label rows of one coronal or sagittal plane through the query's scan, (Z, N) uint8 each."""

    labelled: np.ndarray  # answered queries and reference labels; NO_LABEL on rows nobody labelled
    labelled_rows: dict[int, str]  # z -> "query" or "reference"
    predicted: np.ndarray  # the model's labels; NO_LABEL on rows with no prediction
    predicted_rows: list[int]
    source: PredictionSource


def _row(labels: np.ndarray, plane: str, at: int) -> np.ndarray:
    return labels[at, :] if PLANES[plane] == 1 else labels[:, at]


def _labelled_slices(query: Query, only: int | None = None):
    """The project's labelled slices of the query's scan (``only`` that z when given): its training set
    (answered queries, seeded references), else the scan's reference labels of the project's label set;
    never a held-out slice (its labels measure accuracy). Yields (z, source, (H, W) uint8 labels) by z."""
    project = query.step.project
    held = set(HeldOutSlice.objects.filter(project_id=project.id, scan_id=query.scan_id).values_list("z", flat=True))
    rows = (TrainingSlice.objects.filter(project_id=project.id, scan_id=query.scan_id, height=query.height,
                                         width=query.width).exclude(z__in=held))
    if only is not None:
        rows = rows.filter(z=only)
    found = {z: (source, codec.unpack_labels(packed, (query.height, query.width)))
             for z, packed, source in rows.values_list("z", "labels", "source")}
    reference = ReferenceLabelMap.objects.filter(scan_id=query.scan_id, label_set_id=project.label_set_id).first()
    if reference is not None:
        wanted = set(reference.labelled_slices) - held - set(found)
        if only is not None:
            wanted &= {only}
        if wanted:
            volume = reference_labels(reference)
            for z in wanted:
                if 0 <= z < volume.shape[0] and volume.shape[1:] == (query.height, query.width):
                    found[z] = (TrainingSlice.Source.REFERENCE, np.array(volume[z], dtype=np.uint8))
    for z in sorted(found):
        yield z, *found[z]


@dataclass(frozen=True)
class SliceLabels:
    """What a neighbouring slice shows: its labels (``labelled``, None when nobody labelled it) and the
    model's (``predicted``, None when nothing is predicted for it), both (H, W) uint8."""

    z: int
    labelled: np.ndarray | None
    labelled_source: str | None  # "query" (an answered query) or "reference"
    predicted: np.ndarray | None
    source: PredictionSource


def slice_labels(query: Query, z: int) -> SliceLabels:
    """The labels and the prediction of slice ``z`` of the query's scan, by the rules of the reformats.
    ValueError with a sentence when ``z`` lies outside the scan."""
    predicted = predicted_slice(query, z)
    labelled = next(_labelled_slices(query, only=z), None)
    if labelled is None:
        return SliceLabels(z, None, None, predicted.labels, predicted.source)
    return SliceLabels(z, labelled[2], labelled[1], predicted.labels, predicted.source)


def reformat_labels(query: Query, plane: str, at: int) -> ReformatLabels:
    """The labelled and the predicted rows of the coronal (``at`` = y) or sagittal (``at`` = x) plane
    through the query's scan. ValueError with a sentence when ``at`` lies outside the scan."""
    depth, size = _plane_shape(query.scan.shape, plane, at)
    labelled = np.full((depth, size), NO_LABEL, np.uint8)
    rows = {}
    for z, kind, labels in _labelled_slices(query):
        labelled[z] = _row(labels, plane, at)
        rows[z] = kind
    source = prediction_source(query)
    if source.segmentation is not None:
        volume = stored_array(source.segmentation.labels)
        predicted = np.ascontiguousarray(volume[:, at, :] if PLANES[plane] == 1 else volume[:, :, at], dtype=np.uint8)
        predicted_rows = list(range(depth))
    else:
        predicted = np.full((depth, size), NO_LABEL, np.uint8)
        slices = _step_predictions(query)
        for z, labels in slices.items():
            predicted[z] = _row(labels, plane, at)
        predicted_rows = sorted(slices)
    return ReformatLabels(labelled, rows, predicted, predicted_rows, source)

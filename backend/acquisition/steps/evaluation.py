"""The evaluating phase's measurements: a model run on the project's evaluation set.

The evaluation set is the project's whole test scans when one has reference labels of
the project's label set; otherwise its held-out slices (``held_out``): a lab's only CT
has no separate test scan. ``evaluate_model`` segments the set, measures one row per
test scan or per held-out slice, and hands the rows to ``steps.accuracy``. It reads and
computes only; ``phases.run_evaluation`` records the result under the phase's lease.

On held-out slices the Dice per class over all their pixels together is also returned
(``Accuracy.held_out``): the next step's guard decides on it (``steps.guarding``)
without segmenting the same slices again.

Held-out slices are segmented slice by slice (MC dropout, as the pool is scored) without
the whole-scan step that keeps each structure's largest 3D component: sparse slices have
no 3D neighbourhood. Their Dice is per slice and their ASD in-plane (mm), so figures on
held-out slices and on whole test scans are not interchangeable (docs/acquisition.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from backend.acquisition import ml_adapter
from backend.acquisition.held_out.selectors import held_out_by_scan
from backend.acquisition.steps.accuracy import Accuracy, Row, accuracy_metrics

if TYPE_CHECKING:  # annotations only
    from backend.acquisition.models import AcquisitionStep
    from backend.acquisition.steps.progress import PhaseReporter

NOTHING_TO_EVALUATE = (
    "nothing to evaluate on: the project has no held-out slices and no test scan with reference labels. "
    "Hold out a few labelled slices of each pool scan (POST /api/projects/<id>/held-out/), which works with a "
    "single CT, or mark a separately labelled scan as a test scan")


def evaluate_model(step: AcquisitionStep, model, pixel_mm: float | None, reporter: PhaseReporter) -> Accuracy:
    """Measure ``model`` on the project's evaluation set (see the module doc)."""
    from backend.imaging.models import ReferenceLabelMap

    project = step.project
    n_classes = ml_adapter.n_classes_of(project.label_set)
    tests = list(ReferenceLabelMap.objects.filter(scan__in=project.test_scans.all(), label_set=project.label_set)
                 .select_related("scan").order_by("scan_id"))
    run = (model, pixel_mm, step.mc_samples, n_classes, reporter)
    rows, held_out = (_test_scan_rows(tests, *run), None) if tests else _held_out_rows(project, *run)
    labels = [(lab.value, lab.name, lab.kind) for lab in project.label_set.labels.order_by("value")]
    result = accuracy_metrics(rows, labels, target=project.stop_target_dice, nothing_why=NOTHING_TO_EVALUATE)
    return replace(result, held_out=held_out)


def pooled_dice(predicted: list[np.ndarray], truth: list[np.ndarray], n_classes: int) -> list[float | None]:
    """Dice per class over the pixels of all slices together (None where a class is in neither)."""
    dice = ml_adapter.dice_per_class(np.concatenate([p.ravel() for p in predicted]),
                                     np.concatenate([t.ravel() for t in truth]), n_classes)
    return [float(d) if np.isfinite(d) else None for d in dice]


def _presence(labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.bincount(np.asarray(labels).ravel(), minlength=n_classes)[:n_classes] > 0


def _test_scan_rows(refs, model, pixel_mm, t_samples, n_classes, reporter) -> list[Row]:
    """One row per whole test scan: 3D segmentation with its largest components, 3D Dice and ASD."""
    rows = []
    for k, ref in enumerate(refs):
        reporter.segment(100 * k / len(refs), 100 * (k + 1) / len(refs), f"segmenting test scan {ref.scan.name}",
                         subphase="test_scans", span=(0, 100))
        hu = ml_adapter.scan_hu(ref.scan)
        grid = ml_adapter.network_grid(ref.scan.geometry, pixel_mm=pixel_mm, depth=model.config.depth)
        pred, u = ml_adapter.segment_volume(hu, model, grid, t_samples=t_samples, on_progress=reporter)
        truth = ml_adapter.reference_labels(ref)
        rows.append(Row("test_scan", ref.scan_id, ref.scan.name, None,
                        ml_adapter.evaluate(pred, truth, ref.scan.geometry["spacing"], n_classes),
                        ml_adapter.psv(pred, u, n_classes), _presence(truth, n_classes), _presence(pred, n_classes)))
    return rows


def _held_out_rows(project, model, pixel_mm, t_samples, n_classes, reporter) -> tuple[list[Row], dict | None]:
    """(One row per held-out slice: 2D Dice, in-plane ASD and PSV of that slice; the pooled Dice
    per class with the number of slices, as the guard reads it, or None without slices)."""
    from backend.imaging.models import ReferenceLabelMap, Scan

    by_scan = held_out_by_scan(project)
    scans = Scan.objects.in_bulk(list(by_scan))
    refs = {ref.scan_id: ref for ref in ReferenceLabelMap.objects.filter(scan_id__in=list(by_scan),
                                                                         label_set=project.label_set)}
    rows, predicted, truths = [], [], []
    for k, (scan_id, zs) in enumerate(by_scan.items()):
        if scan_id not in refs:  # its reference was deleted since: nothing to compare with
            continue
        scan = scans[scan_id]
        reporter.segment(100 * k / len(by_scan), 100 * (k + 1) / len(by_scan),
                         f"segmenting {len(zs)} held-out slices of {scan.name}", subphase="held_out", span=(0, 100))
        grid = ml_adapter.network_grid(scan.geometry, pixel_mm=pixel_mm, depth=model.config.depth)
        hu = np.asarray(ml_adapter.scan_hu(scan)[zs])
        pred, u = ml_adapter.segment_slices(hu, model, grid, t_samples=t_samples, on_progress=reporter)
        truth = np.asarray(ml_adapter.reference_labels(refs[scan_id])[zs])
        spacing = scan.geometry["spacing"][1:]
        predicted, truths = predicted + list(pred), truths + list(truth)
        for i, z in enumerate(zs):
            rows.append(Row("held_out", scan_id, scan.name, z, ml_adapter.evaluate(pred[i], truth[i], spacing, n_classes),
                            ml_adapter.psv(pred[i], u[i], n_classes), _presence(truth[i], n_classes),
                            _presence(pred[i], n_classes)))
    if not rows:
        return rows, None
    return rows, {"held_out_dice_per_class": pooled_dice(predicted, truths, n_classes), "held_out_slices": len(rows)}

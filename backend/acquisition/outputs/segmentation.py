"""On-demand segmentation of any scan by a model version: labels, uncertainty, per-muscle report."""

from __future__ import annotations

import io
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from backend.acquisition import ml_adapter
from backend.acquisition.errors import StepConflict
from backend.acquisition.events import publish_segmentation
from backend.acquisition.models import Segmentation
from backend.acquisition.outputs.export import load_npy, nifti_bytes
from backend.acquisition.selectors import current_model
from backend.acquisition.states import GPU_QUEUE
from backend.acquisition.steps.accuracy import report_calibration, report_statuses
from backend.core import jobs
from backend.imaging import grids

if TYPE_CHECKING:  # annotations only
    from django.contrib.auth.models import User

    from backend.projects.models import Project

log = logging.getLogger(__name__)


@transaction.atomic
def segmentation_request(*, project: Project, scan, user: User, model_version=None) -> Segmentation:
    """Queue the segmentation of ``scan`` by ``model_version`` (default: the project's current model)."""
    version = model_version or current_model(project)
    if version is None:
        raise StepConflict("the project has no trained model yet; run an acquisition step first", code="no_model")
    seg = Segmentation.objects.create(project=project, model_version=version, scan=scan, requested_by=user)
    transaction.on_commit(lambda: jobs.send("acquisition.segment", seg.id, queue=GPU_QUEUE))
    return seg


def _npy(array: np.ndarray) -> ContentFile:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return ContentFile(buffer.getvalue())


WRITE_EVERY = 1.0  # seconds between two progress writes (and events) of a segmentation
POSTPROCESS_SHARE = 0.05  # of the percent: the largest-component step after the network


class SegmentationReporter:
    """The ``on_progress`` of a whole-scan segmentation: percent and ETA on its row and in an
    ``acquisition.segmentation`` event, at most once a second, so the lead sees it move."""

    def __init__(self, seg: Segmentation) -> None:
        self.seg, self.started, self._written = seg, time.monotonic(), 0.0

    def __call__(self, progress) -> None:  # mltasks.progress.Progress
        share = 1.0 - POSTPROCESS_SHARE
        fraction = share * progress.fraction if progress.phase == "predict" else share + POSTPROCESS_SHARE * progress.fraction
        now = time.monotonic()
        if now - self._written < WRITE_EVERY and fraction < 1.0:
            return
        self._written = now
        percent = 100.0 * fraction
        elapsed = now - self.started
        eta = elapsed * (100.0 - percent) / percent if percent >= 1.0 else None
        Segmentation.objects.filter(pk=self.seg.pk, status=Segmentation.Status.RUNNING).update(
            percent=round(percent, 1), eta_seconds=eta, heartbeat=timezone.now())
        self.seg.percent, self.seg.eta_seconds = percent, eta
        publish_segmentation(self.seg)


def segmentation_run(*, segmentation_id: int) -> str:
    """Worker side: segment, report, store. Idempotent: a finished segmentation is left alone."""
    from backend.acquisition.steps.phases import model_and_pixel

    now = timezone.now()
    taken = Segmentation.objects.filter(pk=segmentation_id, status__in=[Segmentation.Status.PENDING,
                                                                      Segmentation.Status.RUNNING]
                                        ).update(status=Segmentation.Status.RUNNING, started=now, heartbeat=now,
                                                 percent=0.0, eta_seconds=None)
    if not taken:
        return "skipped"
    seg = Segmentation.objects.select_related("model_version", "scan", "project__label_set").get(pk=segmentation_id)
    publish_segmentation(seg)  # "running": it left the queue
    try:
        model, pixel_mm = model_and_pixel(seg.model_version)
        hu = np.asarray(ml_adapter.scan_hu(seg.scan))
        steps = seg.model_version.step.mc_samples if seg.model_version.step else seg.project.mc_samples
        grid = ml_adapter.network_grid(seg.scan.geometry, pixel_mm=pixel_mm, depth=model.config.depth)
        labels, u = ml_adapter.segment_volume(hu, model, grid, t_samples=steps, on_progress=SegmentationReporter(seg))
        calibration, why = report_calibration(seg.model_version.metrics, seg.model_version.calibration)
        rows = report_statuses(ml_adapter.report_rows(labels, hu, u, seg.scan.geometry,
                                                      ml_adapter.label_set_of(seg.project.label_set), calibration), why)
    except Exception as exc:  # noqa: BLE001 - recorded for the user
        log.exception("segmentation %s failed", segmentation_id)
        Segmentation.objects.filter(pk=seg.pk).update(status=Segmentation.Status.FAILED,
                                                      error=f"{type(exc).__name__}: {exc}", finished=timezone.now())
        seg.refresh_from_db()
        publish_segmentation(seg)
        return "failed"
    with transaction.atomic():
        seg.labels.save(f"seg-{seg.pk}-labels.npy", _npy(labels.astype(np.uint8)), save=False)
        seg.uncertainty.save(f"seg-{seg.pk}-uncertainty.npy", _npy(u.astype(np.float16)), save=False)
        seg.report = rows
        seg.status = Segmentation.Status.DONE
        seg.percent, seg.eta_seconds = 100.0, None
        seg.finished = timezone.now()
        seg.save()
    publish_segmentation(seg)
    return "done"


def segmentation_nifti(seg: Segmentation, *, labels: bool, original_grid: bool) -> bytes:
    """The labels (uint8) or the uncertainty (float32) of a finished segmentation as NIfTI, on the
    scan's working grid or put back onto its original CT grid (``backend.imaging.grids``: exact for
    scans with a stored working grid; older scans resample, nearest for labels, linear otherwise)."""
    array = load_npy(seg.labels) if labels else load_npy(seg.uncertainty).astype("float32")
    geometry = seg.scan.geometry
    if original_grid:
        geometry = seg.scan.original_geometry
        array = grids.to_original(seg.scan, array, labels=labels)
    return nifti_bytes(array, geometry)

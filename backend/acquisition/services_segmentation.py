"""On-demand segmentation of any scan by a model version: labels, uncertainty, per-muscle report."""

from __future__ import annotations

import io
import logging

import numpy as np
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone

from backend.acquisition import engine
from backend.acquisition.events import publish_segmentation
from backend.acquisition.models import Segmentation
from backend.acquisition.selectors import current_model
from backend.acquisition.services_steps import StepConflict

log = logging.getLogger(__name__)


@transaction.atomic
def segmentation_request(*, project, scan, user, model_version=None) -> Segmentation:
    """Queue the segmentation of ``scan`` by ``model_version`` (default: the project's current model)."""
    version = model_version or current_model(project)
    if version is None:
        raise StepConflict("the project has no trained model yet; run an acquisition step first", code="no_model")
    seg = Segmentation.objects.create(project=project, model_version=version, scan=scan, requested_by=user)
    from backend.acquisition.tasks import segmentation_task, send

    transaction.on_commit(lambda: send(segmentation_task, seg.id))
    return seg


def _npy(array: np.ndarray) -> ContentFile:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return ContentFile(buffer.getvalue())


def segmentation_run(*, segmentation_id: int) -> str:
    """Worker side: segment, report, store. Idempotent: a finished segmentation is left alone."""
    from backend.acquisition.services_phases import local_checkpoint

    taken = Segmentation.objects.filter(pk=segmentation_id, status__in=[Segmentation.Status.PENDING,
                                                                      Segmentation.Status.RUNNING]
                                        ).update(status=Segmentation.Status.RUNNING)
    if not taken:
        return "skipped"
    seg = Segmentation.objects.select_related("model_version", "scan", "project__label_set").get(pk=segmentation_id)
    try:
        model = engine.load_model(local_checkpoint(seg.model_version))
        hu = np.asarray(engine.scan_hu(seg.scan))
        steps = seg.model_version.step.mc_samples if seg.model_version.step else seg.project.mc_samples
        labels, u = engine.segment_volume(hu, model, t_samples=steps)
        rows = engine.report_rows(labels, hu, u, seg.scan.geometry, engine.label_set_of(seg.project.label_set),
                                  seg.model_version.calibration)
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
        seg.finished = timezone.now()
        seg.save()
    publish_segmentation(seg)
    return "done"

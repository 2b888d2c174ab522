"""Answers given in a step that is then cancelled stay in the training set (they are expert
work) and are marked as such there and in its export (issue 21, item 6)."""

from __future__ import annotations

import csv
import io
import zipfile
from unittest import mock

import numpy as np
import pytest
from django.test import TestCase
from rest_framework.test import APIClient

from backend.acquisition import codec
from backend.acquisition.annotation.services import query_submit
from backend.acquisition.models import AcquisitionStep, Query, TrainingSlice
from backend.acquisition.states import State
from backend.acquisition.steps.services import step_cancel
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    scan_with_volume,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db


def annotating_step(settings, tmp_path):
    """A step waiting for two answers on a 3 x 8 x 8 scan; (project, step, lead, annotator)."""
    use_tmp_storage(settings, tmp_path)
    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=2), pools=[pool])
    scan = scan_with_volume(pool, np.zeros((3, 8, 8), np.int16))
    lead = MembershipFactory(project=project).user
    annotator = MembershipFactory(project=project, role="annotator").user
    step = AcquisitionStep.objects.create(project=project, number=1, state=State.ANNOTATING, strategy="tau",
                                          tau=1e-3, slices_per_step=2, k_uncertain=2, mc_samples=2)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:6] = True
    for z in (0, 2):
        Query.objects.create(step=step, scan=scan, z=z, height=8, width=8, mask=codec.pack_mask(mask),
                             predicted=codec.pack_labels(np.ones((8, 8), np.uint8)),
                             uncertainty=codec.pack_float16(np.zeros((8, 8), np.float32)),
                             n_queried=int(mask.sum()), n_pixels=64)
    return project, step, lead, annotator


def test_answers_of_a_cancelled_step_are_kept_and_marked(settings, tmp_path):
    project, step, lead, annotator = annotating_step(settings, tmp_path)
    answered = Query.objects.filter(step=step).order_by("z").first()
    mask = codec.unpack_mask(answered.mask, (8, 8))
    with mock.patch("backend.core.jobs.send"), TestCase.captureOnCommitCallbacks(execute=True):
        query_submit(query=answered, user=annotator, labels=np.where(mask, 2, 255).astype(np.uint8).ravel(),
                     seconds_spent=12.0)
    step_cancel(step=step, user=lead, reason="wrong tau")
    step.refresh_from_db()
    assert step.state == State.CANCELLED
    kept = TrainingSlice.objects.get(project=project)
    assert (kept.z, kept.source, kept.step_id) == (answered.z, "query", step.id)
    assert Query.objects.get(step=step, z=2).status == Query.Status.WITHDRAWN

    client = APIClient()
    client.force_authenticate(lead)
    summary = client.get(f"/api/projects/{project.id}/training-set/").json()
    assert summary == {"slices": 1, "from_references": 0, "from_queries": 1, "from_cancelled_steps": 1,
                       "held_out": 0}
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/projects/{project.id}/training-set/export/").content))
    rows = list(csv.DictReader(io.StringIO(archive.read("slices.csv").decode())))
    assert len(rows) == 1
    assert rows[0]["step_state"] == "cancelled" and rows[0]["step"] == str(step.id)
    assert int(rows[0]["answered_pixels"]) == int(mask.sum())

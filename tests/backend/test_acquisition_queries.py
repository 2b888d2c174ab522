"""Pixel queries: locks with expiry, one holder at a time, answers for queried pixels only, MAC."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.db import DatabaseError
from django.utils import timezone

from backend.acquisition import codec
from backend.acquisition.annotation.services import (
    QueryLocked,
    SubmissionRejected,
    query_claim,
    query_claim_next,
    query_release,
    query_submit,
)
from backend.acquisition.models import AcquisitionStep, Query, TrainingSlice
from backend.acquisition.selectors import mac_summary
from backend.acquisition.states import State
from backend.acquisition.steps.services import step_cancel
from backend.projects.models import Membership
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    scan_with_volume,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db

# A 4 x 4 slice whose top row (4 pixels) and pixel (1, 1) are queried: 5 of 16 pixels.
MASK = np.zeros((4, 4), bool)
MASK[0, :] = True
MASK[1, 1] = True
PREDICTED = np.full((4, 4), 2, np.uint8)


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


@pytest.fixture
def annotating():
    """A project whose step 1 waits for answers to two queries; returns (step, [alice, bob], lead)."""
    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=3), pools=[pool])
    scan = scan_with_volume(pool, np.zeros((3, 4, 4), np.int16))
    step = AcquisitionStep.objects.create(project=project, number=1, state=State.ANNOTATING, strategy="tau",
                                          tau=1e-3, slices_per_step=2, k_uncertain=4, mc_samples=2)
    for z, mask in ((0, MASK), (1, np.ones((4, 4), bool))):
        Query.objects.create(step=step, scan=scan, z=z, height=4, width=4, mask=codec.pack_mask(mask),
                             predicted=codec.pack_labels(PREDICTED),
                             uncertainty=codec.pack_float16(np.zeros((4, 4))), n_queried=int(mask.sum()),
                             n_pixels=16)
    users = [MembershipFactory(project=project, role=Membership.Role.ANNOTATOR).user for _ in range(2)]
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD).user
    return step, users, lead


def answer(mask: np.ndarray, value: int = 1) -> np.ndarray:
    return np.where(mask, value, 255).astype(np.uint8).ravel()


def test_two_annotators_never_hold_the_same_query(annotating):
    step, (alice, bob), _ = annotating
    first = query_claim_next(project=step.project, user=alice)
    second = query_claim_next(project=step.project, user=bob)
    assert first.id != second.id
    assert query_claim_next(project=step.project, user=alice).id == first.id  # one query at a time, kept
    with pytest.raises(QueryLocked, match="being annotated by user"):
        query_claim(query=first, user=bob)


def test_an_expired_lock_can_be_taken_over(annotating):
    step, (alice, bob), _ = annotating
    first = query_claim_next(project=step.project, user=alice)
    query_claim_next(project=step.project, user=bob)  # bob holds the other one
    Query.objects.filter(pk=first.pk).update(lock_expires=timezone.now() - timedelta(seconds=1))
    taken = query_claim(query=first, user=bob)
    assert taken.assignee == bob
    with pytest.raises(QueryLocked):
        query_submit(query=first, user=alice, labels=answer(MASK), seconds_spent=1.0)


def test_a_released_query_goes_to_the_next_annotator(annotating):
    step, (alice, bob), _ = annotating
    first = query_claim_next(project=step.project, user=alice)
    query_release(query=first, user=alice)
    assert query_claim_next(project=step.project, user=bob).id == first.id


def test_it_rejects_pixels_outside_the_query_and_stores_nothing(annotating):
    step, (alice, _), _ = annotating
    query = query_claim_next(project=step.project, user=alice)
    labels = answer(MASK).reshape(4, 4)
    labels[3, 2] = 1  # outside the query
    with pytest.raises(SubmissionRejected) as err:
        query_submit(query=query, user=alice, labels=labels.ravel(), seconds_spent=2.0)
    assert err.value.messages[0] == (
        "1 labelled pixels lie outside the query (first at y=3, x=2); only the queried pixels may be "
        "labelled: send 255 everywhere else")
    query.refresh_from_db()
    assert (query.status, query.answer, query.answered_by) == (Query.Status.OPEN, None, None)
    assert not TrainingSlice.objects.exists()


def test_it_rejects_an_answer_that_leaves_queried_pixels_empty(annotating):
    step, (alice, _), _ = annotating
    query = query_claim_next(project=step.project, user=alice)
    labels = answer(MASK).reshape(4, 4)
    labels[1, 1] = 255
    with pytest.raises(SubmissionRejected, match="1 queried pixels have no answer"):
        query_submit(query=query, user=alice, labels=labels.ravel(), seconds_spent=2.0)
    with pytest.raises(SubmissionRejected, match=r"label values \[7\] are not in the project's label set"):
        query_submit(query=query, user=alice, labels=answer(MASK, 7), seconds_spent=2.0)
    with pytest.raises(SubmissionRejected, match="has 15 pixels but the slice has 4 x 4 = 16"):
        query_submit(query=query, user=alice, labels=answer(MASK)[:15], seconds_spent=2.0)
    assert not TrainingSlice.objects.exists()


def test_an_answer_joins_the_training_set_with_its_provenance(annotating):
    step, (alice, _), _ = annotating
    query = query_claim_next(project=step.project, user=alice)
    assert query.z == 0
    query_submit(query=query, user=alice, labels=answer(MASK, 3), seconds_spent=12.5)
    query.refresh_from_db()
    assert (query.status, query.answered_by, query.seconds_spent) == (Query.Status.ANSWERED, alice, 12.5)
    row = TrainingSlice.objects.get(scan=query.scan, z=0)
    assert row.source == TrainingSlice.Source.QUERY and row.query == query
    assert np.array_equal(codec.unpack_labels(row.labels, (4, 4)), np.where(MASK, 3, 2))
    assert np.array_equal(codec.unpack_mask(row.answered, (4, 4)), MASK)
    with pytest.raises(QueryLocked, match="answered"):
        query_submit(query=query, user=alice, labels=answer(MASK, 3), seconds_spent=1.0)


def test_the_last_answer_moves_the_step_to_training(annotating, django_capture_on_commit_callbacks, monkeypatch):
    step, (alice, bob), _ = annotating
    sent = []
    monkeypatch.setattr("backend.core.jobs.send", lambda name, step_id, **k: sent.append(name))
    with django_capture_on_commit_callbacks(execute=True):
        for user in (alice, bob):
            q = query_claim_next(project=step.project, user=user)
            query_submit(query=q, user=user, labels=answer(codec.unpack_mask(q.mask, (4, 4))), seconds_spent=1.0)
    step.refresh_from_db()
    assert step.state == State.TRAINING
    assert sent == ["acquisition.step_train"]
    assert query_claim_next(project=step.project, user=alice) is None


def test_a_step_left_annotating_after_its_last_answer_moves_on_at_the_next_claim(
        annotating, django_capture_on_commit_callbacks, monkeypatch):
    # The after-commit check of the last answer did not run (its process stopped):
    # the next annotator asking for work finds nothing open and moves the step on.
    step, (alice, bob), _ = annotating
    monkeypatch.setattr("backend.core.jobs.send", lambda name, step_id, **k: None)
    for user in (alice, bob):  # on_commit callbacks of this test transaction are dropped
        q = query_claim_next(project=step.project, user=user)
        query_submit(query=q, user=user, labels=answer(codec.unpack_mask(q.mask, (4, 4))), seconds_spent=1.0)
    step.refresh_from_db()
    assert step.state == State.ANNOTATING
    with django_capture_on_commit_callbacks(execute=True):
        assert query_claim_next(project=step.project, user=alice) is None
    step.refresh_from_db()
    assert step.state == State.TRAINING


def test_a_failing_check_after_the_commit_does_not_fail_the_stored_answer(
        annotating, django_capture_on_commit_callbacks, monkeypatch):
    step, (alice, _), _ = annotating

    def broken(step_id):
        raise DatabaseError("connection lost")

    monkeypatch.setattr("backend.acquisition.annotation.services._open_count", lambda step_id: 0)
    monkeypatch.setattr("backend.acquisition.annotation.services.step_annotating_done", broken)
    q = query_claim_next(project=step.project, user=alice)
    with django_capture_on_commit_callbacks(execute=True):
        stored = query_submit(query=q, user=alice, labels=answer(codec.unpack_mask(q.mask, (4, 4))),
                              seconds_spent=1.0)
    assert stored.status == Query.Status.ANSWERED
    assert Query.objects.get(pk=q.pk).status == Query.Status.ANSWERED


def test_mac_and_time_are_summed_per_step_annotator_and_project(annotating):
    step, (alice, bob), _ = annotating
    qa = query_claim_next(project=step.project, user=alice)
    qb = query_claim_next(project=step.project, user=bob)
    query_submit(query=qa, user=alice, labels=answer(codec.unpack_mask(qa.mask, (4, 4))), seconds_spent=10.0)
    query_submit(query=qb, user=bob, labels=answer(codec.unpack_mask(qb.mask, (4, 4))), seconds_spent=30.0)
    summary = mac_summary(step.project)
    # Eq. 8 over the step: (5 + 16) queried pixels / (16 + 16) pixels.
    assert summary["steps"][0]["mac"] == pytest.approx(21 / 32)
    assert summary["project"]["mac"] == pytest.approx(21 / 32)
    assert summary["project"]["seconds_spent"] == pytest.approx(40.0)
    by_user = {row["user"]: row for row in summary["annotators"]}
    assert by_user[alice.id]["mac"] == pytest.approx(5 / 16)
    assert by_user[bob.id]["mac"] == pytest.approx(1.0)
    assert by_user[bob.id]["seconds_spent"] == pytest.approx(30.0)


def test_cancelling_an_annotating_step_withdraws_its_open_queries(annotating):
    step, (alice, _), lead = annotating
    query_claim_next(project=step.project, user=alice)
    step = step_cancel(step=step, user=lead, reason="wrong slices")
    assert (step.state, step.reason) == (State.CANCELLED, "wrong slices")
    assert set(Query.objects.values_list("status", flat=True)) == {Query.Status.WITHDRAWN}
    assert query_claim_next(project=step.project, user=alice) is None
    assert mac_summary(step.project)["project"]["queries"] == 0

"""Writes of the annotation phase: claiming (locks with expiry), releasing and answering queries."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from backend.acquisition import codec, ml_adapter
from backend.acquisition.errors import StepConflict
from backend.acquisition.events import publish_query
from backend.acquisition.models import AcquisitionStep, Query
from backend.acquisition.states import State
from backend.acquisition.steps.services import step_annotating_done
from backend.acquisition.steps.training_set import training_set_add
from backend.core import sql
from backend.projects.models import Label

if TYPE_CHECKING:  # annotations only
    from django.contrib.auth.models import User

    from backend.projects.models import Project

LOCK_SECONDS = 15 * 60
UNLABELLED = 255  # in a submitted raster: "no label here" (every pixel outside the query)


class SubmissionRejected(ValidationError):
    """A submitted answer is unusable; nothing was stored (HTTP 400)."""


class QueryLocked(StepConflict):
    """Another annotator holds the query, or it is no longer open (HTTP 409)."""


def _lock_free(now) -> Q:
    return Q(assignee=None) | Q(lock_expires__lt=now)


def _take(query_id: int, user: User, now) -> dict | None:
    """Conditional UPDATE: lock ``query_id`` for ``user`` if it is open and free (or already theirs).

    The fields it stored, or None if the query was not free.
    """
    lock = {"assignee": user, "lock_expires": now + timedelta(seconds=LOCK_SECONDS), "claimed_at": now}
    taken = Query.objects.filter(pk=query_id, status=Query.Status.OPEN).filter(
        _lock_free(now) | Q(assignee=user)).update(**lock)
    return lock if taken == 1 else None


def annotating_step(project: Project) -> AcquisitionStep | None:
    return AcquisitionStep.objects.filter(project=project, state=State.ANNOTATING).first()


@transaction.atomic
def query_claim_next(*, project: Project, user: User) -> Query | None:
    """Lock the next free query of the project's annotating step for ``user``.

    An annotator holds at most one query: a still-valid lock of theirs is returned
    (and renewed) first. None when nothing is left to annotate.
    """
    step = annotating_step(project)
    if step is None:
        return None
    now = timezone.now()
    mine = Q(assignee=user, lock_expires__gte=now)
    # The caller's own query first, then the oldest free one. skip_locked lets concurrent
    # claims on PostgreSQL pass each other instead of queueing; the conditional UPDATE in
    # _take is what guarantees a single holder on every database.
    candidates = (Query.objects.filter(step=step, status=Query.Status.OPEN).filter(mine | _lock_free(now))
                  .order_by(Case(When(mine, then=Value(0)), default=Value(1)), "id")
                  .select_for_update(skip_locked=True))
    for _ in range(3):  # a locked row cannot be taken by anyone else: the first try succeeds
        query = candidates.first()
        if query is None:
            break
        renewal = query.assignee_id == user.pk and query.lock_expires >= now
        lock = _take(query.id, user, now)
        if lock is not None:
            _stored(query, lock)
            if not renewal:
                transaction.on_commit(lambda q=query: publish_query(q, open_queries=_open_count(q.step_id)),
                                      robust=True)
            return _with_step(query, step)
    # Nothing left: if the answer that closed the last query did not move the step on
    # (its process stopped right after the commit), this does.
    transaction.on_commit(lambda: step_annotating_done(step_id=step.id), robust=True)
    return None


def _stored(query: Query, fields: dict) -> Query:
    """``query`` with the fields an UPDATE just stored, without reading the row back."""
    for field, value in fields.items():
        setattr(query, field, value)
    return query


def _with_step(query: Query, step: AcquisitionStep) -> Query:
    query.step = step  # read already; the output and the event need it
    return query


@transaction.atomic
def query_claim(*, query: Query, user: User) -> Query:
    """Lock (or renew the lock of) one query; QueryLocked if another annotator holds it."""
    now = timezone.now()
    lock = _take(query.id, user, now)
    if lock is None:
        query.refresh_from_db()
        raise QueryLocked(_why_not_free(query, now), code="query_locked")
    return _stored(query, lock)


@transaction.atomic
def query_release(*, query: Query, user: User) -> None:
    """Free ``user``'s lock on an open query (a query nobody holds stays as it is).

    QueryLocked if another annotator's lock is still valid (it stays), or the query is closed.
    """
    if Query.objects.filter(pk=query.pk, assignee=user, status=Query.Status.OPEN).update(
            assignee=None, lock_expires=None, claimed_at=None):
        return
    query.refresh_from_db()
    now = timezone.now()
    if query.status != Query.Status.OPEN:
        raise QueryLocked(_why_not_free(query, now), code="query_closed")
    if query.assignee_id is not None and query.lock_expires is not None and query.lock_expires >= now:
        raise QueryLocked(f"query {query.id} is held by user {query.assignee_id} until "
                          f"{query.lock_expires:%H:%M:%S} UTC; only its holder can release it", code="query_locked")


def _why_not_free(query: Query, now) -> str:
    if query.status != Query.Status.OPEN:
        return f"query {query.id} is {query.status}; nothing more to do on it"
    return (f"query {query.id} is being annotated by user {query.assignee_id} until "
            f"{query.lock_expires:%H:%M:%S} UTC; take another one")


def _check_answer(query: Query, labels: np.ndarray, allowed: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """The merged training labels of the slice and its query mask, or SubmissionRejected with what is wrong."""
    shape = (query.height, query.width)
    if labels.size != query.height * query.width:
        raise SubmissionRejected(
            f"the label raster has {labels.size} pixels but the slice has {shape[0]} x {shape[1]} = "
            f"{shape[0] * shape[1]}; send one uint8 per pixel in row-major order", code="bad_size")
    labels = labels.reshape(shape)
    mask = codec.unpack_mask(query.mask, shape)
    outside = ~mask & (labels != UNLABELLED)
    if outside.any():
        y, x = (int(v) for v in np.argwhere(outside)[0])
        raise SubmissionRejected(
            f"{int(outside.sum())} labelled pixels lie outside the query (first at y={y}, x={x}); only the "
            f"queried pixels may be labelled: send {UNLABELLED} everywhere else", code="outside_query")
    values = set(np.unique(labels[mask]).tolist()) - {UNLABELLED}
    unknown = sorted(values - allowed)
    if unknown:
        raise SubmissionRejected(f"label values {unknown[:10]} are not in the project's label set", code="bad_value")
    answers = np.where(labels == UNLABELLED, -1, labels.astype(np.int16))
    predicted = codec.unpack_labels(query.predicted, shape)
    try:
        merged, _ = ml_adapter.merge(predicted, mask, answers)
    except ml_adapter.MyoLabelError as exc:
        raise SubmissionRejected(str(exc), code="missing_answers") from exc
    return merged, mask


def query_submit(*, query: Query, user: User, labels: np.ndarray, seconds_spent: float | None,
                 input_events: int | None = None, label_values: set[int] | None = None) -> Query:
    """Store an answer: labels (H*W uint8, 255 outside the query) for exactly the queried pixels.

    The answer is checked before any lock is taken; then, atomically, a conditional
    UPDATE stores it only if the query is still open and locked by ``user`` (or free),
    and the slice joins the training set with its provenance.
    After the commit, a submission that finds no open query left moves the step to
    training (``step_annotating_done``). Counting after the commit needs no lock: the
    last submission to commit sees every other one, so one of them always finds zero,
    and concurrent submissions of one step never queue behind each other.
    ``label_values``: those of the project's label set, if the caller read them already.
    ``seconds_spent`` and ``input_events``: the client's time and input count on this query (stored as given).
    """
    if not (Query.step.is_cached(query) and AcquisitionStep.project.is_cached(query.step)):
        query = Query.objects.select_related("step__project").get(pk=query.pk)
    step = query.step
    now = timezone.now()
    if step.state != State.ANNOTATING or query.status != Query.Status.OPEN:
        raise QueryLocked(_closed(query, step), code="query_closed")
    if label_values is None:
        label_values = set(Label.objects.filter(label_set_id=step.project.label_set_id).values_list("value", flat=True))
    allowed = label_values | {0}
    merged, mask = _check_answer(query, labels, allowed)
    answer = {"status": Query.Status.ANSWERED, "answer": codec.pack_labels(merged[mask]), "answered_by": user,
              "answered_at": now, "assignee": user, "lock_expires": None, "seconds_spent": seconds_spent,
              "input_events": input_events}
    if not _store_answer(query, answer, merged, mask):
        query.refresh_from_db()
        step.refresh_from_db()
        closed = query.status != Query.Status.OPEN or step.state != State.ANNOTATING
        raise QueryLocked(_closed(query, step) if closed else _why_not_free(query, now),
                          code="query_closed" if closed else "query_locked")
    _stored(query, answer)
    # robust: the answer is stored whatever happens next; a failure here is logged,
    # and the next claim that finds nothing left moves the step on instead.
    transaction.on_commit(lambda: _after_answer(query), robust=True)
    return query


def _store_answer(query: Query, answer: dict, merged: np.ndarray, mask: np.ndarray) -> bool:
    """Store ``answer`` and the slice's training labels if the query still takes it; else store nothing."""
    with transaction.atomic():
        stored = Query.objects.filter(pk=query.pk, status=Query.Status.OPEN, step__state=State.ANNOTATING).filter(
            _lock_free(answer["answered_at"]) | Q(assignee=answer["answered_by"])).update(**answer)
        if stored:
            training_set_add(query, merged, mask)
    return bool(stored)


def _after_answer(query: Query) -> None:
    remaining = _open_count(query.step_id)
    publish_query(query, open_queries=remaining)
    if remaining == 0:
        step_annotating_done(step_id=query.step_id)


def _closed(query: Query, step: AcquisitionStep) -> str:
    return f"query {query.id} is {query.status} and its step is {step.state}; it no longer takes answers"


def _open_count(step_id: int) -> int:
    # Plain SQL: this runs after every answer, and compiling the ORM's COUNT cost more than running it.
    return sql.fetchone(f"SELECT COUNT(*) FROM {Query._meta.db_table} WHERE step_id = %s AND status = %s",
                        [step_id, Query.Status.OPEN])[0]

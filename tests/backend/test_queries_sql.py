"""The annotation phase's single PostgreSQL statements (queries_sql) and their preparation (core.sql).

test_acquisition_queries.py runs every claim and answer rule through these statements
and through the ORM code; this checks what only the statements return or do.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from backend.acquisition import codec, queries_sql
from backend.acquisition.models import AcquisitionStep, Query, TrainingSlice
from backend.acquisition.services import query_claim_next, query_submit
from backend.acquisition.states import State
from backend.core import sql
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    scan_with_volume,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db

MASK = np.zeros((4, 4), bool)
MASK[0, :] = True


@pytest.fixture(autouse=True)
def _postgresql_only(db):
    if connection.vendor != "postgresql":
        pytest.skip("queries_sql is for PostgreSQL; ./dev test runs this module again on PostgreSQL")


@pytest.fixture
def step(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)
    pool = PoolFactory()
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=3), pools=[pool])
    scan = scan_with_volume(pool, np.zeros((3, 4, 4), np.int16))
    step = AcquisitionStep.objects.create(project=project, number=1, state=State.ANNOTATING, strategy="tau",
                                          tau=1e-3, slices_per_step=3, k_uncertain=3, mc_samples=2)
    for z in range(3):
        Query.objects.create(step=step, scan=scan, z=z, height=4, width=4, mask=codec.pack_mask(MASK),
                             predicted=codec.pack_labels(np.zeros((4, 4), np.uint8)),
                             uncertainty=codec.pack_float16(np.zeros((4, 4))), n_queried=4, n_pixels=16)
    return step


def member(step):
    return MembershipFactory(project=step.project).user


def claim(step, user, now=None):
    now = now or timezone.now()
    return queries_sql.claim_next(project_id=step.project_id, user_id=user.pk, now=now,
                                  expires=now + timedelta(minutes=15))


def test_a_claim_returns_the_query_its_step_whether_it_renewed_and_the_open_count(step):
    alice, bob = member(step), member(step)
    query, renewal, open_queries = claim(step, alice)
    assert (query.z, query.assignee_id, renewal, open_queries) == (0, alice.pk, False, 3)
    assert (query.step.id, query.step.number, query.step.project_id) == (step.id, 1, step.project_id)
    assert bytes(query.mask) == codec.pack_mask(MASK)
    assert claim(step, bob)[0].z == 1
    again, renewal, _ = claim(step, alice)
    assert (again.id, renewal) == (query.id, True)
    stored = Query.objects.get(pk=query.pk)
    assert (stored.assignee_id, stored.lock_expires) == (alice.pk, again.lock_expires)


def test_an_expired_lock_is_taken_oldest_first(step):
    alice, bob, carol = member(step), member(step), member(step)
    first, _, _ = claim(step, alice)
    claim(step, bob)
    later = timezone.now() + timedelta(minutes=16)  # alice's and bob's locks have expired
    taken, renewal, _ = claim(step, carol, now=later)
    assert (taken.id, taken.assignee_id, renewal) == (first.id, carol.pk, False)


def test_nothing_to_claim_without_an_annotating_step(step):
    AcquisitionStep.objects.filter(pk=step.pk).update(state=State.TRAINING)
    assert claim(step, member(step)) is None


def test_answerable_reads_the_query_with_its_project_and_label_values(step):
    query = Query.objects.filter(step=step).first()
    found, values = queries_sql.answerable(query_id=query.id, project_id=step.project_id)
    assert found.id == query.id and found.step.state == State.ANNOTATING
    assert found.step.project.label_set_id == step.project.label_set_id
    assert values == set(step.project.label_set.labels.values_list("value", flat=True))
    other = ProjectFactory()
    assert queries_sql.answerable(query_id=query.id, project_id=other.id) is None


def test_an_answer_refused_by_the_statement_stores_nothing(step):
    alice, bob = member(step), member(step)
    query, _, _ = claim(step, alice)
    labels = codec.pack_labels(np.ones((4, 4), np.uint8))
    stored = queries_sql.store_answer(query=query, user_id=bob.pk, now=timezone.now(), answer=b"x",
                                      seconds_spent=1.0, labels=labels, answered=codec.pack_mask(MASK))
    assert stored is False  # alice holds the lock
    assert Query.objects.get(pk=query.pk).status == Query.Status.OPEN
    assert not TrainingSlice.objects.exists()


def test_the_hot_statements_are_prepared_once_per_connection(step):
    alice = member(step)
    query = query_claim_next(project=step.project, user=alice)
    query_submit(query=query, user=alice, labels=np.where(MASK, 1, 255).astype(np.uint8).ravel(),
                 seconds_spent=1.0)
    prepared = [row[0] for row in _prepared()]
    assert any(s.lstrip().startswith("WITH s AS") for s in prepared)
    assert any(s.lstrip().startswith("WITH answered AS") for s in prepared)
    assert sql.fetchone("SELECT 1 + %s", [1]) == (2,)


def _prepared():
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return cursor.fetchall()


def test_fetchone_refuses_a_broken_transaction_as_django_cursors_do():
    with transaction.atomic():
        transaction.set_rollback(True)  # as after an error inside the block
        with pytest.raises(TransactionManagementError, match="You can't execute queries until the end"):
            sql.fetchone("SELECT 1", [])

"""The annotator's hot statements on PostgreSQL: claim a query, read it for an answer, store the answer.

Through the ORM, a claim took five statements (the step, BEGIN, the locked read, the
UPDATE, COMMIT) and an answer six (the query, the label values, BEGIN, UPDATE, INSERT,
COMMIT), with a transaction open across the round trips in between. With twenty
annotators working back to back, compiling them was most of the web processes' time,
and planning them most of PostgreSQL's. Here each is one statement in autocommit,
prepared once per connection (``backend.core.sql``), with the same conditions as the
ORM code in ``services_queries``: SQLite still uses that code, and so does every case
these return None for (nothing free, nothing stored), so that its errors are the same.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from django.db import connection

from backend.acquisition.models import AcquisitionStep, Query, TrainingSlice
from backend.acquisition.states import State
from backend.core import sql
from backend.projects.models import Label, Project

# The step fields a claimed query carries: its output shows the number, its event the project.
_STEP_FIELDS = ("id", "project_id", "number", "state")


def available() -> bool:
    return connection.vendor == "postgresql"


def claim_next(*, project_id: int, user_id: int, now: datetime, expires: datetime) -> tuple[Query, bool, int] | None:
    """Lock the caller's own open query of the project's annotating step, else the oldest free one.

    The claimed query (with its step), whether it was a renewal of the caller's own
    lock, and the number of open queries of the step; None if no query was free.
    """
    row = sql.fetchone(_claim_sql(), {"project": project_id, "user": user_id, "now": now, "expires": expires,
                                      "annotating": State.ANNOTATING, "open": Query.Status.OPEN})
    if row is None:
        return None
    renewal, open_queries = row[-2:]
    return _query_with_step(row), renewal, open_queries


def _query_with_step(row: tuple) -> Query:
    """The Query and step fields that begin ``row`` (as ``_returned`` lists them) as model instances."""
    n = len(_query_columns())
    query = Query.from_db(connection.alias, _query_columns(), row[:n])
    query.step = AcquisitionStep.from_db(connection.alias, _STEP_FIELDS, row[n:n + len(_STEP_FIELDS)])
    return query


def answerable(*, query_id: int, project_id: int) -> tuple[Query, set[int]] | None:
    """Query ``query_id`` of the project, with its step and project as ``query_submit`` reads them,
    and the label values of the project's label set; None if the project has no such query."""
    row = sql.fetchone(_answerable_sql(), {"query": query_id, "project": project_id})
    if row is None:
        return None
    query = _query_with_step(row)
    n = len(_query_columns()) + len(_STEP_FIELDS)
    query.step.project = Project.from_db(connection.alias, ("id", "label_set_id"), row[n:n + 2])
    return query, set(row[-1])


def store_answer(*, query: Query, user_id: int, now: datetime, answer: bytes, seconds_spent: float | None,
                 labels: bytes, answered: bytes) -> bool:
    """Mark ``query`` answered and put its slice in the training set, if it is still open, its step
    annotating, and its lock free or the caller's. False (nothing stored) otherwise."""
    return sql.fetchone(_answer_sql(), {
        "query": query.pk, "user": user_id, "now": now, "answer": answer, "seconds": seconds_spent,
        "labels": labels, "answered": answered, "height": query.height, "width": query.width,
        "source": TrainingSlice.Source.QUERY, "answered_status": Query.Status.ANSWERED,
        "open": Query.Status.OPEN, "annotating": State.ANNOTATING}) is not None


@lru_cache(maxsize=1)
def _query_columns() -> tuple[str, ...]:
    """Query's field names as ``from_db`` takes them, in the order the claim returns them."""
    return tuple(f.attname for f in Query._meta.concrete_fields)


def _tables() -> dict[str, str]:
    return {"query": Query._meta.db_table, "step": AcquisitionStep._meta.db_table,
            "slice": TrainingSlice._meta.db_table, "project": Project._meta.db_table, "label": Label._meta.db_table}


def _returned() -> str:
    """The columns of a query (alias q) and its step (alias s) that ``_query_with_step`` reads."""
    return ", ".join([*(f"q.{f.column}" for f in Query._meta.concrete_fields), *(f"s.{c}" for c in _STEP_FIELDS)])


@lru_cache(maxsize=1)
def _answerable_sql() -> str:
    t = _tables()
    return f"""
        SELECT {_returned()}, p.id, p.label_set_id,
            ARRAY(SELECT l.value FROM {t["label"]} l WHERE l.label_set_id = p.label_set_id)
        FROM {t["query"]} q JOIN {t["step"]} s ON s.id = q.step_id JOIN {t["project"]} p ON p.id = s.project_id
        WHERE q.id = %(query)s AND s.project_id = %(project)s"""


@lru_cache(maxsize=1)
def _claim_sql() -> str:
    t = _tables()
    open_of_step = f"FROM {t['query']} q WHERE q.step_id = (SELECT id FROM s) AND q.status = %(open)s"
    # As query_claim_next: the caller's valid lock first, then the oldest free query. PostgreSQL
    # runs a WITH query only as far as its reader asks, so `free` runs only when `mine` finds
    # nothing, and each walks a partial index of Query instead of sorting every open
    # query of the step. SKIP LOCKED lets concurrent claims pass each other; a row locked here
    # is current, so the UPDATE cannot take a query someone else holds.
    return f"""
        WITH s AS (
            SELECT {", ".join(_STEP_FIELDS)} FROM {t["step"]}
            WHERE project_id = %(project)s AND state = %(annotating)s ORDER BY number LIMIT 1
        ), mine AS (
            SELECT q.id, TRUE AS renewal {open_of_step}
                AND q.assignee_id = %(user)s AND q.lock_expires >= %(now)s
            ORDER BY q.id LIMIT 1 FOR UPDATE OF q SKIP LOCKED
        ), free AS (
            SELECT q.id, FALSE AS renewal {open_of_step}
                AND (q.assignee_id IS NULL OR q.lock_expires < %(now)s)
            ORDER BY q.id LIMIT 1 FOR UPDATE OF q SKIP LOCKED
        ), pick AS (
            SELECT * FROM mine UNION ALL SELECT * FROM free LIMIT 1
        )
        UPDATE {t["query"]} q SET assignee_id = %(user)s, lock_expires = %(expires)s, claimed_at = %(now)s
        FROM pick, s WHERE q.id = pick.id
        RETURNING {_returned()}, pick.renewal,
            (SELECT count(*) FROM {t["query"]} o WHERE o.step_id = s.id AND o.status = %(open)s)"""


@lru_cache(maxsize=1)
def _answer_sql() -> str:
    t = _tables()
    # One statement, so the answer and its training slice are stored together or not at all.
    # The conflict target and updated columns are those of _add_to_training_set.
    return f"""
        WITH answered AS (
            UPDATE {t["query"]} q SET status = %(answered_status)s, answer = %(answer)s, answered_by_id = %(user)s,
                answered_at = %(now)s, assignee_id = %(user)s, lock_expires = NULL, seconds_spent = %(seconds)s
            FROM {t["step"]} s
            WHERE q.id = %(query)s AND q.status = %(open)s AND s.id = q.step_id AND s.state = %(annotating)s
                AND (q.assignee_id IS NULL OR q.lock_expires < %(now)s OR q.assignee_id = %(user)s)
            RETURNING q.id, q.step_id, q.scan_id, q.z, s.project_id
        )
        INSERT INTO {t["slice"]} (project_id, scan_id, z, height, width, labels, answered, source, query_id,
                                  step_id, created)
        SELECT project_id, scan_id, z, %(height)s, %(width)s, %(labels)s, %(answered)s, %(source)s, id,
               step_id, %(now)s FROM answered
        ON CONFLICT (project_id, scan_id, z) DO UPDATE SET height = EXCLUDED.height, width = EXCLUDED.width,
            labels = EXCLUDED.labels, answered = EXCLUDED.answered, source = EXCLUDED.source,
            query_id = EXCLUDED.query_id, step_id = EXCLUDED.step_id
        RETURNING query_id"""

"""Hand-written SQL of the hot paths, prepared once per PostgreSQL connection.

The annotator's calls run the same few statements thousands of times, and PostgreSQL
spent more time planning them than running them. Django's psycopg cursor binds
parameters on the client, so every call is parsed and planned again. On PostgreSQL,
``fetchone`` runs its statement through a server-side-binding psycopg cursor with
``prepare=True`` on the same connection (and in the same transaction): each pooled
connection plans it once. Errors are Django's, as from ``connection.cursor()``.
Elsewhere (SQLite) it is Django's cursor.

Behind PgBouncer in transaction mode, prepared statements need PgBouncer 1.21 or newer
(``max_prepared_statements``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.db import connection


def fetchone(sql: str, params: Sequence | Mapping) -> tuple | None:
    """The first row of ``sql`` (``%s`` or ``%(name)s`` placeholders), or None."""
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    import psycopg

    with connection.cursor():  # Django's checks: the connection's health, its thread
        pass
    connection.validate_no_broken_transaction()  # as Django's cursor does before each query
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        cursor.execute(sql, params, prepare=True)
        return cursor.fetchone()

"""The annotator's two hot calls answered beside Django: take the next query, answer one.

Twenty annotators working back to back spent most of the web processes' time in
Django's and DRF's request machinery (ASGI handler, middleware, thread hops,
negotiation), not in the work itself. This ASGI wrapper handles
``POST /api/projects/<p>/queries/next/`` and ``POST .../queries/<q>/submit/`` for
token-authenticated clients (scripts, ``simulate_annotators``) in one short function:
one SQL query for the caller and the access rule of ``access.project_for``, then the
same services the DRF views call (``query_claim_next``, ``query_submit``) and the
same output (``query_output``, ``submission_output``).

It serves only the plain success case. Anything else goes to Django, whose views
give the error responses: a session cookie (CSRF applies), no or a bad token, a
superuser, a foreign project or query, a body or ``Accept`` it does not read as DRF
would, a query string, and any answer the service refuses (it refuses before it
stores anything, so Django repeats the check and reports it).
``MYOLABEL_FAST_QUERIES=false`` turns the wrapper off.
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signals
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from rest_framework.authtoken.models import Token

from backend.acquisition import queries_sql
from backend.acquisition.apis_queries import decode_labels, pixels, query_output, submission_output
from backend.acquisition.models import Query
from backend.acquisition.services import query_claim_next, query_submit
from backend.core import fastpath, sql
from backend.projects.models import Membership, Project

_NEXT = re.compile(r"^/api/projects/([0-9]{1,18})/queries/next/$")
_SUBMIT = re.compile(r"^/api/projects/([0-9]{1,18})/queries/([0-9]{1,18})/submit/$")
_JSON = {b"application/json", b"application/*", b"*/*"}
_MAX_BODY = 64 * 1024 * 1024  # larger bodies go to Django, which applies its own limits


class QueryFastPath:
    """ASGI middleware: answers the calls described above when it fully can, passes the rest to ``app``."""

    def __init__(self, app, *, thread_sensitive: bool = False):
        self.app = app
        # Not thread-sensitive: concurrent calls run on the loop's thread pool, each thread
        # with its own database connection, released at the end of the call as Django does.
        # (Tests run it in their own thread, to see their transaction.)
        self._answer = sync_to_async(self._answer_sync, thread_sensitive=thread_sensitive)

    async def __call__(self, scope, receive, send):
        request = _parse(scope) if scope["type"] == "http" and settings.MYOLABEL_FAST_QUERIES else None
        if request is None:
            return await self.app(scope, receive, send)
        received, body = await _read_body(receive)
        # DRF reads as much body as Content-Length says: any other length is Django's case.
        if body is not None and len(body) == request["length"]:
            response = await self._answer(request, body)
            if response is not None:
                return await fastpath.send_response(send, *response)
        await self.app(scope, _replay(received, receive), send)

    def _answer_sync(self, request: dict, body: bytes) -> tuple[int, list, bytes] | None:
        try:
            return self._answer_checked(request, body)
        finally:
            # As Django ends every request: close_old_connections releases the connection
            # (back to the pool in the web process).
            signals.request_finished.send(sender=QueryFastPath)

    def _answer_checked(self, request: dict, body: bytes) -> tuple[int, list, bytes] | None:
        answer = _submission(body) if request["query_id"] is not None else {}
        if answer is None:
            return None
        try:
            user = _member(request)
            if user is None:
                return None
            if request["query_id"] is None:
                query = query_claim_next(project=_known(Project, request["project_id"]), user=user)
                status, data = (200, query_output(query)) if query is not None else (204, None)
            else:
                query, label_values = _answerable(request["query_id"], request["project_id"])
                labels = decode_labels(answer["labels"], answer["encoding"], pixels(query))
                query = query_submit(query=query, user=user, labels=labels, seconds_spent=answer["seconds_spent"],
                                     label_values=label_values)
                status, data = 201, submission_output(query)
        except (ValidationError, DatabaseError, Query.DoesNotExist):
            return None  # nothing was stored: Django answers this request with its error
        return _response(status, data, secure=request["secure"])


def _parse(scope) -> dict | None:
    """The call's parameters, or None when it is not a plain call served here."""
    if scope["method"] != "POST" or scope.get("query_string"):
        return None
    path = scope["path"]
    match = _NEXT.match(path) or _SUBMIT.match(path)
    if match is None:
        return None
    headers = fastpath.parse_headers(scope)
    secure = fastpath.is_secure(scope, headers)
    key = fastpath.token_key(headers)
    if key is None or fastpath.session_key(headers) or not fastpath.accepts(headers, _JSON) or (
            not fastpath.request_allowed(headers, secure=secure)):
        return None
    submit = match.re is _SUBMIT
    if submit and headers.get(b"content-type", b"").split(b";")[0].strip().lower() != b"application/json":
        return None
    length = headers.get(b"content-length", b"0")
    return {"project_id": int(match.group(1)), "query_id": int(match.group(2)) if submit else None,
            "token": key, "secure": secure, "length": int(length) if length.isdigit() else -1}


def _submission(body: bytes) -> dict | None:
    """The fields of a submit body that DRF's JSON parser and input serializer accept unchanged; else None."""
    try:
        data = json.loads(body, parse_constant=_refuse)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    labels, encoding = data.get("labels"), data.get("encoding", "raw")
    seconds = data.get("seconds_spent")
    if not isinstance(labels, str) or not labels or labels != labels.strip() or encoding not in ("raw", "zlib"):
        return None
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)
                                or not math.isfinite(seconds) or seconds < 0):
        return None
    return {"labels": labels, "encoding": encoding, "seconds_spent": None if seconds is None else float(seconds)}


def _refuse(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _member(request: dict):
    """The caller, if an active member of the project who is not a superuser (they go to Django's path)."""
    row = sql.fetchone(_member_sql(), [request["project_id"], request["token"]])
    return _known(get_user_model(), row[0]) if row else None


@lru_cache(maxsize=1)
def _member_sql() -> str:
    token, user, membership = (m._meta.db_table for m in (Token, get_user_model(), Membership))
    # Every role may annotate (ANNOTATOR is the lowest).
    return (f"SELECT u.id FROM {token} t JOIN {user} u ON u.id = t.user_id "
            f"JOIN {membership} m ON m.user_id = u.id AND m.project_id = %s "
            "WHERE t.key = %s AND u.is_active AND NOT u.is_superuser")


def _answerable(query_id: int, project_id: int) -> tuple[Query, set[int] | None]:
    """The query to answer, read as ``query_submit`` needs it; a query of another project is
    missing (Query.DoesNotExist), as for ``access.query_of``."""
    if queries_sql.available():
        found = queries_sql.answerable(query_id=query_id, project_id=project_id)
        if found is None:
            raise Query.DoesNotExist
        return found
    return Query.objects.select_related("step__project").get(pk=query_id, step__project_id=project_id), None


def _known(model, pk: int):
    """A stand-in for a row known to exist: enough for the services' filters and foreign keys."""
    instance = model(pk=pk)
    instance._state.adding = False
    instance._state.db = "default"
    return instance


def _vary() -> bytes:
    """DRF varies on Accept only when a view has several renderers (the default list is JSON only)."""
    from rest_framework.settings import api_settings

    return b"Accept, Cookie" if len(api_settings.DEFAULT_RENDERER_CLASSES) > 1 else b"Cookie"


def _response(status: int, data: dict | None, *, secure: bool) -> tuple[int, list, bytes]:
    """The response DRF's JSONRenderer and Django's middleware make of ``data`` (the parity test checks)."""
    body = b"" if data is None else json.dumps(data, ensure_ascii=False, separators=(",", ":"),
                                               allow_nan=False).encode()
    headers = [(b"Content-Type", b"application/json")] if data is not None else []
    headers += [(b"Vary", _vary()), (b"Allow", b"POST, OPTIONS"), (b"Content-Length", str(len(body)).encode())]
    return status, headers + fastpath.security_headers(secure), body


async def _read_body(receive) -> tuple[list[dict], bytes | None]:
    """The messages received and the whole body; None for the body if the client left or it is too large."""
    received, size = [], 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, None
        size += len(message.get("body", b""))
        if size > _MAX_BODY:
            return received, None
        if not message.get("more_body", False):
            return received, b"".join(m.get("body", b"") for m in received)


def _replay(received: list[dict], receive):
    """A ``receive`` that gives Django the messages already read, then the client's later ones."""
    pending = list(received)

    async def replayed():
        return pending.pop(0) if pending else await receive()

    return replayed

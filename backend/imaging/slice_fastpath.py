"""CT slice requests answered beside Django, not through it.

The viewer and the annotator ask for a slice on every scroll step, and in
production Django's request machinery (middleware, DRF negotiation, three ORM
lookups through model instances) cost several times the slice itself. This ASGI
wrapper answers ``GET /api/scans/<id>/slices/<z>.png|.raw`` in one short function:
the same access rule as ``backend.projects.access.scan_for`` (a membership in a
project that uses the scan's pool, or a superuser), the same rendering
(``backend.imaging.slices``) and the same response headers as the DRF views.

It only serves the plain success case. Anything else (no or bad credentials, a
foreign or missing scan, a slice out of range, a query it does not know, an
``Accept`` it cannot satisfy, a redirect to HTTPS) falls through to Django, whose
views give the error responses; so errors read exactly as they always did.
``MYOLABEL_FAST_SLICES=false`` turns the wrapper off.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from functools import lru_cache
from threading import Lock
from urllib.parse import parse_qsl

import numpy as np
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection

from backend.core import fastpath, sql
from backend.imaging import slices
from backend.imaging.models import Scan
from backend.imaging.volumes import local_path

_PATH = re.compile(r"^/api/scans/([0-9]{1,18})/slices/([0-9]{1,9})\.(png|raw)$")  # longer ids: Django's turn
_NUMBER = re.compile(r"^-?[0-9]{1,6}(\.[0-9]{1,6})?$")
_ACCEPTS = {"png": {b"image/png", b"image/*", b"*/*"}, "raw": {b"application/octet-stream", b"*/*"}}
_VOLUMES_KEPT = 16  # memory maps held open per process (a handle each, pages shared with the OS cache)


class SliceFastPath:
    """ASGI middleware: serves CT slice requests it can fully answer, passes the rest to ``app``."""

    def __init__(self, app):
        self.app = app
        self._volumes: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = Lock()
        self._answer = sync_to_async(self._answer_sync, thread_sensitive=True)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and settings.MYOLABEL_FAST_SLICES:
            match = _PATH.match(scope["path"])
            if match and (request := _parse(scope, match)) is not None:
                response = await self._answer(request)
                if response is not None:
                    await fastpath.send_response(send, *response)
                    return
        await self.app(scope, receive, send)

    def _answer_sync(self, request: dict) -> tuple[int, list, bytes] | None:
        try:
            name = _visible_volume_name(request)
        except DatabaseError:
            connection.close()  # Django's own path reconnects and answers this request
            return None
        if name is None:
            return None
        volume = self._volume(name)
        if not 0 <= request["z"] < volume.shape[0]:
            return None
        hu = volume[request["z"]]
        body = _render(hu, request)
        return 200, _headers(request["kind"], hu.shape, len(body), secure=request["secure"]), body

    def _volume(self, name: str) -> np.ndarray:
        # Stored names are never overwritten (volumes.py), so an open map never goes stale.
        with self._lock:
            if name in self._volumes:
                self._volumes.move_to_end(name)
                return self._volumes[name]
        storage = Scan._meta.get_field("volume").storage
        volume = np.load(local_path(name, storage=storage), mmap_mode="r")
        with self._lock:
            self._volumes[name] = volume
            while len(self._volumes) > _VOLUMES_KEPT:
                self._volumes.popitem(last=False)
        return volume


def _parse(scope, match) -> dict | None:
    """The request's parameters, or None when it is anything but the plain case served here."""
    kind = match.group(3)
    headers = fastpath.parse_headers(scope)
    secure = fastpath.is_secure(scope, headers)
    if not fastpath.accepts(headers, _ACCEPTS[kind]) or not fastpath.request_allowed(headers, secure=secure):
        return None
    request = {"scan_id": int(match.group(1)), "z": int(match.group(2)), "kind": kind, "headers": headers,
               "secure": secure}
    query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    if kind == "raw":
        return None if query else request
    window = _window(query)
    return None if window is None else {**request, "window": window}


def _window(query: list[tuple[str, str]]) -> tuple[float, float] | None:
    """(window, level) of a PNG query with ``preset`` or ``window`` + ``level``; None for anything else."""
    params = dict(query)
    if len(params) != len(query) or not params.keys() <= {"preset", "window", "level"}:
        return None
    if "preset" in params and params["preset"] not in slices.WINDOW_PRESETS:
        return None
    if {"window", "level"} & params.keys():
        if not {"window", "level"} <= params.keys() or not all(_NUMBER.match(params[k]) for k in ("window", "level")):
            return None
        window, level = float(params["window"]), float(params["level"])
        in_range = slices.WINDOW_RANGE[0] <= window <= slices.WINDOW_RANGE[1] and (
            slices.LEVEL_RANGE[0] <= level <= slices.LEVEL_RANGE[1])
        return (window, level) if in_range else None
    return slices.WINDOW_PRESETS[params.get("preset", slices.DEFAULT_PRESET)]


def _visible_volume_name(request: dict) -> str | None:
    """The stored volume of the requested scan if the request's user may see it and it is ready.

    One query, as DRF would authenticate (a session first, then ``Token``) and as
    ``access.scan_for`` decides. The connection stays open between requests (Django's
    per-request close would make every slice check out and set up a connection again).
    """
    user_id = fastpath.session_user_id(request["headers"])
    if user_id is not None:
        who, param = "u.id = %s", user_id
    elif (key := fastpath.token_key(request["headers"])) is not None:
        who, param = "u.id = (SELECT t.user_id FROM {token} t WHERE t.key = %s)", key
    else:
        return None
    row = sql.fetchone(_sql(who), [request["scan_id"], param, Scan.Status.READY])
    return row[0] if row else None


@lru_cache(maxsize=2)
def _sql(who: str) -> str:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from backend.projects.models import Membership, Project

    user_model = get_user_model()
    pools = Project.pools.through
    tables = {"token": Token._meta.db_table, "user": user_model._meta.db_table, "scan": Scan._meta.db_table,
              "membership": Membership._meta.db_table, "project_pools": pools._meta.db_table,
              "pp_project": pools._meta.get_field("project").column, "pp_pool": pools._meta.get_field("pool").column}
    return ("SELECT s.volume FROM {user} u JOIN {scan} s ON s.id = %s "
            "WHERE " + who + " AND u.is_active AND s.status = %s AND s.volume <> '' AND (u.is_superuser OR EXISTS ("
            "SELECT 1 FROM {membership} m JOIN {project_pools} pp ON pp.{pp_project} = m.project_id "
            "WHERE m.user_id = u.id AND pp.{pp_pool} = s.pool_id))").format(**tables)


def _render(hu: np.ndarray, request: dict) -> bytes:
    if request["kind"] == "raw":
        return slices.raw_bytes(hu, "<i2")
    window, level = request["window"]
    grey = slices.window_to_uint8(hu, window=window, level=level)
    return slices.encode_png(grey, level=settings.MYOLABEL_PNG_LEVEL)


def _headers(kind: str, shape: tuple[int, int], length: int, *, secure: bool) -> list[tuple[bytes, bytes]]:
    """The headers the DRF view and Django's middleware give the same response (the parity test checks)."""
    if kind == "raw":
        found = {"Content-Type": "application/octet-stream", **slices.raw_headers(shape, "<i2")}
    else:
        found = {"Content-Type": "image/png", "Cache-Control": slices.CACHE_CONTROL}
    found |= {"Vary": "Accept, Cookie", "Allow": "GET, HEAD, OPTIONS", "Content-Length": str(length)}
    return [(k.encode(), v.encode()) for k, v in found.items()] + fastpath.security_headers(secure)

"""What the fast paths beside Django (slices, annotator answers) share: who is asking, and
the request checks and response headers Django's middleware would apply.

A fast path answers only requests it can answer exactly as Django would, and hands
every other request to Django. These helpers read the same settings as Django's
middleware, so the two stay equal (tests/backend/test_*_fastpath.py compare them).
"""

from __future__ import annotations

from importlib import import_module

from django.conf import settings


def parse_headers(scope) -> dict[bytes, bytes]:
    return dict(scope["headers"])  # repeated headers: the last wins, and only a few are read


def request_allowed(headers: dict, *, secure: bool) -> bool:
    """Whether Django would serve the request itself (no HTTPS redirect, a host in ALLOWED_HOSTS)."""
    return not (settings.SECURE_SSL_REDIRECT and not secure) and host_allowed(headers)


def token_key(headers: dict) -> str | None:
    """The key of an ``Authorization: Token <key>`` header, as DRF's TokenAuthentication reads it."""
    authorization = headers.get(b"authorization", b"").split()
    if len(authorization) != 2 or authorization[0].lower() != b"token":
        return None
    return authorization[1].decode("latin-1")


def session_key(headers: dict) -> str | None:
    return cookies(headers.get(b"cookie", b"")).get(settings.SESSION_COOKIE_NAME) or None


def session_user_id(headers: dict) -> int | None:
    """The active user of the request's session cookie, as Django's auth middleware finds it."""
    key = session_key(headers)
    if not key:
        return None
    from django.contrib.auth import get_user

    from backend.core.session_limits import idle_expired

    session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    if idle_expired(session):  # Django ends it on its next request; never serve it meanwhile
        return None
    user = get_user(_SessionOnly(session))
    return user.pk if user.is_authenticated and user.is_active else None


class _SessionOnly:
    """What ``django.contrib.auth.get_user`` reads of a request: its session."""

    def __init__(self, session):
        self.session = session


def cookies(header: bytes) -> dict[str, str]:
    from django.http.cookie import parse_cookie

    return parse_cookie(header.decode("latin-1")) if header else {}


def host_allowed(headers: dict) -> bool:
    """Whether Django would accept the request's host (ALLOWED_HOSTS); a bad one gets Django's 400."""
    from django.http.request import split_domain_port, validate_host

    host = headers.get(b"x-forwarded-host") if settings.USE_X_FORWARDED_HOST else None
    host = host or headers.get(b"host")
    if not host:
        return False
    domain, _ = split_domain_port(host.decode("latin-1").split(",")[-1].strip())
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    return bool(domain) and validate_host(domain, allowed)


def is_secure(scope, headers: dict) -> bool:
    if scope.get("scheme") == "https":
        return True
    proxy = settings.SECURE_PROXY_SSL_HEADER
    if not proxy:
        return False
    name = proxy[0].removeprefix("HTTP_").replace("_", "-").lower().encode("latin-1")
    return headers.get(name, b"").split(b",")[0].strip().decode("latin-1") == proxy[1]


def security_headers(secure: bool) -> list[tuple[bytes, bytes]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add, from the same settings."""
    found = [(b"X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper().encode())]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        found.append((b"X-Content-Type-Options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        found.append((b"Referrer-Policy", (policy if isinstance(policy, str) else ",".join(policy)).encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        found.append((b"Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    if secure and settings.SECURE_HSTS_SECONDS:
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        hsts += "; includeSubDomains" if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS else ""
        hsts += "; preload" if settings.SECURE_HSTS_PRELOAD else ""
        found.append((b"Strict-Transport-Security", hsts.encode()))
    return found


def accepts(headers: dict, types: set[bytes]) -> bool:
    """Whether the request's Accept (absent: anything) names one of ``types``."""
    accept = headers.get(b"accept")
    return accept is None or bool(types & {part.split(b";")[0].strip() for part in accept.split(b",")})


async def send_response(send, status: int, headers: list, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""Session lifetimes: an absolute one from login, and an idle one since the last request.

Django renews a session's expiry whenever the session is saved, so the absolute limit is
pinned with ``set_expiry(<datetime>)`` at the first request of a login; the session then
ends at that time whatever is written to it later. The idle limit needs the time of the
last request, which is written at most once a minute (``ACTIVITY_RESOLUTION``) so that the
annotator's stream of requests does not turn into a session write each.

Every request through Django counts as activity, so the annotator's lock renewals and
answers keep its session alive. The fast paths beside Django (slices, websockets) do not
count, but they refuse a session that is already idle (``idle_expired``).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY, logout
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.utils.deprecation import MiddlewareMixin

ACTIVITY_KEY = "_myolabel_last_activity"
EXPIRY_KEY = "_session_expiry"  # where Django's set_expiry keeps a fixed expiry
ACTIVITY_RESOLUTION = 60  # seconds between two writes of the last-activity time


def _now() -> int:
    return int(timezone.now().timestamp())


def idle_expired(session, now: int | None = None) -> bool:
    """Whether ``session`` saw no request for longer than ``MYOLABEL_SESSION_IDLE_SECONDS``."""
    last = session.get(ACTIVITY_KEY)
    return last is not None and (now or _now()) - int(last) > settings.MYOLABEL_SESSION_IDLE_SECONDS


def _stamp(session, now: int) -> None:
    if EXPIRY_KEY not in session:
        session.set_expiry(timezone.now() + timedelta(seconds=settings.MYOLABEL_SESSION_ABSOLUTE_SECONDS))
    if now - int(session.get(ACTIVITY_KEY, 0)) >= ACTIVITY_RESOLUTION:
        session[ACTIVITY_KEY] = now


def _idle_response(request: HttpRequest) -> JsonResponse | None:
    minutes = round(settings.MYOLABEL_SESSION_IDLE_SECONDS / 60)
    text = f"Your session ended after {minutes} minutes without activity. Log in again."
    if request.path.startswith("/api/") and "HTTP_AUTHORIZATION" not in request.META:
        # The annotator's api.js turns a 401 into "Your session has ended..."; a token, if
        # also sent, still authenticates the request below.
        return JsonResponse({"detail": text, "code": "session_expired"}, status=401)
    messages.info(request, text)  # shown by the login page the view now redirects to
    return None


class SessionLimitsMiddleware(MiddlewareMixin):
    """Ends idle sessions and records activity; after AuthenticationMiddleware and
    MessageMiddleware. Sessions from before this middleware get their limits at their first
    request."""

    def process_request(self, request):
        if not request.user.is_authenticated:
            return None
        now = _now()
        if idle_expired(request.session, now):
            logout(request)
            return _idle_response(request)
        _stamp(request.session, now)
        return None


def stamp_on_login(sender, request, user, **kwargs) -> None:
    """``user_logged_in`` receiver (connected in CoreConfig.ready): the limits start at login.

    Only for a session login: the token endpoint sends the signal too, and a token client must
    never get a session.
    """
    session = getattr(request, "session", None)
    if session is not None and SESSION_KEY in session:
        _stamp(session, _now())

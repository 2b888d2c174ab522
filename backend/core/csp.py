"""Content-Security-Policy (django-csp) on HTML documents, with the page's own websocket origin
in ``connect-src``.

Only documents are governed by a policy; JSON, images and scripts go without it, as the
fast paths beside Django answer them (the two must answer alike, header for header).

``'self'`` covers ``ws:``/``wss:`` of the same host only in CSP level 3 browsers; the page's
sockets (``/ws/...``) are named explicitly for the others. The host is the one Django already
validated against ``ALLOWED_HOSTS``.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.core.exceptions import DisallowedHost


class SameOriginSocketsCSPMiddleware(CSPMiddleware):
    def process_response(self, request, response):
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        return super().process_response(request, response)

    def get_policy_parts(self, request, response, report_only: bool = False) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        try:
            host = request.get_host()
        except DisallowedHost:
            return parts
        sockets = [f"wss://{host}"] if request.is_secure() else [f"ws://{host}", f"wss://{host}"]
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), *sockets]
        parts.update = update
        return parts

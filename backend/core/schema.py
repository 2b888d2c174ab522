"""The OpenAPI schema documents the error answers of every operation (``backend.core.errors``).

Any operation may refuse its input (400), the caller's role (403), an object or a
URL that does not exist for the caller (404), the current state (409) or a body
that is too large (413); operations that read a body also answer 415 for a media
type they do not parse, and throttled views 429. Each is the shared ``Error`` body.
A view's own declaration of one of these statuses wins.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema

from backend.core.errors import ErrorOutput

ERROR_STATUSES = (400, 403, 404, 409, 413)
THROTTLED = 429
UNSUPPORTED_MEDIA_TYPE = 415
_BODY_METHODS = ("POST", "PUT", "PATCH")


class ErrorDocumentingAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction="response"):
        bodies = super()._get_response_bodies(direction)
        for code in self._error_statuses():
            if str(code) not in bodies:
                bodies[str(code)] = self._get_response_for_code(ErrorOutput, str(code), ("application/json",),
                                                                direction)
        return bodies

    def _error_statuses(self) -> tuple[int, ...]:
        body = (UNSUPPORTED_MEDIA_TYPE,) if self.method in _BODY_METHODS else ()
        throttled = (THROTTLED,) if getattr(self.view, "throttle_classes", None) else ()
        return ERROR_STATUSES + body + throttled

"""One shape for every error the API answers, made in one place.

``{"detail": "<a sentence for a person>", "code": "<machine code>"}``, and when fields
of the request were refused also ``"errors": {"<field>": ["<message>", ...]}`` (nested
fields named with dots: ``labels.1.value``). ``detail`` then sums the field messages up,
so a client that shows ``detail`` shows everything.

``api_exception_handler`` (DRF's EXCEPTION_HANDLER) maps DRF's exceptions, Django's
Http404 / PermissionDenied / ValidationError and the apps' domain errors (registered
with ``register_domain_error``) to that shape; ``api_bad_request``, ``api_not_found`` and
``api_server_error`` give it to Django's own 400, 404 and 500 under /api/. The schema
documents it as ``Error`` (``backend.core.schema``).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views import defaults
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.views import exception_handler

from backend.core.ids import ID_RANGE

API_PREFIX = "/api/"
GENERAL = ("non_field_errors", "detail")  # error keys that name no field
_DOMAIN_ERRORS: dict[type, tuple[int, str]] = {}


@extend_schema_serializer(component_name="Error")
class ErrorOutput(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong and what to do, for a person.")
    code = serializers.CharField(help_text="Machine-readable reason, e.g. not_found, invalid, query_locked.")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text="Only when fields were refused: messages by field (nested fields joined with dots).")


# Error statuses a view names explicitly in its schema (every operation documents the
# shared body for its error statuses anyway: backend.core.schema).
ERRORS = {400: ErrorOutput, 403: ErrorOutput, 404: ErrorOutput}
READ_ERRORS = {403: ErrorOutput, 404: ErrorOutput}


def register_domain_error(kind: type[Exception], http_status: int, code: str) -> None:
    """Answer ``kind`` (and its subclasses) with ``http_status``; ``code`` unless the error names its own."""
    _DOMAIN_ERRORS[kind] = (http_status, code)


class _Mapped(exceptions.APIException):
    """A Django or domain exception with the status and code it is answered with."""

    def __init__(self, detail, code: str, http_status: int):
        super().__init__(detail, code)
        self.status_code = http_status


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"
    default_detail = "The request body is larger than this server accepts."


def _too_large() -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes this "
                           "server accepts (DATA_UPLOAD_MAX_MEMORY_SIZE); send less at once.")


def _domain(exc: Exception) -> tuple[int, str] | None:
    for kind in type(exc).__mro__:
        if kind in _DOMAIN_ERRORS:
            return _DOMAIN_ERRORS[kind]
    return None


def _as_api_exception(exc: Exception) -> Exception:
    """``exc`` as the DRF exception it is answered as (unknown exceptions unchanged: a 500)."""
    if isinstance(exc, exceptions.APIException):
        return exc
    if isinstance(exc, Http404):
        return exceptions.NotFound(*exc.args)
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(*exc.args)
    if isinstance(exc, RequestDataTooBig):
        return _too_large()
    http_status, code = _domain(exc) or (status.HTTP_400_BAD_REQUEST, "invalid")
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return _Mapped(serializers.as_serializer_error(exc), "invalid", http_status)
        return _Mapped("; ".join(exc.messages), getattr(exc, "code", None) or code, http_status)
    if _domain(exc) is not None:
        return _Mapped(str(exc), code, http_status)
    return exc


def api_exception_handler(exc: Exception, context: dict):
    """DRF's EXCEPTION_HANDLER: every handled error as ``{detail, code[, errors]}``."""
    exc = _as_api_exception(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    response.data = error_body(exc)
    _render_as_json(context.get("request"))
    return response


def error_body(exc: exceptions.APIException) -> dict:
    detail = exc.detail
    if isinstance(detail, dict):
        errors = _flatten(detail)
        return {"detail": _summary(errors), "code": "invalid", "errors": errors}
    if isinstance(detail, list):
        codes = exc.get_codes()
        messages = _flatten(detail).get(GENERAL[0], [])
        return {"detail": " ".join(messages), "code": codes[0] if codes and isinstance(codes[0], str) else "invalid"}
    return {"detail": str(detail), "code": getattr(detail, "code", None) or exc.default_code}


def _flatten(detail, prefix: str = "") -> dict[str, list[str]]:
    """DRF's nested error detail as ``{dotted field: [messages]}``."""
    found: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            found.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return found
    items = detail if isinstance(detail, list) else [detail]
    messages = [str(item) for item in items if not isinstance(item, dict | list)]
    if messages:
        found[prefix or GENERAL[0]] = messages
    for index, item in enumerate(items):
        if isinstance(item, dict | list) and item:  # items of a list field that were fine are empty
            found.update(_flatten(item, f"{prefix}.{index}" if prefix else str(index)))
    return found


def _summary(errors: dict[str, list[str]]) -> str:
    return " ".join(" ".join(messages) if field in GENERAL else f"{field}: {' '.join(messages)}"
                    for field, messages in errors.items())


def _render_as_json(request) -> None:
    """Errors are JSON even where the client asked for an image or a file (or nothing was negotiated yet)."""
    if request is not None and not isinstance(getattr(request, "accepted_renderer", None),
                                              JSONRenderer | BrowsableAPIRenderer):
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def api_not_found(request, exception=None):
    """Django's handler404: under /api/ the error shape (an id out of range lands here too)."""
    if not _is_api(request):
        return defaults.page_not_found(request, exception)
    detail = (f"There is no API endpoint at {request.path}; check the address against /api/schema/ "
              f"({ID_RANGE}).")
    return JsonResponse({"detail": detail, "code": "not_found"}, status=status.HTTP_404_NOT_FOUND)


def api_bad_request(request, exception=None):
    """Django's handler400 (a request refused before any view, e.g. a body over the size limit)."""
    if not _is_api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(error_body(_too_large()), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    # Not the exception's text: it can name settings (ALLOWED_HOSTS) a client has no business seeing.
    detail = "The request was refused before reaching the API (a bad host name, header or body); it is logged."
    return JsonResponse({"detail": detail, "code": "bad_request"}, status=status.HTTP_400_BAD_REQUEST)


def api_server_error(request):
    """Django's handler500: under /api/ the error shape, never an HTML page (the error itself is logged)."""
    if not _is_api(request):
        return defaults.server_error(request)
    detail = "The server failed on this request; the error is logged. Try again, and report it if it persists."
    return JsonResponse({"detail": detail, "code": "server_error"}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)

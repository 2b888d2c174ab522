"""What a person locked out by django-axes reads, on the login pages and at the token endpoint."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render


def cool_off_minutes() -> int:
    return max(1, round(settings.AXES_COOLOFF_TIME.total_seconds() / 60))


def lockout_message() -> str:
    return (f"Too many failed logins for this user name from your address: logging in is blocked for "
            f"{cool_off_minutes()} minutes, even with the right password. Ask a MyoLabel administrator "
            f"if you forgot your password.")


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    """AXES_LOCKOUT_CALLABLE: a page with the reason, as 429 (axes' default code)."""
    # axes' async middleware passes (request, credentials); neither is needed here.
    return render(request, "registration/locked_out.html", {"message": lockout_message()},
                  status=settings.AXES_HTTP_RESPONSE_CODE)

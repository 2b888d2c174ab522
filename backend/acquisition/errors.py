"""The acquisition app's domain error, shared by its steps, annotation and outputs."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class StepConflict(ValidationError):
    """The request contradicts the project's current acquisition state (HTTP 409)."""

"""Identifiers as the API accepts them: whole numbers from 1 to the largest 64-bit id.

Every model's primary key is a BigAutoField. A larger number in a URL, a body or a
query string used to reach the database: SQLite cannot even bind it (OverflowError,
an HTML 500). Here such a number is refused where it comes in: a path with one
matches no URL (404, ``backend.core.errors.api_not_found``), a field with one is
invalid (400). Import this module before using ``<id:...>`` in a URL pattern.
"""

from __future__ import annotations

from django.urls import register_converter
from rest_framework import serializers

MAX_ID = 2**63 - 1  # the largest value of a signed 64-bit id column, on every database
ID_RANGE = f"an id is a whole number from 1 to {MAX_ID}"


class IdConverter:
    """``<id:name>``: digits naming an id in range; any other number matches no URL."""

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 1 <= number <= MAX_ID:
            raise ValueError(ID_RANGE)  # Django: this pattern does not match
        return number

    def to_url(self, value: int) -> str:
        return str(value)


register_converter(IdConverter, "id")


class IdField(serializers.IntegerField):
    """An id in a body or a query string; out of range it is a field error (400), not a lookup."""

    default_error_messages = {
        "invalid": f"Not an id: {ID_RANGE}.",
        "min_value": f"Out of range: {ID_RANGE}.",
        "max_value": f"Out of range: {ID_RANGE}.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(**kwargs)


def id_of(queryset, **kwargs) -> serializers.PrimaryKeyRelatedField:
    """A PrimaryKeyRelatedField over ``queryset`` whose ids are checked by IdField before the lookup."""
    return serializers.PrimaryKeyRelatedField(queryset=queryset, pk_field=IdField(), **kwargs)

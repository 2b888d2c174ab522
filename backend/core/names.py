"""Names that are unique across the whole site (projects, pools, label sets)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


def check_unique_name(model: type[models.Model], name: str, *, exclude_pk: int | None) -> None:
    """ValidationError on ``name`` when another row of ``model`` holds it.

    The holder may be invisible to the caller (another project's pool), so the message
    says nothing about it.
    """
    if model.objects.filter(name=name).exclude(pk=exclude_pk).exists():
        raise ValidationError({"name": [f"The name {name!r} is taken; choose another."]})

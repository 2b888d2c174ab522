"""Seeding of a fresh installation: the login printed by ``manage.py up`` and demo data.

Apps add their own seed steps to SEEDERS (dotted paths of functions taking the admin
user); each step must be idempotent, since ``up`` seeds on every start.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils.module_loading import import_string

SEEDERS: list[str] = ["backend.acquisition.demo.seed_demo_project"]

DEMO_USERNAME = "admin"


@dataclass(frozen=True)
class Login:
    username: str
    password: str


def _login_file() -> Path:
    return Path(settings.DATA_DIR) / "demo-login.json"


@transaction.atomic
def seed_admin() -> Login:
    """Create the demo administrator once; later calls return the stored login."""
    path = _login_file()
    user_model = get_user_model()
    if path.exists():
        stored = json.loads(path.read_text())
        if user_model.objects.filter(username=stored["username"]).exists():
            return Login(**stored)
    password = secrets.token_urlsafe(9)
    user, _ = user_model.objects.get_or_create(username=DEMO_USERNAME, defaults={"email": "admin@example.org"})
    user.is_staff = user.is_superuser = True
    user.set_password(password)
    user.save()
    path.write_text(json.dumps({"username": user.username, "password": password}))
    path.chmod(0o600)
    return Login(user.username, password)


def seed_all(on_line=print) -> Login:
    login = seed_admin()
    admin = get_user_model().objects.get(username=login.username)
    for dotted in SEEDERS:
        on_line(f"seeding: {dotted.rsplit('.', 1)[-1]}")
        import_string(dotted)(admin)
    return login

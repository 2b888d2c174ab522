"""Integration tests start real server and worker processes; they never use the test database."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.integration.stack import Stack, services_reachable


@pytest.fixture
def embedded_stack(tmp_path):
    stack = Stack(tmp_path, {})
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture
def production_stack(tmp_path):
    """Production settings on PostgreSQL and Redis, each test with its own database."""
    if not services_reachable():
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs PostgreSQL and Redis on 127.0.0.1")
        pytest.skip("PostgreSQL and Redis are not running on 127.0.0.1")
    import psycopg

    name = f"myolabel_it_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    stack = Stack(tmp_path, {
        "MYOLABEL_MODE": "production",
        "MYOLABEL_HTTPS": "false",
        "DJANGO_SECRET_KEY": "integration-" + uuid.uuid4().hex * 2,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}",
        "REDIS_URL": f"redis://127.0.0.1:6379/{int(uuid.uuid4().int % 8) + 1}",
    })
    try:
        yield stack.start()
    finally:
        stack.stop()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

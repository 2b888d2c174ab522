"""Production settings pass Django's deployment checks and refuse incomplete configuration."""

import os
import subprocess
import sys

from tests.conftest import REPO

PRODUCTION = {
    "MYOLABEL_MODE": "production",
    "DJANGO_SECRET_KEY": "x" * 20 + "a-long-and-random-production-secret-key-0123456789",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/myolabel",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DJANGO_ALLOWED_HOSTS": "myolabel.example.org",
}


def _manage(env: dict, *args: str) -> subprocess.CompletedProcess:
    # A production host never sets DJANGO_ALLOW_ASYNC_UNSAFE; the browser tests do.
    dropped = set(PRODUCTION) | {"DJANGO_ALLOW_ASYNC_UNSAFE"}
    full = {k: v for k, v in os.environ.items() if k not in dropped} | env
    return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=full,
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_reports_no_issue_with_production_settings(tmp_path):
    done = _manage(PRODUCTION | {"MYOLABEL_DATA_DIR": str(tmp_path)}, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_production_mode_refuses_to_start_without_redis(tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if k != "REDIS_URL"} | {"MYOLABEL_DATA_DIR": str(tmp_path)}
    done = _manage(env, "check")
    assert done.returncode != 0
    assert "REDIS_URL must be set when MYOLABEL_MODE=production" in done.stderr

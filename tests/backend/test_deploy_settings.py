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


_SHOW = ("import json; from django.conf import settings as s; print(json.dumps({"
         "'cache': s.CACHES['default']['BACKEND'], 'failures': s.AXES_FAILURE_LIMIT,"
         "'cool_off_s': s.AXES_COOLOFF_TIME.total_seconds(), 'lockout': s.AXES_LOCKOUT_PARAMETERS,"
         "'handler': s.AXES_HANDLER, 'proxies': s.MYOLABEL_TRUSTED_PROXIES, 'num_proxies': s.REST_FRAMEWORK['NUM_PROXIES'],"
         "'session_age': s.SESSION_COOKIE_AGE, 'idle': s.MYOLABEL_SESSION_IDLE_SECONDS,"
         "'middleware': s.MIDDLEWARE, 'backends': s.AUTHENTICATION_BACKENDS}))")


def _settings(env: dict) -> dict:
    import json

    done = _manage(env, "shell", "-c", _SHOW)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_shares_login_counts_and_limits_sessions(tmp_path):
    found = _settings(PRODUCTION | {"MYOLABEL_DATA_DIR": str(tmp_path)})
    assert found["cache"] == "django.core.cache.backends.redis.RedisCache"  # throttle counts shared
    assert found["handler"] == "axes.handlers.database.AxesDatabaseHandler"  # failures shared
    assert (found["failures"], found["cool_off_s"], found["lockout"]) == (5, 900.0, [["username", "ip_address"]])
    assert (found["proxies"], found["num_proxies"]) == ([], 0)
    assert (found["session_age"], found["idle"]) == (12 * 3600, 3600)
    assert found["backends"][0] == "axes.backends.AxesStandaloneBackend"
    middleware = found["middleware"]
    assert middleware[-1] == "axes.middleware.AxesMiddleware"
    assert "backend.core.csp.SameOriginSocketsCSPMiddleware" in middleware
    assert middleware.index("backend.core.session_limits.SessionLimitsMiddleware") > middleware.index(
        "django.contrib.messages.middleware.MessageMiddleware")


def test_limits_come_from_the_environment(tmp_path):
    found = _settings(PRODUCTION | {"MYOLABEL_DATA_DIR": str(tmp_path), "MYOLABEL_LOGIN_FAILURE_LIMIT": "8",
                                    "MYOLABEL_LOGIN_COOLOFF_MINUTES": "30", "MYOLABEL_SESSION_HOURS": "8",
                                    "MYOLABEL_SESSION_IDLE_MINUTES": "20",
                                    "MYOLABEL_TRUSTED_PROXIES": "127.0.0.1,10.0.0.0/8"})
    assert (found["failures"], found["cool_off_s"]) == (8, 1800.0)
    assert (found["session_age"], found["idle"]) == (8 * 3600, 20 * 60)
    assert found["proxies"] == ["127.0.0.1", "10.0.0.0/8"]


def test_embedded_mode_keeps_the_local_cache(tmp_path):
    found = _settings({"MYOLABEL_DATA_DIR": str(tmp_path)})  # _manage drops REDIS_URL and the rest
    assert found["cache"] == "django.core.cache.backends.locmem.LocMemCache"  # one web process

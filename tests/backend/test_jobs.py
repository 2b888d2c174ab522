"""Services send tasks by name (backend.core.jobs): a fresh web process finds every one.

A web process imports no task module by itself (only a starting worker does), so the first
send must run Celery's autodiscovery; this runs in a fresh interpreter, as daphne would.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from backend.acquisition.states import PHASE_TASKS
from tests.conftest import REPO

NAMES = [*PHASE_TASKS.values(), "acquisition.segment", "imaging.import_job_run", "core.diagnostics_ping"]


def test_a_fresh_web_process_finds_every_task_by_name():
    code = ("import django; django.setup()\n"
            "from backend.core.jobs import _task\n"
            f"print(sorted(_task(n).name for n in {NAMES!r}))")
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MYOLABEL_MODE"}}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**env, "DJANGO_SETTINGS_MODULE": "backend.myolabel.settings"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(sorted(NAMES))


def test_an_unknown_task_name_is_an_error_not_a_silent_no_op():
    from backend.core.jobs import send

    with pytest.raises(KeyError, match="acquisition.no_such_task"):
        send("acquisition.no_such_task", 1)

"""mltasks is a pure library: importing all of it loads no web framework."""

import subprocess
import sys

from tests.conftest import REPO

FORBIDDEN = ("django", "celery", "channels", "rest_framework", "kombu", "backend")

SCRIPT = """
import importlib, pkgutil, sys
import mltasks
for info in pkgutil.walk_packages(mltasks.__path__, "mltasks."):
    importlib.import_module(info.name)
roots = sorted({name.split(".")[0] for name in sys.modules})
print(",".join(roots))
"""


def test_importing_every_mltasks_module_loads_no_web_framework():
    done = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.strip().split(","))
    assert "mltasks" in loaded
    assert not loaded & set(FORBIDDEN), f"mltasks pulled in {sorted(loaded & set(FORBIDDEN))}"

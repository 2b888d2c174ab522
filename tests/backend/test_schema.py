"""The OpenAPI schema generates without a warning and validates (as CI runs it)."""

import os
import subprocess
import sys

from tests.conftest import REPO


def test_schema_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MYOLABEL_MODE"}}
    env["MYOLABEL_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run([sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn",
                           "--file", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "Warning" not in done.stderr, done.stderr[-6000:]
    text = out.read_text()
    for path in ("/api/projects/{project_id}/members/", "/api/scans/{scan_id}/slices/{z}.png",
                 "/api/scans/{scan_id}/slices/{z}.raw", "/api/auth/token/"):
        assert f"{path}:" in text, f"{path} is missing from the schema"

"""The README's first command: `manage.py up` prints a URL and a login that work."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest

from tests.integration.stack import REPO, free_port

pytestmark = pytest.mark.slow


def _read_banner(proc: subprocess.Popen, timeout: float = 120.0) -> tuple[str, str, str]:
    deadline = time.monotonic() + timeout
    url = None
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if match := re.search(r"running at (http://\S+)", line):
            url = match.group(1)
        if url and (match := re.search(r"Log in as: (\S+) / (\S+)", line)):
            return url, match.group(1), match.group(2)
    raise AssertionError("no URL and login printed:\n" + "".join(lines[-40:]))


def _login(url: str, username: str, password: str) -> str:
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(url + "accounts/login/").read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"username": username, "password": password,
                                   "csrfmiddlewaretoken": csrf, "next": "/"}).encode()
    request = urllib.request.Request(url + "accounts/login/", data=form, headers={"Referer": url})
    return opener.open(request).read().decode()


def test_up_prints_a_url_that_answers_and_a_login_that_works(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MYOLABEL_MODE"}}
    env |= {"MYOLABEL_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "manage.py", "up", "--port", str(free_port())], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url, username, password = _read_banner(proc)
        home = _login(url, username, password)
        assert "System status" in home and f"Log out {username}" in home
    finally:
        proc.terminate()
        proc.wait(timeout=30)

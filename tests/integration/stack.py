"""A running MyoLabel (daphne web server + Celery worker processes) for integration tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from backend.core.webserver import all_listening, web_server_command

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def services_reachable() -> bool:
    for port in (5432, 6379):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
    return True


class Stack:
    """Start with ``start()``, always ``stop()``; ``env`` selects the run mode."""

    def __init__(self, data_dir: Path, env: dict[str, str], *, web_processes: int = 1):
        self.web_processes = web_processes
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MYOLABEL_MODE"}}
        self.env = {**base, "MYOLABEL_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1",
                    "DJANGO_SETTINGS_MODULE": "backend.myolabel.settings", **env}
        self.data_dir = data_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.token = ""

    def manage(self, *args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True, timeout=180)
        if done.returncode:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> Stack:
        self.manage("migrate", "--noinput", "-v0")
        self.token = self.manage("shell", "-c", (
            "from django.contrib.auth.models import User; from rest_framework.authtoken.models import Token;"
            "u=User.objects.create_superuser('it-admin','it@example.org','it-pass-123');"
            "print(Token.objects.create(user=u).key)")).strip().splitlines()[-1]
        self.start_worker()
        self.procs["web"] = self._spawn("web", web_server_command("127.0.0.1", self.port, self.web_processes))
        self._wait_for(lambda: self.get("/api/health/")["checks"]["worker"]["ok"], "web server and worker")
        self._wait_for(lambda: all_listening(self.port, self.web_processes), "every web process")
        return self

    def start_worker(self, name: str = "worker") -> None:
        self.procs[name] = self._spawn(name, [sys.executable, "-m", "celery", "-A", "backend.myolabel", "worker",
                                              "-Q", "gpu,cpu", "-c", "1", "-l", "WARNING", "-n", f"{name}@%h"])

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()
        proc.wait(timeout=30)

    def pool_children(self, name: str = "worker") -> list[int]:
        """Pids of the pool processes of worker ``name`` (its main process's children, read from /proc)."""
        parent = self.procs[name].pid
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # ended meanwhile
                continue
            fields = stat[stat.rfind(")") + 2:].split()  # after the command name, which may hold spaces
            if int(fields[1]) == parent and fields[0] != "Z":
                children.append(int(entry.name))
        return sorted(children)

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.data_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def log(self, name: str) -> str:
        path = self.data_dir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def _wait_for(self, ready, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if ready():
                    return
            except (OSError, KeyError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"{what} not ready in {timeout} s\nweb:\n{self.log('web')}\nworker:\n{self.log('worker')}")

    def request(self, method: str, path: str, body: dict | None = None, *, token: str = "") -> tuple[int, dict]:
        """(status, JSON body) of one call, as the admin unless another user's ``token`` is given."""
        req = urllib.request.Request(self.url + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Token {token or self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"{}")

    def get(self, path: str) -> dict:
        return self.request("GET", path)[1]

    def wait_for_step(self, project: int, step: int, states: set[str], timeout: float = 300.0) -> dict:
        """The step once it is in one of ``states``; fails if it fails or is cancelled first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = self.get(f"/api/projects/{project}/steps/{step}/")
            if body["state"] in states:
                return body
            assert body["state"] not in {"failed", "cancelled"}, body
            time.sleep(0.3)
        raise AssertionError(f"step {step} never reached {states}: {body}\nworker:\n{self.log('worker')}")

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs.clear()

"""``manage.py up``: migrate, seed, then run web server and worker until interrupted."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from backend.core.seeding import seed_all
from backend.core.webserver import web_server_command

READY_TIMEOUT_SECONDS = 60


def _wait_until_ready(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CommandError(f"the web server exited with status {server.returncode}; see the log above")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise CommandError(f"the web server did not answer at {url} within {READY_TIMEOUT_SECONDS} s")


class Command(BaseCommand):
    help = "Start MyoLabel: web server (daphne, or uvicorn workers) and, in embedded mode, a Celery worker child process."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--worker", choices=["auto", "yes", "no"], default="auto",
                            help="start a worker child process (auto: only in embedded mode)")
        parser.add_argument("--no-seed", action="store_true", help="do not create the demo login and data")
        parser.add_argument("--web-processes", type=int, default=1,
                            help="web server processes (production mode; about one per core): "
                                 "1 runs daphne, more run uvicorn workers")

    def handle(self, *args, host, port, worker, no_seed, web_processes, **options):
        try:
            server_argv = web_server_command(host, port, web_processes)
        except ValueError as exc:
            raise CommandError(f"--web-processes: {exc}") from exc
        if web_processes > 1 and not settings.PRODUCTION:
            raise CommandError("--web-processes > 1 needs production mode (MYOLABEL_MODE=production): "
                               "embedded mode's in-memory channel layer cannot span processes")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        login = None if no_seed else seed_all(on_line=self.stdout.write)
        children: list[subprocess.Popen] = []
        if worker == "yes" or (worker == "auto" and not settings.PRODUCTION):
            children.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "backend.myolabel", "worker",
                 "-Q", "gpu,cpu", "-c", "1", "-l", "INFO", "-n", "embedded@%h"]))
        server = subprocess.Popen(server_argv)
        children.append(server)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            url = f"http://{host}:{port}/"
            _wait_until_ready(url + "accounts/login/", server)
            self.stdout.write(self.style.SUCCESS(f"\nMyoLabel is running at {url}"))
            if login:
                self.stdout.write(self.style.SUCCESS(f"Log in as: {login.username} / {login.password}"))
            self.stdout.write("Press Ctrl+C to stop.\n")
            self.stdout.flush()
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
            dead = next(child for child in children if child.poll() is not None)
            raise CommandError(f"{dead.args[2:4]} exited with status {dead.returncode}; stopping")
        except KeyboardInterrupt:
            self.stdout.write("stopping")
        finally:
            for child in children:
                if child.poll() is None:
                    child.terminate()
            for child in children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()

"""Latency of the slice endpoints: 20 concurrent clients on loopback, PNG and raw side by side.

    python bench/slice_latency.py [--clients 20] [--requests 25] [--seconds 60]

Starts the web server itself (daphne, or N uvicorn processes with --web-processes N) on a
free port with a fresh data folder: embedded mode always, and
production mode too when PostgreSQL and Redis answer on 127.0.0.1 (a fresh database is
created and dropped; Redis database 13 is flushed at the end). Seeds one 512 x 512 body-like scan,
then every client (bench/loadgen.py: keep-alive connections on one asyncio loop) asks for
slices in a closed loop. Goal: p95 <= 50 ms in production mode. Production mode runs
twice, side by side: with the slice fast path (the default) and with
MYOLABEL_FAST_SLICES=false (every request through the DRF views). Everything started is
stopped before the script exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from backend.core.webserver import all_listening, listening_sockets, web_server_command  # noqa: E402
from bench.loadgen import Client  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEPTH = 16  # slices of the seeded scan

SEED = """
import json, numpy as np
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from backend.imaging.models import Pool, Scan
from backend.imaging.volumes import save_array
from mltasks.geometry import Geometry
u = User.objects.create_user('bench', password='bench-pass-123')
pool = Pool.objects.create(name='bench')
from backend.projects.models import LabelSet, Membership, Project
project = Project.objects.create(name='bench', label_set=LabelSet.objects.first())
project.pools.add(pool)
Membership.objects.create(project=project, user=u, role='annotator')
# A body-like slice: air around an elliptic soft-tissue body with a bone disc, plus noise (sd 20 HU).
yy, xx = np.mgrid[:512, :512]
body = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 240.0) ** 2 < 1
bone = ((yy - 256) ** 2 + (xx - 180) ** 2) < 30 ** 2
base = np.where(body, 40.0, -1000.0) + np.where(bone, 660.0, 0.0)
noise = np.random.default_rng(0).normal(0, 20, size=(DEPTH, 512, 512))
hu = np.rint(base + noise).astype(np.int16)
g = Geometry(shape=hu.shape, spacing=(1.0, 360 / 512, 360 / 512)).to_dict()
scan = Scan.objects.create(pool=pool, name='bench', geometry=g, original_geometry=g,
    volume=save_array(hu, 'scans/bench.npy'), source_format='nifti', content_hash='x')
print(json.dumps({'token': Token.objects.create(user=u).key, 'scan': scan.pk}))
""".replace("DEPTH", str(DEPTH))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def manage(env: dict, *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    if done.returncode:
        raise RuntimeError(f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def measure(port: int, path: str, token: str, *, clients: int, per_client: int, seconds: float,
            rate: float = 0.0) -> list[float]:
    """Latencies (s) of ``clients`` keep-alive clients asking ``per_client`` times each (bounded by ``seconds``).

    ``rate`` > 0: each client asks at most ``rate`` slices per second (an annotator
    scrolling), waiting out the rest of each 1/rate interval; 0: back to back.
    """
    return asyncio.run(_measure(port, path, token, clients, per_client, seconds, rate))


async def _measure(port, path, token, clients, per_client, seconds, rate) -> list[float]:
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    async def client(index: int) -> None:
        connection = Client("127.0.0.1", port, {"Authorization": f"Token {token}"})
        try:
            for i in range(per_client):
                if time.monotonic() > deadline:
                    return
                status, _, body, elapsed = await connection.request("GET", path.format(z=(index + i) % DEPTH))
                if status != 200:
                    errors.append(f"{status}: {body[:200]!r}")
                latencies.append(elapsed)
                if rate > 0:
                    await asyncio.sleep(max(0.0, 1.0 / rate - elapsed))
        finally:
            await connection.close()

    await asyncio.gather(*(client(i) for i in range(clients)))
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    return latencies


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def run_mode(name: str, extra_env: dict, args) -> dict[str, tuple[list[float], float]]:
    """Per kind: (latencies in s, wall time of the measurement in s)."""
    with tempfile.TemporaryDirectory(prefix="myolabel-bench-") as data_dir:
        base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "MYOLABEL_MODE"}}
        env = {**base, "MYOLABEL_DATA_DIR": data_dir, "PYTHONUNBUFFERED": "1", **extra_env}
        manage(env, "migrate", "--noinput", "-v0")
        seeded = json.loads(manage(env, "shell", "-c", SEED).strip().splitlines()[-1])
        port = free_port()
        log = open(Path(data_dir) / "web.log", "wb")  # noqa: SIM115 - closed below
        processes = 1 if name == "embedded" else args.web_processes  # in-memory layer: one process
        web = subprocess.Popen(web_server_command("127.0.0.1", port, processes), cwd=REPO, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
        try:
            base_url = f"http://127.0.0.1:{port}/api/scans/{seeded['scan']}"
            deadline = time.monotonic() + 180
            while True:  # the first request also loads every URL module
                try:
                    if requests.get(f"{base_url}/", timeout=60,
                                    headers={"Authorization": f"Token {seeded['token']}"}).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline or web.poll() is not None:
                    raise RuntimeError(f"{name}: server did not answer:\n{Path(data_dir, 'web.log').read_text()}")
                time.sleep(0.5)
            while not all_listening(port, processes):
                if time.monotonic() > deadline:  # until then new connections all go to the first ones
                    raise RuntimeError(f"{name}: only {listening_sockets(port)} of {processes} web processes listen")
                time.sleep(0.5)
            results = {}
            for kind, suffix in (("png", "slices/{z}.png"), ("raw", "slices/{z}.raw")):
                path = f"/api/scans/{seeded['scan']}/{suffix}"
                measure(port, path, seeded["token"], clients=args.clients, per_client=2, seconds=30)  # warm-up
                started = time.perf_counter()
                latencies = measure(port, path, seeded["token"], clients=args.clients, per_client=args.requests,
                                    seconds=args.seconds, rate=args.rate)
                results[kind] = (latencies, time.perf_counter() - started)
            return results
        except RuntimeError:
            log.flush()
            print(f"--- {name}: end of the server log ---\n{Path(data_dir, 'web.log').read_text()[-3000:]}")
            raise
        finally:
            web.terminate()
            try:
                web.wait(timeout=20)
            except subprocess.TimeoutExpired:
                web.kill()
                web.wait()
            log.close()


def production_env() -> tuple[dict, str]:
    import psycopg

    db = f"myolabel_bench_{os.getpid()}_{os.urandom(3).hex()}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    env = {"MYOLABEL_MODE": "production", "MYOLABEL_HTTPS": "false",
           "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db}", "REDIS_URL": "redis://127.0.0.1:6379/13",
           "DJANGO_SECRET_KEY": "bench-" + os.urandom(24).hex(),
           # Under daphne every request runs in a fresh thread, so persistent connections
           # (the settings' default of 60 s) pile up until PostgreSQL refuses clients.
           "DATABASE_CONN_MAX_AGE": os.environ.get("DATABASE_CONN_MAX_AGE", "0")}
    return env, db


def production_cleanup(db: str) -> None:
    import psycopg
    import redis

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    redis.Redis.from_url("redis://127.0.0.1:6379/13").flushdb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=25, help="requests per client and kind")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound per kind")
    parser.add_argument("--only", choices=["embedded", "production"], help="run one mode")
    parser.add_argument("--web-processes", type=int, default=1,
                        help="web processes in production mode (1: daphne; more: uvicorn workers)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="slices per second per client (0: back to back, the default)")
    args = parser.parse_args()

    modes = [] if args.only == "production" else [("embedded", {}, None)]
    if args.only == "embedded":
        pass
    elif reachable(5432) and reachable(6379):
        for name, fast in (("production", "true"), ("prod-DRF", "false")):
            env, db = production_env()
            modes.append((name, {**env, "MYOLABEL_FAST_SLICES": fast}, db))
    else:
        print("PostgreSQL or Redis not reachable on 127.0.0.1: production mode skipped")
    pace = f"{args.rate:g} slices/s each" if args.rate else "back to back"
    server = "daphne" if args.web_processes == 1 else f"uvicorn x {args.web_processes}"
    print(f"{args.clients} concurrent clients ({pace}), 512 x 512 int16 slices, {server} on loopback, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'mode':<11} {'kind':<4} {'n':>5} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>7}")
    p95s = {}
    for name, env, db in modes:
        try:
            started = time.perf_counter()
            results = run_mode(name, env, args)
            for kind, (values, wall) in results.items():
                rate = len(values) / wall
                p95s[name, kind] = percentile(values, 95)
                print(f"{name:<11} {kind:<4} {len(values):>5} {percentile(values, 50) * 1e3:>8.1f} "
                      f"{p95s[name, kind] * 1e3:>8.1f} {rate:>7.0f}")
            print(f"{name:<11} p95 png / raw = {p95s[name, 'png'] / p95s[name, 'raw']:.2f}   "
                  f"(mode run took {time.perf_counter() - started:.0f} s)")
        finally:
            if db:
                production_cleanup(db)
    if ("prod-DRF", "png") in p95s:
        print("production p95, DRF views / fast path: " + ", ".join(
            f"{kind} {p95s['prod-DRF', kind] / p95s['production', kind]:.2f}" for kind in ("png", "raw")))

if __name__ == "__main__":
    main()

"""20 concurrent scripted annotators submit 1,000 answers to a live server on loopback.

Checks that no answer is lost or duplicated, and measures the submit latency side by
side with the claim (``queries/next/``, which returns the query's rasters) in the same
run, so the ratio does not depend on the machine. Each annotator does what the
annotator page does: take the next query, answer it, take the next. ``--read`` adds a
GET of every query after claiming it, as earlier versions of this benchmark did.

    python bench/submit_latency.py                 # PostgreSQL + Redis when reachable, else embedded
    python bench/submit_latency.py --embedded      # SQLite + filesystem broker
    python bench/submit_latency.py --annotators 20 --queries 1000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.loadgen import Client  # noqa: E402
from tests.integration.stack import Stack, services_reachable  # noqa: E402

SIZE = 64
SETUP = """
import json, hashlib
import numpy as np
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from backend.acquisition import codec
from backend.acquisition.models import AcquisitionStep, Query
from backend.imaging.models import Pool, Scan
from backend.imaging.volumes import save_array
from backend.projects.models import LabelSet, Membership, Project
n, size, annotators = {n}, {size}, {annotators}
hu = np.zeros((n, size, size), np.int16)
pool = Pool.objects.create(name="bench pool")
geometry = {{"shape": [n, size, size], "spacing": [1.0, 5.625, 5.625], "origin": [0, 0, 0],
            "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}}
scan = Scan.objects.create(pool=pool, name="bench", original_geometry=geometry, geometry=geometry,
                           volume=save_array(hu, "scans/bench.npy"), source_format="nifti", content_hash="0")
project = Project.objects.create(name="bench", label_set=LabelSet.objects.first())
project.pools.add(pool)
step = AcquisitionStep.objects.create(project=project, number=1, state="annotating", strategy="tau", tau=1e-3,
                                      slices_per_step=n, k_uncertain=n, mc_samples=2)
rng = np.random.default_rng(0)
rows = []
for z in range(n):
    mask = rng.random((size, size)) < 0.05
    rows.append(Query(step=step, scan=scan, z=z, height=size, width=size, mask=codec.pack_mask(mask),
                      predicted=codec.pack_labels(np.zeros((size, size), np.uint8)),
                      uncertainty=codec.pack_float16(rng.random((size, size))), n_queried=int(mask.sum()),
                      n_pixels=size * size))
Query.objects.bulk_create(rows)
tokens = []
for i in range(annotators):
    user = User.objects.create_user(f"bench-{{i}}")
    Membership.objects.create(project=project, user=user, role="annotator")
    tokens.append(Token.objects.create(user=user).key)
print(json.dumps({{"project": project.id, "step": step.id, "tokens": tokens}}))
"""


async def annotate(port: int, token: str, project: int, out: dict, think, read: bool) -> None:
    """One scripted annotator on its own keep-alive connection: claim, (read,) (think,) submit, until none is left.

    ``think()`` gives the seconds spent on each query.
    """
    client = Client("127.0.0.1", port, {"Authorization": f"Token {token}", "Content-Type": "application/json"})

    async def call(method: str, path: str, body: dict | None = None):
        status, _, raw, seconds = await client.request(method, path, json.dumps(body).encode() if body else b"")
        try:
            found = json.loads(raw) if raw else None
        except ValueError:
            found = {"raw": raw[:300].decode(errors="replace")}
        return status, found, seconds

    try:
        while True:
            status, q, claim_seconds = await call("POST", f"/api/projects/{project}/queries/next/")
            if status == 204:
                return
            if status != 200:
                out["errors"].append((status, q))
                continue
            out["claim"].append(claim_seconds)
            if read:
                _, _, read_seconds = await call("GET", f"/api/projects/{project}/queries/{q['id']}/")
                out["read"].append(read_seconds)
            mask = np.unpackbits(np.frombuffer(base64.b64decode(q["mask"]), np.uint8), count=SIZE * SIZE).astype(bool)
            labels = np.where(mask, 1, 255).astype(np.uint8)
            await asyncio.sleep(think())  # the expert painting the queried pixels
            status, body, seconds = await call("POST", f"/api/projects/{project}/queries/{q['id']}/submit/",
                                               {"labels": base64.b64encode(labels.tobytes()).decode(),
                                                "seconds_spent": 1.0})
            out["submit"].append(seconds)
            out["created"].append(q["id"]) if status == 201 else out["errors"].append((status, body))
    finally:
        await client.close()


async def annotate_all(port: int, tokens: list[str], project: int, out: dict, think, read: bool) -> None:
    await asyncio.gather(*(annotate(port, token, project, out, think, read) for token in tokens))


def think_time(mean: float, lockstep: bool):
    """Seconds per query: ``mean`` for everyone (lockstep), or uniform in [0.5, 1.5] x mean per query.

    Twenty people never take the same time for every slice; with one fixed time the
    scripted annotators stay in step and submit in bursts of twenty.
    """
    rng = np.random.default_rng(0)
    return (lambda: mean) if lockstep or mean == 0 else (lambda: mean * rng.uniform(0.5, 1.5))


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--embedded", action="store_true")
    parser.add_argument("--web-processes", type=int, default=1,
                        help="web processes in production mode (1: daphne; more: uvicorn workers)")
    parser.add_argument("--lockstep", action="store_true",
                        help="every annotator thinks exactly --think seconds (default: 0.5 to 1.5 x --think, varied)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds each annotator spends on a query before submitting (0: none)")
    parser.add_argument("--read", action="store_true",
                        help="also GET every query after claiming it (the annotator page does not)")
    parser.add_argument("--conn-max-age", default="0",
                        help="DATABASE_CONN_MAX_AGE of the server; the default 60 keeps one PostgreSQL connection "
                             "per daphne worker thread and ran out of connections (100) in this benchmark")
    args = parser.parse_args()
    run(args)


def run(args) -> dict:
    """One benchmark on a fresh server and database; prints and returns the measurements."""
    env: dict[str, str] = {}
    mode = "embedded (SQLite)"
    if not args.embedded and services_reachable():
        import psycopg

        name = f"myolabel_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        env |= {"MYOLABEL_MODE": "production", "MYOLABEL_HTTPS": "false", "DJANGO_SECRET_KEY": "bench-" + "x" * 60,
                "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{name}", "REDIS_URL": "redis://127.0.0.1:6379/14",
                "DATABASE_CONN_MAX_AGE": args.conn_max_age}
        mode = f"production (PostgreSQL + Redis, CONN_MAX_AGE={args.conn_max_age})"
    processes = args.web_processes if "DATABASE_URL" in env else 1
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), env, web_processes=processes)
        try:
            stack.start()
            setup = json.loads(stack.manage("shell", "-c", SETUP.format(
                n=args.queries, size=SIZE, annotators=args.annotators)).strip().splitlines()[-1])
            out: dict = {"submit": [], "claim": [], "read": [], "created": [], "errors": []}
            started = time.perf_counter()
            asyncio.run(annotate_all(stack.port, setup["tokens"], setup["project"], out,
                                     think_time(args.think, args.lockstep), args.read))
            out["throughput"] = len(out["created"]) / (time.perf_counter() - started)
            stored = stack.get(f"/api/projects/{setup['project']}/steps/{setup['step']}/queries/")
            transitions = [t["state"] for t in stack.get(
                f"/api/projects/{setup['project']}/steps/{setup['step']}/")["transitions"]]
            if out["errors"]:
                log = (stack.data_dir / "web.log").read_text(errors="replace")
                i = log.find("Traceback")
                print("server log:\n" + (log[i:i + 3000] if i >= 0 else log[-2000:]))
        finally:
            stack.stop()
            if "DATABASE_URL" in env:
                import psycopg

                with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{env["DATABASE_URL"].rsplit("/", 1)[1]}" WITH (FORCE)')
    answered = [q for q in stored if q["status"] == "answered"]
    duplicates = len(out["created"]) - len(set(out["created"]))
    print(f"mode: {mode}; {args.annotators} annotators, {args.queries} "
          f"queries, think {args.think:g} s{' (lockstep)' if args.lockstep else ''}"
          f"{', a GET of each query' if args.read else ''}, {processes} web process(es), cpu count {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"accepted submissions: {len(out['created'])}, answered rows: {len(answered)}, "
          f"duplicates: {duplicates}, errors: {len(out['errors'])} {out['errors'][:3]}")
    print(f"lost: {args.queries - len(answered)}; the step moved to training "
          f"{transitions.count('training')} time(s) after the last answer")
    print(f"submit latency  p50 {1000 * statistics.median(out['submit']):.1f} ms, p95 {1000 * p95(out['submit']):.1f} ms")
    for name, label in (("claim", "claim (POST next)"), ("read", "read (GET query)")):
        if out[name]:
            print(f"{label} p50 {1000 * statistics.median(out[name]):.1f} ms, p95 {1000 * p95(out[name]):.1f} ms; "
                  f"ratio submit/{name}: p50 {statistics.median(out['submit']) / statistics.median(out[name]):.2f}, "
                  f"p95 {p95(out['submit']) / p95(out[name]):.2f}")
    print(f"throughput: {out['throughput']:.1f} submissions/s")
    return out


if __name__ == "__main__":
    main()

"""A large CT (1 GiB by default) through the chunked upload API and the import job, on a live stack.

    python bench/upload_large.py [--gib 1.0] [--chunk-mib 32] [--embedded]

Writes an uncompressed NIfTI of 512 x 512 x N int16 (N chosen for the size), uploads it
in chunks with Content-Range as the browser does, completes the upload, and waits for
the import job on the worker. Prints upload and import times, the web process's peak
resident memory (VmHWM: the upload must never sit in memory whole) and the worker's,
and checks the scan's geometry. PostgreSQL + Redis when reachable, else embedded mode.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.stack import Stack, services_reachable  # noqa: E402

SPACING = (0.5, 0.7, 0.7)  # (z, y, x) mm: thin slices, as a long-bone or whole-leg scan has


def write_nifti(path: Path, gib: float) -> tuple[int, int, int]:
    """A body-like int16 volume written slab by slab (the bench itself stays small in memory)."""
    import SimpleITK as sitk

    nz = max(8, int(gib * 2**30 / (512 * 512 * 2)))
    yy, xx = np.mgrid[:512, :512]
    body = ((yy - 256) / 200.0) ** 2 + ((xx - 256) / 240.0) ** 2 < 1
    slab = np.where(body, 40, -1000).astype(np.int16)
    volume = np.broadcast_to(slab, (nz, 512, 512))
    image = sitk.GetImageFromArray(np.ascontiguousarray(volume))
    image.SetSpacing(SPACING[::-1])
    sitk.WriteImage(image, str(path), useCompression=False)
    return nz, 512, 512


def peak_rss_mib(pid: int, field: str = "VmHWM") -> float:
    """Largest VmHWM (or ``field``) of ``pid`` and its children (the Celery pool process imports)."""
    pids = [pid] + [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    total = 0.0
    for p in pids:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                total = max(total, int(line.split()[1]) / 1024)
    return total


def put_chunks(stack: Stack, job: int, path: Path, chunk: int) -> None:
    size = path.stat().st_size
    with path.open("rb") as f:
        start = 0
        while start < size:
            body = f.read(chunk)
            end = start + len(body) - 1
            req = urllib.request.Request(f"{stack.url}/api/imports/{job}/files/{path.name}", data=body, method="PUT",
                                         headers={"Authorization": f"Token {stack.token}",
                                                  "Content-Type": "application/octet-stream",
                                                  "Content-Range": f"bytes {start}-{end}/{size}"})
            with urllib.request.urlopen(req, timeout=300) as resp:
                assert resp.status == 200, resp.read()[:300]
            start = end + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--chunk-mib", type=int, default=32)
    parser.add_argument("--embedded", action="store_true")
    args = parser.parse_args()
    env: dict[str, str] = {}
    db = None
    if not args.embedded and services_reachable():
        import psycopg

        db = f"myolabel_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{db}"')
        env = {"MYOLABEL_MODE": "production", "MYOLABEL_HTTPS": "false", "DJANGO_SECRET_KEY": "bench-" + "x" * 60,
               "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{db}", "REDIS_URL": "redis://127.0.0.1:6379/12"}
    with tempfile.TemporaryDirectory() as tmp:
        ct = Path(tmp) / "large.nii"
        shape = write_nifti(ct, args.gib)
        stack = Stack(Path(tmp) / "data", env)
        stack.data_dir.mkdir()
        try:
            stack.start()
            pool = stack.manage("shell", "-c", "from backend.imaging.models import Pool;"
                                "print(Pool.objects.create(name='large').pk)").strip().splitlines()[-1]
            status, job = stack.request("POST", "/api/imports/uploads/", {"pool": int(pool)})
            assert status == 201, job
            web_before = peak_rss_mib(stack.procs["web"].pid)  # after start-up and a few requests
            started = time.perf_counter()
            put_chunks(stack, job["id"], ct, args.chunk_mib * 2**20)
            uploaded = time.perf_counter() - started
            status, body = stack.request("POST", f"/api/imports/{job['id']}/complete/", {})
            assert status == 202, body
            while (state := stack.get(f"/api/imports/{job['id']}/"))["status"] not in ("done", "failed"):
                time.sleep(1)
            imported = time.perf_counter() - started - uploaded
            web_mib = peak_rss_mib(stack.procs["web"].pid)
            worker_mib = peak_rss_mib(stack.procs["worker"].pid)
            scans = stack.get(f"/api/pools/{pool}/scans/") if state["status"] == "done" else []
        finally:
            stack.stop()
            if db:
                import psycopg

                with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    size_mib = shape[0] * 512 * 512 * 2 / 2**20
    print(f"mode: {'production' if env else 'embedded'}; CT 512 x 512 x {shape[0]} int16 = {size_mib:.0f} MiB "
          f"(+ header), chunks of {args.chunk_mib} MiB, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    print(f"import job: {state['status']} {json.dumps(state['results'])[:300]}")
    print(f"upload: {uploaded:.1f} s ({size_mib / uploaded:.0f} MiB/s); import on the worker: {imported:.1f} s")
    print(f"peak resident memory: web process {web_mib:.0f} MiB ({web_mib - web_before:+.0f} MiB during the upload, "
          f"file {size_mib:.0f} MiB), worker {worker_mib:.0f} MiB")
    if scans:
        print(f"scan: {json.dumps(scans[0])[:400]}")


if __name__ == "__main__":
    main()

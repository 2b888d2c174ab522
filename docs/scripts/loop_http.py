"""Issue 18's loop through the HTTP API, answered by ``manage.py simulate_annotators``.

    OMP_NUM_THREADS=2 python docs/scripts/loop_http.py [--arms guard,paper,manual] [--steps 3] \\
        [--first-seconds 900] [--step-epochs 6] [--threads 2] [--config '{"pixel_mm": 4.0}'] [--json out.json]

Development size (minutes; never the figure to report):

    python docs/scripts/loop_http.py --slices 24 --size 128 --steps 1 --held-out 2 --first-epochs 3 \\
        --step-epochs 1 --config '{"matrix": 64}'

What runs is the product as a lab runs it: the web server and a Celery worker (production
settings, PostgreSQL and Redis on 127.0.0.1, a database of its own, dropped at the end; the
stack of ``tests/integration``), the phantom CT imported with ``manage.py import_ct``, and for
every arm a project set up through the API (create with the arm's ``label_rule`` and budgets,
``held-out/``, ``training-set/seed/``, ``models/import/`` of model 0 for every arm after the
first); then ``manage.py simulate_annotators --steps 1`` per arm in turns (step k of every arm
before step k + 1 of any) starts each step over HTTP, answers every query from the reference
and waits for the step to end. Model 0 trains inside the first arm's step 1 under its own
budget (``first_max_seconds``); the steps train under ``max_epochs`` / ``max_seconds``.

Per arm and step it prints the product's own figures (``simulate_annotators --json``: queried
pixels, MAC, auto-labelled pixels and the wrong ones, the guard's decision, wall seconds per
state, the evaluating phase's Dice on the held-out slices) and, to compare with
``loop_experiment.py``, the held-out Dice of the step's model pooled over the held-out slices
(``loop_experiment.HeldOutScorer``, read-only, between steps while the worker is idle).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "bench"), str(Path(__file__).resolve().parent)]

from loop_experiment import ARMS, phantom_arguments  # noqa: E402 - found through the path above


def parse_args(argv=None) -> argparse.Namespace:
    ap = phantom_arguments(__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--first-seconds", type=float, default=900.0, help="model 0's budget (first_max_seconds)")
    ap.add_argument("--first-epochs", type=int, default=10_000, help="model 0's epoch cap (first_max_epochs)")
    ap.add_argument("--step-seconds", type=float, default=0.0, help="each step's budget (0: epochs only)")
    ap.add_argument("--step-epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default=None, help="extra network_config JSON for every arm")
    ap.add_argument("--annotators", type=int, default=2)
    ap.add_argument("--transfer-from", type=Path, default=None,
                    help="a checkpoint (.pt) the transfer arm uploads (models/import/, multipart) instead of "
                         "starting from this run's guard arm")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep-dir", action="store_true")
    return ap.parse_args(argv)


class Product:
    """The running product (tests/integration/stack.py) on a database of its own."""

    ADMIN_DB = "postgresql://postgres@127.0.0.1:5432/postgres"

    def __init__(self, work: Path, threads: int) -> None:
        from tests.integration.stack import Stack, services_reachable

        if not services_reachable():
            raise SystemExit("PostgreSQL and Redis must run on 127.0.0.1 (see README)")
        self.db = f"myolabel_loop_{uuid.uuid4().hex[:8]}"
        self._admin_sql(f'CREATE DATABASE "{self.db}"')
        t = str(threads)
        self.stack = Stack(work, {
            "MYOLABEL_MODE": "production", "MYOLABEL_HTTPS": "false",
            "DJANGO_SECRET_KEY": "loop-" + uuid.uuid4().hex * 2,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{self.db}",
            "REDIS_URL": f"redis://127.0.0.1:6379/{int(uuid.uuid4().int % 8) + 1}",
            "OMP_NUM_THREADS": t, "MYOLABEL_TORCH_THREADS": t, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": t,
            "MYOLABEL_LOG_LEVEL": "WARNING"})

    def _admin_sql(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.ADMIN_DB, autocommit=True) as conn:
            conn.execute(sql)

    def manage(self, *argv: str, timeout: float = 7200) -> str:
        done = subprocess.run([sys.executable, "manage.py", *argv], cwd=REPO, env=self.stack.env,
                              capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise RuntimeError(f"manage.py {argv[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        return done.stdout

    def api(self, method: str, path: str, body: dict | None = None) -> dict | list:
        status, data = self.stack.request(method, path, body)
        if status >= 300:
            raise RuntimeError(f"{method} {path} answered {status}: {data}")
        return data

    def upload_checkpoint(self, project: int, path: Path) -> dict:
        import requests

        with path.open("rb") as fh:
            resp = requests.post(f"{self.stack.url}/api/projects/{project}/models/import/", timeout=300,
                                 headers={"Authorization": f"Token {self.stack.token}"},
                                 files={"checkpoint": (path.name, fh, "application/octet-stream")})
        if resp.status_code >= 300:
            raise RuntimeError(f"checkpoint upload answered {resp.status_code}: {resp.text[:500]}")
        return resp.json()

    def stop(self) -> None:
        self.stack.stop()
        self._admin_sql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')


def import_ct(product: Product, args, work: Path, seed: int, pool_name: str) -> int:
    """Write the phantom (bench/step_cost.py) and import it with its reference; the pool's id."""
    from step_cost import write_phantom

    folder = work / f"phantom{seed}"
    write_phantom(argparse.Namespace(**{**vars(args), "seed": seed}), folder)
    product.manage("import_ct", str(folder / "dicom"), "--pool", pool_name, "--labels",
                   str(folder / "labels.nii.gz"), "--user", "it-admin")
    shutil.rmtree(folder / "dicom", ignore_errors=True)
    return next(p["id"] for p in product.api("GET", "/api/pools/") if p["name"] == pool_name)


def budgets(args) -> dict:
    return {"first_max_seconds": args.first_seconds, "first_max_epochs": args.first_epochs,
            "max_seconds": args.step_seconds, "max_epochs": args.step_epochs}


def create_arm(product: Product, args, arm: str, pool: int, start_from: int | Path | None) -> int:
    """The arm's project through the API, held-out slices chosen and seeded; its id."""
    strategy, rule = ARMS[arm]
    config = {**(json.loads(args.config) if args.config else {}), **budgets(args), "label_rule": rule}
    project = product.api("POST", "/api/projects/", {"name": f"loop {arm}", "pools": [pool], "strategy": strategy,
                                                     "network_profile": "fast", "network_config": config})
    pid = project["id"]
    product.api("POST", f"/api/projects/{pid}/held-out/", {"per_scan": args.held_out})
    if arm != "cold":
        product.api("POST", f"/api/projects/{pid}/training-set/seed/", {"fraction": args.seed_fraction})
    if isinstance(start_from, Path):
        product.upload_checkpoint(pid, start_from)
    elif start_from is not None:
        product.api("POST", f"/api/projects/{pid}/models/import/", {"from_model_version": start_from})
    return pid


def simulate_step(product: Product, args, project: int) -> dict:
    out = product.manage("simulate_annotators", "--project", str(project), "--steps", "1", "--url",
                         product.stack.url, "--annotators", str(args.annotators), "--json")
    return json.loads(out.strip().splitlines()[-1])


class Scorer:
    """Pooled held-out Dice of any model version (``loop_experiment.HeldOutScorer``), in this process."""

    def __init__(self, product: Product) -> None:
        os.environ.update({k: v for k, v in product.stack.env.items()
                           if k.startswith(("MYOLABEL_", "DATABASE_", "REDIS_", "DJANGO_", "OMP_"))})
        import django

        django.setup()
        self.scorers: dict[int, object] = {}

    def versions(self, project: int) -> dict[int, int]:
        from backend.acquisition.models import ModelVersion

        return dict(ModelVersion.objects.filter(project_id=project).values_list("number", "id"))

    def adapted(self, project: int) -> int | None:
        """The id of the project's imported model adapted to its labelled slices (steps/phases.py), if any."""
        from backend.acquisition.models import ModelVersion

        return ModelVersion.objects.filter(project_id=project, origin__kind="adapted").values_list("id", flat=True).first()

    def score(self, project: int, version_id: int) -> dict:
        from loop_experiment import HeldOutScorer, training_of

        from backend.acquisition.models import ModelVersion
        from backend.projects.models import Project

        proj = Project.objects.get(pk=project)
        if project not in self.scorers:
            self.scorers[project] = HeldOutScorer(proj)
        version = ModelVersion.objects.get(pk=version_id)
        return {**self.scorers[project].score(version, proj.mc_samples), "training": training_of(version)}


def run(args, product: Product, work: Path, out: dict) -> None:
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if unknown := [a for a in arms if a not in ARMS]:
        raise SystemExit(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    started = time.perf_counter()
    pools = {1: import_ct(product, args, work, args.seed, "loop CT 1")}
    out["import_seconds"] = round(time.perf_counter() - started, 1)
    scorer = Scorer(product)
    projects: dict[str, int] = {}
    together = [a for a in arms if a != "transfer"]
    for _ in range(args.steps):
        for arm in together:
            if arm not in projects:
                model0 = out.get("model0", {}).get("id") if arm != "cold" else None
                projects[arm] = create_arm(product, args, arm, pools[1], model0)
                if model0 is not None:
                    out.setdefault(arm, {})["start"] = scorer.score(projects[arm], scorer.versions(projects[arm])[0])
            step_into(out, arm, product, args, projects[arm], scorer)
    if "transfer" in arms:
        run_transfer(args, product, work, out, scorer, projects.get("guard"))


def run_transfer(args, product: Product, work: Path, out: dict, scorer: Scorer, guard: int | None) -> None:
    """CT 2 (phantom seed + 1) from the guard arm's last model or ``--transfer-from``; the imported
    model and the model adapted from it (step 1's inferring) are scored on CT 2's held-out slices."""
    if args.transfer_from is None and guard is None:
        raise SystemExit("the transfer arm starts from the guard arm's last model or --transfer-from: give one")
    source = args.transfer_from or max(scorer.versions(guard).items())[1]
    project = create_arm(product, args, "transfer", import_ct(product, args, work, args.seed + 1, "loop CT 2"), source)
    rows = out.setdefault("transfer", {})
    rows["start"] = scorer.score(project, scorer.versions(project)[0])
    for _ in range(args.steps):
        step_into(out, "transfer", product, args, project, scorer)
        if "adapted" not in rows and (adapted := scorer.adapted(project)) is not None:
            rows["adapted"] = scorer.score(project, adapted)
            print(f"transfer, adapted to CT 2's seed: {json.dumps(rows['adapted'])}", flush=True)


def step_into(out: dict, arm: str, product: Product, args, project: int, scorer: Scorer) -> None:
    from upload_large import peak_rss_mib

    row = simulate_step(product, args, project)
    row["pooled"] = scorer.score(project, row["model_version"])
    # The worker's processes' peak resident memory so far (VmHWM; a recycled pool child's is lost).
    row["worker_peak_rss_mib"] = round(peak_rss_mib(product.stack.procs["worker"].pid))
    if "model0" not in out and arm != "cold":
        zero = scorer.versions(project)[0]
        out["model0"] = {"id": zero, **scorer.score(project, zero)}
        print(f"model 0: {json.dumps(out['model0'])}", flush=True)
    out.setdefault(arm, {}).setdefault("steps", []).append(row)
    print(f"{arm} step {row['step']}: {json.dumps(row, default=str)}", flush=True)


def report(out: dict) -> None:
    m0 = out.get("model0") or {}
    print(f"\nmodel 0: pooled held-out muscle Dice {m0.get('muscle_dice')}, bone {m0.get('bone_dice')}; "
          f"training {m0.get('training')}")
    peaks = [r.get("worker_peak_rss_mib") or 0 for a in out if a in ARMS for r in out[a].get("steps", [])]
    print(f"worker peak RSS: {max(peaks, default=0)} MiB")
    print("| arm | step | muscle Dice (pooled) | bone Dice (pooled) | muscle Dice (product, per slice) | "
          "expert pixels (cum.) | auto-labelled | wrong | wrong % | MAC | guard | inferring s | training s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for arm in [a for a in out if a in ARMS]:
        for when in ("start", "adapted"):
            if row := out[arm].get(when):
                print(f"| {arm} | {when} | {row['muscle_dice']} | {row['bone_dice']} | | 0 | | | | | | | |")
        cum = 0
        for r in out[arm].get("steps", []):
            cum += r["queried_pixels"] or 0
            auto, wrong = r["auto_labelled"] or 0, r["auto_wrong"]
            share = f"{100 * wrong / auto:.2f}" if auto and wrong is not None else "-"
            dice = "-" if r["dice"] is None else f"{r['dice']:.3f}"
            s = r["phase_seconds"]
            print(f"| {arm} | {r['step']} | {r['pooled']['muscle_dice']} | {r['pooled']['bone_dice']} | {dice} | "
                  f"{cum:,} | {auto:,} | {wrong} | {share} | {r['mac']:.4f} | {(r['guard'] or {}).get('mode')} | "
                  f"{s.get('inferring')} | {s.get('training')} |")


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="loop-http-"))
    print(f"working folder {work}", flush=True)
    product = Product(work, args.threads)
    out: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    try:
        product.stack.start()
        print(f"product at {product.stack.url}", flush=True)
        run(args, product, work, out)
    finally:
        report(out)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1, default=str))
        product.stop()
        if not args.keep_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

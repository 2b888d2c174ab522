"""Issue 18's loop on a CT-sized phantom: model 0 from a 5 % seed, then steps under each labelling rule.

    OMP_NUM_THREADS=2 nice -n 10 python docs/scripts/loop_experiment.py [--slices 160] [--size 512] \\
        [--arms guard,paper,manual] [--steps 3] [--first-seconds 900] [--step-seconds 240] \\
        [--threads 2] [--json loop.json] [--keep-dir]

Development size (minutes; never the figure to report):

    OMP_NUM_THREADS=1 python docs/scripts/loop_experiment.py --slices 24 --size 128 --steps 1 \\
        --first-seconds 20 --step-seconds 10 --held-out 2 --config '{"matrix": 64, "max_epochs": 3}'

One process, embedded Django on a fresh data folder (SQLite, local media, no broker
worker), the product's own services for everything (what the API's views call):

- the phantom of ``bench/step_cost.py`` (a real hip CT's geometry: table, arms, 3 mm
  slices, 500 mm field of view) is imported once with its reference labels by
  ``manage.py import_ct``; every arm is a project on that one pool;
- each project holds out ``--held-out`` labelled slices (``held_out_choose``: spread,
  never adjacent to a training slice) and seeds 5 % of the rest (``training_set_seed``):
  the same slices in every arm;
- the first arm's step 1 trains model 0 inside its inferring phase with a budget of
  ``--first-seconds``; every later arm starts from that model, imported with
  ``model_version_import`` (the "start from another project's model" path), so the arms
  differ only in their rule from step 1 on;
- each step: ``step_start``, ``phase_execute`` for inferring and selecting, scripted
  answers from the reference inside each query mask (the API's claim and submit
  services), then training (budget ``--step-seconds``) and evaluating;
- arms: ``guard`` (strategy tau, ``label_rule`` guard: the product's default), ``paper``
  (tau, the paper's unguarded Eq. 7), ``manual`` (whole slices), ``masked`` (tau, answered
  pixels only), ``cold`` (no seed and no model: the cold start), ``transfer`` (a second
  phantom, seed + 1, in its own pool, starting from the guard arm's last model); every arm
  with the same slices per step, MC samples and training budgets (``--first-epochs`` /
  ``--step-epochs`` give them in epochs: a loaded machine's seconds buy varying epochs);
- the arms take their steps in turns (step k of every arm before step k + 1 of any), the
  transfer arm last.

Printed per arm and step: held-out Dice (mean over the muscles and over the bones
present on the held-out slices, pixels of all held-out slices together, MC mean of the
project's T samples, the product's own segmentation of working slices), expert pixels
(queried pixels answered), auto-labelled pixels and the wrong ones (the reference is
known), MAC, and wall seconds of every phase. Model 0 is scored the same way.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
sys.path[:0] = [str(REPO), str(BENCH), str(Path(__file__).resolve().parent)]

ARMS = {  # name: (strategy, label_rule); the rule applies once a model exists
    "guard": ("tau", "guard"),
    "cold": ("tau", "guard"),
    "transfer": ("tau", "guard"),
    "paper": ("tau", "paper"),
    "masked": ("tau", "masked"),
    "manual": ("manual", "guard"),
}
PHASES = ("inferring", "selecting", "answers", "training", "evaluating")


def phantom_arguments(description: str) -> argparse.ArgumentParser:
    """A parser with what both loop scripts share: the phantom CT, its seed, its held-out slices, the arms."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--slices", type=int, default=160)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--fov-mm", type=float, default=500.0)
    ap.add_argument("--slice-mm", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=1, help="phantom seed (the transfer's CT 2: seed + 1)")
    ap.add_argument("--seed-fraction", type=float, default=0.05)
    ap.add_argument("--held-out", type=int, default=8, help="held-out slices of the scan")
    ap.add_argument("--arms", default="guard,paper,manual", help=f"comma-separated of {', '.join(ARMS)}")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    ap = phantom_arguments(__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--first-seconds", type=float, default=900.0, help="model 0's training budget")
    ap.add_argument("--step-seconds", type=float, default=240.0, help="each step's training budget")
    ap.add_argument("--first-epochs", type=int, default=None,
                    help="model 0's budget in epochs instead of seconds (a loaded machine's seconds vary)")
    ap.add_argument("--step-epochs", type=int, default=None, help="each step's budget in epochs instead")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--config", default=None, help="extra network_config JSON for every arm")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--keep-dir", action="store_true")
    return ap.parse_args(argv)


def configure_environment(args, work: Path) -> None:
    """Embedded mode on a fresh data folder; no service variable may leak in."""
    for key in [k for k in os.environ if k.startswith(("DATABASE_", "REDIS_", "MYOLABEL_", "AWS_", "S3_"))]:
        del os.environ[key]
    threads = str(args.threads)
    os.environ.update(OMP_NUM_THREADS=threads, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=threads,
                      MYOLABEL_TORCH_THREADS=threads, MYOLABEL_DATA_DIR=str(work / "data"),
                      MYOLABEL_LOG_LEVEL="WARNING", CELERY_TASK_ALWAYS_EAGER="false",
                      DJANGO_SETTINGS_MODULE="backend.myolabel.settings")


# --- the product's services ----------------------------------------------------------------

def make_project(args, user, pool, arm: str):
    from backend.projects.models import DEFAULT_LABEL_SET_NAME, LabelSet
    from backend.projects.services import project_create

    strategy, rule = ARMS[arm]
    config = {**(json.loads(args.config) if args.config else {}), "label_rule": rule}
    return project_create(user=user, name=f"loop {arm}", label_set=LabelSet.objects.get(name=DEFAULT_LABEL_SET_NAME),
                          pools=[pool], network_profile="fast", network_config=config, strategy=strategy)


def prepare(project, args, *, seed_fraction: float) -> dict:
    from step_cost_new import seed

    from backend.acquisition.held_out.services import held_out_choose

    held_out_choose(project=project, per_scan=args.held_out)
    return {"seed_slices": seed(project, seed_fraction) if seed_fraction > 0 else 0}


def set_budget(project, args) -> None:
    """Training budgets, seconds or epochs (no time limit when given in epochs): the product's
    ``first_max_*`` for the project's first model (model 0, a cold start's first model, an
    import's adaptation), ``max_*`` for every step's training."""
    def budget(epochs, seconds, prefix=""):  # in seconds, the time alone ends training
        return ({f"{prefix}max_epochs": epochs, f"{prefix}max_seconds": 0.0} if epochs
                else {f"{prefix}max_epochs": 10_000, f"{prefix}max_seconds": seconds})
    project.network_config = {**project.network_config, **budget(args.step_epochs, args.step_seconds),
                              **budget(args.first_epochs, args.first_seconds, "first_")}
    project.save(update_fields=["network_config"])


def run_step(project, args, user, timings: dict) -> object:
    """One step, phase by phase (scripted answers in between)."""
    from step_cost_new import answer_all, run_phase, start

    step = start(project, user)
    for phase in PHASES:
        started = time.perf_counter()
        if phase == "answers":
            answer_all(project, user)
        else:
            run_phase(step.id, phase)
        timings[phase] = round(time.perf_counter() - started, 1)
    step.refresh_from_db()
    return step


# --- scoring on the held-out slices --------------------------------------------------------

class HeldOutScorer:
    """Dice of any model version of a project on the project's held-out slices (module doc)."""

    def __init__(self, project) -> None:
        import numpy as np

        from backend.acquisition.models import HeldOutSlice
        from backend.imaging.models import ReferenceLabelMap
        from backend.imaging.volumes import reference_labels, scan_volume
        from mltasks.labels import default_label_set

        rows = list(HeldOutSlice.objects.filter(project=project).order_by("z"))
        self.scan = rows[0].scan
        self.zs = [r.z for r in rows]
        ref = ReferenceLabelMap.objects.get(scan=self.scan, label_set=project.label_set)
        self.ref = np.asarray(reference_labels(ref)[self.zs])
        self.hu = np.asarray(scan_volume(self.scan)[self.zs])
        labels = default_label_set()
        self.muscles, self.bones = labels.values_of_kind("muscle"), labels.values_of_kind("bone")

    def score(self, version, t: int) -> dict:
        import numpy as np
        from step_models_heldout import score

        from backend.acquisition import ml_adapter
        from backend.acquisition.steps.phases import local_checkpoint
        from mltasks.geometry import Geometry

        model = ml_adapter.load_model(local_checkpoint(version))
        geometry = Geometry.from_dict(self.scan.geometry)
        dice = score(model, self.hu, self.ref, geometry, ml_adapter.model_pixel_mm(version.config), t)
        present = np.isfinite(dice)
        muscles = [c for c in self.muscles if present[c]]
        bones = [c for c in self.bones if present[c]]
        return {"muscle_dice": round(float(np.nanmean(dice[muscles])), 4) if muscles else None,
                "bone_dice": round(float(np.nanmean(dice[bones])), 4) if bones else None,
                "muscles_present": len(muscles)}


def training_of(version) -> dict:
    keep = ("slices", "epochs", "seconds", "stop_reason", "budget", "best_epoch", "validation_slices")
    return {k: (version.training or {}).get(k) for k in keep}


# --- the experiment ------------------------------------------------------------------------

class Context:
    """What the arms share: the user, the pools (CT 1, and CT 2 for the transfer), model 0 and
    every arm's last model."""

    def __init__(self, args, work: Path, user, pool) -> None:
        self.args, self.work, self.user, self.pools = args, work, user, {1: pool}
        self.model0 = None
        self.last: dict[str, object] = {}

    def second_pool(self):
        """CT 2 of the transfer: another phantom (seed + 1) of the same geometry, in its own pool."""
        if 2 not in self.pools:
            from django.core.management import call_command
            from step_cost import write_phantom

            from backend.imaging.models import Pool

            second = argparse.Namespace(**{**vars(self.args), "seed": self.args.seed + 1})
            write_phantom(second, self.work / "phantom2")
            self.pools[2] = Pool.objects.create(name="loop CT 2", created_by=self.user)
            call_command("import_ct", str(self.work / "phantom2" / "dicom"), "--pool", self.pools[2].name, "--labels",
                         str(self.work / "phantom2" / "labels.nii.gz"), "--user", self.user.username,
                         stdout=io.StringIO())
        return self.pools[2]


def arm_start(ctx: Context, arm: str):
    """The arm's project, prepared, with the model it starts from (module doc); (project, start model)."""
    from backend.acquisition.outputs.model_import import model_version_import

    args = ctx.args
    if arm == "transfer":
        source = ctx.last.get("guard")
        if source is None:
            raise SystemExit("the transfer arm starts from the guard arm's last model: list guard before it")
        project = make_project(args, ctx.user, ctx.second_pool(), arm)
    else:
        project = make_project(args, ctx.user, ctx.pools[1], arm)
        source = None if arm == "cold" else ctx.model0
    prepared = prepare(project, args, seed_fraction=0.0 if arm == "cold" else args.seed_fraction)
    start = model_version_import(project, from_version=source, user=ctx.user) if source is not None else None
    set_budget(project, args)
    return project, start, prepared


class ArmRun:
    """One arm's project, its held-out scorer and its rows in the output."""

    def __init__(self, ctx: Context, arm: str, out: dict) -> None:
        self.arm = arm
        self.project, start, prepared = arm_start(ctx, arm)
        self.scorer = HeldOutScorer(self.project)
        self.rows = out.setdefault(arm, {"prepare": prepared, "steps": []})
        if start is not None:  # what the arm starts from, on its own CT's held-out slices
            self.rows["start"] = self.scorer.score(start, self.project.mc_samples)

    def step(self, ctx: Context, out: dict) -> None:
        from backend.acquisition.models import ModelVersion
        from backend.acquisition.selectors import step_mac

        project, timings = self.project, {}
        step = run_step(project, ctx.args, ctx.user, timings)
        if ctx.model0 is None and self.arm != "cold":
            ctx.model0 = ModelVersion.objects.get(project=project, number=0)
            out["model0"] = {**self.scorer.score(ctx.model0, project.mc_samples), "training": training_of(ctx.model0)}
            print(f"model 0: {out['model0']}", flush=True)
        version = ModelVersion.objects.get(step=step)
        ctx.last[self.arm] = version
        adapted = ModelVersion.objects.filter(project=project, origin__kind="adapted").first()
        if adapted is not None and "adapted" not in self.rows:  # an import fitted to this CT's seed first
            self.rows["adapted"] = {**self.scorer.score(adapted, project.mc_samples), "training": training_of(adapted)}
            print(f"{self.arm}, adapted: {json.dumps(self.rows['adapted'], default=str)}", flush=True)
        mac = step_mac(step)
        row = {"step": step.number, "state": step.state, **self.scorer.score(version, project.mc_samples),
               "expert_pixels": mac["queried_pixels"], "mac": mac["mac"], "queries": mac["queries"],
               "auto_labelled": mac["auto_labelled_pixels"], "auto_wrong": mac["auto_labelled_wrong"],
               "guard": step.guard, "seconds": timings, "training": training_of(version)}
        self.rows["steps"].append(row)
        print(f"{self.arm} step {step.number}: {json.dumps(row, default=str)}", flush=True)


def run_arms(ctx: Context, arms: list[str], out: dict) -> None:
    """Step k of every arm before step k + 1 of any (a run cut short still compares the arms);
    the transfer arm last, from the guard arm's final model."""
    together = [a for a in arms if a != "transfer"]
    runs: list[ArmRun] = []
    for _ in range(ctx.args.steps):
        for i, arm in enumerate(together):
            if len(runs) <= i:
                runs.append(ArmRun(ctx, arm, out))
            runs[i].step(ctx, out)
    if "transfer" in arms:
        run = ArmRun(ctx, "transfer", out)
        for _ in range(ctx.args.steps):
            run.step(ctx, out)


def report(out: dict) -> None:
    m0 = out.get("model0") or {}
    print(f"\nmodel 0: held-out muscle Dice {m0.get('muscle_dice')}, bone {m0.get('bone_dice')}; "
          f"training {m0.get('training')}")
    print("| arm | step | muscle Dice | bone Dice | expert pixels (cum.) | auto-labelled | wrong | wrong % | "
          "MAC | inferring s | selecting s | training s | evaluating s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for arm in [a for a in out if a in ARMS]:
        cum = 0
        for when in ("start", "adapted"):
            if row := out[arm].get(when):
                print(f"| {arm} | {when} | {row['muscle_dice']} | {row['bone_dice']} | 0 | | | | | | | | |")
        for r in out[arm]["steps"]:
            cum += r["expert_pixels"] or 0
            auto, wrong = r["auto_labelled"] or 0, r["auto_wrong"]
            share = f"{100 * wrong / auto:.2f}" if auto and wrong is not None else "-"
            s = r["seconds"]
            print(f"| {arm} | {r['step']} | {r['muscle_dice']} | {r['bone_dice']} | {cum:,} | {auto:,} | {wrong} | "
                  f"{share} | {r['mac'] if r['mac'] is None else round(r['mac'], 4)} | {s.get('inferring')} | "
                  f"{s.get('selecting')} | {s.get('training')} | {s.get('evaluating')} |")


def main() -> None:
    args = parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if unknown := [a for a in arms if a not in ARMS]:
        raise SystemExit(f"unknown arm(s) {unknown}; choose from {list(ARMS)}")
    work = Path(tempfile.mkdtemp(prefix="loop-experiment-"))
    print(f"working folder {work}", flush=True)
    configure_environment(args, work)
    import django
    import torch

    torch.set_num_threads(args.threads)
    from step_cost import write_phantom

    out: dict = {"args": {k: str(v) for k, v in vars(args).items()},
                 "phantom": write_phantom(args, work / "phantom")}
    print(f"phantom: {out['phantom']}", flush=True)
    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from backend.imaging.models import Pool

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("loop", "loop@example.org", secrets.token_urlsafe(16))
    pool = Pool.objects.create(name="loop", created_by=user)
    started = time.perf_counter()
    call_command("import_ct", str(work / "phantom" / "dicom"), "--pool", pool.name, "--labels",
                 str(work / "phantom" / "labels.nii.gz"), "--user", user.username, stdout=io.StringIO())
    out["import_seconds"] = round(time.perf_counter() - started, 1)
    ctx = Context(args, work, user, pool)
    try:
        run_arms(ctx, arms, out)
    finally:
        out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        report(out)
        print(f"peak RSS of this process (Django, the phases, the scorer): {out['peak_rss_mib']} MiB")
        if args.json:
            args.json.write_text(json.dumps(out, indent=1, default=str))
        if not args.keep_dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

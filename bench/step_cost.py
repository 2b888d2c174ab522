"""Cost of one active-learning step on a CT-sized phantom: old settings vs the product, side by side.

    OMP_NUM_THREADS=1 nice -n 10 python bench/step_cost.py [--slices 160] [--size 512] [--threads 2] \\
        [--arms old,new] [--flops] [--json step_cost.json] [--keep-dir]

Development size (minutes, not hours; never the figure to report):

    OMP_NUM_THREADS=1 nice -n 10 python bench/step_cost.py --slices 12 --size 128 --threads 1 \\
        --t 2 --epochs 1 --new-config '{"matrix": 64, "min_batches_per_epoch": 2}'

The phantom has a real hip CT's geometry (issue 17): ``--slices`` axial slices of
``--size`` x ``--size`` over a ``--fov-mm`` (500 mm) field of view, ``--slice-mm``
(3 mm) apart, with the scan table and both arms (``generate_phantom(arms=True)``). It
is written once, as a DICOM series named like a real archive (``CT.<SOPInstanceUID>.dcm``,
about 70 characters) and its label map as NIfTI, and then every arm runs in its own child
process (so each arm's peak RSS is its own ``ru_maxrss``) with ``--threads`` torch,
OpenMP and ITK threads, one after the other in this one invocation, under the same load:

- ``old``: ``bench/step_cost_old.py``, a library replica of the step at commit 0e81657
  (interpolated 1 mm working slices over a centred 360 mm crop at 512 x 512, a 256
  network matrix, full-T MC dropout over every unlabelled slice, the training defaults
  before bc6544e);
- ``new-oldtrain``: the product with the old arm's training settings (50 epochs, patience 10
  on the validation Dice, one pass per epoch, the paper's augmentation) and no time budget:
  what the grid and the ranking alone save, at the same training settings;
- ``new``: ``bench/step_cost_new.py``, the product itself (whatever this checkout holds):
  embedded Django on a fresh data folder, ``import_ct``, ``training_set_seed``,
  ``step_start`` and ``phase_execute`` for every phase, scripted answers through the
  annotation services.

Both arms: import, a ``--seed-fraction`` (5 %) seed of the labelled slices, one step
(model 0, inference, selection), answers from the reference labels, training,
evaluation (no test scan). Printed per phase: wall seconds of each arm and old / new.

- ``import``: reading the series and label map, building and storing the working grid;
- ``seed``: adding the seed slices to the training set;
- ``model 0``: training the first model on the seed (inside the inferring phase);
- ``inference``: the inferring phase without model 0 (MC dropout, ranking, storing it);
- ``inferring``: the whole phase (model 0 + inference);
- ``selecting``: D_c, D_r and the pixel queries;
- ``answers``: scripted answers (the expert's part: excluded from every total);
- ``training``, ``evaluating``: the phases of those names;
- ``step``: inferring + selecting + training + evaluating (answers excluded): the
  acceptance figure (goal: old / new >= ``--goal-speedup``);
- ``all``: import + seed + step;
- ``peak RSS``: the child's ``ru_maxrss`` at its end (MB; includes Python, torch, Django).

Then per arm: working grid, network input shape(s), slices scored, queries, MAC
(queried pixels / pixels of the queried slices) and how many queried slices are
acquired slices (on a slice of the series, not interpolated between two).

``--flops``: forward FLOPs of one network slice for each input shape an arm ran
(``torch.utils.flop_counter.FlopCounterMode`` on its U-Net), times the slice-passes it
ran, counted in the child by wrapping ``mltasks.infer._Sampler.run`` (B slices x T
samples per MC batch) and ``UNet.forward`` (training batches, validation), a training
pass priced at 3 forward passes (forward + backward); and the time a GPU would need
at ``--gpu-tflops`` sustained (default 8 TFLOP/s fp32, a T4-class card): an estimate
that ignores data movement, resampling and everything but the network's arithmetic.
MC passes are priced as full passes (the folded sampler shares the first block among
the T samples, so this slightly overstates them).
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
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

ROWS = [  # (key, label); "answers" is shown but excluded from the totals
    ("import", "import"), ("seed", "seed"), ("model0", "model 0"), ("inference", "inference"),
    ("inferring", "inferring (model 0 + inference)"), ("selecting", "selecting"),
    ("answers", "answers (excluded)"), ("training", "training"), ("evaluating", "evaluating"),
    ("step", "step (inferring..evaluating)"), ("all", "all but answers"),
]
STEP_PHASES = ("inferring", "selecting", "training", "evaluating")
FLOP_PHASES = ("model0", "inference", "selecting", "training", "evaluating")
TRAIN_PASS_COST = 3.0  # a training slice-pass = forward + backward ~ 3 forward passes
# Variables that would point the new arm's Django at another database, broker or storage.
_PRODUCT_ENV = ("MYOLABEL_", "DJANGO_", "CELERY_", "DATABASE_", "REDIS_URL")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=160, help="axial slices of the phantom")
    ap.add_argument("--size", type=int, default=512, help="in-plane matrix (512; smaller for development)")
    ap.add_argument("--fov-mm", type=float, default=500.0)
    ap.add_argument("--slice-mm", type=float, default=3.0)
    ap.add_argument("--seed", type=int, default=1, help="phantom seed")
    ap.add_argument("--seed-fraction", type=float, default=0.05, help="share of labelled slices seeded")
    ap.add_argument("--arms", default="old,new", help="comma-separated: old, new, new-oldtrain (the product "
                    "with the old arm's training settings and no time budget: the same training work)")
    ap.add_argument("--threads", type=int, default=2, help="torch / OpenMP / ITK threads per arm")
    ap.add_argument("--t", type=int, default=None, help="MC samples of both arms (default: each arm's own)")
    ap.add_argument("--epochs", type=int, default=None, help="max epochs of both arms (default: each arm's own)")
    ap.add_argument("--new-config", default=None, help="extra network_config JSON of the new arm's project")
    ap.add_argument("--flops", action="store_true", help="also print the FLOPs / GPU-time estimate")
    ap.add_argument("--gpu-tflops", type=float, default=8.0, help="sustained GPU throughput for --flops")
    ap.add_argument("--goal-speedup", type=float, default=5.0, help="acceptance: step old / new at least this")
    ap.add_argument("--goal-inference-s", type=float, default=180.0, help="acceptance: new inference under this")
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    ap.add_argument("--keep-dir", action="store_true", help="keep the working folder (phantom, data, logs)")
    ap.add_argument("--child", choices=("old", "new", "new-oldtrain"), help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


# --- the phantom -----------------------------------------------------------------------------

def write_phantom(args, folder: Path) -> dict:
    """DICOM series + NIfTI label map of the phantom in ``folder``; what was written."""
    import numpy as np

    from mltasks.io import write_volume
    from mltasks.io.dicom_write import write_dicom_series
    from mltasks.phantom import generate_phantom

    pixel = args.fov_mm / args.size
    shape, spacing = (args.slices, args.size, args.size), (args.slice_mm, pixel, pixel)
    started = time.perf_counter()
    ph = generate_phantom(args.seed, shape=shape, spacing=spacing, arms=True)
    generated = time.perf_counter() - started
    files = write_dicom_series(ph.hu, ph.geometry, folder / "dicom", series_description="step cost phantom",
                               patient_id="STEPCOST")
    names = [archive_name(p) for p in files]
    write_volume(ph.labels.astype(np.uint8), ph.geometry, folder / "labels.nii.gz")
    labelled = int(ph.labels.reshape(shape[0], -1).any(axis=1).sum())
    return {"shape": list(shape), "spacing_mm": list(spacing), "labelled_slices": labelled,
            "generate_seconds": round(generated, 1), "file_name_chars": sorted({len(n) for n in names})}


def archive_name(path: Path) -> str:
    """Rename a written slice like an archive export: ``CT.<SOPInstanceUID>.dcm``."""
    import pydicom

    uid = pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID
    target = path.with_name(f"CT.{uid}.dcm")
    path.rename(target)
    return target.name


# --- the children ----------------------------------------------------------------------------

def child_env(args, work: Path, arm: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PRODUCT_ENV)}
    threads = str(args.threads)
    env.update(OMP_NUM_THREADS=threads, ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=threads,
               MYOLABEL_TORCH_THREADS=threads, MYOLABEL_DATA_DIR=str(work / arm / "data"),
               MYOLABEL_LOG_LEVEL="WARNING", CELERY_TASK_ALWAYS_EAGER="false",
               DJANGO_SETTINGS_MODULE="backend.myolabel.settings")
    return env


def run_child(args, work: Path, arm: str) -> dict:
    (work / arm).mkdir(parents=True, exist_ok=True)
    result = work / arm / "result.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--child", arm,
           "--work", str(work), "--result", str(result)]
    print(f"{arm} arm (log: {work / arm / 'child.log'})", flush=True)
    with (work / arm / "child.log").open("w") as log:
        done = subprocess.run(cmd, cwd=REPO, env=child_env(args, work, arm), stdout=sys.stdout, stderr=log)
    if done.returncode != 0:
        tail = (work / arm / "child.log").read_text()[-4000:]
        raise SystemExit(f"the {arm} arm failed (exit {done.returncode}); end of its log:\n{tail}")
    return json.loads(result.read_text())


def child_main(args) -> None:
    sys.path.insert(0, str(BENCH))
    from step_cost_probe import PassCounter, Recorder, price_passes

    counter = PassCounter().install()
    rec = Recorder(counter)
    work = args.work / args.child
    if args.child == "old":
        import step_cost_old as arm
    else:
        import step_cost_new as arm
    if args.child == "new-oldtrain":  # the product with the old arm's training settings and no time budget
        from step_cost_old import OLD_TRAIN

        extra = json.loads(args.new_config) if args.new_config else {}
        args.new_config = json.dumps({**OLD_TRAIN, "max_seconds": 0.0, **extra})
    arm.run(args, work, args.work / "phantom", rec)
    out = rec.to_dict()
    out["flops_per_pass"] = price_passes(out["passes"]) if args.flops else {}
    args.result.write_text(json.dumps(out, indent=1, default=str))


# --- the report ------------------------------------------------------------------------------

def totals(seconds: dict) -> dict:
    out = dict(seconds)
    out["step"] = sum(seconds.get(k, 0.0) for k in STEP_PHASES)
    out["all"] = out["step"] + seconds.get("import", 0.0) + seconds.get("seed", 0.0)
    return out


def fmt(value, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def ratio(old, new, *, floor: float = 0.05) -> str:
    """old / new, or "-" when either is missing or below ``floor`` (a ratio of noise)."""
    return f"{old / new:.1f}x" if old is not None and new is not None and min(old, new) >= floor else "-"


def print_times(results: dict) -> None:
    """Seconds per phase and arm, and old / arm for every other arm."""
    arms = list(results)
    secs = {arm: totals(results[arm]["seconds"]) for arm in arms}
    others = [arm for arm in arms if arm != "old"] if "old" in arms else []
    print(f"\n{'phase':<32}" + "".join(f"{arm + ' s':>14}" for arm in arms)
          + "".join(f"{'old/' + arm:>16}" for arm in others))
    for key, label in ROWS:
        cells = "".join(f"{fmt(secs[arm].get(key)):>14}" for arm in arms)
        extra = "".join(f"{ratio(secs['old'].get(key), secs[arm].get(key)):>16}" for arm in others)
        print(f"{label:<32}{cells}{extra}")
    peaks = "".join(f"{results[arm]['peak_rss_mb']:>14.0f}" for arm in arms)
    extra = "".join(f"{ratio(results['old']['peak_rss_mb'], results[arm]['peak_rss_mb']):>16}" for arm in others)
    print(f"{'peak RSS MB':<32}{peaks}{extra}")


def print_goals(results: dict, args) -> None:
    for arm in [a for a in results if a.startswith("new")]:
        new = totals(results[arm]["seconds"])
        if "old" in results:
            speedup = totals(results["old"]["seconds"])["step"] / new["step"]
            verdict = "met" if speedup >= args.goal_speedup else "NOT met"
            print(f"goal ({arm}): step (answers excluded) >= {args.goal_speedup:g}x faster: {speedup:.1f}x, {verdict}")
        verdict = "met" if new["inference"] < args.goal_inference_s else "NOT met"
        print(f"goal ({arm}): inference (inferring without model 0) < {args.goal_inference_s:g} s: "
              f"{new['inference']:.1f} s, {verdict}")


def network_shapes(passes: dict) -> list[str]:
    return sorted({shape for kinds in passes.get("counts", {}).values() for by_shape in kinds.values()
                   for shape in by_shape})


def print_info(results: dict) -> None:
    print()
    for arm, res in results.items():
        i = res["info"]
        mac = "-" if i.get("mac") is None else f"{100 * i['mac']:.2f} %"
        print(f"{arm}: working grid {i['working_shape']} (z, y, x) at {_mm(i['working_spacing_mm'])} mm; "
              f"network input {', '.join(network_shapes(res['passes'])) or '-'}; "
              f"{i['scored_slices']} slices scored at T = {i['mc_samples']}; seed {i['seed_slices']} slices; "
              f"{i['queries']} queries, MAC {mac}; queried slices acquired: "
              f"{fmt(i.get('acquired_queried_slices'), 'd')} of {i['queries']}")


def _mm(values) -> str:
    return " x ".join(f"{v:.3g}" for v in values)


def phase_passes(res: dict) -> dict[str, dict[str, dict[str, int]]]:
    """phase -> kind -> shape -> slice-passes; the new arm's inferring split into model 0 (training and
    validation passes) and inference (MC passes)."""
    counts = {p: {k: dict(v) for k, v in kinds.items()} for p, kinds in res["passes"]["counts"].items()}
    inferring = counts.pop("inferring", None)
    if inferring is not None:
        counts["model0"] = {k: v for k, v in inferring.items() if k != "mc"}
        counts["inference"] = {k: v for k, v in inferring.items() if k == "mc"}
    return counts


def phase_flops(kinds: dict, per_pass: dict) -> tuple[int, float]:
    """(slice-passes, FLOPs) of one phase."""
    passes, flops = 0, 0.0
    for kind, by_shape in kinds.items():
        for shape, n in by_shape.items():
            passes += n
            flops += n * per_pass[shape] * (TRAIN_PASS_COST if kind == "train" else 1.0)
    return passes, flops


def print_flops(results: dict, args) -> None:
    rate = args.gpu_tflops * 1e12
    print(f"\nFLOPs (forward per slice by FlopCounterMode; training pass = {TRAIN_PASS_COST:g} forward) "
          f"and ESTIMATED GPU seconds at {args.gpu_tflops:g} TFLOP/s sustained")
    for arm, res in results.items():
        per_pass = res["flops_per_pass"]
        shapes = ", ".join(f"{k}: {v / 1e9:.2f} GFLOP" for k, v in sorted(per_pass.items()))
        print(f"{arm}: forward per slice {shapes}")
        print(f"  {'phase':<12}{'slice-passes':>14}{'TFLOP':>10}{'GPU s (est.)':>14}{'CPU s':>9}")
        counts, total = phase_passes(res), [0, 0.0]
        for phase in FLOP_PHASES:
            passes, flops = phase_flops(counts.get(phase, {}), per_pass)
            total = [total[0] + passes, total[1] + flops]
            print(f"  {phase:<12}{passes:>14}{flops / 1e12:>10.2f}{flops / rate:>14.1f}"
                  f"{fmt(res['seconds'].get(phase)):>9}")
        print(f"  {'total':<12}{total[0]:>14}{total[1] / 1e12:>10.2f}{total[1] / rate:>14.1f}")


def report(results: dict, phantom: dict, args) -> None:
    print(f"\nphantom {phantom['shape']} (z, y, x) at {_mm(phantom['spacing_mm'])} mm, "
          f"{phantom['labelled_slices']} labelled slices, DICOM file names of {phantom['file_name_chars']} "
          f"characters; {args.threads} threads per arm")
    print_times(results)
    print_goals(results, args)
    print_info(results)
    if args.flops:
        print_flops(results, args)


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    work = Path(tempfile.mkdtemp(prefix="step-cost-"))
    try:
        print(f"writing the phantom ({args.slices} x {args.size} x {args.size}) in {work}", flush=True)
        phantom = write_phantom(args, work / "phantom")
        results = {arm: run_child(args, work, arm) for arm in arms}
        report(results, phantom, args)
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                             "phantom": phantom, "arms": results}, indent=1, default=str))
    finally:
        if args.keep_dir:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

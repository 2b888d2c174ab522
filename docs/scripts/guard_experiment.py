"""How many auto-labels of Eq. 7 are wrong, without and with the guard? (docs/learning.md)

One phantom CT (``--shape``, default 96 x 128 x 128, about 3 mm slices) on a
``--matrix`` network grid. Three models of increasing quality are trained with
``mltasks.train.train`` (validation slices held out by position, so each model has
an honest held-out Dice per class):

- ``undertrained``: ``--seed-slices`` evenly spaced labelled slices, 2 epochs;
- ``trained``: the same slices, ``--epochs`` epochs;
- ``mature``: ``--mature-slices`` evenly spaced labelled slices, ``--epochs`` epochs.

For each model one acquisition step runs the product's step code
(``mltasks.active.propose_queries``: MC dropout T = 10, D_c, D_r, Eq. 7) over the
unlabelled slices, ``--select`` slices, at tau = ``--tau`` and at the tau of a MAC
of 0.05. The oracle answers the queried pixels from the phantom's labels; every
rule then builds the training labels of those slices with ``mltasks.guard``
(``apply_guard``, with the air outside the body found from the HU on the phantom's
grid, ``air_outside_body``, resampled to the network grid) and counts the
auto-labelled pixels and the wrong ones (``auto_label_errors``). The guard rows
trust classes by held-out Dice at the given thresholds and boundary margins, with
the whole-slice fallback switched off so that every row shows its auto-labels; the
last column says what ``decide`` with the default settings chooses.

    OMP_NUM_THREADS=1 nice -n 10 python docs/scripts/guard_experiment.py [--matrix 64] [--epochs 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from mltasks.active import ALConfig, SlicePool, propose_queries  # noqa: E402
from mltasks.guard import (  # noqa: E402
    GuardConfig,
    GuardDecision,
    air_outside_body,
    apply_guard,
    auto_label_errors,
    auto_labelled,
    decide,
)
from mltasks.nets import profile  # noqa: E402
from mltasks.phantom import generate_phantom  # noqa: E402
from mltasks.preprocess import body_from_hu, preprocess_volume, resample_labels_to_network  # noqa: E402
from mltasks.train import TrainConfig, train  # noqa: E402

THRESHOLDS = (0.7, 0.8, 0.9)
MARGINS = (0, 1, 2)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def evenly_spaced(n: int, k: int) -> np.ndarray:
    return ((np.arange(k) + 0.5) * n / k).astype(np.int64)


def rules(dice: np.ndarray) -> list[tuple[str, GuardDecision]]:
    """(name, decision) of every rule compared; the guard rows have the whole-slice
    fallback off (min_model_dice 0) so that they show their auto-labels."""
    out = [("paper (unguarded Eq. 7)", decide(dice, config=GuardConfig(rule="paper")))]
    for t in THRESHOLDS:
        for bg in (0.95, 0.99):
            for margin in MARGINS:
                config = GuardConfig(min_dice=t, min_background_dice=bg, min_model_dice=0.0, boundary_margin=margin)
                out.append((f"guard Dice >= {t}, background >= {bg}, margin {margin}", decide(dice, config=config)))
    out.append(("air outside the body only", GuardDecision("auto_label", (), "", 0, True)))
    out.append(("masked", decide(dice, config=GuardConfig(rule="masked", min_model_dice=0.0))))
    out.append(("default guard (with its whole-slice fallback)", decide(dice)))
    return out


def measure(name: str, result, pool: SlicePool, truth: np.ndarray, air: np.ndarray, args) -> None:
    dice = result.val_dice_per_class
    default = decide(dice)
    log(f"{name}: held-out mean Dice {result.best_dice:.3f} on {result.n_val} slices; default guard: {default.reason}")
    for query_name, overrides in ((f"tau={args.tau:g}", {"tau": args.tau}), ("MAC 0.05", {"target_mac": 0.05})):
        config = replace(ALConfig(n_select=args.select, t_samples=10, batch_size=8), **overrides)
        queries = propose_queries(result.model, pool, config, step=1)
        queried = sum(q.n_queried for q in queries)
        total = sum(q.mask.size for q in queries)
        for rule_name, decision in rules(dice):
            n_auto = n_wrong = n_wrong_bg = 0
            for q in queries:
                ref = truth[q.slice_index]
                labels, provenance = apply_guard(q.predicted, q.mask, np.where(q.mask, ref, -1), decision,
                                                 air=air[q.slice_index])  # fmt: skip
                n_auto += auto_labelled(provenance)
                n_wrong += auto_label_errors(labels, provenance, ref)
                n_wrong_bg += auto_label_errors(np.where(labels == 0, 0, ref), provenance, ref)
            share = f"{100 * n_wrong / n_auto:.2f} %" if n_auto else "-"
            trusted = "all" if decision.trusted is None else len(decision.trusted)
            print(f"| {name} ({result.best_dice:.2f}) | {query_name}, MAC {queried / total:.3f} | {rule_name} | "
                  f"{trusted} | {n_auto} | {n_wrong} ({n_wrong_bg} as background) | {share} | {default.mode} |",
                  flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=(96, 128, 128))
    ap.add_argument("--matrix", type=int, default=64)
    ap.add_argument("--profile", default="fast")
    ap.add_argument("--seed-slices", type=int, default=8)
    ap.add_argument("--mature-slices", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--select", type=int, default=5)
    ap.add_argument("--tau", type=float, default=2.5e-3)
    ap.add_argument("--phantom-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    ph = generate_phantom(args.phantom_seed, shape=tuple(args.shape))
    pre = preprocess_volume(ph.hu, ph.geometry, matrix=args.matrix, fov_mm=380.0,
                            slice_interval_mm=ph.geometry.spacing[0])  # fmt: skip
    truth = resample_labels_to_network(ph.labels.astype(np.uint8), ph.geometry, pre.geometry)
    body = resample_labels_to_network(body_from_hu(ph.hu).astype(np.uint8), ph.geometry, pre.geometry) > 0
    air = resample_labels_to_network(air_outside_body(ph.hu).astype(np.uint8), ph.geometry, pre.geometry) > 0
    n = pre.image.shape[0]
    net = profile(args.profile, n_classes=ph.label_set.n_classes, matrix=args.matrix)
    base = TrainConfig(max_epochs=args.epochs, patience=10, min_batches_per_epoch=16)
    log(f"phantom {args.phantom_seed} {tuple(args.shape)} -> {n} slices of {args.matrix}^2, {args.profile} net")
    print("| model (held-out Dice) | query | rule | trusted classes | auto-labelled pixels | wrong | "
          "wrong share | default guard |")
    print("|---|---|---|---|---|---|---|---|")
    for name, k, epochs in (("undertrained", args.seed_slices, 2), ("trained", args.seed_slices, args.epochs),
                            ("mature", args.mature_slices, args.epochs)):  # fmt: skip
        labelled = evenly_spaced(n, k)
        t = time.perf_counter()
        result = train(pre.image[labelled], truth[labelled], net, config=replace(base, max_epochs=epochs),
                       label_set=ph.label_set, slice_keys=labelled)  # fmt: skip
        log(f"{name}: {k} labelled slices, {result.epochs} epochs ({result.stop_reason}), {time.perf_counter() - t:.0f} s")
        mask = np.zeros(n, bool)
        mask[labelled] = True
        measure(name, result, SlicePool(pre.image, mask, body), truth, air, args)


if __name__ == "__main__":
    main()

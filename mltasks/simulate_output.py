"""What a simulation run writes: its two CSVs (atomically, so a reader never sees half a
file) and the paper's figures. Rows are the dicts ``mltasks.simulate`` builds: one per
strategy and step (``simulation.csv``), one per strategy, step, test volume and
structure (``psv_dice.csv``).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np


def write_results(out: Path, rows: list[dict], psv_rows: list[dict]) -> None:
    """Both CSVs, grouped by strategy (in first-seen order) then step."""
    order = {spec: i for i, spec in enumerate(dict.fromkeys(r["strategy"] for r in rows))}
    _write_csv(out / "simulation.csv", sorted(rows, key=lambda r: (order[r["strategy"]], r["step"])))
    _write_csv(out / "psv_dice.csv", sorted(psv_rows, key=lambda r: (order[r["strategy"]], r["step"])))


def _write_csv(path: Path, rows: list[dict]) -> None:
    header = list(rows[0]) if rows else ["strategy", "step"]
    partial = path.with_suffix(".partial")
    with partial.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)  # readers never see a half-written file


def write_figures(rows: list[dict], psv_rows: list[dict], out_dir: str | Path) -> list[Path]:
    """The paper's figures as PNG (matplotlib, Agg): mean Dice vs step per strategy,
    MAC per step as box plots, PSV vs Dice of the last models with the pooled PDC fit, Dice vs
    cumulative expert-labelled pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    paths = [
        out / "dice_vs_step.png",
        out / "mac_boxplot.png",
        out / "psv_vs_dice.png",
        out / "dice_vs_expert_pixels.png",
    ]
    fig, ax = plt.subplots(figsize=(6, 4))
    for spec in strategies:
        mine = [r for r in rows if r["strategy"] == spec]
        ax.plot([r["step"] for r in mine], [r["mean_dice"] for r in mine], marker="o", label=spec)
    ax.set(xlabel="step", ylabel="mean Dice (test volumes)", title="Dice per acquisition step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[0], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    macs = [
        [r["mac"] for r in rows if r["strategy"] == spec and r["step"] > 0] for spec in strategies
    ]
    ax.boxplot([m if m else [math.nan] for m in macs])
    ax.set_xticks(range(1, len(strategies) + 1), strategies, rotation=20)
    ax.set(yscale="log", ylabel="MAC per step", title="Manual annotation cost (Eq. 8)")
    fig.tight_layout()
    fig.savefig(paths[1], dpi=120)
    plt.close(fig)

    # Eq. 6 describes one model: pool the pairs of each strategy's last model only
    # (pairs of all steps mix weak early models, whose missed structures have no PSV).
    last = {}
    for r in psv_rows:
        last[r["strategy"]] = max(last.get(r["strategy"], 0), r["step"])
    final = [r for r in psv_rows if r["step"] == last[r["strategy"]]]
    fig, ax = plt.subplots(figsize=(5, 4))
    x = np.array([r["psv"] for r in final])
    y = np.array([r["dice"] for r in final])
    ax.scatter(x, y, s=6, alpha=0.5)
    title = "PSV vs Dice, last models"
    if x.size >= 3 and np.ptp(x) > 0:
        from mltasks.calibration import fit_pdc

        fit = fit_pdc(x, y)
        xs = np.linspace(x.min(), x.max(), 50)
        ax.plot(
            xs,
            fit.alpha * xs + fit.beta,
            color="k",
            label=f"PDC: {fit.alpha:.3g} PSV {fit.beta:+.3f}",
        )
        ax.legend()
        title += f" (r = {fit.correlation:.3f})"
    ax.set(xlabel="PSV (Eq. 5)", ylabel="Dice", title=title)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=120)
    plt.close(fig)

    # Accuracy against what the expert actually labelled: the cost axis of the paper's argument.
    fig, ax = plt.subplots(figsize=(6, 4))
    for spec in strategies:
        mine = [r for r in rows if r["strategy"] == spec]
        ax.plot(np.cumsum([r["queried_pixels"] for r in mine]), [r["mean_dice"] for r in mine],
                marker="o", label=spec)  # fmt: skip
    ax.set(xlabel="expert-labelled pixels (cumulative)", ylabel="mean Dice (test volumes)",
           title="Dice against annotation effort")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(paths[3], dpi=120)
    plt.close(fig)
    return paths

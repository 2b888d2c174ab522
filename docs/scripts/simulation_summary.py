"""Markdown summary of a simulation run's simulation.csv (for docs/simulation.md).

    python docs/scripts/simulation_summary.py docs/simulation_run/simulation.csv [--figures]

Per strategy: mean Dice at the first and last step, median MAC over steps 1..S,
expert pixels (sum of queried pixels), the step-by-step gap to fully manual
labelling, and wall time.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def load(path: str) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = defaultdict(list)
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            runs[row["strategy"]].append(row)
    for rows in runs.values():
        rows.sort(key=lambda r: int(r["step"]))
    return runs


def psv_dice_r(psv_csv: Path) -> dict[str, float]:
    """Pearson r of PSV and Dice over the last model's (structure, test volume) pairs, per strategy."""
    import numpy as np

    with psv_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for spec in dict.fromkeys(r["strategy"] for r in rows):
        mine = [r for r in rows if r["strategy"] == spec]
        last = max(int(r["step"]) for r in mine)
        x = np.array([float(r["psv"]) for r in mine if int(r["step"]) == last])
        y = np.array([float(r["dice"]) for r in mine if int(r["step"]) == last])
        out[spec] = float(np.corrcoef(x, y)[0, 1]) if x.size > 2 and np.ptp(x) > 0 and np.ptp(y) > 0 else math.nan
    return out


def summary(runs: dict[str, list[dict]], r_by_strategy: dict[str, float] | None = None) -> str:
    manual = {int(r["step"]): float(r["mean_dice"]) for r in runs.get("manual", [])}
    last_common = min(int(rows[-1]["step"]) for rows in runs.values())
    lines = [
        f"| strategy | Dice step 0 | Dice step {last_common} | Dice - manual at step {last_common} "
        "| max Dice - manual over steps | median MAC (steps 1..) | expert pixels | wall time "
        "| PSV-Dice r, last model |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for spec, rows in runs.items():
        rows = [r for r in rows if int(r["step"]) <= last_common]
        dice = {int(r["step"]): float(r["mean_dice"]) for r in rows}
        macs = [float(r["mac"]) for r in rows if int(r["step"]) > 0 and r["mac"] not in ("", "nan")]
        gaps = [dice[s] - manual[s] for s in dice if s > 0 and s in manual]
        lines.append(
            f"| {spec} | {dice[0]:.3f} | {dice[last_common]:.3f} | "
            f"{dice[last_common] - manual.get(last_common, math.nan):+.3f} | "
            f"{max(gaps) if gaps else math.nan:+.3f} | "
            f"{statistics.median(macs) if macs else math.nan:.3f} | "
            f"{sum(int(r['queried_pixels']) for r in rows):,} | "
            f"{sum(float(r['wall_time_s']) for r in rows) / 60:.1f} min | "
            f"{(r_by_strategy or {}).get(spec, math.nan):.3f} |"
        )
    steps = sorted({int(r["step"]) for rows in runs.values() for r in rows if int(r["step"]) <= last_common})
    lines += ["", "Mean Dice (test phantoms) per step, MAC of that step in brackets:", "",
              "| step | " + " | ".join(runs) + " |", "|---" * (len(runs) + 1) + "|"]
    for s in steps:
        cells = []
        for rows in runs.values():
            r = next((r for r in rows if int(r["step"]) == s), None)
            mac = "" if r is None or r["mac"] in ("", "nan") else f" ({float(r['mac']):.3f})"
            cells.append("" if r is None else f"{float(r['mean_dice']):.3f}{mac}")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def redraw_figures(folder: Path) -> None:
    """Draw the figures again from a run's CSVs (a run stopped early, or older code)."""
    from mltasks.simulate_output import write_figures

    def typed(row: dict) -> dict:
        return {k: (v if k in ("strategy", "volume", "structure") else float(v or "nan")) for k, v in row.items()}

    with (folder / "simulation.csv").open(newline="") as f:
        rows = [typed(r) for r in csv.DictReader(f)]
    with (folder / "psv_dice.csv").open(newline="") as f:
        psv_rows = [typed(r) for r in csv.DictReader(f)]
    write_figures(rows, psv_rows, folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv")
    parser.add_argument("--figures", action="store_true", help="also redraw the figures beside the CSV")
    args = parser.parse_args()
    psv_csv = Path(args.csv).with_name("psv_dice.csv")
    print(summary(load(args.csv), psv_dice_r(psv_csv) if psv_csv.exists() else None))
    if args.figures:
        redraw_figures(Path(args.csv).parent)


if __name__ == "__main__":
    main()

"""``simulate``: the paper's active-learning simulation with an oracle (method.md §5).

python -m mltasks simulate --config docs/scripts/simulation_full.toml --out sim_full
python -m mltasks simulate --quick --out sim_quick      # about 2 minutes
"""

from __future__ import annotations

import argparse
from pathlib import Path

QUICK_CONFIG = Path(__file__).resolve().parents[2] / "docs" / "scripts" / "simulation_quick.toml"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate", help="active-learning simulation: strategies x steps, CSV and figures"
    )
    p.add_argument(
        "--config", type=Path, help="JSON or TOML configuration (see docs/simulation.md)"
    )
    p.add_argument(
        "--quick", action="store_true", help=f"use the smoke-test configuration {QUICK_CONFIG.name}"
    )
    p.add_argument(
        "--out", type=Path, default=Path("simulation_out"), help="output folder (CSV, PNG)"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    import sys

    import torch

    from mltasks.errors import MyoLabelError
    from mltasks.progress import TqdmProgress
    from mltasks.simulate import load_simulation_config, run_simulation

    if (args.config is None) == (not args.quick):
        print("give exactly one of --config FILE or --quick", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    bar = TqdmProgress()
    try:
        config = load_simulation_config(QUICK_CONFIG if args.quick else args.config)
        result = run_simulation(config, args.out, on_progress=bar)
    except MyoLabelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    last = {}
    for row in result.rows:
        last[row["strategy"]] = row
    for spec, row in last.items():
        print(
            f"{spec:>14}: step {row['step']}, mean Dice {row['mean_dice']:.4f}, last MAC {row['mac']:.5f}"
        )
    print(f"wrote {result.out_dir / 'simulation.csv'} and figures in {result.out_dir}")
    return 0

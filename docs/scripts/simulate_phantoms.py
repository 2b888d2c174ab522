"""Run ``manage.py simulate_annotators`` on a phantom project against a real server.

Starts web server + worker (embedded mode, or PostgreSQL + Redis with --services) in a
temporary data folder, seeds a phantom project, and lets scripted annotators run
``--steps`` acquisition steps through the HTTP API. Prints the per-step table that
docs/acquisition.md records.

    python docs/scripts/simulate_phantoms.py --steps 3
    python docs/scripts/simulate_phantoms.py --steps 3 --n-test 1 --shape 24,128,128 --fraction 0.5 \
        --profile fast --matrix 64 --epochs 40 --batch-size 4        # the demo project's configuration
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.stack import REPO, Stack  # noqa: E402

SETUP = """
import json
from django.contrib.auth.models import User
from backend.acquisition.demo import phantom_project
admin = User.objects.get(username="it-admin")
p = phantom_project(name="simulation", admin=admin, n_pool={n_pool}, n_test={n_test}, shape={shape},
                    seed_fraction={fraction}, network_profile="{profile}", network_config={network},
                    slices_per_step={per_step}, k_uncertain={k}, mc_samples={t}, tau={tau}, strategy="{strategy}")
print(json.dumps({{"project": p.id}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--n-pool", type=int, default=3)
    parser.add_argument("--n-test", type=int, default=2)
    parser.add_argument("--shape", default="24,64,64")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--per-step", type=int, default=4)
    parser.add_argument("--k", type=int, default=12)
    parser.add_argument("--t", type=int, default=5)
    parser.add_argument("--tau", type=float, default=2.5e-3)
    parser.add_argument("--strategy", default="tau")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--matrix", type=int, default=64, help="network matrix (profile override)")
    parser.add_argument("--profile", default="tiny", help="network profile (the demo uses fast)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    network = {"max_epochs": args.epochs, "batch_size": args.batch_size, "patience": 0, "augment": False, "val_samples": 2,
               "matrix": args.matrix}
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp), {})
        try:
            stack.start()
            out = stack.manage("shell", "-c", SETUP.format(
                n_pool=args.n_pool, n_test=args.n_test, shape=tuple(int(v) for v in args.shape.split(",")),
                fraction=args.fraction, network=network, per_step=args.per_step, k=args.k, t=args.t,
                tau=args.tau, strategy=args.strategy, profile=args.profile))
            project = json.loads(out.strip().splitlines()[-1])["project"]
            cmd = [sys.executable, "manage.py", "simulate_annotators", "--project", str(project),
                   "--steps", str(args.steps), "--url", stack.url]
            print("$ python manage.py simulate_annotators --project", project, "--steps", args.steps, flush=True)
            subprocess.run(cmd, cwd=REPO, env=stack.env, check=True)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()

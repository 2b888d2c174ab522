"""The last answers of a step, submitted at the same instant by different annotators on
PostgreSQL: every one is stored once, and the step moves on to training exactly once.

Since the "was this the last answer?" check runs after each answer's commit without a
lock (services_queries.query_submit), this is the race that matters.
"""

from __future__ import annotations

import base64
import json
import threading

import numpy as np
import pytest

from bench.submit_latency import SETUP

pytestmark = [pytest.mark.services]

N = 12


def test_simultaneous_last_answers_move_the_step_on_once(production_stack):
    stack = production_stack
    setup = json.loads(stack.manage("shell", "-c", SETUP.format(n=N, size=16, annotators=N)).strip().splitlines()[-1])
    project, step = setup["project"], setup["step"]
    claimed = [stack.request("POST", f"/api/projects/{project}/queries/next/", token=token)
               for token in setup["tokens"]]
    assert all(status == 200 for status, _ in claimed), claimed
    assert len({q["id"] for _, q in claimed}) == N  # one query each: every query is held

    barrier, results = threading.Barrier(N), [None] * N

    def submit(i: int) -> None:
        q = claimed[i][1]
        mask = np.unpackbits(np.frombuffer(base64.b64decode(q["mask"]), np.uint8), count=16 * 16).astype(bool)
        body = {"labels": base64.b64encode(np.where(mask, 1, 255).astype(np.uint8).tobytes()).decode()}
        barrier.wait()
        results[i] = stack.request("POST", f"/api/projects/{project}/queries/{q['id']}/submit/", body,
                                   token=setup["tokens"][i])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(N)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [status for status, _ in results] == [201] * N, results
    stored = stack.get(f"/api/projects/{project}/steps/{step}/queries/")
    assert sorted(q["status"] for q in stored) == ["answered"] * N
    # The worker then trains, and fails on this project without a network: either way, once.
    body = stack.wait_for_step(project, step, {"training", "evaluating", "done", "failed"}, timeout=60)
    assert [t["state"] for t in body["transitions"]].count("training") == 1, body["transitions"]

"""``manage.py simulate_annotators --project P --steps S``: scripted annotators drive the loop.

Everything the loop sees goes through the HTTP API of a running server (``--url``),
exactly as an external client: a scripted lead starts each step and waits for it;
``--annotators`` threads take queries with ``queries/next/``, answer the queried
pixels from the scan's reference label map (read from the database: the only thing
this command reads directly) and submit them. One line per step: MAC, measured and
predicted Dice (mean over muscles, test scans), annotation time.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime

import numpy as np
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token

from backend.acquisition.demo import reference_slice
from backend.imaging.models import Scan
from backend.projects.models import Membership, Project

FINISHED = {"done", "failed", "cancelled"}


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url.rstrip("/"), token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict | list | None]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"Token {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as err:
            raw = err.read()
            return err.code, json.loads(raw) if raw else None


def scripted_user(project: Project, name: str, role: str) -> str:
    user, _ = get_user_model().objects.get_or_create(username=name)
    Membership.objects.update_or_create(project=project, user=user, defaults={"role": role})
    return Token.objects.get_or_create(user=user)[0].key


def answer_queries(client: Client, project_id: int, stats: dict, lock: threading.Lock, pace: float) -> None:
    """One annotator: take, answer and submit queries until none is left."""
    references: dict[tuple[int, int], np.ndarray] = {}
    while True:
        status, q = client.call("POST", f"/api/projects/{project_id}/queries/next/")
        if status == 204:
            return
        if status != 200:
            raise CommandError(f"queries/next answered {status}: {q}")
        shape = (q["height"], q["width"])
        mask = np.unpackbits(np.frombuffer(base64.b64decode(q["mask"]), np.uint8), count=shape[0] * shape[1])
        mask = mask.astype(bool).reshape(shape)
        key = (q["scan"], q["z"])
        if key not in references:
            references[key] = reference_slice(Scan.objects.get(pk=q["scan"]), q["z"])
        labels = np.where(mask, references[key], 255).astype(np.uint8)
        seconds = pace * q["n_queried"]  # the scripted annotator's "time" per queried pixel
        status, body = client.call("POST", f"/api/projects/{project_id}/queries/{q['id']}/submit/",
                                   {"labels": base64.b64encode(labels.tobytes()).decode(), "seconds_spent": seconds})
        if status != 201:
            raise CommandError(f"submission of query {q['id']} answered {status}: {body}")
        with lock:
            stats["answered"] += 1


def summary(client: Client, project_id: int, step: dict) -> dict:
    mac = next((row for row in client.call("GET", f"/api/projects/{project_id}/acquisition/mac/")[1]["steps"]
                if row["step_id"] == step["id"]), {})
    models = {m["step"]: m for m in client.call("GET", f"/api/projects/{project_id}/models/")[1]}
    structures = (models.get(step["id"]) or {}).get("metrics", {}).get("structures", {})

    def mean(key, kind="muscle"):
        vals = [row[key] for row in structures.values() if row["kind"] == kind and row[key] is not None]
        return float(np.mean(vals)) if vals else None

    return {"step": step["number"], "state": step["state"], "mac": mac.get("mac"),
            "queried_pixels": mac.get("queried_pixels"), "dice": mean("dice"), "asd": mean("asd"),
            "predicted_dice": mean("predicted_dice"), "bone_dice": mean("dice", "bone"),
            "seconds_spent": mac.get("seconds_spent"), "stop_reached": step["stop_reached"],
            "auto_labelled": mac.get("auto_labelled_pixels"), "auto_wrong": mac.get("auto_labelled_wrong"),
            "guard": step.get("guard"), "model_version": step.get("model_version"),
            "phase_seconds": phase_seconds(step.get("transitions") or [])}


def phase_seconds(transitions: list[dict]) -> dict[str, float]:
    """Wall seconds the step spent in each state, from its transitions ({"state", "at"} in order)."""
    out: dict[str, float] = {}
    for this, after in itertools.pairwise(transitions):
        spent = (datetime.fromisoformat(after["at"]) - datetime.fromisoformat(this["at"])).total_seconds()
        out[this["state"]] = round(out.get(this["state"], 0.0) + spent, 1)
    return out


def fmt(value, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class Command(BaseCommand):
    help = "Scripted annotators run acquisition steps through the HTTP API, answering from reference labels."

    def add_arguments(self, parser):
        parser.add_argument("--project", type=int, required=True)
        parser.add_argument("--steps", type=int, default=1)
        parser.add_argument("--url", default="http://127.0.0.1:8000")
        parser.add_argument("--annotators", type=int, default=2)
        parser.add_argument("--pace", type=float, default=0.01, help="simulated seconds per queried pixel")
        parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for one step")
        parser.add_argument("--json", action="store_true", help="print one JSON object per step")

    def handle(self, *args, project, steps, url, annotators, pace, timeout, json: bool, **options):
        proj = Project.objects.filter(pk=project).first()
        if proj is None:
            raise CommandError(f"no project {project}")
        lead = Client(url, scripted_user(proj, "sim-lead", Membership.Role.LEAD))
        clients = [Client(url, scripted_user(proj, f"sim-annotator-{i + 1}", Membership.Role.ANNOTATOR))
                   for i in range(annotators)]
        if not json:
            self.stdout.write("| step | MAC | queried px | Dice (muscles) | ASD mm | predicted Dice | time s | wall s |")
            self.stdout.write("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for _ in range(steps):
            started = time.monotonic()
            status, step = lead.call("POST", f"/api/projects/{project}/steps/", {"force": True})
            if status != 201:
                raise CommandError(f"could not start a step ({status}): {step}")
            step = self._run_step(lead, clients, project, step, pace, timeout)
            row = summary(lead, project, step) | {"wall_seconds": round(time.monotonic() - started, 1)}
            if json:
                self.stdout.write(__import__("json").dumps(row))
            else:
                self.stdout.write(f"| {row['step']} | {fmt(row['mac'])} | {row['queried_pixels']} | "
                                  f"{fmt(row['dice'], 3)} | {fmt(row['asd'], 2)} | {fmt(row['predicted_dice'], 3)} | "
                                  f"{fmt(row['seconds_spent'], 1)} | {row['wall_seconds']} |")
            if step["state"] != "done":
                raise CommandError(f"step {step['number']} ended {step['state']}: {step['reason']}")

    def _run_step(self, lead: Client, clients: list[Client], project: int, step: dict, pace: float,
                  timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        stats, lock = {"answered": 0}, threading.Lock()
        while step["state"] not in FINISHED:
            if time.monotonic() > deadline:
                raise CommandError(f"step {step['number']} still {step['state']} after {timeout} s")
            if step["state"] == "annotating":
                threads = [threading.Thread(target=answer_queries, args=(c, project, stats, lock, pace))
                           for c in clients]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            time.sleep(0.5)
            step = lead.call("GET", f"/api/projects/{project}/steps/{step['id']}/")[1]
        return step

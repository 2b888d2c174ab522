"""Access rules that are not a role rank (attaching and deleting pools, members, taken names),
each tried by every role on its own project and a foreign one, on the permission matrix's world."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from backend.imaging.models import Pool, Scan
from backend.projects.models import Membership
from tests.backend.test_permission_matrix import (
    ADM,
    A,
    L,
    world,  # noqa: F401, F811  (the shared module fixture)
)

# --- rules that are not a role rank: attaching and deleting pools, members, taken names -----------
#
# Each scenario names, per role, the status on its own side and on the foreign side (one value
# when the scenario does not depend on a side). Attaching a pool needs the admin role in every
# project using it, so it answers 400 even to members with a high enough role in the project
# they act on; a pool the caller cannot see answers like a missing one (400 "does not exist").
# A refused call must leave projects, pools, their links and memberships as they were.


@dataclass(frozen=True)
class Scenario:
    what: str
    name: str
    method: str
    body: Any  # callable (world, side, role) -> dict
    kwargs: Any  # callable (world, side, role) -> URL kwargs
    expect: dict  # role -> (own, foreign) statuses, or one status for a side-independent scenario

    @property
    def sides(self) -> tuple[str, ...]:
        return ("own", "foreign") if isinstance(next(iter(self.expect.values())), tuple) else ("own",)


def _roles(non_member, annotator, lead, admin, superuser) -> dict:
    return {"non-member": non_member, A: annotator, L: lead, ADM: admin, "superuser": superuser}


def _other(side: str) -> str:
    return "foreign" if side == "own" else "own"


def _no_kwargs(w, side, role):
    return {}


def _side_project(w, side, role):
    return {"project_id": w[side]["project"].pk}


SCENARIOS = [
    Scenario("attach a pool on create", "project-list", "POST",
             lambda w, side, role: {"name": f"made up by {role} ({side})", "pools": [w[side]["pool"].pk]},
             _no_kwargs, _roles((400, 400), (400, 400), (400, 400), (201, 400), (201, 201))),
    Scenario("attach a pool on update", "project-detail", "PATCH",
             lambda w, side, role: {"pools": [w[side]["pool"].pk]},
             lambda w, side, role: {"project_id": w["homes"][role].pk},
             _roles((400, 400), (400, 400), (400, 400), (200, 400), (200, 200))),
    Scenario("attach a pool two projects use", "project-list", "POST",
             lambda w, side, role: {"name": f"shared by {role}", "pools": [w["shared"].pk]},
             _no_kwargs, _roles(400, 400, 400, 400, 201)),
    Scenario("test scans without their pool", "project-list", "POST",
             lambda w, side, role: {"name": f"tests of {role} ({side})", "test_scans": [w[side]["scan"].pk]},
             _no_kwargs, _roles((400, 400), (400, 400), (400, 400), (400, 400), (400, 400))),
    Scenario("test scans with their pool", "project-list", "POST",
             lambda w, side, role: {"name": f"tests of {role} ({side})", "pools": [w[side]["pool"].pk],
                                    "test_scans": [w[side]["scan"].pk]},
             _no_kwargs, _roles((400, 400), (400, 400), (400, 400), (201, 400), (201, 201))),
    Scenario("delete a pool two projects use", "pool-detail", "DELETE", None,
             lambda w, side, role: {"pool_id": w["shared"].pk}, _roles(404, 403, 403, 400, 204)),
    Scenario("add an unknown user name", "project-members", "POST",
             lambda w, side, role: {"username": "nobody-at-all", "role": "admin"}, _side_project,
             _roles((404, 404), (403, 404), (403, 404), (400, 404), (400, 400))),
    Scenario("add a member as admin", "project-members", "POST",
             lambda w, side, role: {"username": "newcomer", "role": "admin"}, _side_project,
             _roles((404, 404), (403, 404), (403, 404), (201, 404), (201, 201))),
    Scenario("make a member admin", "project-member-detail", "PATCH",
             lambda w, side, role: {"role": "admin"},
             lambda w, side, role: {"project_id": w[side]["project"].pk, "user_id": w[side]["target"].pk},
             _roles((404, 404), (403, 404), (403, 404), (200, 404), (200, 200))),
    Scenario("make oneself admin", "project-member-detail", "PATCH",
             lambda w, side, role: {"role": "admin"},
             lambda w, side, role: {"project_id": w["own"]["project"].pk, "user_id": w["users"][role].pk},
             _roles(404, 403, 403, 200, 404)),  # the superuser is no member: "not a member" (404)
    Scenario("create a project with a taken name", "project-list", "POST",
             lambda w, side, role: {"name": w[side]["project"].name},
             _no_kwargs, _roles((400, 400), (400, 400), (400, 400), (400, 400), (400, 400))),
    Scenario("create a pool with a taken name", "pool-list", "POST",
             lambda w, side, role: {"project": w[side]["project"].pk, "name": w[_other(side)]["pool"].name},
             _no_kwargs, _roles((404, 404), (403, 404), (403, 404), (400, 404), (400, 400))),
    Scenario("rename a pool to a taken name", "pool-detail", "PATCH",
             lambda w, side, role: {"name": w[_other(side)]["pool"].name},
             lambda w, side, role: {"pool_id": w[side]["pool"].pk},
             _roles((404, 404), (403, 404), (403, 404), (400, 404), (400, 400))),
]
SCENARIO_CASES = [(sc, role, side) for sc in SCENARIOS for role in ("anonymous", *sc.expect) for side in sc.sides]


def _snapshot() -> tuple:
    links = Pool.projects.through.objects.order_by("pk").values_list("project_id", "pool_id")
    return (list(Pool.objects.order_by("pk").values_list("pk", "name")), list(links),
            list(Membership.objects.order_by("pk").values_list("project_id", "user_id", "role")),
            list(Scan.objects.order_by("pk").values_list("pk", flat=True)))


@pytest.mark.parametrize(("scenario", "role", "side"), SCENARIO_CASES,
                         ids=[f"{sc.what}-{role}-{side}" for sc, role, side in SCENARIO_CASES])
def test_scenario(world, db, scenario, role, side):  # noqa: F811
    client = APIClient()
    if role != "anonymous":
        client.force_authenticate(world["users"][role])
    as_role = ADM if role == "anonymous" else role  # whose objects an anonymous call aims at
    url = reverse(scenario.name, kwargs=scenario.kwargs(world, side, as_role))
    body = scenario.body(world, side, as_role) if scenario.body else None
    before = _snapshot()
    method = getattr(client, scenario.method.lower())
    response = method(url, body, format="json") if body is not None else method(url)
    if role == "anonymous":
        expected = {401, 403}
    else:
        outcome = scenario.expect[role]
        expected = {outcome[0] if side == "own" else outcome[1]} if isinstance(outcome, tuple) else {outcome}
    assert response.status_code in expected, (
        f"{scenario.what} as {role} ({side}): expected {sorted(expected)}, got {response.status_code}: "
        f"{response.content[:300]}")
    if response.status_code >= 400:
        assert _snapshot() == before, f"{scenario.what} as {role} ({side}) was refused but changed something"
        text = response.content.decode()
        for given in (body or {}).values():  # echoing the caller's own input reveals nothing
            text = text.replace(str(given), "") if isinstance(given, str) else text
        if side == "foreign" and role != "superuser":
            assert "foreign" not in text, f"{scenario.what} as {role} names a foreign object: {text[:300]}"

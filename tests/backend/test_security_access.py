"""Issue 15, items 1-3: pools cannot be taken over or deleted by attaching them, members are
added by admins only without a cheap user-name oracle, and no message names what the caller
cannot see. Each test checks the status, the message and that nothing was stored or lost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from backend.acquisition.models import Query, Segmentation, TrainingSlice
from backend.imaging import services_pools
from backend.imaging.models import ImportJob, Pool, ReferenceLabelMap, Scan
from backend.imaging.services import ImportInput, import_job_create, import_job_run
from backend.projects import access
from backend.projects.models import Membership, Project
from mltasks.geometry import Geometry
from mltasks.io import write_dicom_series
from tests.backend.factories import (
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    project_with_data,
    stored_files,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db
Role = Membership.Role


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


def messages(response) -> str:
    """The messages of an error body for a person: the field messages when fields were refused,
    else its detail (whichever error shape the API uses: {detail, code, errors} or field lists)."""
    body = response.json()
    if "errors" in body:
        return " | ".join(_strings(body["errors"]))
    if "detail" in body:
        return body["detail"]
    return " | ".join(_strings(body))


def post(client, url, body):
    return client.post(url, body, content_type="application/json")


def patch(client, url, body):
    return client.patch(url, body, content_type="application/json")


def data_of(pool: Pool) -> tuple[int, ...]:
    """What deleting ``pool`` would destroy."""
    return (Scan.objects.filter(pool=pool).count(), ReferenceLabelMap.objects.filter(scan__pool=pool).count(),
            Query.objects.filter(scan__pool=pool).count(), TrainingSlice.objects.filter(scan__pool=pool).count(),
            Segmentation.objects.filter(scan__pool=pool).count())


# --- item 1: deleting a pool --------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.LEAD])
def test_issue_scenario_a_member_cannot_attach_then_delete_another_projects_pool(client, settings, role):
    p1 = project_with_data("P1")
    pool, before, files = p1["pool"], data_of(p1["pool"]), stored_files(settings.MEDIA_ROOT)
    assert before == (2, 2, 1, 1, 1)
    client.force_login(p1["users"][role])
    made_up = post(client, reverse("project-list"), {"name": "B-own", "pools": [pool.pk]})
    assert made_up.status_code == 400, made_up.content
    assert (f"You cannot attach pool {pool.pk}: attaching a pool needs the admin role in every project "
            "that uses it") in messages(made_up)
    assert not Project.objects.filter(name="B-own").exists()
    assert list(pool.projects.all()) == [p1["project"]]
    deleted = client.delete(reverse("pool-detail", args=[pool.pk]))
    assert deleted.status_code == 403, deleted.content
    assert f"you are {role}" in messages(deleted)
    assert data_of(pool) == before and stored_files(settings.MEDIA_ROOT) == files


def test_pool_attached_before_the_fix_is_still_not_deleted_by_an_annotator_of_its_project(client, settings):
    """The data of an installation where B-own was made before the fix: B admins B-own, annotates P1."""
    p1 = project_with_data("P1")
    b = p1["users"][Role.ANNOTATOR]
    MembershipFactory(project=ProjectFactory(name="B-own", pools=[p1["pool"]]), user=b, role=Role.ADMIN)
    before, files = data_of(p1["pool"]), stored_files(settings.MEDIA_ROOT)
    client.force_login(b)
    response = client.delete(reverse("pool-detail", args=[p1["pool"].pk]))
    assert response.status_code == 400, response.content
    assert messages(response) == ("This pool is also used by projects in which you are not an admin; ask their "
                                  "admins to remove it from those projects, or a site administrator to delete it.")
    assert data_of(p1["pool"]) == before and stored_files(settings.MEDIA_ROOT) == files


def test_pool_delete_rule_with_two_memberships_and_two_admins():
    """U admins P1 and annotates P2; X admins P2: some membership of U and some admin in P2 is not enough."""
    pool = PoolFactory()
    p1, p2 = ProjectFactory(pools=[pool]), ProjectFactory(pools=[pool])
    u, x = UserFactory(), UserFactory()
    for project, user, role in ((p1, u, Role.ADMIN), (p2, u, Role.ANNOTATOR), (p2, x, Role.ADMIN),
                                (p1, x, Role.LEAD)):
        MembershipFactory(project=project, user=user, role=role)
    for user in (u, x):  # neither admins both projects
        with pytest.raises(ValidationError, match="also used by projects in which you are not an admin"):
            services_pools.pool_delete(pool=pool, user=user)
    assert Pool.objects.filter(pk=pool.pk).exists()
    Membership.objects.filter(project=p2, user=u).update(role=Role.ADMIN)
    services_pools.pool_delete(pool=pool, user=u)
    assert not Pool.objects.filter(pk=pool.pk).exists()


def test_a_superuser_and_an_admin_of_every_project_delete_a_shared_pool(client):
    pools = [PoolFactory(), PoolFactory()]
    admin = UserFactory()
    for project in (ProjectFactory(pools=pools), ProjectFactory(pools=pools)):
        MembershipFactory(project=project, user=admin, role=Role.ADMIN)
    client.force_login(admin)
    assert client.delete(reverse("pool-detail", args=[pools[0].pk])).status_code == 204
    client.force_login(UserFactory(is_superuser=True))
    assert client.delete(reverse("pool-detail", args=[pools[1].pk])).status_code == 204
    assert not Pool.objects.exists()


# --- item 2: attaching a pool ------------------------------------------------------------------


def test_issue_scenario_attaching_gives_no_rights_over_the_pool(client):
    p1 = project_with_data("P1")
    b, pool = p1["users"][Role.ANNOTATOR], p1["pool"]
    client.force_login(b)
    assert post(client, reverse("project-list"), {"name": "B-own", "pools": [pool.pk]}).status_code == 400
    renamed = patch(client, reverse("pool-detail", args=[pool.pk]), {"name": "mine now"})
    assert renamed.status_code == 403, renamed.content
    upload = post(client, reverse("import-upload-start"), {"pool": pool.pk})
    assert upload.status_code == 403, upload.content
    assert Pool.objects.get(pk=pool.pk).name == "P1 pool"
    assert not ImportJob.objects.exists()


def test_attaching_by_update_is_refused_as_by_creation(client):
    p1 = project_with_data("P1")
    lead, pool = p1["users"][Role.LEAD], p1["pool"]
    own = ProjectFactory(name="lead's own")
    MembershipFactory(project=own, user=lead, role=Role.ADMIN)
    client.force_login(lead)
    response = patch(client, reverse("project-detail", args=[own.pk]), {"pools": [pool.pk], "tau": 0.5})
    assert response.status_code == 400, response.content
    assert f"You cannot attach pool {pool.pk}" in messages(response)
    own.refresh_from_db()
    assert list(own.pools.all()) == [] and own.tau != 0.5


def test_a_foreign_pool_answers_exactly_like_a_missing_one(client):
    foreign = PoolFactory(name="secret pool")
    ProjectFactory(name="secret project", pools=[foreign])
    client.force_login(UserFactory())
    missing_id = Pool.objects.order_by("-pk").first().pk + 1000
    answers = [post(client, reverse("project-list"), {"name": "mine", "pools": [pool_id]})
               for pool_id in (foreign.pk, missing_id)]
    assert [a.status_code for a in answers] == [400, 400]
    texts = [a.content.decode().replace(str(pool_id), "ID")
             for a, pool_id in zip(answers, (foreign.pk, missing_id), strict=True)]
    assert texts[0] == texts[1] and "secret" not in texts[0]
    assert not Project.objects.filter(name="mine").exists()


def test_an_admin_of_every_project_using_a_pool_may_attach_it(client):
    p1 = project_with_data("P1")
    client.force_login(p1["users"][Role.ADMIN])
    response = post(client, reverse("project-list"), {"name": "second study", "pools": [p1["pool"].pk]})
    assert response.status_code == 201, response.content
    assert response.json()["pools"] == [p1["pool"].pk]
    ProjectFactory(name="third", pools=[p1["pool"]])  # now also used where this admin is nobody
    response = post(client, reverse("project-list"), {"name": "fourth", "pools": [p1["pool"].pk]})
    assert response.status_code == 400 and "You cannot attach pool" in messages(response)


def test_keeping_an_attached_pool_needs_no_new_rights(client):
    """A lead changes the configuration of a project whose pool is shared: no attach check applies."""
    p1 = project_with_data("P1")
    ProjectFactory(pools=[p1["pool"]])
    client.force_login(p1["users"][Role.LEAD])
    response = patch(client, reverse("project-detail", args=[p1["project"].pk]), {"pools": [p1["pool"].pk],
                                                                                  "tau": 0.25})
    assert response.status_code == 200, response.content
    assert Project.objects.get(pk=p1["project"].pk).tau == 0.25


def test_a_pool_no_project_uses_is_attached_by_a_superuser_only(client):
    creator = UserFactory()
    orphan = PoolFactory(created_by=creator)
    client.force_login(creator)
    refused = post(client, reverse("project-list"), {"name": "creator's", "pools": [orphan.pk]})
    assert refused.status_code == 400 and "does not exist" in messages(refused)
    client.force_login(UserFactory(is_superuser=True))
    accepted = post(client, reverse("project-list"), {"name": "site's", "pools": [orphan.pk]})
    assert accepted.status_code == 201 and accepted.json()["pools"] == [orphan.pk]


def test_test_scans_cannot_reach_scans_of_a_pool_one_may_not_attach(client):
    p1 = project_with_data("P1")
    client.force_login(p1["users"][Role.ANNOTATOR])
    scan = p1["scans"][0]
    alone = post(client, reverse("project-list"), {"name": "B-own", "test_scans": [scan.pk]})
    assert alone.status_code == 400 and "not in any pool of this project" in messages(alone)
    both = post(client, reverse("project-list"), {"name": "B-own", "pools": [p1["pool"].pk],
                                                  "test_scans": [scan.pk]})
    assert both.status_code == 400 and "You cannot attach pool" in messages(both)
    assert not Project.objects.filter(name="B-own").exists()


# --- item 3: members and names -------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.ANNOTATOR, Role.LEAD, None])
def test_only_admins_add_members_and_others_learn_nothing_about_user_names(client, role):
    project = ProjectFactory()
    MembershipFactory(project=project, role=Role.ADMIN)
    UserFactory(username="exists")
    caller = MembershipFactory(project=project, role=role).user if role else UserFactory()
    client.force_login(caller)
    url = reverse("project-members", args=[project.pk])
    answers = [post(client, url, {"username": name, "role": "admin"}) for name in ("exists", "nobody")]
    assert [a.status_code for a in answers] == [403, 403] if role else [404, 404]
    assert answers[0].json() == answers[1].json()
    assert "exists" not in messages(answers[0]) and "nobody" not in messages(answers[0])
    assert project.memberships.count() == (2 if role else 1)


def test_an_admin_adds_existing_users_with_any_role(client):
    project = ProjectFactory()
    client.force_login(MembershipFactory(project=project, role=Role.ADMIN).user)
    UserFactory(username="colleague")
    response = post(client, reverse("project-members", args=[project.pk]), {"username": "colleague", "role": "admin"})
    assert response.status_code == 201 and response.json()["role"] == "admin"
    unknown = post(client, reverse("project-members", args=[project.pk]), {"username": "nobody", "role": "lead"})
    assert unknown.status_code == 400
    assert messages(unknown) == ("No user named 'nobody'; check the spelling, or ask a site administrator "
                                 "to create the account.")


def test_unknown_user_names_are_rationed_so_names_cannot_be_enumerated(client, monkeypatch):
    monkeypatch.setattr(access, "UNKNOWN_USERNAMES_PER_HOUR", 3)
    project = ProjectFactory()
    client.force_login(MembershipFactory(project=project, role=Role.ADMIN).user)
    UserFactory(username="real")
    url = reverse("project-members", args=[project.pk])
    assert [post(client, url, {"username": f"guess{k}", "role": "annotator"}).status_code
            for k in range(3)] == [400, 400, 400]
    answers = [post(client, url, {"username": name, "role": "annotator"}) for name in ("real", "guess9")]
    assert [a.status_code for a in answers] == [429, 429]
    assert answers[0].json() == answers[1].json()
    assert "Too many user names that do not exist were tried" in messages(answers[0])
    assert project.memberships.count() == 1
    client.force_login(UserFactory(is_superuser=True))  # superusers see every account in the admin site anyway
    assert post(client, url, {"username": "real", "role": "annotator"}).status_code == 201


@pytest.mark.parametrize(("url_name", "body"), [
    ("project-list", {"name": "Their study"}),
    ("pool-list", {"name": "Their pool"}),
])
def test_a_taken_name_is_refused_without_saying_what_holds_it(client, url_name, body):
    ProjectFactory(name="Their study", pools=[PoolFactory(name="Their pool")])
    mine = ProjectFactory(name="mine")
    client.force_login(MembershipFactory(project=mine, role=Role.ADMIN).user)
    response = post(client, reverse(url_name), {**body, "project": mine.pk})
    assert response.status_code == 400, response.content
    assert messages(response) == f"The name {body['name']!r} is taken; choose another."
    assert (Project.objects.count(), Pool.objects.count()) == (2, 1)


def test_renaming_a_pool_to_a_taken_name_says_only_that_it_is_taken(client):
    PoolFactory(name="Hospital B")
    mine = ProjectFactory(pools=[PoolFactory(name="Hospital A")])
    client.force_login(MembershipFactory(project=mine, role=Role.ADMIN).user)
    response = patch(client, reverse("pool-detail", args=[mine.pools.get().pk]), {"name": "Hospital B"})
    assert response.status_code == 400
    assert messages(response) == "The name 'Hospital B' is taken; choose another."
    assert mine.pools.get().name == "Hospital A"


GEOMETRY = Geometry(shape=(3, 12, 10), spacing=(2.0, 1.5, 1.5))


def _import(pool, user, path: Path) -> ImportJob:
    job = import_job_create(pool=pool, user=user, inputs=[ImportInput(path, path.name)], schedule=False)
    return import_job_run(job=ImportJob.objects.get(pk=job.pk))


def test_a_duplicate_series_in_an_invisible_pool_is_named_without_describing_that_pool(tmp_path):
    hu = np.random.default_rng(0).integers(-1000, 1000, size=GEOMETRY.shape).astype(np.int16)
    write_dicom_series(hu, GEOMETRY, tmp_path / "first", series_uid="1.2.840.15")
    write_dicom_series(hu + 1, GEOMETRY, tmp_path / "again", series_uid="1.2.840.15")
    hidden = PoolFactory(name="Hidden hospital")
    ProjectFactory(name="Hidden study", pools=[hidden])
    assert _import(hidden, None, tmp_path / "first").status == "done"
    mine = ProjectFactory(pools=[PoolFactory(name="mine")])
    lead = MembershipFactory(project=mine, role=Role.LEAD).user
    job = _import(mine.pools.get(), lead, tmp_path / "again")
    error = job.results[0]["error"]
    assert error == ("again: series 1.2.840.15 is already imported outside the projects you belong to; "
                     "ask a site administrator; it was not imported again")
    assert Scan.objects.get().pool == hidden


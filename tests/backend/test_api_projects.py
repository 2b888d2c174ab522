"""Projects, memberships, pools and label sets through the API."""

import numpy as np
import pytest
from django.urls import reverse

from backend.imaging.models import Pool
from backend.projects.models import Membership, Project
from tests.backend.factories import (
    LabelSetFactory,
    MembershipFactory,
    PoolFactory,
    ProjectFactory,
    UserFactory,
    scan_with_volume,
    use_tmp_storage,
)

pytestmark = pytest.mark.django_db
Role = Membership.Role


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    use_tmp_storage(settings, tmp_path)


@pytest.fixture
def lead_client(client):
    project = ProjectFactory(label_set=LabelSetFactory(labels__n=3), pools=[PoolFactory()])
    membership = MembershipFactory(project=project, role=Role.LEAD)
    MembershipFactory(project=project, role=Role.ADMIN)
    client.force_login(membership.user)
    client.project = project
    return client


def _patch(client, url, body):
    return client.patch(url, body, content_type="application/json")


def field_errors(response, field: str) -> list[str]:
    """The messages of one refused field, in the API's error shape ({detail, code, errors})."""
    body = response.json()
    return body.get("errors", body)[field]


def test_creator_of_a_project_becomes_its_admin_and_the_default_label_set_applies(client):
    user = UserFactory()
    client.force_login(user)
    response = client.post(reverse("project-list"), {"name": "Hip study"}, content_type="application/json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["my_role"] == "admin"
    assert Membership.objects.get(project_id=body["id"], user=user).role == Role.ADMIN
    assert Project.objects.get(pk=body["id"]).label_set.name == "Hip and thigh (Hiasa 2019)"
    assert (body["tau"], body["mc_samples"], body["network_profile"]) == (2.5e-3, 10, "fast")


def test_lead_changes_the_configuration(lead_client):
    url = reverse("project-detail", args=[lead_client.project.pk])
    response = _patch(lead_client, url, {"tau": 1e-3, "slices_per_step": 5, "k_uncertain": 20,
                                         "mc_samples": 4, "network_profile": "tiny",
                                         "network_config": {"width": 4, "max_epochs": 3},
                                         "stop_target_dice": 0.9})
    assert response.status_code == 200, response.json()
    project = Project.objects.get(pk=lead_client.project.pk)
    assert (project.tau, project.slices_per_step, project.k_uncertain, project.mc_samples) == (1e-3, 5, 20, 4)
    assert project.network_config == {"width": 4, "max_epochs": 3}


@pytest.mark.parametrize(("body", "field", "words"), [
    ({"tau": -1}, "tau", "greater than or equal to 0"),
    ({"mc_samples": 1}, "mc_samples", "greater than or equal to 2"),
    ({"stop_target_dice": 1.5}, "stop_target_dice", "less than or equal to 1"),
    ({"network_profile": "huge"}, "network_profile", "Unknown network profile 'huge'; choose one of paper"),
    ({"network_config": {"colour": 3}}, "network_config", "Unknown network option(s) colour"),
    ({"network_config": {"width": "wide"}}, "network_config", "'width' must be an integer"),
    ({"network_config": {"depth": 9}}, "network_config", "'depth' must be between 1 and 8"),
    ({"network_config": {"depth": 8, "matrix": 100}}, "network_config", "not divisible by 2**(depth-1)"),
    ({"pools": [987654]}, "pools", 'Invalid pk "987654" - object does not exist.'),
])
def test_invalid_configuration_is_a_readable_400(lead_client, body, field, words):
    response = _patch(lead_client, reverse("project-detail", args=[lead_client.project.pk]), body)
    assert response.status_code == 400
    messages = field_errors(response, field)
    assert any(words in message for message in messages), messages


def test_test_scans_must_come_from_the_project_pools(lead_client):
    own_pool = lead_client.project.pools.get()
    other_pool = PoolFactory()
    # The lead administers a second project using the other pool, so it may be attached; the rule still applies.
    MembershipFactory(project=ProjectFactory(pools=[other_pool]), user=Membership.objects.filter(
        project=lead_client.project, role=Role.LEAD).get().user, role=Role.ADMIN)
    scan = scan_with_volume(other_pool, np.zeros((1, 4, 4), np.int16), name="elsewhere")
    url = reverse("project-detail", args=[lead_client.project.pk])
    response = _patch(lead_client, url, {"test_scans": [scan.pk]})
    assert response.status_code == 400
    assert "not in any pool of this project; add their pools first" in field_errors(response, "test_scans")[0]
    response = _patch(lead_client, url, {"pools": [own_pool.pk, other_pool.pk], "test_scans": [scan.pk]})
    assert response.status_code == 200
    assert response.json()["test_scans"] == [scan.pk]


def test_foreign_pools_cannot_be_attached_and_do_not_leak(lead_client):
    foreign = PoolFactory()
    response = _patch(lead_client, reverse("project-detail", args=[lead_client.project.pk]), {"pools": [foreign.pk]})
    assert response.status_code == 400
    assert field_errors(response, "pools") == [f'Invalid pk "{foreign.pk}" - object does not exist.']


def test_admin_adds_changes_and_removes_members(client):
    project = ProjectFactory()
    admin = MembershipFactory(project=project, role=Role.ADMIN).user
    newcomer = UserFactory(username="newcomer")
    client.force_login(admin)
    members = reverse("project-members", args=[project.pk])
    response = client.post(members, {"username": "newcomer", "role": "annotator"}, content_type="application/json")
    assert response.status_code == 201 and response.json()["role"] == "annotator"
    detail = reverse("project-member-detail", args=[project.pk, newcomer.pk])
    assert _patch(client, detail, {"role": "lead"}).json()["role"] == "lead"
    assert Membership.objects.get(project=project, user=newcomer).role == Role.LEAD
    assert client.delete(detail).status_code == 204
    assert not Membership.objects.filter(project=project, user=newcomer).exists()
    assert [m["username"] for m in client.get(members).json()] == [admin.username]


def test_membership_mistakes_are_explained(client):
    project = ProjectFactory()
    admin = MembershipFactory(project=project, role=Role.ADMIN).user
    client.force_login(admin)
    members = reverse("project-members", args=[project.pk])
    response = client.post(members, {"username": "nobody", "role": "lead"}, content_type="application/json")
    assert response.status_code == 400 and "No user named 'nobody'" in field_errors(response, "username")[0]
    response = client.post(members, {"username": admin.username, "role": "lead"}, content_type="application/json")
    assert "already a member" in field_errors(response, "username")[0]
    detail = reverse("project-member-detail", args=[project.pk, admin.pk])
    response = _patch(client, detail, {"role": "annotator"})
    assert response.status_code == 400 and "last admin" in field_errors(response, "role")[0]
    assert client.delete(detail).status_code == 400
    assert client.delete(reverse("project-member-detail", args=[project.pk, 987654])).status_code == 404


def test_lists_show_only_what_the_user_may_see(client):
    own = ProjectFactory(name="mine", pools=[PoolFactory(name="my pool")])
    ProjectFactory(name="theirs", pools=[PoolFactory(name="their pool")])
    client.force_login(MembershipFactory(project=own, role=Role.ANNOTATOR).user)
    assert [p["name"] for p in client.get(reverse("project-list")).json()] == ["mine"]
    assert [p["name"] for p in client.get(reverse("pool-list")).json()] == ["my pool"]


def test_admin_creates_a_pool_in_the_project_and_lists_its_scans(client):
    project = ProjectFactory()
    client.force_login(MembershipFactory(project=project, role=Role.ADMIN).user)
    response = client.post(reverse("pool-list"), {"project": project.pk, "name": "Hospital A"},
                           content_type="application/json")
    assert response.status_code == 201, response.json()
    pool_id = response.json()["id"]
    assert list(project.pools.values_list("pk", flat=True)) == [pool_id]
    scan = scan_with_volume(project.pools.get(), np.zeros((2, 8, 8), np.int16), name="case 1")
    scans = client.get(reverse("pool-scans", args=[pool_id])).json()
    assert [(s["id"], s["shape"]) for s in scans] == [(scan.pk, [2, 8, 8])]
    again = client.post(reverse("pool-list"), {"project": project.pk, "name": "Hospital A"},
                        content_type="application/json")
    assert again.status_code == 400
    assert field_errors(again, "name") == ["The name 'Hospital A' is taken; choose another."]


def test_shared_pool_is_not_deleted_by_the_admin_of_one_project(client):
    pool = PoolFactory()
    mine = ProjectFactory(pools=[pool])
    ProjectFactory(pools=[pool])
    client.force_login(MembershipFactory(project=mine, role=Role.ADMIN).user)
    response = client.delete(reverse("pool-detail", args=[pool.pk]))
    assert response.status_code == 400
    assert "also used by projects in which you are not an admin" in field_errors(response, "pool")[0]
    assert Pool.objects.filter(pk=pool.pk).exists()


def test_label_set_is_created_with_its_labels_and_pairs(client):
    client.force_login(UserFactory())
    body = {"name": "Thigh, sided", "labels": [
        {"value": 1, "name": "femur_left", "kind": "bone", "colour": "#ffffff", "side": "left", "pair": 2},
        {"value": 2, "name": "femur_right", "kind": "bone", "colour": "#eeeeee", "side": "right", "pair": 1},
    ]}
    response = client.post(reverse("label-set-list"), body, content_type="application/json")
    assert response.status_code == 201, response.json()
    labels = response.json()["labels"]
    assert [(lab["value"], lab["pair"]) for lab in labels] == [(1, 2), (2, 1)]
    detail = client.get(reverse("label-set-detail", args=[response.json()["id"]])).json()
    assert detail["name"] == "Thigh, sided"
    body["name"] = "duplicates"
    body["labels"][1]["value"] = 1
    response = client.post(reverse("label-set-list"), body, content_type="application/json")
    assert response.status_code == 400 and "appear more than once" in field_errors(response, "labels")[0]


def test_token_endpoint_gives_a_token_that_authenticates(client):
    UserFactory(username="script")
    response = client.post(reverse("auth-token"), {"username": "script", "password": "pw-123456"},
                           content_type="application/json")
    assert response.status_code == 200
    token = response.json()["token"]
    assert client.get(reverse("project-list"), HTTP_AUTHORIZATION=f"Token {token}").status_code == 200
    wrong = client.post(reverse("auth-token"), {"username": "script", "password": "nope"},
                        content_type="application/json")
    assert wrong.status_code in (401, 403) and wrong.json()["detail"] == "Wrong username or password."

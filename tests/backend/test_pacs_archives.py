"""Configuring DICOMweb archives: checked against the archive before anything is stored, the
password encrypted at rest and never answered, and only site administrators configure."""

from __future__ import annotations

import pytest
from django.db import connection

from backend.imaging.models import DicomWebArchive
from backend.imaging.pacs.secrets import decrypt_password
from tests.backend.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.orthanc import free_port

pytestmark = pytest.mark.django_db
URL = "/api/pacs/archives/"


@pytest.fixture
def site_admin(client):
    client.force_login(UserFactory(username="site-admin", is_superuser=True, is_staff=True))
    return client


def _config(server, **changes) -> dict:
    return {"name": "Hospital PACS", "url": server.dicomweb_url, "username": server.username,
            "password": server.password, **changes}


def _refused(response, status: int, code: str, says: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["code"] == code, body
    assert says in body["detail"], body["detail"]
    assert not DicomWebArchive.objects.exists()


def test_an_archive_that_answers_is_stored_with_its_password_encrypted(site_admin, orthanc):
    response = site_admin.post(URL, _config(orthanc), content_type="application/json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["url"] == orthanc.dicomweb_url and body["has_password"] is True
    assert "password" not in body and orthanc.password not in response.content.decode()
    archive = DicomWebArchive.objects.get()
    assert orthanc.password not in archive.password_encrypted
    with connection.cursor() as cursor:  # nowhere in the row as the database holds it
        cursor.execute("SELECT * FROM imaging_dicomwebarchive")
        assert not any(orthanc.password in str(value) for value in cursor.fetchone())
    assert decrypt_password(archive.password_encrypted, archive_name=archive.name) == orthanc.password
    listed = site_admin.get(URL).json()
    assert [a["name"] for a in listed] == ["Hospital PACS"] and "password" not in listed[0]


def test_an_unreachable_archive_is_refused_and_nothing_is_stored(site_admin):
    response = site_admin.post(URL, {"name": "x", "url": f"http://127.0.0.1:{free_port()}/dicom-web"},
                               content_type="application/json")
    _refused(response, 400, "pacs_unreachable", "cannot be reached")


def test_a_wrong_password_is_refused_and_nothing_is_stored(site_admin, orthanc):
    response = site_admin.post(URL, _config(orthanc, password="wrong"), content_type="application/json")
    _refused(response, 400, "pacs_refused", "refused the user name or password")


def test_an_address_without_dicomweb_is_refused_and_nothing_is_stored(site_admin, orthanc):
    response = site_admin.post(URL, _config(orthanc, url=f"{orthanc.url}/no-dicomweb-here"),
                               content_type="application/json")
    _refused(response, 400, "pacs_not_dicomweb", "has no DICOMweb service there")


@pytest.mark.parametrize(("url", "says"), [
    ("not a url", "http:// or https://"),
    ("ftp://pacs.example.org/dicom-web", "http:// or https://"),
    ("http://pacs.example.org:99999/dicom-web", "port is not valid"),
    ("", "may not be blank"),
])
def test_a_bad_url_is_refused_and_nothing_is_stored(site_admin, url, says):
    response = site_admin.post(URL, {"name": "x", "url": url}, content_type="application/json")
    _refused(response, 400, "invalid", says)


def test_a_second_archive_of_the_same_name_is_refused(site_admin, orthanc):
    assert site_admin.post(URL, _config(orthanc), content_type="application/json").status_code == 201
    response = site_admin.post(URL, _config(orthanc), content_type="application/json")
    assert response.status_code == 400 and "exists already" in response.json()["detail"]
    assert DicomWebArchive.objects.count() == 1


def test_changing_the_password_keeps_it_encrypted_and_a_bad_change_keeps_the_old(site_admin, orthanc):
    archive_id = site_admin.post(URL, _config(orthanc), content_type="application/json").json()["id"]
    response = site_admin.patch(f"{URL}{archive_id}/", {"password": "wrong"}, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "pacs_refused"
    archive = DicomWebArchive.objects.get()
    assert decrypt_password(archive.password_encrypted, archive_name=archive.name) == orthanc.password
    response = site_admin.patch(f"{URL}{archive_id}/", {"name": "Renamed"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["name"] == "Renamed"


def test_a_changed_key_makes_the_stored_password_unreadable_with_a_clear_message(site_admin, orthanc, settings):
    archive_id = site_admin.post(URL, _config(orthanc), content_type="application/json").json()["id"]
    settings.MYOLABEL_PACS_KEY = "another key"
    response = site_admin.get(f"{URL}{archive_id}/studies/")
    assert response.status_code == 409 and response.json()["code"] == "credentials_unreadable"
    assert "enter it again" in response.json()["detail"]


@pytest.mark.parametrize("role", ["admin", "lead", "annotator"])
def test_only_site_administrators_configure_archives(client, role):
    user = UserFactory()
    MembershipFactory(user=user, project=ProjectFactory(), role=role)
    client.force_login(user)
    response = client.post(URL, {"name": "x", "url": "http://127.0.0.1:1/dicom-web"}, content_type="application/json")
    assert response.status_code == 403 and "site administrators" in response.json()["detail"]
    archive = DicomWebArchive.objects.create(name="PACS", url="http://127.0.0.1:1/dicom-web")
    assert client.delete(f"{URL}{archive.id}/").status_code == 403
    assert client.patch(f"{URL}{archive.id}/", {"name": "y"}, content_type="application/json").status_code == 403
    assert DicomWebArchive.objects.get().name == "PACS"


def test_leads_list_archives_and_annotators_do_not(client):
    DicomWebArchive.objects.create(name="PACS", url="http://127.0.0.1:1/dicom-web")
    lead, annotator = UserFactory(), UserFactory()
    project = ProjectFactory()
    MembershipFactory(user=lead, project=project, role="lead")
    MembershipFactory(user=annotator, project=project, role="annotator")
    client.force_login(lead)
    assert [a["name"] for a in client.get(URL).json()] == ["PACS"]
    client.force_login(annotator)
    assert client.get(URL).status_code == 403


def test_an_intranet_host_name_without_a_dot_is_a_valid_address(site_admin):
    # Refused for not answering, not for its form: "pacs01" is how hospitals name their archives.
    response = site_admin.post(URL, {"name": "x", "url": "http://pacs01:8042/dicom-web"},
                               content_type="application/json")
    _refused(response, 400, "pacs_unreachable", "cannot be reached")
    response = site_admin.post(URL, {"name": "x", "url": f"http://localhost:{free_port()}/dicom-web"},
                               content_type="application/json")
    _refused(response, 400, "pacs_unreachable", "cannot be reached")

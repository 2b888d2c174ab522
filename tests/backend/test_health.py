import pytest
from django.urls import reverse


@pytest.mark.django_db
def test_health_reports_every_check_and_503_without_a_worker(client):
    response = client.get(reverse("health"))
    body = response.json()
    assert set(body["checks"]) == {"database", "broker", "worker", "channel_layer", "phases"}
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["channel_layer"]["ok"] is True
    # No worker runs inside the unit tests: the endpoint must say so, not hang or pass.
    assert body["checks"]["worker"]["ok"] is False
    assert "no Celery worker answered" in body["checks"]["worker"]["detail"]
    assert body["status"] == "degraded"
    assert response.status_code == 503


@pytest.mark.django_db
def test_diagnostics_ping_is_for_admins_only(client, django_user_model):
    user = django_user_model.objects.create_user("annotator", password="pw-123456")
    client.force_login(user)
    assert client.post(reverse("diagnostics-ping"), {"steps": 2}).status_code == 403

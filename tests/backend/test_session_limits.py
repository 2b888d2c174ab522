"""Sessions end MYOLABEL_SESSION_IDLE_MINUTES after the last request and MYOLABEL_SESSION_HOURS
after login, whatever happens in between; time is moved by time-machine, never slept."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib.sessions.models import Session
from django.utils import timezone

from backend.core import fastpath
from tests.backend.factories import UserFactory

pytestmark = pytest.mark.django_db

PAGE, API = "/", "/api/projects/"


@pytest.fixture(autouse=True)
def _defaults(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.MYOLABEL_SESSION_IDLE_SECONDS = 3600
    settings.MYOLABEL_SESSION_ABSOLUTE_SECONDS = 12 * 3600


@pytest.fixture
def clock():
    with time_machine.travel(timezone.now(), tick=False) as traveller:
        yield traveller


def log_in(client) -> str:
    UserFactory(username="anna")
    response = client.post("/accounts/login/", {"username": "anna", "password": "pw-123456"})
    assert response.status_code == 302
    return client.cookies["sessionid"].value


def session_row(key: str) -> Session | None:
    return Session.objects.filter(session_key=key).first()


def test_an_idle_session_ends_after_an_hour_and_says_why(client, clock):
    key = log_in(client)
    clock.shift(timedelta(minutes=59))
    assert client.get(API).status_code == 200  # counts as activity
    clock.shift(timedelta(minutes=59))
    assert client.get(API).status_code == 200  # 59 minutes after the previous request
    clock.shift(timedelta(minutes=61))
    ended = client.get(API)
    assert ended.status_code == 401
    assert ended.json() == {"detail": "Your session ended after 60 minutes without activity. Log in again.",
                            "code": "session_expired"}
    assert session_row(key) is None  # the server forgot it, not only the browser
    assert client.get(API).status_code == 403  # an anonymous client from now on
    page = client.get(PAGE)
    assert page.status_code == 302 and page.url.startswith("/accounts/login/")


def test_a_page_request_after_the_idle_limit_goes_to_the_login_page_with_the_reason(client, clock):
    log_in(client)
    clock.shift(timedelta(minutes=61))
    page = client.get(PAGE, follow=True)
    assert page.redirect_chain[-1][0].startswith("/accounts/login/")
    assert "Your session ended after 60 minutes without activity" in page.content.decode()


def test_activity_is_written_at_most_once_a_minute(client, clock):
    key = log_in(client)
    written = session_row(key).session_data
    for _ in range(10):  # the annotator's requests, a few seconds apart
        clock.shift(timedelta(seconds=5))
        assert client.get(API).status_code == 200
        assert session_row(key).session_data == written
    clock.shift(timedelta(seconds=11))  # 61 s after login
    assert client.get(API).status_code == 200
    assert session_row(key).session_data != written


def test_a_session_ends_twelve_hours_after_login_however_busy(client, clock):
    key = log_in(client)
    expiry = session_row(key).expire_date
    assert expiry == timezone.now() + timedelta(hours=12)
    for _ in range(23):  # a request every 30 minutes up to 11.5 h
        clock.shift(timedelta(minutes=30))
        assert client.get(API).status_code == 200
    assert session_row(key).expire_date == expiry  # activity never pushed it back
    clock.shift(timedelta(minutes=31))
    assert client.get(API).status_code == 403
    page = client.get(PAGE)
    assert page.status_code == 302 and page.url.startswith("/accounts/login/")


def test_limits_follow_the_settings(client, clock, settings):
    settings.MYOLABEL_SESSION_IDLE_SECONDS = 10 * 60
    settings.MYOLABEL_SESSION_ABSOLUTE_SECONDS = 2 * 3600
    key = log_in(client)
    assert session_row(key).expire_date == timezone.now() + timedelta(hours=2)
    clock.shift(timedelta(minutes=9))
    assert client.get(API).status_code == 200
    clock.shift(timedelta(minutes=11))
    assert client.get(API).json()["code"] == "session_expired"


def test_the_fast_paths_refuse_an_idle_session(client, clock):
    key = log_in(client)
    headers = {b"cookie": f"sessionid={key}".encode()}
    user_id = fastpath.session_user_id(headers)
    assert user_id is not None
    clock.shift(timedelta(minutes=61))
    assert fastpath.session_user_id(headers) is None
    assert session_row(key) is not None  # only Django's next request ends it


def _session_with_activity(seconds_ago: int) -> str:
    """A logged-in session whose last request was ``seconds_ago`` seconds ago."""
    from django.test import Client

    from backend.core.session_limits import ACTIVITY_KEY

    browser = Client()
    browser.force_login(UserFactory())
    session = browser.session
    session[ACTIVITY_KEY] = int(timezone.now().timestamp()) - seconds_ago
    session.save()
    return session.session_key


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_websocket_with_an_idle_session_is_refused():
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from backend.myolabel.asgi import application

    async def connect(key: str):
        headers = [(b"origin", b"http://127.0.0.1"), (b"cookie", f"sessionid={key}".encode())]
        communicator = WebsocketCommunicator(application, "/ws/events/", headers=headers)
        connected, code = await communicator.connect(timeout=5)
        if connected:
            await communicator.disconnect()
        return connected, code

    assert (await connect(await database_sync_to_async(_session_with_activity)(60)))[0] is True
    assert await connect(await database_sync_to_async(_session_with_activity)(3601)) == (False, 4401)

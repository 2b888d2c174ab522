"""Failed logins lock a (user name, address) pair out, on both login pages and at the token
endpoint; the address comes from X-Forwarded-For only when a trusted proxy sends it."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from tests.backend.factories import UserFactory

pytestmark = pytest.mark.django_db

GOOD = "pw-123456"
LIMIT = 5
LOCKED = "Too many failed logins for this user name from your address"


@pytest.fixture(autouse=True)
def _fast_limits(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.AXES_FAILURE_LIMIT = LIMIT
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)
    settings.MYOLABEL_TRUSTED_PROXIES = []


def fresh_ip() -> str:
    # Throttle counters live in the cache (Redis on the PostgreSQL pass) for a minute: a new
    # address per test keeps one test's counts out of the next.
    return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"


def page_login(client, url: str, username: str, password: str, ip: str, **headers):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip, **headers)


def token_login(client, username: str, password: str, ip: str, **headers):
    return client.post(reverse("auth-token"), {"username": username, "password": password},
                       content_type="application/json", REMOTE_ADDR=ip, **headers)


def attempts():
    """django-axes' failure records (imported here: the tests must fail, not error, without axes)."""
    from axes.models import AccessAttempt

    return AccessAttempt.objects


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.parametrize("url", ["/accounts/login/", "/admin/login/"])
def test_login_page_locks_the_pair_out_until_the_cool_off_ends(client, url):
    alice = UserFactory(username="alice", is_staff=True)
    UserFactory(username="bob", is_staff=True)
    ip = fresh_ip()
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(LIMIT - 1):
            wrong = page_login(client, url, "alice", "guess", ip)
            assert wrong.status_code == 200 and not logged_in(client)
        locked = page_login(client, url, "alice", "guess", ip)
        assert locked.status_code == 429
        assert LOCKED in locked.content.decode() and "15 minutes" in locked.content.decode()
        # The right password does not open a locked pair, and the try does not extend the lock.
        right = page_login(client, url, "alice", GOOD, ip)
        assert right.status_code == 429 and not logged_in(client)
        assert attempts().get(username="alice", ip_address=ip).failures_since_start == LIMIT
        # Neither another user from that address nor alice from another address is locked.
        assert page_login(client, url, "bob", GOOD, ip).status_code == 302 and logged_in(client)
        client.logout()
        assert page_login(client, url, "alice", GOOD, fresh_ip()).status_code == 302 and logged_in(client)
        client.logout()
        clock.shift(timedelta(minutes=14))
        assert page_login(client, url, "alice", GOOD, ip).status_code == 429 and not logged_in(client)
        clock.shift(timedelta(minutes=2))
        assert page_login(client, url, "alice", GOOD, ip).status_code == 302 and logged_in(client)
    alice.refresh_from_db()
    assert alice.last_login is not None
    assert not attempts().filter(username="alice", ip_address=ip).exists()  # cleared by the login


def test_a_good_login_resets_nothing_for_other_users(client):
    UserFactory(username="alice")
    UserFactory(username="bob")
    ip = fresh_ip()
    for _ in range(LIMIT - 2):
        page_login(client, "/accounts/login/", "alice", "guess", ip)
    assert page_login(client, "/accounts/login/", "bob", GOOD, ip).status_code == 302
    assert token_login(client, "bob", GOOD, ip).status_code == 200
    assert attempts().get(username="alice", ip_address=ip).failures_since_start == LIMIT - 2
    client.logout()
    # Alice's own attempts still count: two more failures lock her out.
    page_login(client, "/accounts/login/", "alice", "guess", ip)
    assert page_login(client, "/accounts/login/", "alice", "guess", ip).status_code == 429


def test_token_endpoint_answers_401_then_locks_the_pair_out(client):
    alice = UserFactory(username="alice")
    ip = fresh_ip()
    for _ in range(LIMIT - 1):
        wrong = token_login(client, "alice", "guess", ip)
        assert wrong.status_code == 401
        assert wrong.json()["detail"] == "Wrong username or password."
        assert wrong.headers["WWW-Authenticate"].startswith("Token")
    locked = token_login(client, "alice", "guess", ip)
    assert locked.status_code == 429 and LOCKED in locked.json()["detail"]
    right = token_login(client, "alice", GOOD, ip)
    assert right.status_code == 429 and LOCKED in right.json()["detail"]
    assert not Token.objects.filter(user=alice).exists()
    # The login page shares the lock: it is one account and one address.
    assert page_login(client, "/accounts/login/", "alice", GOOD, ip).status_code == 429
    assert token_login(client, "alice", GOOD, fresh_ip()).status_code == 200


def test_a_new_x_forwarded_for_each_time_does_not_reset_the_count(client):
    UserFactory(username="alice")
    ip = fresh_ip()
    for n in range(LIMIT):
        token_login(client, "alice", "guess", ip, HTTP_X_FORWARDED_FOR=f"198.51.100.{n + 1}")
    assert token_login(client, "alice", GOOD, ip, HTTP_X_FORWARDED_FOR="198.51.100.99").status_code == 429
    assert set(attempts().values_list("ip_address", flat=True)) == {ip}


def test_the_token_throttle_counts_the_peer_not_its_x_forwarded_for(client):
    ip = fresh_ip()
    # Different user names: the lock-out never triggers, only the throttle (30 a minute) can.
    codes = [token_login(client, f"nobody{n}", "guess", ip, HTTP_X_FORWARDED_FOR=f"198.51.100.{n + 1}").status_code
             for n in range(31)]
    assert codes[:30] == [401] * 30
    assert codes[30] == 429
    throttled = token_login(client, "nobody", "guess", ip, HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert throttled.status_code == 429 and "throttled" in throttled.json()["detail"]
    assert token_login(client, "nobody", "guess", fresh_ip()).status_code == 401  # another client


def test_a_trusted_proxys_x_forwarded_for_names_the_client(client, settings):
    settings.MYOLABEL_TRUSTED_PROXIES = ["10.250.0.0/24"]
    UserFactory(username="alice")
    proxy, client_a, client_b = "10.250.0.7", fresh_ip(), fresh_ip()
    for _ in range(LIMIT):
        # The client wrote the left-most entry itself; the right-most untrusted one is what the proxy saw.
        token_login(client, "alice", "guess", proxy, HTTP_X_FORWARDED_FOR=f"6.6.6.6, {client_a}")
    assert set(attempts().values_list("ip_address", flat=True)) == {client_a}
    assert token_login(client, "alice", GOOD, proxy, HTTP_X_FORWARDED_FOR=client_a).status_code == 429
    assert token_login(client, "alice", GOOD, proxy, HTTP_X_FORWARDED_FOR=client_b).status_code == 200
    # The same header from a peer that is not a proxy is ignored.
    assert token_login(client, "alice", "guess", client_b, HTTP_X_FORWARDED_FOR=client_a).status_code == 401
    assert attempts().filter(ip_address=client_b).count() == 1

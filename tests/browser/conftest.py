"""Headless Debian chromium driven by Playwright; never a downloaded browser."""

from __future__ import annotations

import base64
import functools
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
STATIC = Path(__file__).resolve().parents[2] / "frontend" / "static"


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
        pytest.skip("browser tests need Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; Django's ORM in the same
    # thread (test data, assertions) is still synchronous, so its async guard must be off.
    # Restored afterwards: later tests (the deployment check) must not inherit it.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="session")
def static_server():
    """The frontend's static folder over HTTP (ES modules do not load from file://)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(STATIC))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def module_page(browser, static_server):
    """A blank page with `window.core` = the annotator's core module."""
    page = browser.new_page()
    page.goto(static_server + "/myolabel/base.css")
    page.evaluate("async (url) => { window.core = await import(url); }",
                  static_server + "/myolabel/js/annotator/core.js")
    yield page
    page.close()


# --- End-to-end pages against a running Django --------------------------------------------------


@pytest.fixture(scope="session")
def urls_loaded():
    """Import every API module once per session (torch comes with the acquisition app), so
    the first page request of a test does not pay for it."""
    from django.urls import get_resolver

    assert get_resolver().url_patterns


@pytest.fixture
def plain_static(settings, urls_loaded):
    """`{% static %}` without collectstatic's manifest; the live server serves app static files itself."""
    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def app_page(browser):
    """A fresh browser context (own cookies) and page; console errors are collected in page.errors."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    # The browser asks for /favicon.ico by itself; the site has none.
    page.on("console", lambda msg: msg.type == "error" and "favicon" not in (msg.location or {}).get("url", "")
            and page.errors.append(msg.text))
    yield page
    context.close()


def log_in(page, base_url: str, username: str, password: str = "pw-123456") -> None:
    page.goto(base_url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")


@pytest.fixture(scope="session")
def asgi_server(django_db_setup):
    """The whole ASGI application (HTTP and websockets) served by daphne in a thread of this
    process, so it shares the test database; pytest-django's live_server has no websockets.

    Twisted's reactor runs once per process, hence one server per session.
    """
    # daphne.server installs the asyncio reactor: import it before anything else of Twisted.
    from daphne.server import Server
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from backend.myolabel.asgi import application

    ready = threading.Event()
    server = Server(ASGIStaticFilesHandler(application), endpoints=["tcp:port=0:interface=127.0.0.1"],
                    signal_handlers=False, verbosity=0, ready_callable=ready.set)
    thread = threading.Thread(target=server.run, name="daphne", daemon=True)
    thread.start()
    ready.wait(10)
    for _ in range(100):
        if server.listening_addresses:
            break
        threading.Event().wait(0.05)
    host, port = server.listening_addresses[0]
    yield f"http://{host}:{port}"
    from twisted.internet import reactor

    reactor.callFromThread(reactor.stop)
    thread.join(10)


# --- pages that collect what goes wrong in them -------------------------------------------

_LISTEN = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__csp.push(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"} in ${e.sourceFile}:${e.lineNumber}`));
"""


def _is_problem(msg) -> bool:
    url = (msg.location or {}).get("url", "")
    if "favicon" in url:
        return False  # the browser asks for /favicon.ico by itself; pages link favicon.svg instead
    if url.endswith("/api/health/") and "status of 503" in msg.text:
        return False  # no worker runs in the tests: health says so, and the page shows it
    return msg.type == "error" or "Content Security Policy" in msg.text


@pytest.fixture
def watched_page(browser):
    """A page whose CSP violations (``window.__csp``), page errors and console errors are collected
    in ``page.problems``."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.add_init_script(_LISTEN)
    page = context.new_page()
    page.problems = []
    page.on("pageerror", lambda exc: page.problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: _is_problem(msg) and page.problems.append(f"console {msg.type}: {msg.text}"))
    yield page
    context.close()


# --- the annotator page ------------------------------------------------------------------

def client_point(page, x: float, y: float) -> tuple[float, float]:
    """Viewport coordinates of the centre of slice pixel (x, y)."""
    return page.evaluate("""([x, y]) => {
        const v = window.annotator.viewer, r = v.stage.getBoundingClientRect();
        return [r.left + (x + 0.5) * r.width / v.width, r.top + (y + 0.5) * r.height / v.height];
    }""", [x, y])


def answers(page) -> np.ndarray:
    text = page.evaluate("() => window.annotator.answersBase64()")
    return np.frombuffer(base64.b64decode(text), np.uint8).reshape(512, 512)



# A query on screen with everything the page reads around it (neighbouring slices, reformats) read, so
# that a test acts on a settled page.
QUERY_SETTLED = ("() => window.annotator && window.annotator.editor && window.annotator.viewer.hu && "
                 "window.annotator.neighboursShown === window.annotator.query.id && window.annotator.reformatShown")


def wait_for_query(page, timeout: float = 20000) -> None:
    page.wait_for_function(QUERY_SETTLED, timeout=timeout)


def _readers_never_wait(sender, connection, **kwargs) -> None:
    if connection.vendor == "sqlite":
        connection.cursor().execute("PRAGMA read_uncommitted = 1")


@pytest.fixture(autouse=True)
def sqlite_readers_do_not_lock():
    """The tests' SQLite database lives in memory with a shared cache, where a read of a table that another
    request is writing fails at once ("database table is locked") instead of waiting as the product's WAL
    file does; the annotator page reads around a query (neighbouring slices, reformats) while the expert
    answers. Uncommitted reads take no table locks in shared-cache mode, so a read never fails on a write."""
    from django.db.backends.signals import connection_created

    connection_created.connect(_readers_never_wait)
    yield
    connection_created.disconnect(_readers_never_wait)

"""Screenshots of every page into docs/screenshots/, taken with Playwright and Debian's chromium.

    .venv/bin/python docs/scripts/screenshots.py

The annotator, the dashboard and the scan viewer are also taken at 1280 x 720 and 1920 x 1080
(``<page>-1280x720.png``, ``<page>-1920x1080.png``), the sizes docs/annotator.md checks.

Runs on a throw-away data folder: migrates a fresh SQLite database, creates demo rows
through the ORM (tests/browser/data.py: synthetic 512 x 512 phantom, no ML), serves the
ASGI application with daphne in a thread and drives the pages like a user would.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
SIZES = [{"width": 1280, "height": 720}, {"width": 1920, "height": 1080}]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync"]


def setup_django(data_dir: Path) -> None:
    sys.path.insert(0, str(REPO))
    for key in ("DATABASE_URL", "REDIS_URL", "MYOLABEL_MODE"):
        os.environ.pop(key, None)
    os.environ.update({"MYOLABEL_DATA_DIR": str(data_dir), "DJANGO_SETTINGS_MODULE": "backend.myolabel.settings",
                       "DJANGO_ALLOW_ASYNC_UNSAFE": "true"})
    # daphne.server installs Twisted's asyncio reactor: it must come before anything else of Twisted.
    import daphne.server  # noqa: F401
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    call_command("migrate", "--noinput", verbosity=0)


def demo_rows(data_dir: Path) -> dict:
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from tests.browser.data import annotating_project, lead_history, scan_segmentation

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    hip, annotator, lead, _ = annotating_project(data_dir, settings, depth=120)  # reformats with some height
    hip_segmentation(hip)
    thigh, _ = lead_history(data_dir, settings)
    lead_history(data_dir, settings, name="Thigh study, random pixels", strategy="random_pixels", gain=0.05)
    get_user_model().objects.create_superuser("admin", "admin@example.org", "pw-123456")
    scan = scan_segmentation(thigh).scan
    return {"hip": hip, "thigh": thigh, "annotator": annotator, "lead": lead, "scan": scan}


def hip_segmentation(project) -> None:
    """A finished segmentation of the annotated scan by a model 1, so that the neighbouring slices and the
    reformats show its predicted labels (the query rasters' shapes on every slice)."""
    import numpy as np

    from backend.imaging.volumes import save_array
    from tests.backend.factories import segmentation_with_uncertainty
    from tests.browser.data import query_rasters

    scan = project.pools.first().scans.first()
    depth = scan.shape[0]
    seg = segmentation_with_uncertainty(project, scan, np.zeros((depth, 1, 1), np.float16))
    labels = np.stack([query_rasters(min(z, 20))[1] for z in range(depth)])  # the phantom's bones stop growing at 20
    seg.labels = save_array(labels, "acquisition/segmentations/hip-labels.npy")
    seg.save()


def serve() -> str:
    from daphne.server import Server
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    from backend.myolabel.asgi import application

    server = Server(ASGIStaticFilesHandler(application), endpoints=["tcp:port=0:interface=127.0.0.1"],
                    signal_handlers=False, verbosity=0)
    threading.Thread(target=server.run, daemon=True).start()
    while not server.listening_addresses:
        threading.Event().wait(0.05)
    host, port = server.listening_addresses[0]
    return f"http://{host}:{port}"


def log_in(page, url: str, username: str) -> None:
    page.goto(url + "/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "pw-123456")
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")


def shoot(rows: dict, url: str) -> None:
    from playwright.sync_api import sync_playwright

    from backend.core.realtime import project_group, publish

    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)

        def new_page():
            return browser.new_context(viewport={"width": 1440, "height": 900}).new_page()

        page = new_page()
        page.goto(url + "/accounts/login/")
        page.screenshot(path=OUT / "login.png")

        page = new_page()
        log_in(page, url, rows["annotator"].username)
        page.wait_for_timeout(800)
        page.screenshot(path=OUT / "home.png")
        page.goto(f"{url}/projects/{rows['hip'].id}/annotate/")
        page.wait_for_function("() => window.annotator && window.annotator.viewer && window.annotator.viewer.hu")
        page.wait_for_timeout(500)

        def at(x, y):
            return page.evaluate("""([x, y]) => { const v = window.annotator.viewer, r = v.stage.getBoundingClientRect();
                return [r.left + (x + 0.5) * r.width / v.width, r.top + (y + 0.5) * r.height / v.height]; }""", [x, y])

        # Part of the query answered (solid), the rest still the model's hatched suggestion.
        page.keyboard.press("3")
        page.mouse.move(*at(210, 240))
        page.mouse.down()
        for pt in [(250, 255), (300, 250), (325, 235)]:
            page.mouse.move(*at(*pt), steps=6)
        page.mouse.up()
        page.keyboard.press("`")
        page.keyboard.press("i")
        page.mouse.click(*at(330, 210))
        page.keyboard.press("b")
        page.keyboard.press("3")
        page.mouse.move(*at(260, 280))
        page.screenshot(path=OUT / "annotator.png")
        for size in SIZES:
            page.set_viewport_size(size)
            page.click("#fit")
            page.mouse.move(*at(262, 284))
            page.wait_for_timeout(300)
            page.screenshot(path=OUT / f"annotator-{size['width']}x{size['height']}.png")
        # The slice above, read only: no labels there, the segmentation's prediction hatched.
        page.set_viewport_size(SIZES[0])
        page.click("#fit")
        page.keyboard.press("PageDown")
        page.wait_for_selector("#peek:not([hidden])")
        page.mouse.move(*at(262, 300))
        page.wait_for_timeout(300)
        page.screenshot(path=OUT / "annotator-peek-1280x720.png")

        page = new_page()
        log_in(page, url, rows["lead"].username)
        page.goto(f"{url}/projects/{rows['thigh'].id}/dashboard/")
        page.wait_for_function("() => window.dashboard && window.dashboard.live === 'live'")
        page.wait_for_selector("#chart-psv svg circle")
        page.click("#start")
        page.wait_for_selector("#steps .state.inferring")
        step = rows["thigh"].acquisition_steps.order_by("-number").first()
        publish(project_group(rows["thigh"].id), {"type": "acquisition.progress", "step": step.id, "phase": "inferring",
                                                  "percent": 42.0, "eta_seconds": 95.0,
                                                  "detail": "MC-dropout inference", "info": {}})
        page.wait_for_selector("#steps td.step-progress >> text=42 %")
        page.check("#compare input >> nth=-1")
        page.wait_for_function("() => document.querySelectorAll('#chart-dice-mac svg polyline').length === 2")
        page.fill("#target-mac", "0.01")
        page.click("#tau-form button[type=submit]")
        page.wait_for_timeout(800)
        page.screenshot(path=OUT / "dashboard.png", full_page=True)
        for size in SIZES:
            page.set_viewport_size(size)
            page.evaluate("() => window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            page.screenshot(path=OUT / f"dashboard-{size['width']}x{size['height']}.png")
        page.set_viewport_size({"width": 1440, "height": 900})

        page.goto(f"{url}/scans/{rows['scan'].id}/")
        page.wait_for_function("() => window.scanViewer && window.scanViewer.labels")
        page.check("#heat")
        page.wait_for_timeout(800)
        page.screenshot(path=OUT / "scan.png")
        for size in SIZES:
            page.set_viewport_size(size)
            page.click("#fit")
            page.wait_for_timeout(300)
            page.screenshot(path=OUT / f"scan-{size['width']}x{size['height']}.png")

        page = new_page()
        log_in(page, url, "admin")
        page.goto(url + "/admin-tools/")
        page.wait_for_selector("#pools tbody tr")
        page.click("#pools tbody tr button")
        page.set_input_files("#upload-files", files=[
            {"name": "broken.nii.gz", "mimeType": "application/octet-stream", "buffer": b"not an image" * 4000}])
        page.click("#upload-start")
        page.wait_for_function("() => /finished|stopped|failed/.test(document.body.innerText)", timeout=60000)
        page.wait_for_timeout(500)
        page.screenshot(path=OUT / "admin_tools.png", full_page=True)
        browser.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="myolabel-shots-") as tmp:
        data_dir = Path(tmp)
        setup_django(data_dir)
        rows = demo_rows(data_dir)
        from backend.acquisition.steps import services as step_services

        step_services.enqueue_phase = lambda step: None  # no worker here: the step only shows its progress
        shoot(rows, serve())
    print(f"screenshots written to {OUT}")


if __name__ == "__main__":
    main()

"""A lead starts a step and watches its progress arrive over the websocket, then reads the charts."""

from __future__ import annotations

import time

import pytest

from backend.acquisition.models import AcquisitionStep
from backend.acquisition.steps import services as step_services
from backend.core.models import RelayEvent
from backend.core.realtime import project_group, publish
from tests.browser.conftest import log_in
from tests.browser.data import lead_history

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def publish_surely(group: str, payload: dict) -> None:
    # publish() never raises; on SQLite's shared in-memory test database a write can meet
    # the server thread's read lock, so check the event row exists and retry if not.
    for _ in range(20):
        before = RelayEvent.objects.count()
        publish(group, payload)
        if RelayEvent.objects.count() > before:
            return
    raise AssertionError("the progress event could not be stored")


def test_lead_starts_a_step_and_sees_live_progress_then_charts(app_page, asgi_server, plain_static, tmp_path,
                                                               settings, monkeypatch):
    scheduled = []
    monkeypatch.setattr(step_services, "enqueue_phase", lambda step: scheduled.append((step.id, step.state)))
    project, lead = lead_history(tmp_path, settings)
    lead_history(tmp_path, settings, name="Thigh study, random pixels", strategy="random_pixels", gain=0.05)
    page = app_page
    log_in(page, asgi_server, lead.username)
    page.click(f"a[href='/projects/{project.id}/dashboard/']")
    page.wait_for_function("() => window.dashboard && window.dashboard.live === 'live'")
    page.evaluate("() => { window.notReloaded = true; }")

    # The charts of the three finished steps.
    page.wait_for_selector("#chart-dice-step svg circle")
    assert page.locator("#chart-dice-step svg circle").count() == 3
    assert page.locator("#chart-dice-mac svg circle").count() == 3
    assert page.locator("#chart-mac-box svg rect").count() == 3
    assert page.locator("#chart-psv svg circle").count() == 6
    assert page.locator("#chart-psv svg line[stroke-dasharray]").count() == 1
    assert "iliacus" in page.inner_text("#structures tr.flagged").lower()
    assert "anna" in page.inner_text("#throughput") and "ben" in page.inner_text("#throughput")
    # The next step's cost beside "Start next step", and each step's auto-labelled pixels.
    page.wait_for_function("() => document.querySelector('#step-cost').textContent.includes('training after the answers')")
    cost = page.inner_text("#step-cost")
    assert "Next step on CPU" in cost and "measured after the first step" in cost and "first model" not in cost
    assert page.locator("#steps thead th", has_text="Auto-labelled").count() == 1

    # Compare with a run of another strategy: a second curve in both learning-curve charts.
    page.check("#compare input")
    page.wait_for_function("() => document.querySelectorAll('#chart-dice-mac svg polyline').length === 2")
    legend = page.inner_text("#chart-dice-step .legend")
    assert "Thigh study: tau" in legend and "Thigh study, random pixels: random_pixels" in legend

    page.click("#start")
    page.wait_for_selector("#steps tr[data-step] .state.inferring")
    step = AcquisitionStep.objects.get(project=project, number=4)
    assert step.state == "inferring" and scheduled == [(step.id, "inferring")]
    assert page.locator("#start").is_disabled()

    for percent in (20.0, 57.0):
        publish_surely(project_group(project.id), {
            "type": "acquisition.progress", "step": step.id, "phase": "inferring", "percent": percent,
            "eta_seconds": 80.0, "detail": "MC-dropout inference", "info": {}})
        page.wait_for_function(
            "(p) => { const t = document.querySelector('#steps td.step-progress'); return t && t.textContent.includes(p); }",
            arg=f"{percent:.0f} %", timeout=10000)
    text = page.inner_text("#steps td.step-progress")
    assert "MC-dropout inference: 57 %" in text and "about 80 s left" in text
    width = page.evaluate("() => document.querySelector('#steps td.step-progress .progress > div').style.width")
    assert width == "57%"

    # A team at work sends an event per claim and per answer: the dashboard refreshes at most
    # once a second, and once more after the last event, not once per event.
    refreshes = []
    page.on("request", lambda r: refreshes.append(r.url) if r.url.endswith(f"{project.id}/steps/") else None)
    started = time.monotonic()
    for i in range(30):
        publish_surely(project_group(project.id), {
            "type": "acquisition.query", "step": step.id, "query": i, "status": "answered",
            "assignee": lead.id, "open_queries": 30 - i})
    AcquisitionStep.objects.filter(pk=step.pk).update(state="selecting")
    publish_surely(project_group(project.id), {
        "type": "acquisition.query", "step": step.id, "query": 30, "status": "answered", "assignee": lead.id,
        "open_queries": 0})
    page.wait_for_selector("#steps tr[data-step] .state.selecting", timeout=10000)
    page.wait_for_timeout(1500)  # any refresh still due
    assert 1 <= len(refreshes) <= time.monotonic() - started + 1, refreshes
    assert page.evaluate("() => window.notReloaded") is True
    assert page.errors == []

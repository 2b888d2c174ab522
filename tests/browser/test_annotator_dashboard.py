"""The lead's dashboard: each step's curve point with the tau it ran with, the per-structure table inside
its card with "—" and a status for absent structures and readable PSV, no empty "Compare with:", and
tau preview errors said in the page."""

from __future__ import annotations

import pytest

from backend.acquisition.models import AcquisitionStep, ModelVersion
from tests.browser.conftest import log_in
from tests.browser.data import lead_history

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_dashboard(page, base, project, lead, width=1440, height=900):
    page.set_viewport_size({"width": width, "height": height})
    log_in(page, base, lead.username)
    page.goto(f"{base}/projects/{project.id}/dashboard/")
    page.wait_for_selector("#chart-dice-step svg circle")
    page.wait_for_selector("#structures tbody tr")


def test_curves_tau_table_and_tau_errors(app_page, asgi_server, plain_static, tmp_path, settings):
    project, lead = lead_history(tmp_path, settings)
    AcquisitionStep.objects.filter(project=project, number=3).update(tau=0.02)
    project.tau = 0.5  # changed after the steps ran: no step ran with it
    project.save()
    model = ModelVersion.objects.get(project=project, number=3)
    structures = model.metrics["structures"]
    structures["6"] = {"name": "pelvis", "dice": 1.0, "asd": None, "psv": None, "predicted_dice": None}
    structures["1"]["psv"] = 0.0552
    model.metrics = {"structures": structures}
    model.save()
    from backend.acquisition.models import Query

    for q in Query.objects.filter(step__project=project, answered_by__username="anna"):
        q.input_events = q.n_queried // 4  # a quarter of an input per answered pixel
        q.save()
    page = app_page
    open_dashboard(page, asgi_server, project, lead)
    # Item 4: no other project to compare with: no "Compare with:" line.
    assert not page.locator("#compare").is_visible()
    # Item 6: the legend names each step's own tau, never the project's new one.
    legend = page.inner_text("#chart-dice-step .legend")
    assert f"tau {project.__class__.objects.get(pk=project.pk).tau}" not in legend.replace("0.02", "")
    assert "at steps 1–2" in legend and "0.02 at step 3" in legend, legend
    # What an answered pixel costs each annotator in inputs (only answers that reported them count).
    anna = page.locator("#throughput tbody tr", has_text="anna").locator("td").all_inner_texts()
    ben = page.locator("#throughput tbody tr", has_text="ben").locator("td").all_inner_texts()
    assert abs(float(anna[6]) - 0.25) < 0.01 and ben[6] == "–", (anna, ben)
    # Item 7: an absent structure shows "—" and says why; PSV reads as a decimal.
    pelvis = page.locator("#structures tbody tr", has_text="Pelvis")
    cells = pelvis.locator("td").all_inner_texts()
    assert cells[2] == "—" and cells[4] == "" and "absent from the evaluation data" in cells[5], cells
    gmax = page.locator("#structures tbody tr", has_text="Gluteus maximus").locator("td").all_inner_texts()
    assert gmax[3] == "0.0552", gmax
    assert "e-" not in page.inner_text("#structures")
    for width in (1400, 1920):
        page.set_viewport_size({"width": width, "height": 1000})
        fits = page.evaluate("""() => {
          const t = document.querySelector('#structures'), card = t.closest('.panel');
          const flag = document.querySelector('#structures tr.flagged td.flag');
          return t.scrollWidth <= card.clientWidth && flag.getBoundingClientRect().right <= card.getBoundingClientRect().right;
        }""")
        assert fits, f"the per-structure table overflows its card at {width} px"
    # Item 10: an invalid tau is said in the page, and the old result goes.
    page.fill("#tau", "0.001")
    page.click("#tau-form button[type=submit]")
    page.wait_for_function("() => document.querySelector('#tau-result').textContent.length > 0")
    page.fill("#tau", "-3")
    page.click("#tau-form button[type=submit]")
    assert "tau must be a number of 0 or more" in page.inner_text("#tau-result")
    page.fill("#tau", "")
    page.fill("#target-mac", "7")
    page.click("#tau-form button[type=submit]")
    assert "at most 1" in page.inner_text("#tau-result")
    assert "would query" not in page.inner_text("#tau-result")
    assert page.errors == []

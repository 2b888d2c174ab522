"""The dashboard says when the uncertainty is not yet a usable signal, shows why a figure is
missing instead of a made-up value, and lists the held-out slices (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.acquisition.models import HeldOutSlice, ModelVersion
from backend.acquisition.steps.accuracy import Row, accuracy_metrics
from backend.acquisition.steps.evaluation import NOTHING_TO_EVALUATE
from tests.browser.conftest import log_in
from tests.browser.data import STRUCTURES, lead_history

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
N_CLASSES = len(STRUCTURES) + 1
ABSENT = 4  # psoas major: in none of the held-out slices


def held_out_row(scan_id: int, z: int, scale: float) -> Row:
    """A held-out slice whose more uncertain structures scored higher (the wrong way round)."""
    present = np.array([v != ABSENT for v in range(N_CLASSES)])
    psv = np.array([0.0] + [0.002 * v * scale if v != ABSENT else np.nan for v in range(1, N_CLASSES)])
    metrics = {v: ({"dice": 0.3 + 20 * psv[v], "asd": 1.0} if v != ABSENT else {"dice": 1.0, "asd": 0.0})
               for v in range(1, N_CLASSES)}
    return Row("held_out", scan_id, "patient 012", z, metrics, psv, present.copy(), present.copy())


def test_the_dashboard_warns_that_the_uncertainty_is_no_signal_yet(app_page, asgi_server, plain_static, tmp_path,
                                                                  settings):
    project, lead = lead_history(tmp_path, settings)
    scan = project.pools.get().scans.get()
    for z in (1, 3):
        HeldOutSlice.objects.create(project=project, scan=scan, z=z)
    labels = [(v, name, "bone" if name in ("femur", "pelvis") else "muscle")
              for v, (name, _) in enumerate(STRUCTURES, start=1)]
    result = accuracy_metrics([held_out_row(scan.id, z, k) for z, k in ((1, 1.0), (3, 2.0))], labels,
                              target=project.stop_target_dice, nothing_why=NOTHING_TO_EVALUATE)
    assert result.metrics["uncertainty"]["usable"] is False
    ModelVersion.objects.filter(project=project, number=3).update(metrics=result.metrics,
                                                                  calibration=result.calibration)
    page = app_page
    log_in(page, asgi_server, lead.username)
    page.goto(f"{asgi_server}/projects/{project.id}/dashboard/")
    page.wait_for_selector("#uncertainty-warning:not([hidden])")
    warning = page.inner_text("#uncertainty-warning")
    assert warning.startswith("The uncertainty is not yet a usable signal: PSV and Dice correlate the wrong way")
    # No predicted Dice is shown; the measured Dice is, and a structure nobody saw says why it has none.
    predicted = page.locator("#structures td.predicted").all_inner_texts()
    assert len(predicted) == len(STRUCTURES) and set(predicted) == {"not given"}
    assert page.inner_text("#dice-heading") == "Dice (held-out slices)"
    psoas = page.locator("#structures tr", has_text="psoas major")
    assert psoas.locator("td").nth(2).inner_text() == "—"  # no figure, and the reason beside it
    assert "absent from the reference and the prediction on every held-out slice" in psoas.inner_text()
    assert "1.000" not in page.inner_text("#structures")
    assert "Not a usable signal yet" in page.inner_text("#chart-psv")
    assert page.inner_text("#evaluated-on") == "Measured on 2 held-out slices of 1 scan."
    # The evaluation set: which slices are held out, and how many.
    page.wait_for_function("() => document.querySelector('#held-out-scans li')")
    assert "2 labelled slices are held out" in page.inner_text("#held-out-count")
    assert page.inner_text("#held-out-scans") == "patient 012: 2 of 4 slices (z = 1, 3)"
    assert page.errors == []

"""The anatomy around the query in Chromium, with the model's view of it: neighbouring slices show the
predicted labels hatched where nobody labelled (and say when nothing is predicted), named in the banner
and the legend; the coronal and sagittal reformats carry answered, reference and predicted labels with a
toggle and a legend, the query's slice still marked."""

from __future__ import annotations

import numpy as np
import pytest

from backend.acquisition.models import Query
from tests.browser.conftest import client_point
from tests.browser.data import annotating_project
from tests.browser.test_annotator_canvas import close, open_annotator, overlay_rgba

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
ILIACUS = [67, 99, 216]  # #4363d8, label 3


@pytest.fixture
def project(tmp_path, settings, plain_static):
    return annotating_project(tmp_path, settings)


def test_neighbouring_slices_show_the_step_prediction_hatched_or_say_there_is_none(app_page, live_server, project):
    page = app_page
    open_annotator(page, live_server.url, project)
    page.wait_for_function("() => window.annotator.depth")
    page.keyboard.press("PageDown")  # z 3: the step's other query holds a prediction of it
    page.wait_for_selector("#peek:not([hidden])")
    banner = page.inner_text("#peek")
    assert "Slice z = 3" in banner and "no labels" in banner
    assert "predicted: step 1's prediction (stored for its queried slices only), hatched where unlabelled" in banner
    # (256, 300) is predicted iliacus: hatched, i.e. dimmed on half the pixels and clear on the others.
    assert close(overlay_rgba(page, 256, 300), [*ILIACUS, 150]) and overlay_rgba(page, 258, 300)[3] == 0
    page.mouse.move(*client_point(page, 256, 300))
    assert "Iliacus (prediction)" in page.inner_text("#readout")
    assert "predicted: step 1's prediction" in page.inner_text("#legend") and "Iliacus" in page.inner_text("#legend")
    page.keyboard.press("PageUp")
    page.keyboard.press("PageUp")  # z 1: nothing labelled, nothing predicted, and the page says so
    page.wait_for_function("() => document.querySelector('#peek').textContent.startsWith('Slice z = 1 ')")
    assert "nothing predicted for this slice" in page.inner_text("#peek")
    assert "nothing predicted for z 1" in page.inner_text("#legend")
    assert overlay_rgba(page, 256, 300)[3] == 0
    page.keyboard.press("Escape")
    page.wait_for_selector("#peek", state="hidden")
    assert "prediction to confirm" in page.inner_text("#legend")  # the query's own legend again
    assert page.errors == []


def test_neighbouring_slices_show_the_newest_segmentation_under_the_answered_labels(app_page, live_server, project):
    from backend.acquisition import codec
    from backend.acquisition.models import TrainingSlice

    proj, _, _, ids = project
    scan = Query.objects.get(pk=ids[0]).scan
    _model_segmentation(proj, scan)
    labels = np.full((512, 512), 255, np.uint8)
    labels[:, :256] = 4  # the left half answered psoas; the right half nobody labelled
    TrainingSlice.objects.create(project=proj, scan=scan, z=1, height=512, width=512, labels=codec.pack_labels(labels),
                                 answered=codec.pack_mask(labels != 255), source=TrainingSlice.Source.QUERY)
    page = app_page
    open_annotator(page, live_server.url, project)
    page.wait_for_function("() => window.annotator.depth && window.annotator.nearby.length")
    page.keyboard.press("PageUp")
    page.wait_for_function("() => document.querySelector('#peek').textContent.startsWith('Slice z = 1 ')")
    banner = page.inner_text("#peek")
    assert "answered labels" in banner and "predicted: model 1's segmentation of this scan" in banner
    assert overlay_rgba(page, 100, 300)[3] == 255  # answered: solid
    assert close(overlay_rgba(page, 400, 300), [*ILIACUS, 150])  # the segmentation's iliacus, hatched
    page.mouse.move(*client_point(page, 400, 300))
    assert "Iliacus (prediction, model 1)" in page.inner_text("#readout")
    assert page.errors == []


def _model_segmentation(project, scan):
    """A finished segmentation by a model 1: iliacus (3) everywhere on every slice."""
    from backend.imaging.volumes import save_array
    from tests.backend.factories import segmentation_with_uncertainty

    seg = segmentation_with_uncertainty(project, scan, np.zeros((5, 512, 512), np.float16))
    seg.labels = save_array(np.full((5, 512, 512), 3, np.uint8), "acquisition/segmentations/labels.npy")
    seg.save()
    return seg

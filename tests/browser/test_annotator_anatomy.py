"""The anatomy around the query in Chromium, with the model's view of it: neighbouring slices show the
predicted labels hatched where nobody labelled (and say when nothing is predicted), named in the banner
and the legend; the coronal and sagittal reformats carry answered, reference and predicted labels with a
toggle and a legend, the query's slice still marked."""

from __future__ import annotations

import numpy as np
import pytest

from backend.acquisition.models import Query
from tests.browser.conftest import client_point
from tests.browser.data import annotating_project, labelled_slice
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
    page.wait_for_function("() => document.querySelectorAll('#neighbours figcaption').length === 4 && "
                           "document.querySelector('#neighbours').textContent.includes('z 4 (+2) · nothing')")
    captions = page.inner_text("#neighbours")  # the thumbnails say the same
    assert "z 3 (+1) · predicted" in captions and "z 1 (-1) · nothing predicted" in captions
    assert page.errors == []


def test_neighbouring_slices_show_the_newest_segmentation_under_the_answered_labels(app_page, live_server, project):

    proj, _, _, ids = project
    scan = Query.objects.get(pk=ids[0]).scan
    _model_segmentation(proj, scan)
    labels = np.full((512, 512), 255, np.uint8)
    labels[:, :256] = 4  # the left half answered psoas; the right half nobody labelled
    labelled_slice(proj, scan, 1, labels)
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


def _reformat_pixels(page, canvas: str, z: int, xs: range) -> list[list[int]]:
    """RGB of the display row of slice z (head up: the last slice on top) of a reformat canvas."""
    return page.evaluate("""([id, z, xs]) => {
      const c = document.querySelector(id), depth = window.annotator.depth;
      let r = 0;
      while (r < c.height && depth - 1 - Math.min(depth - 1, Math.floor((r * depth) / c.height)) !== z) r++;
      const d = c.getContext('2d').getImageData(0, r, c.width, 1).data;
      return xs.map((x) => [d[x * 4], d[x * 4 + 1], d[x * 4 + 2]]);
    }""", [canvas, z, list(xs)])


def _grey(rgb) -> bool:
    return rgb[0] == rgb[1] == rgb[2]


def test_reformats_carry_answered_and_predicted_labels_with_a_toggle_and_a_legend(app_page, live_server, project):

    proj, _, _, ids = project
    scan = Query.objects.get(pk=ids[0]).scan
    labels = np.full((512, 512), 4, np.uint8)
    labelled_slice(proj, scan, 4, labels)
    page = app_page
    open_annotator(page, live_server.url, project)
    page.wait_for_function("() => window.annotator.reformatShown && window.annotator.depth")
    caption = page.inner_text("#reformat-info")
    assert "Labelled rows: z 4 (answered)" in caption and "predicted rows: step 1's prediction" in caption
    legend = page.inner_text("#reformat-legend")
    assert "Psoas major" in legend and "Iliacus" in legend and "predicted: step 1's prediction" in legend
    assert "answered or reference" in legend and "the query's slice" in legend
    answered = _reformat_pixels(page, "#coronal", 4, range(240, 250))
    assert not any(_grey(p) for p in answered)  # the answered psoas, solid
    predicted = _reformat_pixels(page, "#coronal", 3, range(240, 272))  # the step's iliacus at y 260: hatched
    tinted = [p for p in predicted if p[2] > p[0] + 20]
    assert 8 <= len(tinted) <= 24 and len(tinted) + sum(_grey(p) for p in predicted) == len(predicted)
    assert all(_grey(p) for p in _reformat_pixels(page, "#coronal", 1, range(0, 512, 7)))  # nothing there
    assert _reformat_pixels(page, "#coronal", 2, range(10, 11)) == [[255, 212, 0]]  # the query's slice
    page.click("#reformat-labels")  # labels off: the HU alone, the query's slice still marked
    assert all(_grey(p) for p in _reformat_pixels(page, "#coronal", 4, range(240, 250)))
    assert all(_grey(p) for p in _reformat_pixels(page, "#sagittal", 3, range(240, 256)))
    assert _reformat_pixels(page, "#coronal", 2, range(10, 11)) == [[255, 212, 0]]
    assert "Psoas major" not in page.inner_text("#reformat-legend")
    page.click("#reformat-labels")
    assert not any(_grey(p) for p in _reformat_pixels(page, "#sagittal", 4, range(240, 250)))
    assert page.errors == []

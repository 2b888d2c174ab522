"""The expert's canvas in Chromium: the prediction pre-filled and hatched inside the query, answers that
accept-all never overwrites, a visible background, empty states without tools, a message that goes once
fixed, islands, readout and brush outline, keys for every structure, Enter, the favicon, 1280 x 720."""

from __future__ import annotations

import os

import numpy as np
import pytest

from backend.acquisition.models import Query
from tests.browser.conftest import answers, client_point, log_in, wait_for_query
from tests.browser.data import annotating_project, labelled_slice, query_rasters

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SHOTS = os.environ.get("MYOLABEL_SHOTS")  # a folder: save what the tests saw, to look at


def overlay_rgba(page, x: int, y: int) -> list[int]:
    """The label layer's RGBA at slice pixel (x, y)."""
    return page.evaluate("""([x, y]) => Array.from(window.annotator.viewer.ctx.labels.getImageData(x, y, 1, 1).data)""",
                         [x, y])


def open_annotator(page, base: str, made, size=(1440, 900)):
    page.set_viewport_size({"width": size[0], "height": size[1]})
    project, annotator, _, ids = made
    log_in(page, base, annotator.username)
    page.goto(f"{base}/projects/{project.id}/annotate/")
    wait_for_query(page)
    return project, ids


@pytest.fixture
def project(tmp_path, settings, plain_static):
    return annotating_project(tmp_path, settings)


def close(a, b, tolerance: int = 3) -> bool:
    return all(abs(int(x) - int(y)) <= tolerance for x, y in zip(a, b, strict=True))


def shot(page, name: str) -> None:
    if SHOTS:
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def test_prediction_is_prefilled_hatched_and_accept_all_keeps_answers(app_page, live_server, project):
    page = app_page
    open_annotator(page, live_server.url, project)
    mask, predicted, _ = query_rasters(2)
    # Item 1: inside the query the prediction shows, hatched (half the pixels) and dimmed.
    pixel = (256, 300)  # predicted 3 (iliacus), inside the query
    assert mask[pixel[1], pixel[0]] and predicted[pixel[1], pixel[0]] == 3
    row = [overlay_rgba(page, x, 300) for x in range(256, 260)]
    assert [p[3] for p in row].count(0) == 2 and max(p[3] for p in row) == 150
    assert close([p[:3] for p in row if p[3]][0], [67, 99, 216])  # iliacus' colour (alpha rounds it)
    outside = overlay_rgba(page, 256, 100)  # outside the query: the fixed prediction, solid
    assert outside == [230, 25, 75, 255]
    shot(page, "prefilled")

    # Item 2: paint one pixel 4, then accept the prediction everywhere else: the 4 stays.
    page.keyboard.press("4")
    page.fill("#radius", "0")
    page.dispatch_event("#radius", "input")
    page.mouse.click(*client_point(page, 256, 300))
    assert answers(page)[300, 256] == 4
    page.click("#accept-all")
    after = answers(page)
    assert after[300, 256] == 4, "accept-all overwrote the expert's pixel"
    others = mask.copy()
    others[300, 256] = False
    assert (after[others] == predicted[others]).all() and (after[~mask] == 255).all()
    assert overlay_rgba(page, 256, 300)[3] == 255  # answered: solid
    page.keyboard.press("Control+z")
    assert answers(page)[300, 256] == 4 and (answers(page)[others] == 255).all()
    assert page.errors == []


def test_background_answers_are_visible_and_the_message_goes_when_fixed(app_page, live_server, project):
    page = app_page
    _, ids = open_annotator(page, live_server.url, project)
    mask, _, _ = query_rasters(2)
    # Item 5: the "no label" message appears on submit, does not move the canvas, goes once fixed.
    top = page.evaluate("() => document.querySelector('#viewport').getBoundingClientRect().top")
    page.press("body", "Enter")  # item 10: Enter submits
    page.wait_for_selector("#message:not([hidden])")
    assert "have no label yet" in page.inner_text("#message")
    assert page.evaluate("() => document.querySelector('#viewport').getBoundingClientRect().top") == top
    # Item 3: background (key `) painted with the fill shows as white stripes, not as nothing.
    page.keyboard.press("`")
    assert page.inner_text("#current-label") == "Background (no structure)"
    page.keyboard.press("f")
    page.mouse.click(*client_point(page, 185, 205))
    assert (answers(page)[mask] == 0).all()
    stripes = [overlay_rgba(page, x, 205) for x in range(185, 189)]
    assert sorted(p[3] for p in stripes) == [0, 0, 0, 200] and stripes[[p[3] for p in stripes].index(200)][:3] == [255] * 3
    assert page.locator("#message").is_hidden(), "the message stayed after every pixel got a label"
    page.press("body", "Enter")
    page.wait_for_function(f"() => window.annotator.query && window.annotator.query.id !== {ids[0]}")
    query = Query.objects.get(pk=ids[0])
    assert query.status == "answered" and query.input_events is not None and query.input_events >= 4
    assert query.seconds_spent > 0
    assert page.errors == []


def test_leaving_a_slice_hides_the_tools_and_says_what_happened(app_page, live_server, project):
    page = app_page
    open_annotator(page, live_server.url, project)
    z = page.evaluate("() => window.annotator.query.z")
    page.once("dialog", lambda d: d.accept())
    page.click("#skip")
    page.wait_for_selector("#empty:not([hidden])")
    # Item 4: no canvas, no Submit/Undo under the message; it does not claim nothing is waiting.
    assert not page.locator("#workspace").is_visible() and not page.locator("#submit").is_visible()
    assert f"You left slice z = {z}" in page.inner_text("#empty")
    assert "No query is waiting" not in page.inner_text("#empty")
    assert page.inner_text("#query-info") == ""
    page.click("#retry")
    page.wait_for_selector("#workspace:not([hidden])")
    assert page.errors == []


def test_no_step_shows_the_empty_card_only(app_page, live_server, project):
    Query.objects.all().delete()
    page = app_page
    proj, annotator, _, _ = project
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/projects/{proj.id}/annotate/")
    page.wait_for_selector("#empty:not([hidden])")
    assert "No query is waiting" in page.inner_text("#empty")
    assert not page.locator("#workspace").is_visible() and not page.locator("#viewport").is_visible()
    assert page.evaluate("() => getComputedStyle(document.querySelector('#workspace')).display") == "none"


def test_islands_click_assign_confirm_and_next(app_page, live_server, project):
    page = app_page
    open_annotator(page, live_server.url, project)
    # Make the query scattered islands in the page: three small pieces of the box.
    page.evaluate("""() => {
      const a = window.annotator, ed = a.editor;
      const keep = [[200, 180], [201, 181], [250, 300], [300, 330], [301, 330]];
      ed.queryMask.fill(0);
      for (const [y, x] of keep) ed.queryMask[y * 512 + x] = 1;
      ed.queried = keep.map(([y, x]) => y * 512 + x).sort((p, q) => p - q);
      ed.answers.fill(255);
    }""")
    page.keyboard.press("n")
    assert page.evaluate("() => window.annotator.lastIsland") == 200 * 512 + 180
    zoom = page.evaluate("() => window.annotator.viewer.zoom")
    assert zoom > 4, "next island did not zoom in on it"
    page.keyboard.press("2")
    page.keyboard.press("i")
    page.mouse.click(*client_point(page, 180, 200))  # one click labels both diagonal pixels
    a = answers(page)
    assert a[200, 180] == 2 and a[201, 181] == 2 and a[250, 300] == 255
    page.keyboard.press("n")
    assert page.evaluate("() => window.annotator.lastIsland") == 250 * 512 + 300
    page.keyboard.press("c")
    page.mouse.click(*client_point(page, 300, 250))  # confirm: the prediction
    assert answers(page)[250, 300] == query_rasters(2)[1][250, 300]
    assert "1 island(s) without an answer" in page.inner_text("#islands")
    assert page.evaluate("() => window.annotator.inputEvents") >= 7
    assert page.errors == []


def test_readout_brush_outline_keys_search_and_favicon(app_page, live_server, project):
    page = app_page
    open_annotator(page, live_server.url, project)
    page.mouse.move(*client_point(page, 170, 270))  # a "bone" of 700 HU, predicted femur (5), outside the query
    readout = page.inner_text("#readout")
    assert "x 170, y 270" in readout and "700 HU" in readout and "Femur (model, fixed)" in readout
    page.mouse.move(*client_point(page, 256, 300))
    assert "Iliacus (prediction, to confirm)" in page.inner_text("#readout")
    cursor = page.locator(".brush-cursor")
    assert cursor.is_visible()
    width = cursor.bounding_box()["width"]
    zoom = page.evaluate("() => window.annotator.viewer.zoom")
    assert abs(width - 9 * zoom) < 2  # radius 4 (+0.5) on both sides, in screen pixels
    # Every structure has a key; names are readable; search finds one by typing.
    keys = page.eval_on_selector_all("#palette kbd", "els => els.map((e) => e.textContent)")
    assert all(keys) and len(set(keys)) == len(keys)
    assert "Gluteus maximus" in page.inner_text("#palette")
    page.keyboard.press("/")
    page.keyboard.type("psoas")
    assert page.locator("#palette button:visible").count() == 1
    page.keyboard.press("Enter")
    assert page.inner_text("#current-label") == "Psoas major"
    page.keyboard.press("0")  # beyond the 9th: every structure has its own key (here the 6th of 6 is "6")
    # The legend names what is on screen.
    legend = page.inner_text("#legend")
    assert "Iliacus" in legend and "prediction to confirm" in legend and "query outline" in legend
    page.keyboard.press("h")
    assert "uncertainty (max" in page.inner_text("#legend")
    icon = page.get_attribute("link[rel=icon]", "href")
    assert page.request.get(live_server.url + icon).status == 200
    assert page.errors == []


def test_default_label_set_fits_1280_by_720(app_page, live_server, project):
    from backend.projects.models import Label, LabelSet
    from mltasks.labels import default_label_set

    proj = project[0]
    full = LabelSet.objects.create(name="Hip and thigh, 22 structures")
    for lab in default_label_set().labels:
        Label.objects.create(label_set=full, value=lab.value, name=lab.name, kind=lab.kind, colour=lab.colour)
    proj.label_set = full
    proj.save()
    page = app_page
    open_annotator(page, live_server.url, project, size=(1280, 720))
    shot(page, "annotator-1280x720")
    # Item 11: no page scroll, the bar on one line, all 22 structures and Submit visible.
    assert page.evaluate("() => document.documentElement.scrollHeight <= innerHeight + 1")
    bar = page.locator(".viewer-bar").bounding_box()
    assert bar["height"] < 40
    buttons = page.locator("#palette button")
    assert buttons.count() == 23
    for k in range(23):
        box = buttons.nth(k).bounding_box()
        assert box["y"] + box["height"] <= 720, f"structure {k + 1} is below the fold"
    sub = page.locator("#submit").bounding_box()
    assert sub["y"] + sub["height"] <= 720
    names = page.inner_text("#palette")
    assert "_" not in names and "Vastus lateralis intermedius" in names
    keys = page.eval_on_selector_all("#palette kbd", "els => els.map((e) => e.textContent)")
    assert all(keys) and len(set(keys)) == 23
    assert page.errors == []


def test_copy_the_nearest_labelled_slice_and_interpolate_between_two(app_page, live_server, project):
    from backend.acquisition.models import HeldOutSlice

    proj, _, _, ids = project
    scan = Query.objects.get(pk=ids[0]).scan
    yy, xx = np.mgrid[:512, :512]
    for z, radius in ((0, 20), (4, 40)):
        labels = np.where((yy - 260) ** 2 + (xx - 260) ** 2 <= radius**2, 3, 0).astype(np.uint8)
        labelled_slice(proj, scan, z, labels)
    HeldOutSlice.objects.create(project=proj, scan=scan, z=1)  # nearer, but never offered
    labelled_slice(proj, scan, 1, np.full((512, 512), 6, np.uint8), source="reference")
    page = app_page
    open_annotator(page, live_server.url, project)
    page.wait_for_function("() => !document.querySelector('#interpolate').disabled")
    assert page.inner_text("#interpolate") == "Interpolate z 0 – z 4"
    assert page.inner_text("#copy-nearest").startswith("Copy slice z 0")
    # Nothing is applied until asked.
    assert (answers(page) == 255).all()
    page.click("#interpolate")
    a = answers(page)
    assert a[260, 260 + 28] == 3 and a[260, 260 + 33] == 0, "the disc should grow from 20 to 40 px: 30 at z 2"
    assert (a[query_rasters(2)[0]] != 255).all()
    page.keyboard.press("Control+z")
    assert (answers(page) == 255).all()
    page.keyboard.press("3")
    page.keyboard.press("b")
    page.mouse.click(*client_point(page, 300, 300))  # an answer of the expert's: copying keeps it
    page.click("#copy-nearest")
    a = answers(page)
    assert a[300, 300] == 3 and a[260, 260 + 15] == 3 and a[260, 260 + 25] == 0
    page.wait_for_selector("#neighbours figure.labelled")
    assert "labelled" in page.inner_text("#neighbours")
    assert page.errors == []


def test_neighbouring_slices_in_the_main_view_read_only_with_their_labels(app_page, live_server, project):

    proj, _, _, ids = project
    scan = Query.objects.get(pk=ids[0]).scan
    labels = np.full((512, 512), 4, np.uint8)
    labelled_slice(proj, scan, 3, labels)
    page = app_page
    open_annotator(page, live_server.url, project)
    page.wait_for_function("() => window.annotator.depth && window.annotator.nearby.length")
    page.keyboard.press("PageDown")
    page.wait_for_selector("#peek:not([hidden])")
    banner = page.inner_text("#peek")
    assert "Slice z = 3 (+1 from the query at z = 2)" in banner and "answered labels" in banner
    assert page.evaluate("() => window.annotator.viewer.canvases.outline.hidden") is True
    page.mouse.move(*client_point(page, 256, 300))
    assert "Psoas major (answered)" in page.inner_text("#readout") and "z 3" in page.inner_text("#readout")
    page.mouse.click(*client_point(page, 256, 300))  # read only: nothing is painted
    assert (answers(page) == 255).all()
    page.keyboard.press("Escape")
    page.wait_for_selector("#peek", state="hidden")
    assert page.evaluate("() => window.annotator.viewer.canvases.outline.hidden") is False
    assert overlay_rgba(page, 256, 100) == [230, 25, 75, 255]  # the query's own overlay again
    page.mouse.move(*client_point(page, 256, 300))
    page.keyboard.down("Shift")
    page.mouse.wheel(0, -100)  # Shift+wheel up: the slice below
    page.keyboard.up("Shift")
    page.wait_for_function("() => document.querySelector('#peek').textContent.startsWith('Slice z = 1 ')")
    assert "no labels" in page.inner_text("#peek")
    page.keyboard.press("PageDown")  # back to z 2: the query
    page.wait_for_selector("#peek", state="hidden")
    assert page.errors == []


def test_coronal_and_sagittal_reformats_mark_the_query_and_follow_the_cursor(app_page, live_server, project):
    page = app_page
    open_annotator(page, live_server.url, project)
    page.wait_for_function("() => window.annotator.reformatShown")
    assert page.evaluate("() => window.annotator.reformatShown") == {"x": 260, "y": 260}  # the query's centre
    yellow_rows = page.evaluate("""() => {
      const c = document.querySelector('#coronal'), d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const rows = [];
      for (let r = 0; r < c.height; r++) {
        const i = (r * c.width + 10) * 4;
        if (d[i] === 255 && d[i + 1] === 212 && d[i + 2] === 0) rows.push(r);
      }
      return [c.width, c.height, rows];
    }""")
    width, height, rows = yellow_rows
    assert width == 512 and height >= 5 and rows, "the query's slice is not marked"
    assert "yellow: the query's slice (z 2)" in page.inner_text("#reformat-info")
    page.mouse.move(*client_point(page, 170, 270))
    page.wait_for_function("() => window.annotator.reformatShown.x === 170 && window.annotator.reformatShown.y === 270")
    assert page.errors == []

"""Pushing a boundary with a drag (push.js), run in the browser it ships to: the edge between the
structure under the press and its neighbour follows the pointer, only those two structures change,
only inside the query, a third structure stops it, dragging back gives the pixels back, and the whole
drag is one undo step; in the page, one drag is one stroke and a press far from an edge says why."""

from __future__ import annotations

import pytest

from tests.browser.conftest import answers, client_point
from tests.browser.data import annotating_project, query_rasters
from tests.browser.test_annotator_canvas import open_annotator

pytestmark = pytest.mark.browser

# A 12 x 8 slice: prediction 1 on x 0-4, 2 on x 5-11, and 3 (a third structure) at x 8, y 0-1.
# Queried: x 2-10 of rows 0-6 (row 7 and columns 0-1, 11 are not).
SETUP = """
  const W = 12, H = 8;
  const predicted = Uint8Array.from({ length: W * H }, (_, i) => (i % W < 5 ? 1 : 2));
  predicted[8] = predicted[W + 8] = 3;
  const mask = Uint8Array.from({ length: W * H }, (_, i) => (i % W >= 2 && i % W <= 10 && i < 7 * W ? 1 : 0));
  const ed = new core.LabelEditor(W, H, predicted, mask);
  const shownRows = () => Array.from({ length: H }, (_, y) => Array.from({ length: W }, (_, x) => {
    const a = ed.answers[y * W + x]; return a === 255 ? (mask[y * W + x] ? "." : "-") : String(a); }).join(""));
"""


@pytest.fixture
def push_page(module_page, static_server):
    module_page.evaluate("async (base) => { window.push = await import(base + '/myolabel/js/annotator/push.js'); }",
                         static_server)
    return module_page


def run(page, body: str):
    return page.evaluate(f"() => {{ {SETUP} {body} }}")


def test_the_edge_follows_the_drag_between_two_structures_only(push_page):
    out = run(push_page, """
      const p = push.pushStart(ed, 4, 3, 10);
      ed.beginStroke();
      push.pushTo(ed, p, 6, 3);
      const two = shownRows();
      push.pushTo(ed, p, 9, 3);
      const five = shownRows();
      push.pushTo(ed, p, 6, 3);   // back: what the edge no longer covers is given back
      const back = shownRows();
      ed.endStroke();
      const steps = ed.undoStack.length;
      ed.undo();
      return [p.from, p.into, two, five, back, steps, shownRows()];
    """)
    from_, into, two, five, back, steps, undone = out
    assert (from_, into) == (1, 2)
    assert two[3] == "--...11....-" and two[0] == "--...11....-"
    assert five[3] == "--...11111.-"
    assert five[0] == "--...111...-", "the third structure at x 8 must stop the push"
    assert five[7] == "-" * 12, "row 7 is not queried: it must keep its prediction"
    assert back == two
    assert steps == 1 and all(r.replace("-", ".") == "." * 12 for r in undone)


def test_only_the_edge_inside_the_circle_moves(push_page):
    rows = run(push_page, "const p = push.pushStart(ed, 4, 3, 2); ed.beginStroke(); push.pushTo(ed, p, 7, 3); "
                          "ed.endStroke(); return shownRows();")
    assert [r[5:8] for r in rows] == ["...", "111", "111", "111", "111", "111", "...", "---"]


def test_a_press_far_from_an_edge_or_outside_the_query_is_refused_with_its_reason(push_page):
    far, outside = run(push_page, """
      const far = push.pushStart(ed, 1, 3, 4).error;
      const only = new core.LabelEditor(W, H, predicted, Uint8Array.from({ length: W * H }, (_, i) => (i % W === 10 ? 1 : 0)));
      return [far, push.pushStart(only, 4, 3, 4).error];
    """)
    assert "press on the edge between two structures (within 2 pixels of it) and drag" in far
    assert "outside the yellow outline" in outside


@pytest.mark.django_db(transaction=True)
def test_a_drag_in_the_page_pushes_an_edge_in_one_undo_step(app_page, live_server, tmp_path, settings, plain_static):
    made = annotating_project(tmp_path, settings)
    page = app_page
    open_annotator(page, live_server.url, made)
    page.keyboard.press("g")
    page.mouse.click(*client_point(page, 260, 300))  # inside the iliacus, far from its edge
    page.wait_for_selector("#message:not([hidden])")
    assert "press on the edge between two structures" in page.inner_text("#message")
    events = page.evaluate("() => window.annotator.inputEvents")
    page.mouse.move(*client_point(page, 197, 300))  # on the iliacus (3), 2 pixels from gluteus maximus (1)
    page.mouse.down()
    page.mouse.move(*client_point(page, 187, 300))
    page.mouse.up()
    a = answers(page)
    assert query_rasters(2)[1][300, 188] == 1 and (a[300, 186:196] == 3).all() and a[300, 185] == 255
    assert a[310, 190] == 255, "an edge outside the circle (radius 4) must not move"
    assert page.evaluate("() => window.annotator.inputEvents") - events == 2  # the press and one move
    page.keyboard.press("Control+z")
    assert (answers(page) == 255).all()
    assert page.errors == []

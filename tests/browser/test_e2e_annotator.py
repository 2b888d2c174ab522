"""An annotator answers a query in the real page; the stored answer equals what the page held."""

from __future__ import annotations

import numpy as np
import pytest

from backend.acquisition import codec
from backend.acquisition.models import Query, TrainingSlice
from tests.browser.conftest import answers, client_point, log_in, wait_for_query
from tests.browser.data import annotating_project, query_rasters

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def stroke(page, points: list[tuple[int, int]]) -> None:
    page.mouse.move(*client_point(page, *points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*client_point(page, *p), steps=8)
    page.mouse.up()


def test_annotator_paints_fills_undoes_and_submits_exactly_what_it_showed(app_page, live_server, plain_static,
                                                                         tmp_path, settings):
    page = app_page
    project, annotator, _, query_ids = annotating_project(tmp_path, settings)
    log_in(page, live_server.url, annotator.username)
    page.click(f"a[href='/projects/{project.id}/annotate/']")
    wait_for_query(page)
    query_id = page.evaluate("() => window.annotator.query.id")
    assert query_id == query_ids[0]
    mask, predicted, _ = query_rasters(2)
    assert "gluteus maximus" in page.inner_text("#palette").lower()

    # Brush with "iliacus" (key 3) inside the query (the box y 200..319, x 180..339).
    page.keyboard.press("3")
    page.keyboard.press("b")
    stroke(page, [(200, 230), (260, 250), (320, 240)])
    painted = answers(page)
    assert (painted[mask] == 3).sum() > 300
    assert (painted[~mask] == 255).all()

    # Brush outside the query: nothing changes.
    before = answers(page)
    stroke(page, [(40, 40), (120, 90), (170, 150)])
    assert (answers(page) == before).all()

    # Undo the last effective stroke, then redo it.
    page.keyboard.press("Control+z")
    assert (answers(page) == 255).all()
    page.keyboard.press("Control+y")
    assert (answers(page) == before).all()

    # Fill the rest of the query with "psoas major" (key 4); the fill stops at the outline.
    page.keyboard.press("4")
    page.keyboard.press("f")
    for _ in range(3):  # fill, undo, fill again: three timings of the same fill
        page.mouse.click(*client_point(page, 185, 310))
        page.keyboard.press("Control+z")
    page.keyboard.press("Control+y")
    filled = answers(page)
    assert set(np.unique(filled[mask]).tolist()) == {3, 4}
    assert (filled[~mask] == 255).all()

    # Painting a 512 x 512 slice stays smooth: every paint + render under 20 ms.
    times = page.evaluate("() => window.annotator.paintTimes")
    assert len(times) > 20 and max(times) < 20.0, f"slowest paint took {max(times):.1f} ms"
    fills = page.evaluate("() => window.annotator.fillTimes")
    print(f"brush paint+render: {len(times)} frames, max {max(times):.1f} ms; fill of the query: {fills} ms")
    # A fill is one click, not a stroke: its typical time (median of three) must fit a frame too.
    assert len(fills) == 3 and sorted(fills)[1] < 20.0, f"the fill took {sorted(fills)[1]:.1f} ms"

    held = answers(page)[mask].tolist()
    page.click("#submit")
    page.wait_for_function(f"() => window.annotator.query && window.annotator.query.id !== {query_id}")
    assert "Saved your answer" in page.inner_text("#message")

    query = Query.objects.get(pk=query_id)
    assert query.status == Query.Status.ANSWERED and query.answered_by == annotator
    stored = np.frombuffer(codec.unpack_labels(query.answer, (int(mask.sum()), 1)).reshape(-1), np.uint8)
    assert stored.tolist() == held
    assert (stored.reshape(-1) == filled[mask]).all()
    assert query.seconds_spent is not None and query.seconds_spent > 0
    merged = codec.unpack_labels(TrainingSlice.objects.get(query=query).labels, (512, 512))
    assert (merged[mask] == filled[mask]).all() and (merged[~mask] == predicted[~mask]).all()
    assert page.errors == []


def test_submit_with_unlabelled_pixels_says_what_is_missing(app_page, live_server, plain_static, tmp_path, settings):
    page = app_page
    project, annotator, _, query_ids = annotating_project(tmp_path, settings)
    log_in(page, live_server.url, annotator.username)
    page.goto(f"{live_server.url}/projects/{project.id}/annotate/")
    page.wait_for_function("() => window.annotator && window.annotator.editor")
    page.click("#submit")
    assert "have no label yet" in page.inner_text("#message")
    assert Query.objects.get(pk=query_ids[0]).status == Query.Status.OPEN
    page.click("#accept-all")
    page.click("#submit")
    page.wait_for_function(f"() => window.annotator.query && window.annotator.query.id !== {query_ids[0]}")
    assert Query.objects.get(pk=query_ids[0]).status == Query.Status.ANSWERED

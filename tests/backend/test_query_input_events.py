"""Each answer records the annotator's time and input events on it; bad figures are refused, nothing stored."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest
from rest_framework.test import APIClient

from backend.acquisition.models import Query
from tests.browser.data import annotating_project, query_rasters

pytestmark = pytest.mark.django_db


def _answer(mask: np.ndarray) -> str:
    return base64.b64encode(zlib.compress(np.where(mask, 1, 255).astype(np.uint8).tobytes())).decode()


@pytest.fixture
def submit(tmp_path, settings):
    project, annotator, _, ids = annotating_project(tmp_path, settings)
    client = APIClient()
    client.force_authenticate(annotator)
    assert client.post(f"/api/projects/{project.id}/queries/next/").status_code == 200
    url = f"/api/projects/{project.id}/queries/{ids[0]}/submit/"
    mask = query_rasters(2)[0]

    def send(**extra):
        response = client.post(url, {"labels": _answer(mask), "encoding": "zlib", **extra}, format="json")
        return response.status_code, response.json()

    return send, ids[0], project, client


@pytest.mark.parametrize(("extra", "field", "words"), [
    ({"input_events": -1}, "input_events", "greater than or equal to 0"),
    ({"input_events": 2_000_000}, "input_events", "less than or equal to 1000000"),
    ({"input_events": "many"}, "input_events", "valid integer"),
    ({"input_events": 3.5}, "input_events", "valid integer"),
    ({"seconds_spent": 1e9}, "seconds_spent", "less than or equal to 86400"),
])
def test_bad_time_or_input_figures_are_refused_and_nothing_is_stored(submit, extra, field, words):
    send, query_id, _, _ = submit
    status, body = send(**{"seconds_spent": 3.0, "input_events": 4, **extra})
    assert status == 400, body
    assert words in str(body), body
    query = Query.objects.get(pk=query_id)
    assert (query.status, query.answer, query.input_events, query.seconds_spent) == ("open", None, None, None)


def test_time_and_input_events_are_stored_and_listed(submit):
    send, query_id, project, client = submit
    status, body = send(seconds_spent=12.5, input_events=7)
    assert status == 201, body
    assert (body["seconds_spent"], body["input_events"]) == (12.5, 7)
    query = Query.objects.get(pk=query_id)
    assert (query.status, query.seconds_spent, query.input_events) == ("answered", 12.5, 7)
    rows = client.get(f"/api/projects/{project.id}/steps/{query.step_id}/queries/").json()
    assert [r["input_events"] for r in rows] == [7, None]
    from backend.acquisition.selectors import mac_summary

    mine = mac_summary(project)["annotators"][0]
    assert (mine["input_events"], mine["input_pixels"]) == (7, query.n_queried)


def test_an_old_client_without_the_count_still_answers(submit):
    send, query_id, _, _ = submit
    status, body = send(seconds_spent=2.0)
    assert status == 201 and body["input_events"] is None

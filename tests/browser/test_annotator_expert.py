"""A scripted expert answers the same three realistic queries with the old tools and with the new ones,
in the real annotator page, and the test prints the seconds of scripted input and the input events per
answered pixel of each (docs/annotator.md records them; run with ``-s`` to see the table).

The three queries, on a phantom slice (muscle 40 HU, subcutaneous fat -90 HU, two bones 700 HU):
whole: a whole slice at the cold start (no prediction); scattered: 60 islands of 1-4 pixels on a mature
model, 12 of them predicted wrong; correction: a box whose prediction is right but for a blob of fat
predicted as muscle and an edge between the two glutei predicted 8 pixels too far left. Both experts must reach the true labels (at least 98 % of the queried pixels).

The old tools are those of the page before issue 19, and the old expert works as they forced one to:
the prediction inside the query was hidden until "accept" (so it accepts first, then corrects), there was
no island tool, no "next island" and no HU limit (so it zooms with the wheel onto every island to judge
it, and outlines a region with a stroke before filling it). Input events are the page's own count:
every press, key, wheel notch, change of a control and pointer move while a button is held.

The correction is answered a third time with the new tools but without the boundary drag (the edge
painted over with a stroke, as the push brush did before the drag replaced it), to show what the drag saves.
"""

from __future__ import annotations

import base64
import math
import time

import numpy as np
import pytest
from django.utils import timezone

from backend.acquisition import codec
from backend.acquisition.models import AcquisitionStep, Query
from backend.acquisition.states import State
from backend.acquisition.steps import services as step_services
from backend.projects.models import Membership
from tests.backend.factories import (
    PoolFactory,
    ProjectFactory,
    UserFactory,
    scan_with_volume,
    use_tmp_storage,
)
from tests.browser.conftest import log_in, wait_for_query
from tests.browser.data import label_set

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

N = 512
BONES = ((170, 270), (342, 270))
BONE_R = 28
BLOB = (300, 230, 25, 14)  # x, y, half-width, half-height of the fat blob of the correction query
BOX = (slice(200, 320), slice(180, 340))
EDGE_ERROR = 8  # pixels the correction query's predicted edge between the glutei lies left of the true one
YY, XX = np.mgrid[:N, :N]
INNER = (YY - 256) ** 2 / 185**2 + (XX - 256) ** 2 / 215**2 <= 1
BODY = (YY - 256) ** 2 / 200**2 + (XX - 256) ** 2 / 230**2 <= 1
BONE = np.zeros((N, N), bool)
for _cx, _cy in BONES:
    BONE |= (XX - _cx) ** 2 + (YY - _cy) ** 2 <= BONE_R**2
FAT_BLOB = ((XX - BLOB[0]) / BLOB[2]) ** 2 + ((YY - BLOB[1]) / BLOB[3]) ** 2 <= 1


def truth(blob: bool) -> np.ndarray:
    """Gluteus maximus (1) left of x 256, gluteus medius (2) from it on, femur (5), the rest background
    (with ``blob``, the blob of fat that every slice has too; without, what the model predicts there)."""
    t = np.zeros((N, N), np.uint8)
    t[INNER & (XX < 256)] = 1
    t[INNER & (XX >= 256)] = 2
    t[BONE] = 5
    if blob:
        t[FAT_BLOB & INNER & ~BONE] = 0
    return t


def volume(depth: int = 6) -> np.ndarray:
    rng = np.random.default_rng(3)
    hu = np.full((depth, N, N), -1000, np.int16)
    for z in range(depth):
        sl = hu[z]
        sl[BODY] = -90 + rng.normal(0, 12, int(BODY.sum())).astype(np.int16)
        sl[INNER] = 40 + rng.normal(0, 12, int(INNER.sum())).astype(np.int16)
        sl[FAT_BLOB & INNER & ~BONE] = -90 + rng.normal(0, 12, int((FAT_BLOB & INNER & ~BONE).sum())).astype(np.int16)
        sl[BONE] = 700
    return hu


def islands(rng) -> tuple[np.ndarray, list[list[tuple[int, int]]]]:
    """60 islands of 1-4 pixels (8-connected), at least 6 pixels apart, in the muscles."""
    shapes = [[(0, 0)], [(0, 0), (1, 0)], [(0, 0), (1, 1)], [(0, 0), (1, 0), (0, 1), (1, 1)], [(0, 0), (1, 0), (0, 1)]]
    out = []
    for gy in range(6):
        for gx in range(10):
            x, y = 110 + gx * 30 + int(rng.integers(0, 6)), 150 + gy * 40 + int(rng.integers(0, 6))
            pixels = [(x + dx, y + dy) for dx, dy in shapes[(gx + gy) % len(shapes)]]
            if all(INNER[py, px] and not BONE[py, px] and not FAT_BLOB[py, px] and px not in (255, 256)
                   for px, py in pixels):
                out.append(pixels)
    mask = np.zeros((N, N), bool)
    for island in out:
        for px, py in island:
            mask[py, px] = True
    return mask, out


def queries() -> list[dict]:
    """The three queries: mask, predicted, true labels, and what the expert needs to know."""
    rng = np.random.default_rng(5)
    whole = {"name": "whole slice (cold start)", "mask": np.ones((N, N), bool), "predicted": np.zeros((N, N), np.uint8),
             "truth": truth(True)}
    mask, found = islands(rng)
    t = truth(True)
    wrong = [k for k in range(len(found)) if k % 5 == 2]
    predicted = t.copy()
    for k in wrong:
        for px, py in found[k]:
            predicted[py, px] = 3 - t[py, px]  # the other gluteus
    scattered = {"name": "scattered islands (mature model)", "mask": mask, "predicted": predicted, "truth": t,
                 "islands": found, "wrong": wrong}
    box = np.zeros((N, N), bool)
    box[BOX] = True
    t = truth(True)
    predicted = truth(False)  # the blob of fat predicted as gluteus medius
    predicted[INNER & (XX >= 256 - EDGE_ERROR) & (XX < 256)] = 2  # and gluteus medius spilling over its edge
    correction = {"name": "correction (fat as muscle, an edge 8 px off)", "mask": box, "predicted": predicted,
                  "truth": t}
    return [whole, scattered, correction]


def make_project(tmp_path, settings, qs):
    use_tmp_storage(settings, tmp_path)
    pool = PoolFactory()
    project = ProjectFactory(label_set=label_set(), pools=[pool], name="Expert study")
    scan = scan_with_volume(pool, volume(len(qs) * 2 + 1), name="phantom")
    expert = UserFactory(username="expert")
    Membership.objects.create(project=project, user=expert, role=Membership.Role.ANNOTATOR)
    step = AcquisitionStep.objects.create(
        project=project, number=1, state=State.ANNOTATING, strategy="tau", tau=project.tau, slices_per_step=6,
        k_uncertain=6, mc_samples=2, started_by=expert,
        transitions=[{"state": "annotating", "at": timezone.now().isoformat()}])
    # The old expert answers z 0-2, the new one z 3-5, and the new one without the drag the correction at z 6.
    for z, q in enumerate(qs + qs + qs[2:]):
        Query.objects.create(step=step, scan=scan, z=z, height=N, width=N, mask=codec.pack_mask(q["mask"]),
                             predicted=codec.pack_labels(q["predicted"]),
                             uncertainty=codec.pack_float16(np.zeros((N, N), np.float32)),
                             n_queried=int(q["mask"].sum()), n_pixels=N * N)
    return project, expert


# ---------- the scripted hand ----------

class Hand:
    def __init__(self, page):
        self.page = page

    def at(self, x: float, y: float) -> tuple[float, float]:
        return self.page.evaluate("""([x, y]) => {
            const v = window.annotator.viewer, r = v.stage.getBoundingClientRect();
            return [r.left + (x + 0.5) * r.width / v.width, r.top + (y + 0.5) * r.height / v.height];
        }""", [x, y])

    def key(self, *keys: str) -> None:
        for k in keys:
            self.page.keyboard.press(k)

    def click(self, x: float, y: float) -> None:
        self.page.mouse.click(*self.at(x, y))

    def stroke(self, points: list[tuple[float, float]]) -> None:
        """A drag through slice points; one pointer move per 8 screen pixels, as a mouse reports them."""
        screen = [self.at(*p) for p in points]
        self.page.mouse.move(*screen[0])
        self.page.mouse.down()
        for a, b in zip(screen, screen[1:], strict=False):
            self.page.mouse.move(*b, steps=max(1, round(math.dist(a, b) / 8)))
        self.page.mouse.up()

    def radius_to_max(self) -> None:
        """Click the far end of the radius slider: one press and one change, as a hand does it."""
        box = self.page.locator("#radius").bounding_box()
        self.page.mouse.click(box["x"] + box["width"] - 1, box["y"] + box["height"] / 2)

    def radius(self, r: int) -> None:
        now = int(self.page.input_value("#radius"))
        self.key(*(["]"] * (r - now) if r > now else ["["] * (now - r)))

    def hu(self, preset: str) -> None:
        self.page.select_option("#hu-limit", {"any": "", "muscle": "-29,150", "fat": "-190,-30", "bone": "200,3000"}[preset])

    def wheel_in(self, x: float, y: float, notches: int) -> None:
        self.page.mouse.move(*self.at(x, y))
        for _ in range(notches):
            self.page.mouse.wheel(0, -100)

    def button(self, selector: str) -> None:
        self.page.click(selector)


def ellipse(cx, cy, rx, ry, n):
    return [(cx + rx * math.cos(2 * math.pi * k / n), cy + ry * math.sin(2 * math.pi * k / n)) for k in range(n + 1)]


# ---------- the old expert ----------

def old_whole(h: Hand, q) -> None:
    h.key("1", "f")
    h.click(256, 256)  # everything gluteus maximus, then outline and fill the rest
    h.key("b")
    h.radius(1)
    h.key("5")
    for cx, cy in BONES:
        h.key("b")
        h.stroke(ellipse(cx, cy, BONE_R - 1, BONE_R - 1, 24))
        h.key("f")
        h.click(cx, cy)
    h.key("`", "b")
    h.stroke(ellipse(256, 256, 216.5, 186.5, 48))  # just outside the muscles, on the fat
    h.key("f")
    h.click(3, 3)
    h.key("2", "b")
    h.radius(0)
    h.stroke([(256, 70), (256, 442)])
    h.key("f")
    h.click(300, 200)


def old_scattered(h: Hand, q) -> None:
    h.button("#accept-all")  # the only way to see the prediction inside the query
    h.radius(0)
    h.key("b")
    wrong = set(q["wrong"])
    for k, island in enumerate(q["islands"]):
        x, y = island[0]
        h.wheel_in(x, y, 6)  # look closely: 1.15^6 = 2.3x
        if k in wrong:
            h.key(str(q["truth"][y, x]))
            h.stroke(island if len(island) > 1 else [island[0], island[0]])
        h.button("#fit")


def old_correction(h: Hand, q) -> None:
    h.button("#accept-all")
    h.key("1", "b")  # paint the strip between the predicted and the true edge back to gluteus maximus
    h.radius(4)
    h.stroke([(255 - EDGE_ERROR / 2, 196), (255 - EDGE_ERROR / 2, 324)])  # radius 4 at x 251: x 247-255
    h.key("`")
    h.radius(1)
    x, y, rx, ry = BLOB
    h.stroke(ellipse(x, y, rx - 1, ry - 1, 24))
    h.key("f")
    h.click(x, y)


# ---------- the new expert ----------

def new_whole(h: Hand, q) -> None:
    h.hu("bone")
    h.key("5", "f")
    for cx, cy in BONES:
        h.click(cx, cy)
    h.hu("fat")
    h.key("`")
    h.click(256, 256 - 192)
    h.hu("muscle")
    h.key("1")
    h.click(200, 256)
    h.key("2", "b")
    h.radius(0)
    h.stroke([(256, 70), (256, 442)])
    h.key("f")
    h.click(300, 200)
    h.button("#accept-all")  # the air keeps the (background) prediction


def new_scattered(h: Hand, q) -> None:
    h.key("i")
    wrong = {q["islands"][k][0] for k in q["wrong"]}
    starts = {min(i, key=lambda p: (p[1], p[0])): i for i in q["islands"]}
    for _ in range(len(q["islands"])):
        h.key("n")  # the next island, centred and zoomed; the expert sees its hatched prediction
        first = h.page.evaluate("() => window.annotator.lastIsland")
        island = starts[(first % N, first // N)]
        if island[0] in wrong:
            x, y = island[0]
            h.key(str(q["truth"][y, x]))
            h.click(x, y)
    h.button("#accept-all")


def new_correction(h: Hand, q) -> None:
    h.hu("fat")
    h.key("`", "f")
    h.click(BLOB[0], BLOB[1])
    h.hu("any")
    h.key("g")  # push the edge between the glutei to where the CT shows it, in two drags of the widest circle
    h.radius_to_max()
    for y in (230, 290):
        h.stroke([(255 - EDGE_ERROR, y), (255, y)])
    h.button("#accept-all")


def brush_correction(h: Hand, q) -> None:
    """The correction with the new tools but the edge painted over as the push brush (before the drag) did:
    a stroke along the whole strip (the push brush took the structure under the press, so it needed no
    structure key: one input fewer than this brush)."""
    h.hu("fat")
    h.key("`", "f")
    h.click(BLOB[0], BLOB[1])
    h.hu("any")
    h.key("1", "b")
    h.radius(4)
    h.stroke([(255 - EDGE_ERROR / 2, 196), (255 - EDGE_ERROR / 2, 324)])
    h.button("#accept-all")


def answer(page, h: Hand, q, script) -> dict:
    query_id = page.evaluate("() => window.annotator.query.id")
    started = time.perf_counter()
    script(h, q)
    seconds = time.perf_counter() - started
    left = page.evaluate("() => window.annotator.editor.unansweredCount()")
    if left:
        held = np.frombuffer(base64.b64decode(page.evaluate("() => window.annotator.answersBase64()")), np.uint8)
        where = np.argwhere(held.reshape(N, N)[:, :] == 255)
        pytest.fail(f"{q['name']}: the script left {left} pixels without a label, e.g. (y, x) {where[:5].tolist()}")
    page.click("#submit")
    page.wait_for_function(f"() => !window.annotator.query || window.annotator.query.id !== {query_id}", timeout=20000)
    stored = Query.objects.get(pk=query_id)
    assert stored.status == "answered", f"{q['name']}: not answered ({page.inner_text('#message')})"
    mask = q["mask"]
    got = np.frombuffer(codec.unpack_labels(stored.answer, (int(mask.sum()), 1)).reshape(-1), np.uint8)
    accuracy = float((got == q["truth"][mask]).mean())
    return {"events": stored.input_events, "seconds": seconds, "pixels": int(mask.sum()), "accuracy": accuracy}


def test_new_tools_need_fewer_inputs_per_answered_pixel(app_page, live_server, plain_static, tmp_path, settings,
                                                        monkeypatch):
    monkeypatch.setattr(step_services, "enqueue_phase", lambda step: None)  # no training after the last answer
    qs = queries()
    project, expert = make_project(tmp_path, settings, qs)
    page = app_page
    page.set_viewport_size({"width": 1440, "height": 900})
    log_in(page, live_server.url, expert.username)
    page.goto(f"{live_server.url}/projects/{project.id}/annotate/")
    wait_for_query(page)
    hand = Hand(page)
    results = {}
    whole, scattered, correction = qs
    # In the order of the queries' slices; the brush before the drag, so that each starts from the radius
    # the scattered islands left (0), as the old expert does.
    for tools, q, script in (("old", whole, old_whole), ("old", scattered, old_scattered),
                             ("old", correction, old_correction), ("new", whole, new_whole),
                             ("new", scattered, new_scattered), ("new without the drag", correction, brush_correction),
                             ("new", correction, new_correction)):
        wait_for_query(page)
        results[(tools, q["name"])] = answer(page, hand, q, script)
    print("\nquery | tools | answered pixels | input events | events per answered pixel | seconds of input | "
          "accuracy")
    for (tools, name), r in results.items():
        print(f"{name} | {tools} | {r['pixels']:,} | {r['events']} | {r['events'] / r['pixels']:.4f} | "
              f"{r['seconds']:.1f} | {100 * r['accuracy']:.2f} %")
    for r in results.values():
        assert r["accuracy"] >= 0.98, results
    for q in qs[1:]:
        old, new = results[("old", q["name"])], results[("new", q["name"])]
        assert old["events"] >= 3 * new["events"], f"{q['name']}: {old['events']} old against {new['events']} new"
    drag, brush = results[("new", qs[2]["name"])], results[("new without the drag", qs[2]["name"])]
    assert drag["events"] < brush["events"], f"the drag took {drag['events']} inputs, the brush {brush['events']}"
    assert page.errors == []

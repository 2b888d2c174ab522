"""The annotator's editing rules, run in the browser they ship to."""

import numpy as np
import pytest

pytestmark = pytest.mark.browser

# A 6 x 4 slice: the query is the 3 x 2 block at x 1..3, y 1..2; predictions are 7.
SETUP = """
  const W = 6, H = 4;
  const predicted = new Uint8Array(W * H).fill(7);
  const mask = new Uint8Array(W * H);
  for (const y of [1, 2]) for (const x of [1, 2, 3]) mask[y * W + x] = 1;
  const ed = new core.LabelEditor(W, H, predicted, mask);
"""


def run(page, body: str):
    return page.evaluate(f"() => {{ {SETUP} {body} }}")


def test_only_queried_pixels_are_editable(module_page):
    changed = run(module_page, "ed.paint(0, 0, 10, 3); return [Array.from(ed.answers), ed.paint(0, 0, 10, 3).length];")
    answers = np.array(changed[0]).reshape(4, 6)
    assert (answers[1:3, 1:4] == 3).all()
    answers[1:3, 1:4] = 255
    assert (answers == 255).all(), "a pixel outside the query changed"
    assert changed[1] == 0


def test_displayed_label_is_prediction_outside_and_answer_inside(module_page):
    shown = run(module_page, "ed.paint(1, 1, 0, 4); return [ed.displayed(0), ed.displayed(7), ed.displayed(8)];")
    assert shown == [7, 4, 255]


def test_fill_stays_inside_the_query(module_page):
    answers = run(module_page, "ed.paint(1, 1, 0, 2); ed.fill(3, 2, 5); return Array.from(ed.answers);")
    grid = np.array(answers).reshape(4, 6)
    assert grid[1, 1] == 2
    assert (grid[1:3, 1:4][grid[1:3, 1:4] != 2] == 5).all()
    assert (grid[0] == 255).all() and (grid[3] == 255).all() and (grid[:, 0] == 255).all()


def test_undo_and_redo_whole_strokes(module_page):
    states = run(module_page, """
      ed.beginStroke(); ed.paint(1, 1, 0, 2); ed.paint(2, 1, 0, 2); ed.endStroke();
      ed.paint(3, 2, 0, 9);
      const a = ed.submission().join();
      ed.undo(); const b = ed.submission().join();
      ed.undo(); const c = ed.submission().join();
      ed.redo(); const d = ed.submission().join();
      return [a, b, c, d];
    """)
    assert states == ["2,2,255,255,255,9", "2,2,255,255,255,255", "255,255,255,255,255,255",
                      "2,2,255,255,255,255"]


def test_accept_predicted_and_unanswered_count(module_page):
    counts = run(module_page, "const n0 = ed.unansweredCount(); ed.acceptPredicted(0, 0, Infinity); "
                              "return [n0, ed.unansweredCount(), ed.submission().join()];")
    assert counts == [6, 0, "7,7,7,7,7,7"]


def test_unpack_bits_matches_numpy_packbits(module_page):
    bits = np.random.default_rng(0).integers(0, 2, 21).astype(np.uint8)
    import base64

    packed = base64.b64encode(np.packbits(bits).tobytes()).decode()
    out = module_page.evaluate("([p, n]) => Array.from(core.unpackBits(core.base64ToBytes(p), n))", [packed, 21])
    assert out == bits.tolist()
    round_trip = module_page.evaluate("(p) => core.bytesToBase64(core.base64ToBytes(p))", packed)
    assert round_trip == packed


def test_fill_region_changes_the_same_pixels_as_fill_and_undoes_in_one_step(module_page):
    # A 40 x 30 slice with a ragged query and scattered answers: both fills must agree.
    out = module_page.evaluate("""() => {
      const W = 40, H = 30;
      let seed = 3;
      const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
      const predicted = new Uint8Array(W * H).fill(1);
      const mask = Uint8Array.from({ length: W * H }, () => (rand() < 0.8 ? 1 : 0));
      const a = new core.LabelEditor(W, H, predicted, mask), b = new core.LabelEditor(W, H, predicted, mask);
      for (let k = 0; k < 60; k++) {
        const i = Math.floor(rand() * W * H);
        a._set(i, 2); b._set(i, 2);
      }
      let seedPixel = 0;
      while (!mask[seedPixel] || a.answers[seedPixel] !== 255) seedPixel++;
      const x = seedPixel % W, y = Math.floor(seedPixel / W);
      const n1 = a.fill(x, y, 5).length, n2 = b.fillRegion(x, y, 5).length;
      const same = a.answers.every((v, i) => v === b.answers[i]);
      b.undo();
      const undone = b.answers.filter((v) => v === 5).length;
      return [n1, n2, same, undone, b.fillRegion(0, 0, 5).length >= 0];
    }""")
    n1, n2, same, undone, _ = out
    assert n1 > 50 and n1 == n2 and same
    assert undone == 0

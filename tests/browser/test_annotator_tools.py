"""The new editing rules, run in the browser they ship to: HU limits, fills that stop at predicted
edges, islands, interpolation between two slices, readable names and the search."""

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture
def modules(module_page, static_server):
    module_page.evaluate("""async (base) => {
      window.islands = await import(base + "/myolabel/js/annotator/islands.js");
      window.nearby = await import(base + "/myolabel/js/annotator/nearby.js");
      window.labels = await import(base + "/myolabel/js/labels.js");
    }""", static_server)
    return module_page


# An 8 x 4 slice, all queried. HU: muscle (40) on the left half, fat (-90) on the right half.
# Prediction: 1 on columns 0-2, 2 on columns 3-7.
SETUP = """
  const W = 8, H = 4;
  const predicted = Uint8Array.from({ length: W * H }, (_, i) => (i % W < 3 ? 1 : 2));
  const mask = new Uint8Array(W * H).fill(1);
  const ed = new core.LabelEditor(W, H, predicted, mask);
  ed.hu = Int16Array.from({ length: W * H }, (_, i) => (i % W < 4 ? 40 : -90));
"""


def run(page, body: str):
    return page.evaluate(f"() => {{ {SETUP} {body} }}")


def grid(values) -> list[str]:
    return ["".join("." if v == 255 else str(v) for v in values[r * 8:(r + 1) * 8]) for r in range(4)]


def test_the_hu_limit_bounds_brush_and_fill(modules):
    out = run(modules, """
      ed.huRange = { lo: -190, hi: -30 };           // fat only
      ed.paint(3, 1, 3, 7);                          // a disc over both halves
      const brushed = Array.from(ed.answers);
      ed.answers.fill(255);
      ed.fillRegion(7, 0, 0);
      return [brushed, Array.from(ed.answers)];
    """)
    brushed, filled = out
    assert grid(brushed)[1] == "....777."  # x 0-6: the muscle half of the disc stayed unanswered
    assert grid(filled) == ["....0000"] * 4


def test_accept_all_ignores_the_hu_limit_and_keeps_answers(modules):
    out = run(modules, "ed.huRange = { lo: 0, hi: 100 }; ed.paint(0, 0, 0, 5); ed.acceptPredicted(0, 0, Infinity);"
                       " return Array.from(ed.answers);")
    assert grid(out) == ["51122222", "11122222", "11122222", "11122222"]


def test_fill_stops_at_predicted_edges_when_asked(modules):
    out = run(modules, """
      ed.fillRegion(0, 0, 5); const plain = Array.from(ed.answers);
      ed.answers.fill(255); ed.stopAtEdges = true;
      ed.fillRegion(0, 0, 5); return [plain, Array.from(ed.answers)];
    """)
    assert grid(out[0]) == ["55555555"] * 4
    assert grid(out[1]) == ["555....."] * 4


def test_islands_assign_confirm_next_and_count(modules):
    out = modules.evaluate("""() => {
      const W = 6, H = 3;
      const predicted = new Uint8Array(W * H).fill(4);
      const mask = new Uint8Array(W * H);
      for (const i of [0, 7, 3, 4, 17]) mask[i] = 1;   // islands: {0, 7} (diagonal), {3, 4}, {17}
      const ed = new core.LabelEditor(W, H, predicted, mask);
      const n0 = islands.countIslands(ed);
      const first = islands.nextIsland(ed).first, second = islands.nextIsland(ed, first).first;
      const third = islands.nextIsland(ed, second).first, wrapped = islands.nextIsland(ed, third).first;
      const a = islands.assignIsland(ed, 1, 1, 2).length;
      const c = islands.assignIsland(ed, 4, 0, "predicted").length;
      const after = islands.nextIsland(ed, -1).first;
      ed.undo();
      return [n0, first, second, third, wrapped, a, c, Array.from(ed.answers), after, islands.countIslands(ed)];
    }""")
    n0, first, second, third, wrapped, assigned, confirmed, answers, after, n1 = out
    assert (n0, first, second, third, wrapped) == (3, 0, 3, 17, 0)
    assert (assigned, confirmed, after) == (2, 2, 17)
    assert answers[0] == 2 and answers[7] == 2 and answers[3] == 255 and n1 == 2  # the confirm was undone


def test_interpolation_grows_a_disc_between_two_slices(modules):
    radii = modules.evaluate("""() => {
      const W = 64, H = 64;
      const disc = (r) => Uint8Array.from({ length: W * H }, (_, i) => ((i % W - 32) ** 2 + (Math.floor(i / W) - 32) ** 2 <= r * r ? 3 : 0));
      const mid = nearby.interpolate(disc(8), disc(20), 0.5, W, H);
      const row = Array.from(mid.subarray(32 * W, 33 * W));
      return [row.filter((v) => v === 3).length, new Set(mid).size];
    }""")
    width, kinds = radii
    assert 27 <= width <= 31 and kinds == 2  # about 2 x 14 + 1 pixels across, background and the structure


def test_readable_names_keys_and_search(modules):
    out = modules.evaluate("""() => {
      const rows = labels.paletteRows([{ value: 1, name: "gluteus_maximus", colour: "#ee4444" },
                                       { value: 2, name: "psoas_major_left", colour: "#00ff00" },
                                       { value: 3, name: "vastus_lateralis_intermedius", colour: "#4455ff" }]);
      return [rows.map((r) => r.name), rows.map((r) => r.key),
              labels.searchRows(rows, "vast inter").map((r) => r.value), labels.searchRows(rows, "PSO").map((r) => r.value)];
    }""")
    names, keys, vast, pso = out
    assert names == ["Gluteus maximus", "Psoas major (left)", "Vastus lateralis intermedius", "Background (no structure)"]
    assert keys == ["1", "2", "3", "`"] and vast == [3] and pso == [2]

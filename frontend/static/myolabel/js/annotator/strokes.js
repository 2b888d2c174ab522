// What a press of the left button does on the query's slice with the tool chosen: a click tool (fill,
// island, confirm) changes pixels at once; a brush (brush, eraser, accept brush) paints along the drag;
// push moves an edge with the drag (push.js). Each press is one undo step.

import { assignIsland } from "./islands.js";
import { pushStart, pushTo } from "./push.js";

const CLICK_TOOLS = ["fill", "island", "confirm"];

/** Brush positions between two points, close enough that the stroke has no gaps. */
function along(a, b, radius) {
  const d = Math.hypot(b.x - a.x, b.y - a.y);
  const n = Math.max(1, Math.ceil(d / Math.max(0.5, radius / 2)));
  const out = [];
  for (let k = 1; k <= n; k++) out.push({ x: a.x + ((b.x - a.x) * k) / n, y: a.y + ((b.y - a.y) * k) / n });
  return out;
}

/** The strokes of a page: ctx = {state, changed(indices), tell(text, kind), updateCounts(), readOnly()};
 *  returns the pointer's {press(p) -> true when a drag follows, drag(p), release()}. */
export function createStrokes(ctx) {
  const { state } = ctx;

  function applyAt(x, y) {
    const ed = state.editor, r = state.radius;
    if (state.tool === "brush") return ed.paint(x, y, r, state.painting.value);
    if (state.tool === "eraser") return ed.erase(x, y, r);
    if (state.tool === "accept") return ed.acceptPredicted(x, y, r);
    return [];
  }

  function strokeTo(p) {
    const t0 = performance.now();
    const points = state.painting.last ? along(state.painting.last, p, state.radius) : [p];
    const indices = [];
    for (const q of points) for (const i of applyAt(Math.round(q.x), Math.round(q.y))) indices.push(i);
    ctx.changed(indices);
    state.painting.last = p;
    state.paintTimes.push(performance.now() - t0);
  }

  function click(x, y) {
    const ed = state.editor;
    const t0 = performance.now();
    ed.beginStroke();
    const idx = state.tool === "fill" ? ed.fillRegion(x, y, state.label)
      : assignIsland(ed, x, y, state.tool === "confirm" ? "predicted" : state.label);
    ed.endStroke();
    ctx.changed(idx);
    if (state.tool === "fill") state.fillTimes.push(performance.now() - t0);
    const inside = x >= 0 && y >= 0 && x < ed.width && y < ed.height;
    if (!idx.length && inside && !ed.queryMask[y * ed.width + x]) {
      ctx.tell("These tools work only inside the yellow outline: the model is sure of the pixels outside it.", "info");
    }
    ctx.updateCounts();
  }

  /** Push: the edge near the press follows the drag (push.js); false when none is near. */
  function startPush(x, y) {
    const push = pushStart(state.editor, x, y, state.radius);
    if (push.error) { ctx.tell(push.error, "info"); return false; }
    state.editor.beginStroke();
    state.pushing = push;
    return true;
  }

  return {
    press(p) {
      if (ctx.readOnly()) {
        ctx.tell("This is a neighbouring slice, shown read only: press Esc to label the query's slice.", "info");
        return false;
      }
      const x = Math.floor(p.x), y = Math.floor(p.y);
      if (CLICK_TOOLS.includes(state.tool)) { click(x, y); return false; }
      if (state.tool === "push") return startPush(x, y);
      state.editor.beginStroke();
      state.painting = { last: null, value: state.label };
      strokeTo({ x, y });
      return true;
    },
    drag(p) {
      const x = Math.floor(p.x), y = Math.floor(p.y);
      if (state.pushing) ctx.changed(pushTo(state.editor, state.pushing, x, y));
      else if (state.painting) strokeTo({ x, y });
    },
    release() {
      state.editor.endStroke();
      state.painting = null;
      state.pushing = null;
      ctx.updateCounts();
    },
  };
}

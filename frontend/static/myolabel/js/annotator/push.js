// Pushing a boundary with a drag: press on (or within PUSH_SNAP pixels of) the boundary between the
// structure under the press (A) and a neighbour (B), and drag. The piece of that boundary inside the
// push circle (the brush radius) moves with the pointer: every pixel it sweeps over that was B changes
// to A. Only those two structures, only queried pixels (and the HU limit, as for the brush); the drag
// is one stroke, so one undo step. A third structure stops the sweep: the push never jumps over it.
// To pull a boundary back, press on its other side.

export const PUSH_SNAP = 2;  // how far from a boundary a press may land, in slice pixels

/** The label the expert sees at pixel i: the answer, else the prediction (also outside the query). */
function shown(editor, i) {
  const a = editor.answers[i];
  return a === 255 ? editor.predicted[i] : a;
}

/** The neighbour structure nearest to pixel (x, y) within PUSH_SNAP: its label, or null. */
function nearestOther(editor, labels, x, y, from) {
  let best = null, bestD = Infinity;
  for (let dy = -PUSH_SNAP; dy <= PUSH_SNAP; dy++) {
    for (let dx = -PUSH_SNAP; dx <= PUSH_SNAP; dx++) {
      const nx = x + dx, ny = y + dy, d = dx * dx + dy * dy;
      if (nx < 0 || ny < 0 || nx >= editor.width || ny >= editor.height || d > PUSH_SNAP * PUSH_SNAP) continue;
      const v = labels[ny * editor.width + nx];
      if (v !== from && d < bestD) { best = v; bestD = d; }
    }
  }
  return best;
}

/** Pixels of `from` inside the circle of `reach` around (x, y) with a 4-neighbour of `into`: the
 *  boundary piece that moves. */
function frontOf(editor, labels, x, y, reach, from, into) {
  const W = editor.width, H = editor.height, out = [];
  for (const i of editor.disc(x, y, reach)) {
    if (labels[i] !== from) continue;
    const px = i % W;
    if ((px > 0 && labels[i - 1] === into) || (px < W - 1 && labels[i + 1] === into) ||
        (i >= W && labels[i - W] === into) || (i < W * (H - 1) && labels[i + W] === into)) out.push(i);
  }
  return out;
}

/**
 * Start a push at slice pixel (x, y) with the circle `reach`: {from, into, front, labels, x, y, swept}, or
 * {error} in words when no boundary is near the press or none of it can move inside the query.
 */
export function pushStart(editor, x, y, reach) {
  if (x < 0 || y < 0 || x >= editor.width || y >= editor.height) return { error: "Press on the image." };
  const labels = Uint8Array.from({ length: editor.width * editor.height }, (_, i) => shown(editor, i));
  const from = labels[y * editor.width + x];
  const into = nearestOther(editor, labels, x, y, from);
  if (into === null) {
    return { error: `Push moves a boundary: press on the edge between two structures (within ${PUSH_SNAP} pixels of it) and drag.` };
  }
  const front = frontOf(editor, labels, x, y, Math.max(PUSH_SNAP, reach), from, into);
  const movable = front.some((i) => [1, -1, editor.width, -editor.width].some((d) => editor.queryMask[i + d]));
  if (!movable) return { error: "This boundary lies outside the yellow outline: the model is sure of it there." };
  return { from, into, front, labels, x, y, swept: [] };
}

/** Sweep from pixel f along (dx, dy): B pixels become A; A pixels are passed; any other label stops it. */
function sweep(editor, push, f, dx, dy, out) {
  const W = editor.width, H = editor.height;
  const fx = f % W, fy = (f - fx) / W;
  const steps = Math.ceil(2 * Math.hypot(dx, dy));
  for (let k = 1; k <= steps; k++) {
    const x = Math.round(fx + (dx * k) / steps), y = Math.round(fy + (dy * k) / steps);
    if (x < 0 || y < 0 || x >= W || y >= H) return;
    const i = y * W + x, was = push.labels[i];
    if (was === push.from) continue;
    if (was !== push.into) return;
    if (editor._set(i, push.from) || editor.answers[i] === push.from) out.add(i);
  }
}

/** Move the pushed boundary to slice pixel (x, y): the swept pixels of the previous position go back,
 *  the new ones change. Returns every index that changed either way (to repaint). */
export function pushTo(editor, push, x, y) {
  const before = push.swept;
  editor.revert(before);
  const swept = new Set();
  const dx = x - push.x, dy = y - push.y;
  if (dx || dy) for (const f of push.front) sweep(editor, push, f, dx, dy, swept);
  push.swept = [...swept];
  return [...new Set([...before, ...push.swept])];
}

// Islands: the connected pieces of a query. On a mature model a query is dozens of scattered
// islands of 1-4 pixels; one click labels a whole island, and "next island" brings the next
// unanswered one to the middle of the screen.

import { UNANSWERED } from "./core.js";

/** Flat indices of the 8-connected island of queried pixels around `seed` that share its answer. */
export function islandAt(editor, seed) {
  const W = editor.width, H = editor.height;
  if (seed < 0 || seed >= W * H || !editor.queryMask[seed]) return [];
  const target = editor.answers[seed];
  const seen = new Set([seed]);
  const stack = [seed];
  const out = [];
  while (stack.length) {
    const i = stack.pop();
    out.push(i);
    const x = i % W, y = (i - x) / W;
    for (let dy = -1; dy <= 1; dy++) {
      for (let dx = -1; dx <= 1; dx++) {
        const nx = x + dx, ny = y + dy, n = ny * W + nx;
        if ((dx || dy) && nx >= 0 && ny >= 0 && nx < W && ny < H && !seen.has(n) && editor.queryMask[n] &&
            editor.answers[n] === target) {
          seen.add(n);
          stack.push(n);
        }
      }
    }
  }
  return out;
}

/** Give the island under (x, y) the label `value`, or each pixel its prediction when `value` is
 *  "predicted" (confirming the model there). One undo step; the HU limit applies. Changed indices. */
export function assignIsland(editor, x, y, value) {
  if (x < 0 || y < 0 || x >= editor.width || y >= editor.height) return [];
  const island = islandAt(editor, y * editor.width + x);
  if (!island.length) return [];
  const own = editor.stroke === null;
  if (own) editor.beginStroke();
  const changed = island.filter((i) => editor._set(i, value === "predicted" ? editor.predicted[i] : value));
  if (own) editor.endStroke();
  return changed;
}

/** The next island without an answer whose first pixel (in raster order) comes after flat index
 *  `after`, wrapping round: {first, pixels, box: {x0, y0, x1, y1}, centre: {x, y}}, or null when every
 *  queried pixel has an answer. Islands are visited in the order of their first pixels, each once. */
export function nextIsland(editor, after = -1) {
  for (const bound of [after, -1]) {
    const seen = new Set();
    for (const i of editor.queried) {
      if (i <= bound || seen.has(i) || editor.answers[i] !== UNANSWERED) continue;
      const pixels = islandAt(editor, i);
      let first = i;
      for (const p of pixels) { seen.add(p); if (p < first) first = p; }
      if (first <= bound) continue;  // an island that starts before `after`: visited already
      return describe(editor, first, pixels);
    }
    if (bound === -1) break;
  }
  return null;
}

function describe(editor, first, pixels) {
  let x0 = Infinity, y0 = Infinity, x1 = -1, y1 = -1;
  for (const p of pixels) {
    const x = p % editor.width, y = (p - x) / editor.width;
    x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + 1); y1 = Math.max(y1, y + 1);
  }
  return { first, pixels, box: { x0, y0, x1, y1 }, centre: { x: (x0 + x1) / 2, y: (y0 + y1) / 2 } };
}

/** How many islands without an answer the query still has (one pass, typed arrays: a whole slice
 *  of 262,144 queried pixels is counted within a frame or two). */
export function countIslands(editor) {
  const W = editor.width, H = editor.height, answers = editor.answers, mask = editor.queryMask;
  const seen = new Uint8Array(W * H);
  const stack = new Int32Array(W * H);
  let n = 0;
  for (const seed of editor.queried) {
    if (seen[seed] || answers[seed] !== UNANSWERED) continue;
    n++;
    let top = 0;
    stack[top++] = seed;
    seen[seed] = 1;
    while (top) {
      const i = stack[--top];
      const x = i % W, y = (i - x) / W;
      for (let dy = -1; dy <= 1; dy++) {
        const ny = y + dy;
        if (ny < 0 || ny >= H) continue;
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx, k = ny * W + nx;
          if (nx >= 0 && nx < W && !seen[k] && mask[k] && answers[k] === UNANSWERED) {
            seen[k] = 1;
            stack[top++] = k;
          }
        }
      }
    }
  }
  return n;
}

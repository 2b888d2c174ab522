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

/** The next island without an answer after flat index `after` in raster order (wrapping round):
 *  {pixels, box: {x0, y0, x1, y1}, centre: {x, y}}, or null when every queried pixel has one. */
export function nextIsland(editor, after = -1) {
  const q = editor.queried;
  if (!q.length) return null;
  let start = q.findIndex((i) => i > after);
  if (start < 0) start = 0;
  for (let k = 0; k < q.length; k++) {
    const i = q[(start + k) % q.length];
    if (editor.answers[i] !== UNANSWERED) continue;
    const pixels = islandAt(editor, i);
    let x0 = Infinity, y0 = Infinity, x1 = -1, y1 = -1;
    for (const p of pixels) {
      const x = p % editor.width, y = (p - x) / editor.width;
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x + 1); y1 = Math.max(y1, y + 1);
    }
    return { first: i, pixels, box: { x0, y0, x1, y1 }, centre: { x: (x0 + x1) / 2, y: (y0 + y1) / 2 } };
  }
  return null;
}

/** How many islands without an answer the query still has. */
export function countIslands(editor) {
  const seen = new Uint8Array(editor.width * editor.height);
  let n = 0;
  for (const i of editor.queried) {
    if (seen[i] || editor.answers[i] !== UNANSWERED) continue;
    n++;
    for (const p of islandAt(editor, i)) seen[p] = 1;
  }
  return n;
}

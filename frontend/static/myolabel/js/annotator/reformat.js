// Sagittal and coronal planes through the point the expert looks at, with the query's slice marked:
// the anatomy above and below the query at a glance. They follow the cursor once it rests.

import { api } from "../api.js";
import { windowToRgba } from "./render.js";

const QUERY_ROW = [255, 212, 0];  // the query's slice: the outline's yellow
const CURSOR = [0, 200, 255];

/** Draw one plane (Z rows of `width` HU) into `canvas`, rows stretched to the true aspect. */
function draw(canvas, hu, depth, width, spacing, { window, level, row, column }) {
  const [dz, dxy] = spacing;
  const rows = Math.max(depth, Math.round((depth * dz) / dxy));  // display rows, CT slices top = last z
  const grey = new Uint8ClampedArray(width * depth * 4);
  windowToRgba(hu, window, level, grey);
  canvas.width = width;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(width, rows);
  for (let r = 0; r < rows; r++) {
    const z = depth - 1 - Math.min(depth - 1, Math.floor((r * depth) / rows));  // head up: high z on top
    img.data.set(grey.subarray(z * width * 4, (z + 1) * width * 4), r * width * 4);
    if (z === row) for (let x = 0; x < width; x++) img.data.set([...QUERY_ROW, 255], (r * width + x) * 4);
    if (column >= 0 && column < width) img.data.set([...CURSOR, 255], (r * width + column) * 4);
  }
  ctx.putImageData(img, 0, 0);
}

/** The two planes of query `q` through slice pixel (x, y); `viewer` gives the window. */
export async function renderReformats(base, q, x, y, viewer, { coronal, sagittal, caption }) {
  const get = async (plane, at) => {
    const resp = await api(`${base}/queries/${q.id}/reformat/?plane=${plane}&at=${at}`, { raw: true });
    const [depth, width] = resp.headers.get("X-Shape").split(",").map(Number);
    const spacing = (resp.headers.get("X-Spacing") || "1,1").split(",").map(Number);
    return { hu: new Int16Array(await resp.arrayBuffer()), depth, width, spacing };
  };
  const [c, s] = await Promise.all([get("coronal", y), get("sagittal", x)]);
  const look = { window: viewer.window, level: viewer.level, row: q.z };
  draw(coronal, c.hu, c.depth, c.width, c.spacing, { ...look, column: x });
  draw(sagittal, s.hu, s.depth, s.width, s.spacing, { ...look, column: y });
  caption.textContent = `Coronal at y ${y} · sagittal at x ${x}; yellow: the query's slice (z ${q.z}).`;
}

/** Bounding box of the queried pixels (the whole slice when none is). */
function queryBox(mask, W) {
  let x0 = W, y0 = Infinity, x1 = 0, y1 = 0;
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    const x = i % W, y = (i - x) / W;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  return y0 === Infinity ? { x0: 0, y0: 0, x1: W, y1: mask.length / W } : { x0, y0, x1, y1 };
}

/** The reformats of the page: through the query's centre at first, then where the cursor rests
 *  for a quarter of a second; one request at a time, none for a query that has gone.
 *  ctx = {base, state (query, viewer; reformatShown is set there), coronal, sagittal, caption}. */
export function createReformats(ctx) {
  const { state } = ctx;
  let busy = false, timer = null;
  const show = (x, y) => {
    const q = state.query;
    if (!q || busy) return;
    busy = true;
    renderReformats(ctx.base, q, x, y, state.viewer, ctx)
      .then(() => { if (state.query === q) state.reformatShown = { x, y }; })
      .catch((err) => { if (state.query === q) ctx.caption.textContent = `The reformats could not be read: ${err.message}`; })
      .finally(() => { busy = false; });
  };
  return {
    start(query, mask) {
      clearTimeout(timer);
      const box = queryBox(mask, query.width);
      show(Math.round((box.x0 + box.x1) / 2), Math.round((box.y0 + box.y1) / 2));
    },
    follow(x, y) {
      clearTimeout(timer);
      const q = state.query;
      timer = setTimeout(() => { if (state.query && state.query === q) show(x, y); }, 250);
    },
    stop() { clearTimeout(timer); },
  };
}

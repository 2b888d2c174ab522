// Sagittal and coronal planes through the point the expert looks at, with the query's slice marked:
// the anatomy above and below the query at a glance. They follow the cursor once it rests. With
// "Labels" on, the rows of labelled slices (answered queries, reference labels) are blended in solid
// and the model's predicted labels hatched where nobody labelled, as on the neighbouring slices.

import { api, inflate } from "../api.js";
import { labelLegend } from "../labels.js";
import { base64ToBytes, UNANSWERED } from "./core.js";
import { hatchAlpha, windowToRgba } from "./render.js";

const QUERY_ROW = [255, 212, 0];  // the query's slice: the outline's yellow
const CURSOR = [0, 200, 255];
const LABEL_MIX = 0.5;  // how much of a label's colour a labelled pixel of a reformat takes

/** Mix `share` of lut colour v into the RGBA pixel at j. */
function mix(data, j, lut, v, share) {
  const k = v * 4;
  for (let c = 0; c < 3; c++) data[j + c] = Math.round(data[j + c] * (1 - share) + lut[k + c] * share);
}

/** The labels of one display pixel (row z, column x): labelled solid, else predicted hatched. */
function blendLabels(data, j, labels, z, x, r, lut) {
  const n = labels.width * z + x;
  const own = labels.labelled[n];
  if (own !== UNANSWERED && lut[own * 4 + 3]) { mix(data, j, lut, own, LABEL_MIX); return; }
  const p = labels.predicted[n];
  if (own === UNANSWERED && p !== UNANSWERED && lut[p * 4 + 3] && hatchAlpha(x, r)) mix(data, j, lut, p, LABEL_MIX * 0.6);
}

/** Draw one plane (Z rows of `width` HU) into `canvas`, rows stretched to the true aspect; `labels`
 *  ({labelled, predicted, width} or null) blended in. */
function draw(canvas, plane, { window, level, row, column, labels, lut }) {
  const { hu, depth, width, spacing: [dz, dxy] } = plane;
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
    if (labels) for (let x = 0; x < width; x++) blendLabels(img.data, (r * width + x) * 4, labels, z, x, r, lut);
    if (z === row) for (let x = 0; x < width; x++) img.data.set([...QUERY_ROW, 255], (r * width + x) * 4);
    if (column >= 0 && column < width) img.data.set([...CURSOR, 255], (r * width + column) * 4);
  }
  ctx.putImageData(img, 0, 0);
}

async function huPlane(base, q, plane, at) {
  const resp = await api(`${base}/queries/${q.id}/reformat/?plane=${plane}&at=${at}`, { raw: true });
  const [depth, width] = resp.headers.get("X-Shape").split(",").map(Number);
  const spacing = (resp.headers.get("X-Spacing") || "1,1").split(",").map(Number);
  return { hu: new Int16Array(await resp.arrayBuffer()), depth, width, spacing };
}

async function labelPlane(base, q, plane, at) {
  const found = await api(`${base}/queries/${q.id}/reformat/labels/?plane=${plane}&at=${at}`);
  return { labelled: await inflate(base64ToBytes(found.labelled)), predicted: await inflate(base64ToBytes(found.predicted)),
    width: found.shape[1], labelledRows: found.labelled_rows, predictedRows: found.predicted_rows, source: found.source };
}

/** The planes of query `q` through slice pixel (x, y): {q, x, y, coronal, sagittal} with their HU and labels. */
export async function readReformats(base, q, x, y) {
  const [coronal, sagittal, coronalLabels, sagittalLabels] = await Promise.all([huPlane(base, q, "coronal", y),
    huPlane(base, q, "sagittal", x), labelPlane(base, q, "coronal", y), labelPlane(base, q, "sagittal", x)]);
  return { q, x, y, coronal: { ...coronal, labels: coronalLabels }, sagittal: { ...sagittal, labels: sagittalLabels } };
}

/** "z 1 (reference), z 4 (answered)": the labelled rows in words. */
function rowWords(rows) {
  return rows.map((r) => `z ${r.z} (${r.source === "query" ? "answered" : r.source})`).join(", ");
}

/** Draw what readReformats read; ctx = {coronal, sagittal, caption, legend, rows, lut}, `withLabels` the toggle. */
export function drawReformats(read, viewer, withLabels, ctx) {
  const { q, x, y, coronal, sagittal } = read;
  const look = { window: viewer.window, level: viewer.level, row: q.z, lut: ctx.lut };
  draw(ctx.coronal, coronal, { ...look, column: x, labels: withLabels ? coronal.labels : null });
  draw(ctx.sagittal, sagittal, { ...look, column: y, labels: withLabels ? sagittal.labels : null });
  const labels = coronal.labels;  // both planes cross the same slices: the same rows are labelled
  const predicted = labels.predictedRows.length ? `predicted rows: ${labels.source.description}`
    : `nothing predicted on these planes (${labels.source.description})`;
  ctx.caption.textContent = `Coronal at y ${y} · sagittal at x ${x}; yellow: the query's slice (z ${q.z}). ` +
    `Labelled rows: ${labels.labelledRows.length ? rowWords(labels.labelledRows) : "none"}; ${predicted}.`;
  renderReformatLegend(read, withLabels, ctx);
}

function renderReformatLegend(read, withLabels, ctx) {
  const values = new Set();
  const extras = [["the query's slice", `rgb(${QUERY_ROW.join(",")})`, ""]];
  if (withLabels) {
    for (const plane of [read.coronal, read.sagittal]) {
      for (const layer of [plane.labels.labelled, plane.labels.predicted]) for (const v of layer) values.add(v);
    }
    const { source, predictedRows } = read.coronal.labels;
    extras.push(["answered or reference", "#888", "legend-solid"]);
    extras.push(predictedRows.length ? [`predicted: ${source.description}`, "#888", "hatched"]
      : ["nothing predicted on these planes", null, "hidden-swatch"]);
  }
  labelLegend(ctx.legend, ctx.rows, values, extras);
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
 *  ctx = {base, state (query, viewer; reformatShown is set there), coronal, sagittal, caption, legend,
 *  toggle (the "Labels" checkbox), rows, lut}. */
export function createReformats(ctx) {
  const { state } = ctx;
  let busy = false, timer = null, last = null;
  const redraw = () => { if (last && state.query === last.q) drawReformats(last, state.viewer, ctx.toggle.checked, ctx); };
  ctx.toggle.addEventListener("change", redraw);
  const show = (x, y) => {
    const q = state.query;
    if (!q || busy) return;
    busy = true;
    readReformats(ctx.base, q, x, y)
      .then((read) => {
        if (state.query !== q) return;
        last = read;
        redraw();
        state.reformatShown = { x, y };
      })
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

// Whole slices, fast: the labelled slices nearest below and above the query (answered queries or
// references) as a starting point to copy, or as the two ends of an interpolation. Both fill only
// pixels without an answer, in one undo step, and only when the expert asks.

import { api, inflate } from "../api.js";
import { base64ToBytes, UNANSWERED, unpackBits } from "./core.js";
import { hatchAlpha, windowToRgba } from "./render.js";

/** [{z, source, labels: Uint8Array, answered: Uint8Array}] of the query's nearest labelled slices. */
export async function loadNearby(base, query) {
  const rows = await api(`${base}/queries/${query.id}/nearby/`);
  const n = query.width * query.height;
  return Promise.all(rows.map(async (r) => ({ z: r.z, source: r.source, labels: await inflate(base64ToBytes(r.labels)),
    answered: unpackBits(base64ToBytes(r.answered), n) })));
}

/** The nearest labelled slice of query `q` and the nearest one on each side (undefined when none). */
export function nearbyChoice(q, nearby) {
  const near = nearby || [];
  return { nearest: [...near].sort((a, b) => Math.abs(a.z - q.z) - Math.abs(b.z - q.z))[0],
    below: near.find((s) => s.z < q.z), above: near.find((s) => s.z > q.z) };
}

/** The labels a copy ("copy") or an interpolation ("interpolate") gives the query's slice. */
export function nearbyLabels(kind, q, nearby) {
  const { nearest, below, above } = nearbyChoice(q, nearby);
  if (kind === "copy") return nearest.labels;
  return interpolate(below.labels, above.labels, (q.z - below.z) / (above.z - below.z), q.width, q.height);
}

/** Give every unanswered queried pixel the label `labels[i]` (255: none); one undo step. */
export function fillUnanswered(editor, labels) {
  editor.beginStroke();
  const changed = editor.queried.filter((i) => editor.answers[i] === UNANSWERED && labels[i] !== UNANSWERED &&
    editor._set(i, labels[i], false));
  editor.endStroke();
  return changed;
}

/** Chamfer (3-4) distance, in pixels, from every pixel to the nearest pixel where `mask` is 1. */
function distanceTo(mask, W, H) {
  const BIG = 1e9;
  const d = new Float32Array(W * H);
  for (let i = 0; i < d.length; i++) d[i] = mask[i] ? 0 : BIG;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = y * W + x;
      let v = d[i];
      if (x > 0) v = Math.min(v, d[i - 1] + 3);
      if (y > 0) {
        v = Math.min(v, d[i - W] + 3);
        if (x > 0) v = Math.min(v, d[i - W - 1] + 4);
        if (x < W - 1) v = Math.min(v, d[i - W + 1] + 4);
      }
      d[i] = v;
    }
  }
  for (let y = H - 1; y >= 0; y--) {
    for (let x = W - 1; x >= 0; x--) {
      const i = y * W + x;
      let v = d[i];
      if (x < W - 1) v = Math.min(v, d[i + 1] + 3);
      if (y < H - 1) {
        v = Math.min(v, d[i + W] + 3);
        if (x < W - 1) v = Math.min(v, d[i + W + 1] + 4);
        if (x > 0) v = Math.min(v, d[i + W - 1] + 4);
      }
      d[i] = v;
    }
  }
  for (let i = 0; i < d.length; i++) d[i] /= 3;
  return d;
}

/** Signed distance to the boundary of structure v: negative inside. */
function signed(labels, v, W, H) {
  const inside = Uint8Array.from(labels, (x) => (x === v ? 1 : 0));
  const outside = Uint8Array.from(inside, (x) => 1 - x);
  const toIn = distanceTo(inside, W, H), toOut = distanceTo(outside, W, H);
  return toIn.map((d, i) => (inside[i] ? -toOut[i] : d));
}

/**
 * Shape-based interpolation between two labelled slices at fraction t (0: `a`, 1: `b`): each structure's
 * signed distance maps are blended, and a pixel takes the structure it is deepest inside (background 0
 * where it is inside none). Pixels unlabelled (255) in either slice count as outside every structure.
 */
export function interpolate(a, b, t, W, H) {
  const values = new Set([...a, ...b].filter((v) => v !== UNANSWERED && v !== 0));
  const out = new Uint8Array(W * H);
  const best = new Float32Array(W * H).fill(0);
  for (const v of values) {
    const sa = signed(a, v, W, H), sb = signed(b, v, W, H);
    for (let i = 0; i < out.length; i++) {
      const s = (1 - t) * sa[i] + t * sb[i];
      if (s < best[i]) { best[i] = s; out[i] = v; }
    }
  }
  return out;
}

/** The CT of the slices 2 and 1 below and above the query, small, with what `labelsOf(z)` (peek.js) gives:
 *  their labels blended in, the model's predicted labels hatched where nobody labelled. */
export async function renderNeighbours(box, query, depth, { slice, viewer, labelsOf, lut }) {
  box.replaceChildren();
  for (const dz of [-2, -1, 1, 2]) {
    const z = query.z + dz;
    const fig = document.createElement("figure");
    const canvas = document.createElement("canvas");
    canvas.width = query.width;
    canvas.height = query.height;
    const caption = Object.assign(document.createElement("figcaption"), { textContent: `z ${z} (${dz > 0 ? "+" : ""}${dz})` });
    fig.append(canvas, caption);
    box.append(fig);
    if (z < 0 || z >= depth) { fig.classList.add("missing"); continue; }
    try {
      const [hu, { labels, predicted }] = await Promise.all([slice(z), labelsOf(z)]);
      const ctx = canvas.getContext("2d");
      const img = ctx.createImageData(query.width, query.height);
      windowToRgba(hu, viewer.window, viewer.level, img.data);
      blend(img.data, labels && labels.values, predicted && predicted.values, query.width, lut);
      caption.textContent += labels ? ` · labelled (${labels.source})` : predicted && predicted.values ? " · predicted" : " · nothing predicted";
      if (labels) fig.classList.add("labelled");
      ctx.putImageData(img, 0, 0);
    } catch {
      fig.classList.add("missing");
    }
  }
}

/** Half the label colour over the grey CT wherever a structure is labelled, and on the hatched half of the
 *  pixels where it is only predicted. */
function blend(rgba, labelled, predicted, width, lut) {
  const n = rgba.length / 4;
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const own = labelled ? labelled[i] : UNANSWERED;
    const x = i % width;
    const v = own !== UNANSWERED ? own : predicted && hatchAlpha(x, (i - x) / width) ? predicted[i] : UNANSWERED;
    const k = v * 4;
    if (v !== UNANSWERED && lut[k + 3]) {
      rgba[j] = (rgba[j] + lut[k]) >> 1;
      rgba[j + 1] = (rgba[j + 1] + lut[k + 1]) >> 1;
      rgba[j + 2] = (rgba[j + 2] + lut[k + 2]) >> 1;
    }
  }
}

// Looking at the anatomy around the query without leaving it: PageUp/PageDown (or Shift+wheel)
// shows the neighbouring acquired slices in the main view, read-only, with their labels (an answered
// query, else the project's reference labels; never a held-out slice) solid and the model's predicted
// labels hatched and dimmed where nobody labelled (the convention of the query's own pre-filled
// prediction); Esc, or coming back to the query's z, returns.

import { api, inflate } from "../api.js";
import { base64ToBytes, UNANSWERED } from "./core.js";

const SOURCE_WORDS = { query: "answered", reference: "reference" };

/** What slice z shows (the server's one rule, also the reformats'): {labels: {values, source} or null,
 *  predicted: {values (null: nothing predicted there), source: {kind, description, model}}}. */
async function sliceLabels(base, query, z) {
  const found = await api(`${base}/queries/${query.id}/slice-labels/?z=${z}`);
  const raster = async (text) => (text ? inflate(base64ToBytes(text)) : null);
  const [labelled, predicted] = await Promise.all([raster(found.labelled), raster(found.predicted)]);
  return { labels: labelled ? { values: labelled, source: SOURCE_WORDS[found.labelled_source] } : null,
    predicted: { values: predicted, source: found.source } };
}

/** The words of the banner for the predicted labels of a slice. */
function predictedWords(predicted) {
  if (!predicted) return "the prediction could not be read";
  if (!predicted.values) return `nothing predicted for this slice (${predicted.source.description})`;
  return `predicted: ${predicted.source.description}, hatched where unlabelled`;
}

/** Peeking for a page: ctx = {base, state, viewer(), slice(z), depth(), lut, banner, onChange()}. */
export function createPeek(ctx) {
  const peek = { z: null, labels: null, predicted: null, hu: null, queryHu: null };
  const seen = new Map();  // z -> promise of sliceLabels, for the query on screen
  let token = 0;

  const labelsOf = (q, z) => {
    if (!seen.has(z)) seen.set(z, sliceLabels(ctx.base, q, z).catch(() => ({ labels: null, predicted: null })));
    return seen.get(z);
  };

  function backToQuery(state, viewer) {
    peek.z = null;
    peek.labels = null;
    peek.predicted = null;
    if (peek.queryHu) viewer.setCt(peek.queryHu);
    viewer.renderQuery(state.editor, ctx.lut);
    viewer.show("outline", true);
    ctx.banner.hidden = true;
    ctx.onChange();
  }

  async function show(z) {
    const { state } = ctx;
    const q = state.query, viewer = ctx.viewer();
    if (!q || !viewer) return;
    const mine = ++token;
    if (z === q.z || z === null) { backToQuery(state, viewer); return; }
    if (peek.z === null) peek.queryHu = viewer.hu;
    peek.z = z;
    const [hu, { labels, predicted }] = await Promise.all([ctx.slice(z), labelsOf(q, z)]);
    if (mine !== token) return;
    Object.assign(peek, { hu, labels, predicted });
    viewer.setCt(hu);
    viewer.show("outline", false);
    viewer.renderPeek(labels && labels.values, predicted && predicted.values, ctx.lut);
    ctx.banner.textContent = `Slice z = ${z} (${z > q.z ? "+" : ""}${z - q.z} from the query at z = ${q.z}) · ` +
      `${labels ? `${labels.source} labels` : "no labels"} · ${predictedWords(predicted)} · read only · ` +
      "Esc or PageUp/PageDown back to the query";
    ctx.banner.hidden = false;
    ctx.onChange();
  }

  return {
    /** What slice z of the query on screen shows: {labels, predicted} (read once per query). */
    labelsOf: (z) => labelsOf(ctx.state.query, z),
    get active() { return peek.z !== null; },
    get z() { return peek.z; },
    /** Label and HU of pixel i of the slice on screen while peeking; a label nobody gave is the prediction's. */
    at(i) {
      const v = peek.labels ? peek.labels.values[i] : UNANSWERED;
      const p = peek.predicted && peek.predicted.values ? peek.predicted.values[i] : UNANSWERED;
      const hu = peek.hu ? peek.hu[i] : null;
      if (v !== UNANSWERED) return { hu, value: v, source: peek.labels.source };
      const model = peek.predicted && peek.predicted.source.model;
      return { hu, value: p === UNANSWERED ? null : p, source: model ? `prediction, model ${model}` : "prediction" };
    },
    /** What the legend shows while peeking: {values (Set), extras [[text, colour, pattern]]}. */
    legend() {
      const values = new Set();
      for (const layer of [peek.labels, peek.predicted]) {
        if (layer && layer.values) for (const v of layer.values) values.add(v);
      }
      const extras = [];
      if (peek.labels) extras.push([`${peek.labels.source} labels of z ${peek.z}`, "#888", "legend-solid"]);
      if (peek.predicted && peek.predicted.values) extras.push([`predicted: ${peek.predicted.source.description}`, "#888", "hatched"]);
      else extras.push([`nothing predicted for z ${peek.z}`, null, "hidden-swatch"]);
      return { values, extras };
    },
    step(dz) {
      const q = ctx.state.query;
      if (!q) return;
      const from = peek.z === null ? q.z : peek.z;
      const z = Math.max(0, Math.min(ctx.depth() - 1, from + dz));
      if (z !== from || peek.z !== null) show(z);
    },
    back() { if (peek.z !== null) show(null); },
    reset() {
      token++;
      Object.assign(peek, { z: null, labels: null, predicted: null, queryHu: null });
      seen.clear();
      ctx.banner.hidden = true;
    },
  };
}

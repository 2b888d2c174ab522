// Looking at the anatomy around the query without leaving it: PageUp/PageDown (or Shift+wheel)
// shows the neighbouring acquired slices in the main view, read-only, with their labels (an
// answered query, else the scan's reference labels); Esc, or coming back to the query's z, returns.

import { api } from "../api.js";
import { UNANSWERED } from "./core.js";

/** The labels of slice z to show while peeking: {values, source} or null. */
async function labelsOf(scan, z, nearby, references) {
  const answered = (nearby || []).find((s) => s.z === z);
  if (answered) return { values: answered.labels, source: answered.source === "reference" ? "reference" : "answered" };
  if (!references.length) return null;
  try {
    const resp = await api(`/api/scans/${scan}/labels/${z}.raw?label_set=${references[0]}`, { raw: true });
    return { values: new Uint8Array(await resp.arrayBuffer()), source: "reference" };
  } catch {
    return null;  // this slice has none
  }
}

/** Peeking for a page: ctx = {state, viewer(), slice(z), references(), depth(), lut, banner, onChange()};
 *  references(): ids of the label sets the scan has reference labels in. */
export function createPeek(ctx) {
  const peek = { z: null, labels: null, hu: null, queryHu: null };
  let token = 0;

  async function show(z) {
    const { state } = ctx;
    const q = state.query, viewer = ctx.viewer();
    if (!q || !viewer) return;
    const mine = ++token;
    if (z === q.z || z === null) {
      peek.z = null;
      peek.labels = null;
      if (peek.queryHu) viewer.setCt(peek.queryHu);
      viewer.renderQuery(state.editor, ctx.lut);
      viewer.show("outline", true);
      ctx.banner.hidden = true;
      ctx.onChange();
      return;
    }
    if (peek.z === null) peek.queryHu = viewer.hu;
    peek.z = z;
    const [hu, labels] = await Promise.all([ctx.slice(z), labelsOf(q.scan, z, state.nearby, ctx.references())]);
    if (mine !== token) return;
    peek.hu = hu;
    peek.labels = labels;
    viewer.setCt(hu);
    viewer.show("outline", false);
    if (labels) viewer.renderLabels((i) => (labels.values[i] === UNANSWERED ? 0 : labels.values[i]), ctx.lut);
    else viewer.renderLabels(() => 0, ctx.lut);
    ctx.banner.textContent = `Slice z = ${z} (${z > q.z ? "+" : ""}${z - q.z} from the query at z = ${q.z}) · ` +
      `${labels ? `${labels.source} labels` : "no labels"} · read only · Esc or PageUp/PageDown back to the query`;
    ctx.banner.hidden = false;
    ctx.onChange();
  }

  return {
    get active() { return peek.z !== null; },
    get z() { return peek.z; },
    /** Label and HU of pixel i of the slice on screen while peeking. */
    at(i) {
      const v = peek.labels ? peek.labels.values[i] : UNANSWERED;
      return { hu: peek.hu ? peek.hu[i] : null, value: v === UNANSWERED ? null : v, source: peek.labels ? peek.labels.source : "" };
    },
    step(dz) {
      const q = ctx.state.query;
      if (!q) return;
      const from = peek.z === null ? q.z : peek.z;
      const z = Math.max(0, Math.min(ctx.depth() - 1, from + dz));
      if (z !== from || peek.z !== null) show(z);
    },
    back() { if (peek.z !== null) show(null); },
    reset() { token++; peek.z = null; peek.labels = null; peek.queryHu = null; ctx.banner.hidden = true; },
  };
}

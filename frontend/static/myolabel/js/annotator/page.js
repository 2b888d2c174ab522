// The annotator page: take the next query, show it with the model's prediction pre-filled,
// let the expert confirm or correct it, submit with the time and inputs it took, repeat.

import { api, ApiError, deflate, halfToFloat, inflate, pageData, say } from "../api.js";
import { labelLegend, paletteRows } from "../labels.js";
import { base64ToBytes, bytesToBase64, LabelEditor, UNANSWERED, unpackBits } from "./core.js";
import { countIslands, nextIsland } from "./islands.js";
import { trackEffort } from "./effort.js";
import { fillUnanswered, loadNearby, nearbyChoice, nearbyLabels, renderNeighbours } from "./nearby.js";
import { buildPalette, rowOfKey } from "./palette.js";
import { installKeys } from "./keys.js";
import { createPeek } from "./peek.js";
import { createReformats } from "./reformat.js";
import { describePixel, installPointer, readoutText } from "./pointer.js";
import { colourTable, HEAT_RGB, presetOf } from "./render.js";
import { createStrokes } from "./strokes.js";
import { SliceViewer } from "./viewer.js";

const page = pageData();
const project = page.project;
const labels = page.labels;
const rows = paletteRows(labels);
const nameOf = new Map(rows.map((r) => [r.value, r.name]));
const lut = colourTable(labels);
const $ = (sel) => document.querySelector(sel);
const message = $("#message");
const base = `/api/projects/${project.id}`;
const MISSING = "missing";  // the kind of message that the last submit gave while pixels had no label

const state = {
  query: null, editor: null, viewer: null, tool: "brush", label: labels.length ? labels[0].value : 1,
  radius: 4, heat: false, painting: null, paintTimes: [], fillTimes: [], messageKind: null, lastIsland: -1,
};
window.annotator = state; // inspected by the browser tests
state.answersBase64 = () => bytesToBase64(state.editor.answers);

function tell(text, kind = "error", why = null) {
  say(message, text, kind);
  state.messageKind = text ? why : null;
}

// ---------- loading a query ----------

async function ctSlice(scan, z) {
  const resp = await api(`/api/scans/${scan}/slices/${z}.raw`, { raw: true });
  return new Int16Array(await resp.arrayBuffer());
}

/** Nothing to show: hide the workspace (and its buttons) and say why. */
function showEmpty(title, text) {
  reformats.stop();
  state.query = null;
  state.editor = null;
  $("#workspace").hidden = true;
  $("#empty").hidden = false;
  $("#empty-title").textContent = title;
  $("#empty-text").textContent = text;
  $("#query-info").textContent = "";
  $("#status").textContent = "";
}

async function loadNext({ keepMessage = false } = {}) {
  if (!keepMessage) tell("");
  $("#status").textContent = "Looking for the next query…";
  let query;
  try {
    query = await api(`${base}/queries/next/`, { method: "POST" });
  } catch (err) {
    tell(err.message);
    return;
  }
  if (!query) {
    showEmpty("No query is waiting for you", "Every open query of the current step is answered or being " +
      "answered by a colleague, or no step is waiting for annotations (the model may be training). Come back " +
      "later, or check again now.");
    return;
  }
  await showQuery(query);
}

async function showQuery(query) {
  const W = query.width, H = query.height, n = W * H;
  const mask = unpackBits(base64ToBytes(query.mask), n);
  const predicted = await inflate(base64ToBytes(query.predicted));
  const uncertainty = halfToFloat(await inflate(base64ToBytes(query.uncertainty)));
  peek.reset();
  state.query = query;
  state.editor = new LabelEditor(W, H, predicted, mask);
  applyLimits();
  $("#empty").hidden = true;
  $("#workspace").hidden = false;
  const viewer = new SliceViewer($("#viewport"), W, H);
  state.viewer = viewer;
  const preset = presetOf();
  viewer.setWindow(preset.window, preset.level);
  viewer.setOutline(mask);
  viewer.setHeat(uncertainty);
  viewer.show("heat", state.heat);
  viewer.setOpacity(Number($("#opacity").value) / 100);
  repaintLabels();
  renderLegend();
  $("#query-info").textContent =
    `Step ${query.step_number} · scan ${query.scan} · slice z = ${query.z} · ${query.n_queried} pixels to label ` +
    `(${(100 * query.mac).toFixed(2)} % of the slice)`;
  state.lastIsland = -1;
  updateCounts();
  effort.reset();
  try {
    viewer.setCt(await ctSlice(query.scan, query.z));
    state.editor.hu = viewer.hu;
  } catch (err) {
    tell(`The CT image of this slice could not be loaded (${err.message}). You can still label, but check the image first.`);
  }
  showWindow();
  state.nearby = [];
  offerNearby();
  try {
    state.nearby = await loadNearby(base, query);
  } catch (err) {
    $("#nearby-info").textContent = `The labelled slices nearby could not be read: ${err.message}`;
  }
  if (state.query === query) offerNearby();
  reformats.start(query, mask);
  loadNeighbours(query).catch(() => {}).finally(() => { if (state.query === query) state.neighboursShown = query.id; });
  $("#status").textContent = "Inside the yellow outline the model's labels are hatched until you confirm or repaint them.";
}

const SOURCE_WORDS = { query: "answered query", reference: "reference labels" };

/** Offer (never apply) a copy of the nearest labelled slice, and an interpolation when there is one each side. */
function offerNearby() {
  const { nearest, below, above } = nearbyChoice(state.query, state.nearby);
  $("#copy-nearest").disabled = !nearest;
  $("#copy-nearest").textContent = nearest ? `Copy slice z ${nearest.z} (${SOURCE_WORDS[nearest.source] || nearest.source})`
    : "Copy the nearest labelled slice";
  $("#interpolate").disabled = !(below && above);
  $("#interpolate").textContent = below && above ? `Interpolate z ${below.z} – z ${above.z}` : "Interpolate between labelled slices";
  $("#nearby-info").textContent = (state.nearby || []).length ? "" : "No labelled slice of this scan yet.";
}

function applyNearby(kind) {
  const ed = state.editor;
  changed(fillUnanswered(ed, nearbyLabels(kind, state.query, state.nearby)));
  updateCounts();
  renderLegend();
}

async function loadNeighbours(query) {
  const info = await api(`/api/scans/${query.scan}/`);
  const depth = info.shape[0];
  state.depth = depth;
  await renderNeighbours($("#neighbours"), query, depth, { slice: (z) => ctSlice(query.scan, z), viewer: state.viewer,
    labelsOf: (z) => peek.labelsOf(z), lut });
}

// ---------- time and inputs spent on the query (effort.js) ----------

const effort = trackEffort($("#workspace"), () => Boolean(state.editor));
Object.defineProperty(state, "inputEvents", { get: () => effort.events });

// ---------- rendering ----------

function repaintLabels() {
  state.viewer.renderQuery(state.editor, lut);
}

function changed(indices) {
  if (!indices.length || peek.active) return;  // back on the query slice, everything is repainted
  const ed = state.editor, W = ed.width;
  let x0 = W, y0 = ed.height, x1 = -1, y1 = -1;
  for (const i of indices) {
    const x = i % W, y = (i - x) / W;
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  state.viewer.renderQuery(ed, lut, { x0, y0, x1: x1 + 1, y1: y1 + 1 });
}

function renderLegend() {
  const ed = state.editor;
  if (peek.active) {
    const { values, extras } = peek.legend();
    labelLegend($("#legend"), rows, values, extras);
    return;
  }
  const present = new Set();
  for (let i = 0; i < ed.predicted.length; i++) present.add(ed.predicted[i]);
  for (const v of ed.answers) if (v !== UNANSWERED) present.add(v);
  const extras = [["answer", "#888", "legend-solid"], ["prediction to confirm", "#888", "hatched"],
    ["background (answered)", null, "background"], ["query outline", "#ffff00", "outline"]];
  if (state.heat) extras.push([`uncertainty (max ${state.viewer.heatMax.toPrecision(2)})`, `rgb(${HEAT_RGB.join(",")})`, "heat"]);
  labelLegend($("#legend"), rows, present, extras);
}

function updateCounts() {
  const ed = state.editor;
  const left = ed.unansweredCount();
  $("#remaining").textContent = left ? `${left} pixels still without a label` : "Every queried pixel has a label";
  $("#remaining").className = left ? "warn" : "ok";
  $("#islands").textContent = left ? `${countIslands(ed)} island(s) without an answer` : "";
  $("#undo").disabled = !ed.undoStack.length;
  $("#redo").disabled = !ed.redoStack.length;
  if (!left && state.messageKind === MISSING) tell("");
}

// ---------- tools ----------

function setTool(tool) {
  state.tool = tool;
  for (const b of document.querySelectorAll("[data-tool]")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  $("#viewport").dataset.tool = tool;
}

let palette;
function setLabel(value) {
  state.label = value;
  palette.select(value);
  $("#current-label").textContent = nameOf.get(value) || "";
}

function undo() { changed(state.editor.undo()); updateCounts(); }
function redo() { changed(state.editor.redo()); updateCounts(); }

function showWindow() {
  if (state.viewer) $("#wl").textContent = `W ${Math.round(state.viewer.window)} / L ${Math.round(state.viewer.level)}`;
}

function applyLimits() {
  const ed = state.editor;
  if (!ed) return;
  const v = $("#hu-limit").value;
  ed.huRange = v ? { lo: Number(v.split(",")[0]), hi: Number(v.split(",")[1]) } : null;
  ed.stopAtEdges = $("#edge-stop").checked;
}

function goToNextIsland() {
  const found = nextIsland(state.editor, state.lastIsland);
  if (!found) { tell("Every island has an answer.", "info"); return; }
  state.lastIsland = found.first;
  const span = Math.max(found.box.x1 - found.box.x0, found.box.y1 - found.box.y0);
  const vp = $("#viewport");
  // Zoom so that the island and about 40 pixels around it fill the view.
  state.viewer.centreOn(found.centre.x, found.centre.y, Math.min(vp.clientWidth, vp.clientHeight) / (span + 40));
  $("#status").textContent = `Island of ${found.pixels.length} pixel(s) at x ${found.box.x0}, y ${found.box.y0}.`;
}

function hover(p) {
  const ed = state.editor;
  const x = p ? Math.floor(p.x) : -1, y = p ? Math.floor(p.y) : -1;
  if (!ed || x < 0 || y < 0 || x >= ed.width || y >= ed.height) { $("#readout").textContent = ""; return; }
  if (peek.active) {
    const { hu, value, source } = peek.at(y * ed.width + x);
    $("#readout").textContent = `${readoutText({ x, y, hu, name: value ? nameOf.get(value) : "", source: value ? source : "" })} · z ${peek.z}`;
    return;
  }
  $("#readout").textContent = readoutText(describePixel(ed, state.viewer.hu, nameOf, x, y));
  if (!state.painting && !state.pushing) reformats.follow(x, y);
}

// ---------- submit ----------

async function submit() {
  const ed = state.editor;
  if (!ed || $("#submit").disabled) return;
  const left = ed.unansweredCount();
  if (left) {
    tell(`${left} pixels inside the yellow outline have no label yet. Paint or confirm them, or press ` +
      `"Accept prediction where unanswered" to keep the model's labels where you agree.`, "error", MISSING);
    return;
  }
  $("#submit").disabled = true;
  try {
    const labelsZ = await deflate(ed.answers);
    await api(`${base}/queries/${state.query.id}/submit/`, {
      method: "POST", body: { labels: bytesToBase64(labelsZ), encoding: "zlib", seconds_spent: effort.seconds(),
        input_events: state.inputEvents },
    });
    state.lastSubmitted = { id: state.query.id, answers: Array.from(ed.answers), inputEvents: state.inputEvents };
    tell(`Saved your answer for slice ${state.query.z}.`, "ok");
    await loadNext({ keepMessage: true });
  } catch (err) {
    tell(err instanceof ApiError && err.code === "query_closed"
      ? `${err.message}. Loading another query.` : `Your answer was not saved: ${err.message}`);
    if (err.code === "query_closed" || err.code === "query_locked") await loadNext();
  } finally {
    $("#submit").disabled = false;
  }
}

async function leaveSlice() {
  if (!state.query || !confirm("Leave this slice unanswered for a colleague? Your marks on it are discarded.")) return;
  const z = state.query.z;
  try {
    await api(`${base}/queries/${state.query.id}/release/`, { method: "POST" });
  } catch (err) {
    tell(`The slice could not be released: ${err.message}`);
    return;
  }
  showEmpty(`You left slice z = ${z} for a colleague`, "Other queries of this step may still be open. " +
    "Take the next one when you are ready (it may be this slice again if nobody else is free to take it).");
  tell("The slice is released: a colleague can take it.", "info");
}

// ---------- controls ----------

function installControls() {
  for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => setTool(b.dataset.tool));
  for (const b of document.querySelectorAll("[data-preset]")) {
    b.addEventListener("click", () => { const p = presetOf(b); state.viewer.setWindow(p.window, p.level); showWindow(); });
  }
  $("#radius").addEventListener("input", (e) => { state.radius = Number(e.target.value); $("#radius-value").textContent = e.target.value; });
  $("#opacity").addEventListener("input", (e) => state.viewer && state.viewer.setOpacity(Number(e.target.value) / 100));
  $("#heat").addEventListener("change", (e) => {
    state.heat = e.target.checked;
    if (state.viewer) { state.viewer.show("heat", state.heat); renderLegend(); }
  });
  // A chosen limit hands the keys back to the canvas: the structure keys must not change the option.
  for (const id of ["#hu-limit", "#edge-stop"]) $(id).addEventListener("change", (e) => { applyLimits(); e.target.blur(); });
  $("#undo").addEventListener("click", undo);
  $("#redo").addEventListener("click", redo);
  $("#fit").addEventListener("click", () => state.viewer.fit());
  $("#next-island").addEventListener("click", goToNextIsland);
  $("#copy-nearest").addEventListener("click", () => applyNearby("copy"));
  $("#interpolate").addEventListener("click", () => applyNearby("interpolate"));
  $("#accept-all").addEventListener("click", () => {
    state.editor.beginStroke();
    const idx = state.editor.acceptPredicted(0, 0, Infinity);
    state.editor.endStroke();
    changed(idx);
    updateCounts();
  });
  $("#submit").addEventListener("click", submit);
  $("#skip").addEventListener("click", leaveSlice);
  $("#retry").addEventListener("click", () => loadNext());
  installKeys({
    active: () => Boolean(state.editor), undo, redo, submit, setTool, nextIsland: goToNextIsland,
    peek: (dz) => peek.step(dz), back: () => peek.back(), heat: () => $("#heat").click(),
    search: () => $("#label-search").focus(), structure: (key) => { const row = rowOfKey(rows, key); if (row) setLabel(row.value); },
    radius: (d) => { const r = $("#radius"); r.value = String(Number(r.value) + d); r.dispatchEvent(new Event("input")); },
  });
}

// The server's lock on a query lasts 15 minutes: renew it while the annotator works.
setInterval(() => {
  if (state.query && document.visibilityState === "visible") {
    api(`${base}/queries/${state.query.id}/claim/`, { method: "POST" }).catch((err) => {
      tell(`This slice is no longer reserved for you: ${err.message}`);
    });
  }
}, 5 * 60 * 1000);

const reformats = createReformats({ base, state, coronal: $("#coronal"), sagittal: $("#sagittal"),
  caption: $("#reformat-info"), legend: $("#reformat-legend"), toggle: $("#reformat-labels"), rows, lut });

const peek = createPeek({ base, state, viewer: () => state.viewer, slice: (z) => ctSlice(state.query.scan, z),
  depth: () => state.depth || 1, lut, banner: $("#peek"), onChange: () => renderLegend() });
state.peek = peek;

palette = buildPalette($("#palette"), $("#label-search"), rows, (value) => setLabel(value));
installControls();
installPointer($("#viewport"), () => (state.editor ? state.viewer : null), {
  tool: () => state.tool,
  ...createStrokes({ state, changed, tell, updateCounts, readOnly: () => peek.active }),
  windowLevel: (w, l) => { state.viewer.setWindow(w, l); showWindow(); },
  hover,
  radius: () => state.radius,
  // Shift+wheel: the neighbouring slices (Chromium turns a shifted wheel into a horizontal one).
  wheel: (e) => { if (!e.shiftKey) return false; peek.step((e.deltaY || e.deltaX) > 0 ? 1 : -1); return true; },
  brushVisible: () => !peek.active && ["brush", "eraser", "accept", "push"].includes(state.tool),
});
setTool("brush");
setLabel(state.label);
state.ready = loadNext();

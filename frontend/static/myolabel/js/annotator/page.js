// The annotator page: take the next query, show it, edit the queried pixels, submit, repeat.

import { api, ApiError, deflate, halfToFloat, inflate, pageData, say } from "../api.js";
import { base64ToBytes, bytesToBase64, LabelEditor, unpackBits } from "./core.js";
import { colourTable, presetOf, windowToRgba } from "./render.js";
import { SliceViewer } from "./viewer.js";

const page = pageData();
const project = page.project;
const labels = page.labels;
const lut = colourTable(labels);
const $ = (sel) => document.querySelector(sel);
const message = $("#message");
const base = `/api/projects/${project.id}`;

const state = {
  query: null, editor: null, viewer: null, tool: "brush", label: labels.length ? labels[0].value : 1,
  radius: 4, heat: false, painting: null, activeMs: 0, since: null, paintTimes: [], fillTimes: [],
};
window.annotator = state; // inspected by the browser tests
state.answersBase64 = () => bytesToBase64(state.editor.answers);

// ---------- loading a query ----------

async function ctSlice(scan, z) {
  const resp = await api(`/api/scans/${scan}/slices/${z}.raw`, { raw: true });
  return new Int16Array(await resp.arrayBuffer());
}

async function loadNext({ keepMessage = false } = {}) {
  if (!keepMessage) say(message, "");
  $("#status").textContent = "Looking for the next query…";
  let query;
  try {
    query = await api(`${base}/queries/next/`, { method: "POST" });
  } catch (err) {
    say(message, err.message);
    return;
  }
  if (!query) {
    state.query = null;
    $("#workspace").hidden = true;
    $("#empty").hidden = false;
    $("#status").textContent = "";
    return;
  }
  await showQuery(query);
}

async function showQuery(query) {
  const W = query.width, H = query.height, n = W * H;
  const mask = unpackBits(base64ToBytes(query.mask), n);
  const predicted = await inflate(base64ToBytes(query.predicted));
  const uncertainty = halfToFloat(await inflate(base64ToBytes(query.uncertainty)));
  state.query = query;
  state.editor = new LabelEditor(W, H, predicted, mask);
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
  $("#query-info").textContent =
    `Step ${query.step_number} · scan ${query.scan} · slice z = ${query.z} · ${query.n_queried} pixels to label ` +
    `(${(100 * query.mac).toFixed(2)} % of the slice)`;
  updateCounts();
  resetClock();
  try {
    viewer.setCt(await ctSlice(query.scan, query.z));
  } catch (err) {
    say(message, `The CT image of this slice could not be loaded (${err.message}). You can still label, but check the image first.`);
  }
  loadNeighbours(query).catch(() => {});
  $("#status").textContent = "Label the pixels inside the yellow outline.";
}

async function loadNeighbours(query) {
  const box = $("#neighbours");
  box.replaceChildren();
  const depth = (await api(`/api/scans/${query.scan}/`)).shape[0];
  for (const dz of [-2, -1, 1, 2]) {
    const z = query.z + dz;
    const fig = document.createElement("figure");
    const canvas = document.createElement("canvas");
    canvas.width = query.width;
    canvas.height = query.height;
    fig.append(canvas, Object.assign(document.createElement("figcaption"), { textContent: `z ${z} (${dz > 0 ? "+" : ""}${dz})` }));
    box.append(fig);
    if (z < 0 || z >= depth) { fig.classList.add("missing"); continue; }
    try {
      const hu = await ctSlice(query.scan, z);
      const ctx = canvas.getContext("2d");
      const img = ctx.createImageData(query.width, query.height);
      windowToRgba(hu, state.viewer.window, state.viewer.level, img.data);
      ctx.putImageData(img, 0, 0);
    } catch {
      fig.classList.add("missing");
    }
  }
}

// ---------- time spent: counted only while the page is visible ----------

function resetClock() {
  state.activeMs = 0;
  state.since = document.visibilityState === "visible" ? performance.now() : null;
}

function secondsSpent() {
  const running = state.since === null ? 0 : performance.now() - state.since;
  return (state.activeMs + running) / 1000;
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") state.since = performance.now();
  else if (state.since !== null) { state.activeMs += performance.now() - state.since; state.since = null; }
});

// ---------- rendering ----------

const labelAt = (i) => state.editor.displayed(i);

function repaintLabels() {
  state.viewer.renderLabels(labelAt, lut);
}

function changed(indices) {
  if (indices.length) state.viewer.renderChanged(indices, labelAt, lut);
}

function updateCounts() {
  const left = state.editor.unansweredCount();
  $("#remaining").textContent = left ? `${left} pixels still without a label` : "Every queried pixel has a label";
  $("#remaining").className = left ? "warn" : "ok";
  $("#undo").disabled = !state.editor.undoStack.length;
  $("#redo").disabled = !state.editor.redoStack.length;
}

// ---------- tools ----------

function applyAt(x, y) {
  const ed = state.editor;
  const r = state.radius;
  if (state.tool === "brush") return ed.paint(x, y, r, state.label);
  if (state.tool === "eraser") return ed.erase(x, y, r);
  if (state.tool === "accept") return ed.acceptPredicted(x, y, r);
  return [];
}

/** Brush positions between two points, close enough that the stroke has no gaps. */
function along(a, b, radius) {
  const d = Math.hypot(b.x - a.x, b.y - a.y);
  const n = Math.max(1, Math.ceil(d / Math.max(0.5, radius / 2)));
  const out = [];
  for (let k = 1; k <= n; k++) out.push({ x: a.x + ((b.x - a.x) * k) / n, y: a.y + ((b.y - a.y) * k) / n });
  return out;
}

function strokeTo(p) {
  const t0 = performance.now();
  const points = state.painting.last ? along(state.painting.last, p, state.radius) : [p];
  const indices = [];
  for (const q of points) for (const i of applyAt(Math.round(q.x), Math.round(q.y))) indices.push(i);
  changed(indices);
  state.painting.last = p;
  state.paintTimes.push(performance.now() - t0);
}

function setTool(tool) {
  state.tool = tool;
  for (const b of document.querySelectorAll("[data-tool]")) b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  $("#viewport").dataset.tool = tool;
}

function setLabel(value) {
  state.label = value;
  for (const b of document.querySelectorAll("[data-label]")) b.setAttribute("aria-pressed", String(Number(b.dataset.label) === value));
  const found = labels.find((l) => l.value === value);
  $("#current-label").textContent = found ? found.name : "";
}

function undo() { changed(state.editor.undo()); updateCounts(); }
function redo() { changed(state.editor.redo()); updateCounts(); }

// ---------- pointer: paint (left), window/level (right or W/L tool), pan (middle or Pan tool) ----------

function installPointer(viewport) {
  let drag = null;
  viewport.addEventListener("contextmenu", (e) => e.preventDefault());
  viewport.addEventListener("pointerdown", (e) => {
    if (!state.editor) return;
    viewport.setPointerCapture(e.pointerId);
    const mode = e.button === 1 || state.tool === "pan" ? "pan" : e.button === 2 || state.tool === "wl" ? "wl" : "tool";
    drag = { mode, x: e.clientX, y: e.clientY, window: state.viewer.window, level: state.viewer.level };
    if (mode !== "tool") return;
    const p = state.viewer.toPixel(e.clientX, e.clientY);
    if (state.tool === "fill") {
      const t0 = performance.now();
      const ed = state.editor;
      ed.beginStroke();
      const idx = ed.fillRegion(Math.floor(p.x), Math.floor(p.y), state.label);
      ed.endStroke();
      changed(idx);
      state.fillTimes.push(performance.now() - t0);
      if (!idx.length && !ed.queryMask[Math.floor(p.y) * ed.width + Math.floor(p.x)]) {
        say(message, "Fill works only inside the yellow outline: the model is sure of the pixels outside it.", "info");
      }
      updateCounts();
      drag = null;
      return;
    }
    state.editor.beginStroke();
    state.painting = { last: null };
    strokeTo({ x: Math.floor(p.x), y: Math.floor(p.y) });
  });
  viewport.addEventListener("pointermove", (e) => {
    if (!drag) return;
    if (drag.mode === "pan") { state.viewer.panBy(e.clientX - drag.x, e.clientY - drag.y); drag.x = e.clientX; drag.y = e.clientY; return; }
    if (drag.mode === "wl") {
      state.viewer.setWindow(drag.window + (e.clientX - drag.x) * 4, drag.level + (e.clientY - drag.y) * 2);
      showWindow();
      return;
    }
    const p = state.viewer.toPixel(e.clientX, e.clientY);
    strokeTo({ x: Math.floor(p.x), y: Math.floor(p.y) });
  });
  const end = () => {
    if (drag && drag.mode === "tool" && state.painting) {
      state.editor.endStroke();
      state.painting = null;
      updateCounts();
    }
    drag = null;
  };
  viewport.addEventListener("pointerup", end);
  viewport.addEventListener("pointercancel", end);
  viewport.addEventListener("wheel", (e) => {
    if (!state.viewer) return;
    e.preventDefault();
    state.viewer.zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX, e.clientY);
  }, { passive: false });
}

function showWindow() {
  $("#wl").textContent = `W ${Math.round(state.viewer.window)} / L ${Math.round(state.viewer.level)}`;
}

// ---------- submit ----------

async function submit() {
  const ed = state.editor;
  if (!ed) return;
  const left = ed.unansweredCount();
  if (left) {
    say(message, `${left} pixels inside the yellow outline have no label yet. Paint them, or press ` +
      `"Accept prediction in whole query" to keep the model's labels where you agree.`);
    return;
  }
  $("#submit").disabled = true;
  try {
    const labelsZ = await deflate(ed.answers);
    await api(`${base}/queries/${state.query.id}/submit/`, {
      method: "POST", body: { labels: bytesToBase64(labelsZ), encoding: "zlib", seconds_spent: secondsSpent() },
    });
    state.lastSubmitted = { id: state.query.id, answers: Array.from(ed.answers) };
    say(message, `Saved your answer for slice ${state.query.z}.`, "ok");
    await loadNext({ keepMessage: true });
  } catch (err) {
    say(message, err instanceof ApiError && err.code === "query_closed"
      ? `${err.message}. Loading another query.` : `Your answer was not saved: ${err.message}`);
    if (err.code === "query_closed" || err.code === "query_locked") await loadNext();
  } finally {
    $("#submit").disabled = false;
  }
}

// ---------- controls ----------

function buildPalette() {
  const list = $("#palette");
  labels.forEach((l, k) => {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.label = l.value;
    b.title = k < 10 ? `Shortcut: ${(k + 1) % 10}` : "";
    b.innerHTML = `<span class="swatch"></span><span class="name"></span><kbd>${k < 10 ? (k + 1) % 10 : ""}</kbd>`;
    b.querySelector(".swatch").style.background = l.colour;  // CSSOM: allowed by the page's CSP
    b.querySelector(".name").textContent = l.name;
    b.addEventListener("click", () => setLabel(l.value));
    list.append(b);
  });
  const bg = document.createElement("button");
  bg.type = "button";
  bg.dataset.label = 0;
  bg.innerHTML = `<span class="swatch background"></span><span class="name">background (no structure)</span><kbd></kbd>`;
  bg.addEventListener("click", () => setLabel(0));
  list.append(bg);
}

function installControls() {
  for (const b of document.querySelectorAll("[data-tool]")) b.addEventListener("click", () => setTool(b.dataset.tool));
  for (const b of document.querySelectorAll("[data-preset]")) {
    b.addEventListener("click", () => { const p = presetOf(b); state.viewer.setWindow(p.window, p.level); showWindow(); });
  }
  $("#radius").addEventListener("input", (e) => { state.radius = Number(e.target.value); $("#radius-value").textContent = e.target.value; });
  $("#opacity").addEventListener("input", (e) => state.viewer && state.viewer.setOpacity(Number(e.target.value) / 100));
  $("#heat").addEventListener("change", (e) => { state.heat = e.target.checked; state.viewer && state.viewer.show("heat", state.heat); });
  $("#undo").addEventListener("click", undo);
  $("#redo").addEventListener("click", redo);
  $("#fit").addEventListener("click", () => state.viewer.fit());
  $("#accept-all").addEventListener("click", () => {
    state.editor.beginStroke();
    const idx = state.editor.acceptPredicted(0, 0, Infinity);
    state.editor.endStroke();
    changed(idx);
    updateCounts();
  });
  $("#submit").addEventListener("click", submit);
  $("#skip").addEventListener("click", async () => {
    if (!state.query || !confirm("Leave this slice unanswered for a colleague? Your marks on it are discarded.")) return;
    try {
      await api(`${base}/queries/${state.query.id}/release/`, { method: "POST" });
    } catch (err) {
      say(message, `The slice could not be released: ${err.message}`);
      return;
    }
    state.query = null;
    $("#workspace").hidden = true;
    $("#empty").hidden = false;
    say(message, "The slice is released: a colleague can take it.", "info");
  });
  $("#retry").addEventListener("click", loadNext);
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, textarea, select") || !state.editor) return;
    const key = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && key === "z" && !e.shiftKey) { e.preventDefault(); undo(); return; }
    if ((e.ctrlKey || e.metaKey) && (key === "y" || (key === "z" && e.shiftKey))) { e.preventDefault(); redo(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (/^[0-9]$/.test(key)) {
      const k = key === "0" ? 9 : Number(key) - 1;
      if (labels[k]) setLabel(labels[k].value);
      return;
    }
    const tools = { b: "brush", e: "eraser", f: "fill", a: "accept", w: "wl", p: "pan" };
    if (tools[key]) setTool(tools[key]);
    if (key === "h") { $("#heat").click(); }
    if (key === "[" || key === "]") {
      const r = $("#radius");
      r.value = String(Number(r.value) + (key === "]" ? 1 : -1));
      r.dispatchEvent(new Event("input"));
    }
  });
}

// The server's lock on a query lasts 15 minutes: renew it while the annotator works.
setInterval(() => {
  if (state.query && document.visibilityState === "visible") {
    api(`${base}/queries/${state.query.id}/claim/`, { method: "POST" }).catch((err) => {
      say(message, `This slice is no longer reserved for you: ${err.message}`);
    });
  }
}, 5 * 60 * 1000);

buildPalette();
installControls();
installPointer($("#viewport"));
setTool("brush");
setLabel(state.label);
state.ready = loadNext().then(() => { if (state.viewer) showWindow(); });

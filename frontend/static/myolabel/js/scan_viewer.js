// Any scan with the current model's labels or its reference labels, the uncertainty, and the
// per-muscle report. The wheel moves through the slices as in every radiology viewer (Ctrl+wheel zooms).

import { api, fmt, liveEvents, pageData, say } from "./api.js";
import { colourTable, HEAT_RGB, presetOf } from "./annotator/render.js";
import { readoutText } from "./annotator/pointer.js";
import { SliceViewer } from "./annotator/viewer.js";
import { labelLegend, legendItem, paletteRows, readableName } from "./labels.js";

const page = pageData();
const scan = page.scan;
const [depth, height, width] = scan.shape;
const $ = (sel) => document.querySelector(sel);
const message = $("#message");
const state = { z: Math.floor(depth / 2), project: null, segmentation: null, labels: null, lut: null, heat: false, live: null,
  overlay: "model", references: [], reference: null, slice: null, hu: null };
window.scanViewer = state;

const viewer = new SliceViewer($("#viewport"), width, height);
viewer.setWindow(presetOf().window, presetOf().level);
viewer.setOpacity(0.5);
viewer.show("heat", false);
$("#scan-info").textContent = `${depth} slices of ${height} × ${width} · spacing ${(scan.spacing || []).map((v) => Number(v).toFixed(2)).join(" × ")} mm`;

/** The label volume of a NIfTI-1 file (gzip): {dims, data}; voxels in (z, y, x) C order. */
async function readNifti(resp) {
  const stream = resp.body.pipeThrough(new DecompressionStream("gzip"));
  const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
  const view = new DataView(bytes.buffer);
  const little = view.getInt32(0, true) === 348;
  const dims = [1, 2, 3].map((k) => view.getInt16(40 + 2 * k, little));
  const datatype = view.getInt16(70, little);
  const offset = Math.round(view.getFloat32(108, little));
  if (datatype !== 2) throw new Error(`unexpected label type ${datatype} in the NIfTI file`);
  return { dims, data: bytes.subarray(offset) };
}

/** The label slice the overlay shows: the model's, the reference's, or none. */
async function labelSlice(z) {
  const n = width * height;
  if (state.overlay === "model" && state.labels) return { values: state.labels.subarray(z * n, (z + 1) * n), ...state.modelColours };
  if (state.overlay === "reference" && state.reference) {
    const resp = await api(`/api/scans/${scan.id}/labels/${z}.raw?label_set=${state.reference.id}`, { raw: true });
    return { values: new Uint8Array(await resp.arrayBuffer()), lut: state.reference.lut, rows: state.reference.rows };
  }
  return null;
}

async function showSlice() {
  const z = state.z;
  $("#z").value = z;
  $("#z-value").textContent = `z = ${z} of ${depth - 1}`;
  try {
    const resp = await api(`/api/scans/${scan.id}/slices/${z}.raw`, { raw: true });
    if (z !== state.z) return;
    state.hu = new Int16Array(await resp.arrayBuffer());
    viewer.setCt(state.hu);
  } catch (err) {
    say(message, `Slice ${z} could not be loaded: ${err.message}`);
  }
  let slice = null;
  try {
    slice = await labelSlice(z);
  } catch (err) {
    say(message, `The labels of slice ${z} could not be loaded: ${err.message}`);
  }
  if (z !== state.z) return;
  state.slice = slice;
  if (slice) viewer.renderLabels((i) => slice.values[i], slice.lut);
  else viewer.renderLabels(() => 0, new Uint8Array(1024));
  renderLegend();
  if (state.heat && state.segmentation) {
    try {
      const resp = await api(`/api/scans/${scan.id}/uncertainty/${z}.raw?project=${state.project.id}`, { raw: true });
      if (z === state.z) viewer.setHeat(new Float32Array(await resp.arrayBuffer()));
    } catch (err) {
      say(message, `No uncertainty map for this slice: ${err.message}`);
    }
  }
}

/** What a queued or running segmentation is doing, from the API or an event. */
function segmentingText(seg) {
  if (seg.status === "pending") return (seg.queue && seg.queue.waiting) || "Waiting on the gpu queue…";
  const eta = seg.eta_seconds != null ? ` · about ${Math.max(1, Math.round(seg.eta_seconds))} s left` : "";
  const stalled = seg.queue && seg.queue.waiting ? ` ${seg.queue.waiting}` : "";
  return `The model is segmenting this scan: ${Math.round(seg.percent || 0)} %${eta}.${stalled}`;
}

function renderReport(rows) {
  const tbody = $("#report tbody");
  tbody.replaceChildren();
  // A missing predicted Dice says why (no calibration, an uncertainty that is no signal yet...), once.
  const reasons = [...new Set(rows.map((r) => (r.reasons || {}).predicted_dice).filter(Boolean))];
  $("#report-notes").replaceChildren(...reasons.map((why) => Object.assign(document.createElement("li"), { textContent: `No predicted Dice: ${why}` })));
  $("#report-notes").hidden = !reasons.length;
  const threshold = state.project.stop_target_dice || 0.8;
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td></td><td class="num"></td><td class="num"></td><td></td>`;
    const colour = (state.project.labels.find((l) => l.value === r.value) || {}).colour || "#999";
    tr.children[0].innerHTML = `<span class="swatch inline-swatch"></span> `;
    tr.children[0].firstChild.style.background = colour;  // CSSOM: allowed by the page's CSP
    tr.children[0].append(readableName(r.name));
    tr.children[1].textContent = r.volume_ml == null ? "–" : Number(r.volume_ml).toFixed(1);
    tr.children[2].textContent = r.status && r.status.predicted_dice === "unavailable" ? "n/a" : fmt(r.predicted_dice);
    if (r.predicted_dice != null && r.predicted_dice < threshold) { tr.children[3].textContent = "review"; tr.children[3].className = "flag"; }
    tbody.append(tr);
  }
  if (!rows.length) tbody.innerHTML = `<tr><td colspan="4" class="empty">No segmentation of this scan yet.</td></tr>`;
}

async function loadProject() {
  const project = state.project;
  state.labels = null;
  state.segmentation = null;
  state.lut = colourTable(project.labels);
  state.modelColours = { lut: state.lut, rows: paletteRows(project.labels) };
  $("#segment").hidden = true;
  const base = `/api/projects/${project.id}`;
  try {
    const [models, segmentations] = await Promise.all([api(`${base}/models/`), api(`${base}/segmentations/`)]);
    const current = models.find((m) => m.is_current);
    const mine = segmentations.filter((s) => s.scan === scan.id);
    const seg = mine.find((s) => current && s.model_version === current.id) || mine[0];
    if (!current) {
      $("#model-status").textContent = "This project has no trained model yet.";
    } else if (!seg || seg.model_version !== current.id) {
      $("#model-status").textContent = seg ? `Shown: an older model's result. The current model is number ${current.number}.` : "The current model has not segmented this scan yet.";
      $("#segment").hidden = false;
    }
    if (seg && (seg.status === "pending" || seg.status === "running")) {
      $("#model-status").textContent = segmentingText(seg);
      $("#segment").hidden = true;
    }
    if (seg && seg.status === "failed") say(message, `The segmentation failed: ${seg.error}`);
    if (seg && seg.status === "done") {
      state.segmentation = seg;
      if (current && seg.model_version === current.id) $("#model-status").textContent = `Model ${current.number} (current).`;
      renderReport(seg.report || []);
      for (const [id, kind] of [["#download-labels", "labels.nii.gz"], ["#download-report", "report.csv"]]) {
        $(id).href = `${base}/segmentations/${seg.id}/${kind}`;
        $(id).hidden = false;
      }
      const nifti = await readNifti(await api(`${base}/segmentations/${seg.id}/labels.nii.gz?grid=working`, { raw: true }));
      state.labels = nifti.data;
    } else {
      renderReport([]);
    }
    document.dispatchEvent(new CustomEvent("myolabel:segmentation", { detail: { project, segmentation: state.segmentation } }));  // mesh_view.js
  } catch (err) {
    say(message, `The model's results could not be loaded: ${err.message}`);
  }
  await showSlice();
}

$("#project").replaceChildren(...page.projects.map((p) => Object.assign(document.createElement("option"), { value: p.id, textContent: p.name })));
$("#project").addEventListener("change", () => { state.project = page.projects.find((p) => p.id === Number($("#project").value)); openLive(); loadProject(); });
$("#z").max = depth - 1;
$("#z").addEventListener("input", (e) => { state.z = Number(e.target.value); showSlice(); });
for (const b of document.querySelectorAll("[data-preset]")) b.addEventListener("click", () => viewer.setWindow(presetOf(b).window, presetOf(b).level));
$("#opacity").addEventListener("input", (e) => viewer.setOpacity(Number(e.target.value) / 100));
$("#heat").addEventListener("change", (e) => { state.heat = e.target.checked; viewer.show("heat", state.heat); showSlice(); });
$("#fit").title = "Fit the slice to the view";
$("#fit").addEventListener("click", () => viewer.fit());
$("#segment").addEventListener("click", async () => {
  try {
    const seg = await api(`/api/projects/${state.project.id}/segmentations/`, { method: "POST", body: { scan_id: scan.id } });
    $("#segment").hidden = true;
    $("#model-status").textContent = segmentingText(seg);
  } catch (err) {
    say(message, `The segmentation could not start: ${err.message}`);
  }
});
document.addEventListener("keydown", (e) => {
  if (e.target.closest("input, select")) return;
  if (e.key === "ArrowUp" || e.key === "ArrowRight") { state.z = Math.min(depth - 1, state.z + 1); showSlice(); }
  if (e.key === "ArrowDown" || e.key === "ArrowLeft") { state.z = Math.max(0, state.z - 1); showSlice(); }
});

// Drag pans, right-drag sets window/level, wheel zooms.
const vp = $("#viewport");
let drag = null;
vp.addEventListener("contextmenu", (e) => e.preventDefault());
vp.addEventListener("pointerdown", (e) => { vp.setPointerCapture(e.pointerId); drag = { x: e.clientX, y: e.clientY, wl: e.button === 2, w: viewer.window, l: viewer.level }; });
vp.addEventListener("pointermove", (e) => {
  if (!drag) return;
  if (drag.wl) viewer.setWindow(drag.w + (e.clientX - drag.x) * 4, drag.l + (e.clientY - drag.y) * 2);
  else { viewer.panBy(e.clientX - drag.x, e.clientY - drag.y); drag.x = e.clientX; drag.y = e.clientY; }
});
vp.addEventListener("pointerup", () => { drag = null; });
vp.addEventListener("wheel", (e) => {
  e.preventDefault();
  if (e.ctrlKey || e.metaKey) { viewer.zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX, e.clientY); return; }
  const step = e.deltaY > 0 ? 1 : e.deltaY < 0 ? -1 : 0;
  const z = Math.min(depth - 1, Math.max(0, state.z + step));
  if (z !== state.z) { state.z = z; showSlice(); }
}, { passive: false });
vp.addEventListener("pointermove", (e) => {
  const p = viewer.toPixel(e.clientX, e.clientY);
  const x = Math.floor(p.x), y = Math.floor(p.y);
  if (x < 0 || y < 0 || x >= width || y >= height) { $("#readout").textContent = ""; return; }
  const i = y * width + x;
  const value = state.slice ? state.slice.values[i] : 0;
  const row = state.slice && state.slice.rows.find((r) => r.value === value);
  $("#readout").textContent = readoutText({ x, y, hu: state.hu ? state.hu[i] : null, name: value && row ? row.name : "",
    source: state.slice ? (state.overlay === "model" ? "model" : "reference") : "" }) + ` · z ${state.z}`;
});

function renderLegend() {
  const present = new Set(state.slice ? state.slice.values : []);
  const extras = state.heat ? [["uncertainty (brighter: less sure)", `rgb(${HEAT_RGB.join(",")})`, "heat"]] : [];
  labelLegend($("#legend"), state.slice ? state.slice.rows : [], present, extras);
  if (!state.slice) $("#legend").prepend(legendItem(state.overlay === "none" ? "no labels shown" : "no labels for this view yet", null, "hidden-swatch"));
}

/** The overlays this scan has: its model's segmentation (per project) and its reference label maps. */
async function loadReferences() {
  const detail = await api(`/api/scans/${scan.id}/`);
  state.references = await Promise.all((detail.reference_label_sets || []).map(async (id) => {
    const set = await api(`/api/label-sets/${id}/`);
    return { id, name: set.name, lut: colourTable(set.labels), rows: paletteRows(set.labels) };
  }));
  const select = $("#overlay");
  for (const ref of state.references) select.append(Object.assign(document.createElement("option"), { value: `ref-${ref.id}`, textContent: `Reference labels (${ref.name})` }));
  if (state.references.length) { select.value = `ref-${state.references[0].id}`; chooseOverlay(); }
}

function chooseOverlay() {
  const v = $("#overlay").value;
  state.overlay = v.startsWith("ref-") ? "reference" : v;
  state.reference = state.references.find((r) => `ref-${r.id}` === v) || null;
  showSlice();
}
$("#overlay").addEventListener("change", chooseOverlay);

function openLive() {
  if (state.live) state.live.close();
  state.live = liveEvents(`/ws/projects/${state.project.id}/`, (ev) => {
    if (ev.type !== "acquisition.segmentation" || ev.scan !== scan.id) return;
    if (ev.status === "done" || ev.status === "failed") loadProject();
    else if (ev.status === "running") $("#model-status").textContent = segmentingText(ev);
  });
}

// The CT shows at once; the model's results and the reference labels come when they are read.
showSlice();
const references = loadReferences().catch((err) => say(message, `The reference labels could not be listed: ${err.message}`));
if (page.projects.length) {
  state.project = page.projects[0];
  openLive();
  state.ready = Promise.all([loadProject(), references]);
} else {
  $("#model-status").textContent = "No project of yours uses this scan's pool, so no model results can be shown.";
  state.ready = references.then(showSlice);
}

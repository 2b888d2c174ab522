// The lead's dashboard: steps with live progress, learning curves, cost, review flags, tau preview.

import { renderAccuracy, setupHeldOut } from "./accuracy.js";
import { api, fmt, liveEvents, pageData, say } from "./api.js";
import { boxPlot, legend, lineChart, PALETTE, scatterFit } from "./charts.js";

const page = pageData();
const project = page.project;
const base = `/api/projects/${project.id}`;
const $ = (sel) => document.querySelector(sel);
const message = $("#message");
const REVIEW_BELOW = project.stop_target_dice || 0.8;
const RUNNING = new Set(["created", "inferring", "selecting", "annotating", "training", "evaluating"]);
const PHASE_WORDS = { inferring: "running the model on the pool", selecting: "choosing slices",
  annotating: "waiting for annotators", training: "training the model", evaluating: "measuring accuracy" };
const SUBPHASE_WORDS = { first_model: "training model 0 on the initial training set", ranking: "ranking the pool's slices",
  test_scans: "segmenting the test scans", held_out: "segmenting the held-out slices" };

const state = { steps: [], models: [], mac: null, progress: {}, compared: {}, queriesByStep: new Map() };
window.dashboard = state; // inspected by the browser tests

function meanDice(model) {
  const rows = Object.values((model.metrics || {}).structures || {}).map((s) => s.dice).filter((d) => d != null);
  return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : null;
}

/** Why a finished step's model has no mean Dice (the dashboard never makes one up). */
function noDiceWhy(model) {
  if (!model || meanDice(model) != null) return "";
  const reasons = (model.metrics && model.metrics.reasons) || {};
  return reasons.evaluation || reasons.calibration || "";
}

function duration(seconds) {
  if (seconds == null) return "";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

// ---------- steps table ----------

function progressCell(step) {
  const live = state.progress[step.id];
  const percent = live ? live.percent : step.percent;
  const td = document.createElement("td");
  if (!RUNNING.has(step.state) || step.state === "annotating") {
    td.textContent = step.state === "annotating" ? `${step.mac.answered} of ${step.mac.queries} slices answered` : "";
    return td;
  }
  const eta = live ? live.eta_seconds : step.eta_seconds;
  const detail = live && live.detail && live.detail !== step.state ? live.detail : PHASE_WORDS[step.state] || step.state;
  td.innerHTML = `<div class="progress" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${percent}"><div></div></div>
    <small class="progress-text"></small><small class="subphase-text"></small><small class="queue-text warn"></small>`;
  td.querySelector(".progress > div").style.width = `${percent}%`;  // CSSOM: allowed by the page's CSP
  td.querySelector(".progress-text").textContent = `${detail}: ${Number(percent).toFixed(0)} %${eta != null ? ` · about ${duration(eta)} left` : ""}`;
  // The named part of the phase (model 0's training inside "inferring") has its own percent and ETA.
  const sub = live ? { name: live.subphase, percent: live.subphase_percent, eta: live.subphase_eta_seconds }
    : { name: step.subphase, percent: step.subphase_percent, eta: step.subphase_eta_seconds };
  if (sub.name && SUBPHASE_WORDS[sub.name]) {
    td.querySelector(".subphase-text").textContent = ` · now ${SUBPHASE_WORDS[sub.name]}: ${Number(sub.percent).toFixed(0)} %${sub.eta != null ? `, about ${duration(sub.eta)} left` : ""}`;
  }
  if (!live && step.queue && step.queue.waiting) td.querySelector(".queue-text").textContent = ` ${step.queue.waiting}`;
  td.dataset.step = step.id;
  td.className = "step-progress";
  return td;
}

/** The guard's decision and what it measured the model on ("…, on 8 held-out slices"). */
function guardWhy(guard) {
  if (!guard || !guard.reason) return "";
  return guard.measured_on ? `${guard.reason} (measured on ${guard.measured_on})` : guard.reason;
}

/** Unqueried pixels that took the model's label under Eq. 7's guard, and the wrong ones where a reference exists. */
function autoLabels(mac) {
  if (!mac.queries) return "–";
  const n = mac.auto_labelled_pixels.toLocaleString("en");
  if (mac.auto_labelled_wrong == null) return n;
  const share = mac.auto_labelled_pixels ? ` (${(100 * mac.auto_labelled_wrong / mac.auto_labelled_pixels).toFixed(1)} %)` : "";
  return `${n} · wrong ${mac.auto_labelled_wrong.toLocaleString("en")}${share}`;
}

function renderSteps() {
  const tbody = $("#steps tbody");
  tbody.replaceChildren();
  const byStep = new Map(state.models.map((m) => [m.step, m]));
  for (const step of [...state.steps].reverse()) {
    const tr = document.createElement("tr");
    tr.dataset.step = step.id;
    const model = byStep.get(step.id);
    const cells = [
      `${step.number}`, null, null, `${step.mac.answered} / ${step.mac.queries}`,
      step.mac.mac == null ? "–" : step.mac.mac.toFixed(4), autoLabels(step.mac), model ? fmt(meanDice(model)) : "–",
      step.reason || (step.stop_reached ? "stopping rule reached" : noDiceWhy(model)) || guardWhy(step.guard),
    ];
    cells.forEach((text, k) => {
      if (k === 1) {
        const td = document.createElement("td");
        td.innerHTML = `<span class="state ${step.state}"></span>`;
        td.firstChild.textContent = step.cancel_requested && RUNNING.has(step.state) ? `${step.state} (stopping…)` : step.state;
        tr.append(td);
      } else if (k === 2) {
        tr.append(progressCell(step));
      } else {
        const td = document.createElement("td");
        td.textContent = text;
        if (k >= 3 && k <= 6) td.className = "num";
        tr.append(td);
      }
    });
    tbody.append(tr);
  }
  if (!state.steps.length) tbody.innerHTML = `<tr><td colspan="8" class="empty">No step yet. Start the first one: with no labelled slice it asks for whole representative slices first.</td></tr>`;
  const running = state.steps.find((s) => RUNNING.has(s.state));
  $("#start").disabled = Boolean(running);
  $("#cancel").hidden = !running;
}

/** A progress event: update that step's bar in place (no reload, no refetch). */
function onProgress(ev) {
  state.progress[ev.step] = ev;
  const step = state.steps.find((s) => s.id === ev.step);
  if (!step) { refresh(); return; }
  step.percent = ev.percent;
  const old = document.querySelector(`#steps tr[data-step="${ev.step}"] td.step-progress`);
  if (old) old.replaceWith(progressCell(step)); else renderSteps();
}

// ---------- charts ----------

function put(id, node, note) {
  const box = $(id);
  box.replaceChildren();
  if (node) box.append(node);
  else box.innerHTML = `<p class="empty">${note}</p>`;
}

/** Cumulative MAC per step number: the MACs (Eq. 8) of the steps so far, added up (effort spent). */
function cumulativeMac(mac) {
  const out = new Map();
  let total = 0;
  for (const row of (mac && mac.steps) || []) {
    total += row.mac || 0;
    out.set(row.step, total);
  }
  return out;
}

/** "tau 0.005" or "tau 0.005 at steps 1–2, 0.01 at step 3": each step with the tau it ran with. */
export function tauText(steps) {
  const runs = [];
  for (const s of [...steps].sort((a, b) => a.number - b.number)) {
    const last = runs[runs.length - 1];
    if (last && last.tau === s.tau) last.to = s.number;
    else runs.push({ tau: s.tau, from: s.number, to: s.number });
  }
  if (!runs.length) return "";
  if (runs.length === 1) return `tau ${runs[0].tau}`;
  return "tau " + runs.map((r) => `${r.tau} at step${r.from === r.to ? ` ${r.from}` : `s ${r.from}–${r.to}`}`).join(", ");
}

/** Learning-curve series of one project, one per strategy its steps used: {name, byStep, byMac}. */
function curves(run, prefix = "") {
  const models = run.models.filter((m) => m.step_number != null && meanDice(m) != null);
  const stepOf = new Map(run.steps.map((s) => [s.number, s]));
  const strategyOf = (m) => (stepOf.get(m.step_number) || {}).strategy || run.strategy;
  const cumulative = cumulativeMac(run.mac);
  return [...new Set(models.map(strategyOf))].map((strategy) => {
    const mine = models.filter((m) => strategyOf(m) === strategy);
    // Each point's own step says which tau it ran with: a later change of tau relabels nothing.
    const taus = strategy === "tau" ? tauText(mine.map((m) => stepOf.get(m.step_number)).filter((s) => s && s.tau != null)) : "";
    return {
      name: `${prefix}${strategy}${taus ? ` (${taus})` : ""}`,
      byStep: mine.map((m) => [m.step_number, meanDice(m)]),
      byMac: mine.map((m) => [cumulative.get(m.step_number), meanDice(m)]).filter((p) => p[0] != null),
    };
  });
}

function renderCharts(queriesByStep) {
  const own = { models: state.models, steps: state.steps, mac: state.mac, strategy: project.strategy };
  const runs = [...curves(own, Object.keys(state.compared).length ? `${project.name}: ` : ""),
    ...Object.values(state.compared).flatMap((r) => curves(r, `${r.name}: `))];
  const series = (key) => runs.map((r, k) => ({ name: r.name, colour: PALETTE[k % PALETTE.length], points: r[key] }))
    .filter((s) => s.points.length);
  const wrap = (svg, s) => { const d = document.createElement("div"); d.append(legend(s), svg); return d; };
  const byStep = series("byStep");
  put("#chart-dice-step", byStep.length ? wrap(lineChart(byStep, { xLabel: "acquisition step", yLabel: "mean Dice (evaluation set)", integerX: true }), byStep) : null,
    "No trained model yet: the curve starts after the first step's evaluation.");
  const byMac = series("byMac");
  put("#chart-dice-mac", byMac.length ? wrap(lineChart(byMac, { xLabel: "cumulative MAC (sum of the steps\u2019 MAC)", yLabel: "mean Dice" }), byMac) : null,
    "No answered step yet.");

  const groups = [...queriesByStep.entries()].filter(([, qs]) => qs.length)
    .map(([number, qs]) => ({ label: `step ${number}`, values: qs.map((x) => x.n_queried / x.n_pixels) }));
  put("#chart-mac-box", groups.length ? boxPlot(groups, { xLabel: "acquisition step", yLabel: "MAC per slice" }) : null, "No queries yet.");

  const current = state.models.find((m) => m.is_current);
  const rows = current ? Object.entries((current.metrics || {}).structures || {}) : [];
  const points = rows.filter(([, s]) => s.psv != null && s.dice != null).map(([, s]) => ({ x: s.psv, y: s.dice, label: s.name }));
  const cal = current && current.calibration;
  put("#chart-psv", points.length ? scatterFit(points, { alpha: cal ? cal.alpha : null, beta: cal ? cal.beta : null,
    xLabel: "PSV (mean pixel uncertainty of the structure)", yLabel: "Dice", flag: (pt) => pt.y < REVIEW_BELOW }) : null,
    "No evaluated model yet.");
  if (cal && cal.correlation != null && points.length) {
    $("#chart-psv").append(Object.assign(document.createElement("p"), { className: "muted",
      textContent: `Fit: Dice = ${cal.alpha.toFixed(2)} × PSV + ${cal.beta.toFixed(3)} · correlation ${cal.correlation.toFixed(2)} · mean absolute error ${fmt(cal.mae)} · ${cal.n_pairs} pairs` }));
  }
  const signal = current && current.metrics && current.metrics.uncertainty;
  if (signal && signal.usable === false && points.length) {
    $("#chart-psv").append(Object.assign(document.createElement("p"), { className: "warn",
      textContent: "Not a usable signal yet: see the warning under Predicted Dice." }));
  }
  renderAccuracy(current, REVIEW_BELOW);
}

function renderThroughput() {
  const tbody = $("#throughput tbody");
  tbody.replaceChildren();
  for (const a of (state.mac && state.mac.annotators) || []) {
    const hours = a.seconds_spent / 3600;
    const tr = document.createElement("tr");
    for (const [text, num] of [[a.username, false], [a.answered, true], [a.queried_pixels, true], [duration(a.seconds_spent), true],
      [hours > 0 ? (a.answered / hours).toFixed(1) : "–", true], [a.seconds_spent > 0 ? Math.round(a.queried_pixels / (a.seconds_spent / 60)) : "–", true],
      [a.input_pixels ? (a.input_events / a.input_pixels).toPrecision(2) : "–", true]]) {
      const td = document.createElement("td");
      td.textContent = String(text);
      if (num) td.className = "num";
      tr.append(td);
    }
    tbody.append(tr);
  }
  if (!tbody.children.length) tbody.innerHTML = `<tr><td colspan="7" class="empty">No answered query yet.</td></tr>`;
}

// ---------- data ----------

async function refresh() {
  try {
    [state.steps, state.models, state.mac] = await Promise.all([
      api(`${base}/steps/`), api(`${base}/models/`), api(`${base}/acquisition/mac/`)]);
  } catch (err) {
    say(message, `The dashboard could not be loaded: ${err.message}`);
    return;
  }
  renderSteps();
  renderThroughput();
  renderStepCost();
  const queriesByStep = new Map();
  await Promise.all(state.steps.filter((s) => s.mac.queries).map(async (s) => {
    queriesByStep.set(s.number, (await api(`${base}/steps/${s.id}/queries/`)).filter((q) => q.status !== "withdrawn"));
  }));
  state.queriesByStep = new Map([...queriesByStep.entries()].sort((a, b) => a[0] - b[0]));
  renderCharts(state.queriesByStep);
}

function minutes(seconds) {
  return seconds < 90 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
}

/** The next step's cost next to "Start next step": training budgets, measured inference rate. */
async function renderStepCost() {
  const out = $("#step-cost");
  let c;
  try {
    c = await api(`${base}/acquisition/step-cost/`);
  } catch (err) {
    out.textContent = `The next step's cost could not be estimated: ${err.message}`;
    return;
  }
  const parts = [];
  if (c.first_model) parts.push(`first model: training up to ${minutes(c.first_model.max_seconds)} or ${c.first_model.max_epochs} epochs`);
  parts.push(c.inference_seconds === null
    ? `inference over ${c.unlabelled_slices} slices: measured after the first step`
    : `inference over ${c.unlabelled_slices} slices ≈ ${minutes(c.inference_seconds)} (rate of step ${c.measured_on_step})`);
  parts.push(`training after the answers: up to ${minutes(c.training.max_seconds)} or ${c.training.max_epochs} epochs`);
  if (c.test_slice_passes && c.evaluation_seconds !== null) parts.push(`evaluation ≈ ${minutes(c.evaluation_seconds)}`);
  const total = c.total_seconds === null ? "" : ` In all about ${minutes(c.total_seconds)} of worker time, answers excluded.`;
  out.textContent = `Next step on ${c.device.toUpperCase()}: ${parts.join("; ")}.${total}`;
}

// Every claim and every answer sends an event (dozens a second while a team works back
// to back), and one refresh makes four or more API calls: refresh at most once a second,
// never two at a time, and always once more after the last event.
const REFRESH_EVERY_MS = 1000;
let refreshTimer = null;
let lastRefresh = 0;

function refreshSoon() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(async () => {
    await state.ready; // the refresh in flight, if any
    refreshTimer = null;
    lastRefresh = Date.now();
    state.ready = refresh();
  }, Math.max(0, lastRefresh + REFRESH_EVERY_MS - Date.now()));
}

// ---------- comparing with other projects (e.g. one per strategy) ----------

async function toggleCompare(other, on) {
  if (!on) { delete state.compared[other.id]; renderCharts(state.queriesByStep); return; }
  const b = `/api/projects/${other.id}`;
  try {
    const [steps, models, mac] = await Promise.all([api(`${b}/steps/`), api(`${b}/models/`), api(`${b}/acquisition/mac/`)]);
    state.compared[other.id] = { name: other.name, strategy: other.strategy, steps, models, mac };
  } catch (err) {
    say(message, `${other.name} could not be added to the charts: ${err.message}`);
  }
  renderCharts(state.queriesByStep);
}

if (page.compare.length) {
  const box = $("#compare");
  box.hidden = false;
  for (const other of page.compare) {
    const label = document.createElement("label");
    label.className = "inline";
    label.innerHTML = `<input type="checkbox"> <span></span>`;
    label.querySelector("span").textContent = `${other.name} (${other.strategy})`;
    label.querySelector("input").addEventListener("change", (e) => toggleCompare(other, e.target.checked));
    box.append(label);
  }
}

// ---------- controls ----------

$("#start").addEventListener("click", async () => {
  say(message, "");
  $("#start").disabled = true;
  try {
    const step = await api(`${base}/steps/`, { method: "POST", body: { force: $("#force").checked } });
    say(message, `Step ${step.number} started: the model now runs on the pool. Progress appears below.`, "ok");
  } catch (err) {
    say(message, `The step could not start: ${err.message}`);
  }
  await refresh();
});

$("#cancel").addEventListener("click", async () => {
  const running = state.steps.find((s) => RUNNING.has(s.state));
  if (!running || !confirm(`Stop step ${running.number}? Its open queries are withdrawn.`)) return;
  try {
    await api(`${base}/steps/${running.id}/cancel/`, { method: "POST", body: { reason: "stopped from the dashboard" } });
    say(message, `Step ${running.number} is stopping.`, "info");
  } catch (err) {
    say(message, `The step could not be stopped: ${err.message}`);
  }
  await refresh();
});

/** What is wrong with the tau and target MAC fields, or "" (checked here: the browser's own tooltip
 *  is easy to miss and left the previous result on screen). */
function tauFormError() {
  const tau = $("#tau").value.trim(), target = $("#target-mac").value.trim();
  if (!tau && !target) return "Give a tau or a target MAC.";
  if (tau && (!Number.isFinite(Number(tau)) || Number(tau) < 0)) return `tau must be a number of 0 or more, not "${tau}".`;
  if (target && (!Number.isFinite(Number(target)) || Number(target) <= 0 || Number(target) > 1)) {
    return `The target MAC is a share of the pixels: a number above 0 and at most 1, not "${target}".`;
  }
  return "";
}

$("#tau-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const wrong = tauFormError();
  if (wrong) { $("#tau-result").className = "notice error"; $("#tau-result").textContent = wrong; return; }
  const params = new URLSearchParams();
  if ($("#tau").value) params.set("tau", $("#tau").value);
  if ($("#target-mac").value) params.set("target_mac", $("#target-mac").value);
  const out = $("#tau-result");
  try {
    const r = await api(`${base}/acquisition/tau-preview/?${params}`);
    let text = `tau = ${r.tau} would query ${r.queried_pixels.toLocaleString()} of ${r.total_pixels.toLocaleString()} pixels ` +
      `in the ${r.slices} slices of step ${r.step}: MAC ${r.mac == null ? "–" : r.mac.toFixed(4)}.`;
    if (r.suggested_tau != null) {
      text += ` For the target MAC, use tau = ${r.suggested_tau.toExponential(3)} (${r.suggested_queried_pixels.toLocaleString()} pixels).`;
      $("#tau").value = Number(r.suggested_tau.toPrecision(4));
    }
    out.className = "";
    out.textContent = text;
  } catch (err) {
    out.className = "notice error";
    out.textContent = err.message;
  }
});

$("#tau-save").addEventListener("click", async () => {
  const out = $("#tau-result");
  const tau = $("#tau").value.trim();
  if (!tau || !Number.isFinite(Number(tau)) || Number(tau) < 0) {
    out.className = "notice error";
    out.textContent = `tau was not saved: it must be a number of 0 or more, not "${tau}".`;
    return;
  }
  try {
    const r = await api(`${base}/acquisition/settings/`, { method: "PATCH", body: { tau: Number($("#tau").value) } });
    out.className = "notice ok";
    out.textContent = `The next step will use tau = ${r.tau}.`;
  } catch (err) {
    out.className = "notice error";
    out.textContent = `tau was not saved: ${err.message}`;
  }
});

// ---------- live events ----------

liveEvents(`/ws/projects/${project.id}/`, (ev) => {
  if (ev.type === "acquisition.progress") onProgress(ev);
  else if (ev.type === "acquisition.state" || ev.type === "acquisition.query") refreshSoon();
}, (status) => {
  const el = $("#live");
  el.textContent = { live: "live updates on", reconnecting: "reconnecting…", refused: "live updates refused" }[status];
  el.className = `live ${status === "live" ? "on" : "off"}`;
  state.live = status;
  if (status === "live") refreshSoon();
});

lastRefresh = Date.now();
state.ready = refresh();
state.heldOut = setupHeldOut(base, say, () => { renderStepCost(); });

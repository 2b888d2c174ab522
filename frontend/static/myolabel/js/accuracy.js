// The dashboard's accuracy panels: the current model's figures per structure, each with its
// status (a missing figure shows why, never a number), the warning when the uncertainty is
// not yet a usable signal, and the evaluation set (held-out slices or whole test scans).

import { api, fmt } from "./api.js";
import { readableName } from "./labels.js";

const $ = (sel) => document.querySelector(sel);
const SET_WORDS = { held_out_slices: "held-out slices", test_scans: "test scans" };

/** Text of one figure: its value, or "—" when its status says it is unavailable (the reason is in the
 *  row's status cell). A structure of old metrics (stored before figures had a status) that is absent from the evaluation data
 *  (no PSV, no predicted Dice) has a Dice of exactly 0 or 1 that measures nothing: "—" too. */
function figure(s, name, text) {
  if (s.status && s.status[name] !== "ok") return "—";
  if (absentLegacy(s) && name === "dice") return "—";
  return s[name] == null ? "—" : text(s[name]);
}

function absentLegacy(s) {
  return s.psv == null && s.predicted_dice == null && (s.dice === 0 || s.dice === 1);
}

/** A PSV as a plain decimal with three significant digits (0.0552, 0.00123), never "5.52e-2". */
export function psvText(v) {
  if (v === 0) return "0";
  const digits = Math.max(0, Math.min(8, 2 - Math.floor(Math.log10(Math.abs(v)))));
  return v.toFixed(digits);
}

/** A short status of the row: measured, or why not (absent from the data, no signal...). */
function rowStatus(s) {
  if (absentLegacy(s)) return "absent from the evaluation data";
  const st = s.status || {};
  if (st.dice && st.dice !== "ok") return "no Dice";
  if (st.predicted_dice && st.predicted_dice !== "ok") return "no predicted Dice";
  return "";
}

/** Reasons shared by every structure (said once above the table) and the rest (per row). */
function splitReasons(rows) {
  const count = new Map();
  for (const s of rows) for (const why of new Set(Object.values(s.reasons || {}))) count.set(why, (count.get(why) || 0) + 1);
  return new Set([...count.entries()].filter(([, n]) => n === rows.length && rows.length > 1).map(([why]) => why));
}

/** The structures table, the uncertainty warning and the notes of the current model. */
export function renderAccuracy(model, reviewBelow) {
  const metrics = (model && model.metrics) || {};
  const rows = Object.values(metrics.structures || {});
  const warning = $("#uncertainty-warning");
  const signal = metrics.uncertainty || {};
  warning.hidden = !signal.warning;
  warning.textContent = signal.warning || "";
  const set = metrics.evaluated_on && metrics.evaluated_on.set;
  $("#dice-heading").textContent = set ? `Dice (${SET_WORDS[set]})` : "Dice";
  const shared = splitReasons(rows);
  const notes = [...new Set([...Object.values(metrics.reasons || {}), ...shared])].filter((why) => why !== signal.warning);
  $("#accuracy-notes").replaceChildren(...notes.map((why) => Object.assign(document.createElement("li"), { textContent: why })));
  $("#accuracy-notes").hidden = !notes.length;
  $("#evaluated-on").textContent = describeSet(metrics.evaluated_on);

  const tbody = $("#structures tbody");
  tbody.replaceChildren();
  const key = (s) => (s.predicted_dice ?? s.dice ?? Infinity);
  for (const s of [...rows].sort((a, b) => key(a) - key(b))) {
    const value = absentLegacy(s) ? null : (s.predicted_dice ?? s.dice);
    const tr = document.createElement("tr");
    tr.innerHTML = `<td></td><td class="num predicted"></td><td class="num"></td><td class="num"></td><td></td><td class="why muted"></td>`;
    tr.children[0].textContent = readableName(s.name);
    tr.children[1].textContent = signal.usable === false ? "not given" : figure(s, "predicted_dice", fmt);
    tr.children[2].textContent = figure(s, "dice", fmt);
    if (s.n_rows) tr.children[2].title = `mean of ${s.n_rows} ${set === "test_scans" ? "test scan(s)" : "held-out slice(s)"}`;
    tr.children[3].textContent = figure(s, "psv", psvText);
    if (value != null && value < reviewBelow) {
      tr.children[4].textContent = "review";
      tr.children[4].className = "flag";
      tr.classList.add("flagged");
    }
    const own = [...new Set(Object.values(s.reasons || {}))].filter((why) => why !== signal.warning && !notes.includes(why));
    const status = rowStatus(s);
    tr.children[5].textContent = [status && !own.length ? `${status}.` : "", ...own].filter(Boolean).join(" ");
    if (status) tr.dataset.status = status;
    tbody.append(tr);
  }
  if (!rows.length) {
    const why = (metrics.reasons && metrics.reasons.evaluation) || "No evaluated model yet.";
    tbody.innerHTML = `<tr><td colspan="6" class="empty"></td></tr>`;
    tbody.querySelector("td").textContent = why;
  }
}

function describeSet(on) {
  if (!on || !on.set) return "";
  if (on.set === "test_scans") return `Measured on ${on.rows} whole test scan${on.rows === 1 ? "" : "s"}.`;
  return `Measured on ${on.rows} held-out slice${on.rows === 1 ? "" : "s"} of ${on.scans} scan${on.scans === 1 ? "" : "s"}.`;
}

// ---------- the evaluation set: which slices are held out ----------

function renderHeldOut(summary) {
  const list = $("#held-out-scans");
  list.replaceChildren(...summary.scans.map((s) => Object.assign(document.createElement("li"), {
    textContent: `${s.name}: ${s.z.length} of ${s.depth} slices (z = ${s.z.join(", ")})`,
  })));
  $("#held-out-count").textContent = summary.slices
    ? `${summary.slices} labelled slice${summary.slices === 1 ? " is" : "s are"} held out; each one and ${summary.margin} slice(s) on each side are never trained on or queried.`
    : "No slice is held out.";
  $("#held-out-note").textContent = summary.note;
}

/** Load the held-out slices and wire the form; `changed()` after the lead changed them. */
export async function setupHeldOut(base, say, changed) {
  const out = $("#held-out-result");
  const load = async () => {
    try {
      renderHeldOut(await api(`${base}/held-out/`));
    } catch (err) {
      $("#held-out-count").textContent = `The held-out slices could not be loaded: ${err.message}`;
    }
  };
  $("#held-out-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const summary = await api(`${base}/held-out/`, { method: "POST", body: { per_scan: Number($("#held-out-per-scan").value) } });
      renderHeldOut(summary);
      say(out, `${summary.slices} slices are now held out.`, "ok");
      changed();
    } catch (err) {
      say(out, `No slice was held out: ${err.message}`);
    }
  });
  $("#held-out-clear").addEventListener("click", async () => {
    try {
      await api(`${base}/held-out/`, { method: "DELETE" });
      await load();
      say(out, "No slice is held out any more: they may be seeded and queried again.", "info");
      changed();
    } catch (err) {
      say(out, `The held-out slices were kept: ${err.message}`);
    }
  });
  await load();
}

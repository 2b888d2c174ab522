// The PACS section of the administration page: connect DICOMweb archives (site administrators),
// search their studies and series, import chosen series into a pool and follow the import job.

import { api, pageData, say } from "./api.js";

const page = pageData();
const $ = (sel) => document.querySelector(sel);
const message = $("#pacs-message");
const adminProjects = page.projects.filter((p) => p.can_manage_members);
const state = { archives: [], study: null, job: null };
window.pacsTools = state;

function cell(tr, text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  tr.append(td);
  return td;
}

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

function button(text, onClick, secondary = true) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (secondary) b.className = "secondary";
  b.addEventListener("click", onClick);
  return b;
}

function isoDate(yyyymmdd) {
  return /^\d{8}$/.test(yyyymmdd || "") ? `${yyyymmdd.slice(0, 4)}-${yyyymmdd.slice(4, 6)}-${yyyymmdd.slice(6)}` : yyyymmdd || "";
}

// ---------- archives ----------

async function loadArchives() {
  state.archives = await api("/api/pacs/archives/");
  const tbody = $("#pacs-archives tbody");
  tbody.replaceChildren();
  for (const a of state.archives) {
    const tr = document.createElement("tr");
    cell(tr, a.name);
    cell(tr, a.url);
    cell(tr, a.username ? `${a.username}${a.has_password ? " (password stored encrypted)" : ""}` : "none");
    const actions = cell(tr, "");
    if (page.is_superuser) actions.append(button("Remove", () => removeArchive(a)));
    tbody.append(tr);
  }
  if (!state.archives.length) {
    const tr = document.createElement("tr");
    cell(tr, page.is_superuser ? "No archive yet: connect one below." : "No archive yet: a site administrator connects them.")
      .className = "empty";
    tbody.append(tr);
  }
  $("#pacs-archive").replaceChildren(...state.archives.map((a) => option(a.id, a.name)));
}

async function removeArchive(archive) {
  if (!confirm(`Remove the archive "${archive.name}"? Scans imported from it stay.`)) return;
  try {
    await api(`/api/pacs/archives/${archive.id}/`, { method: "DELETE" });
    say(message, `Archive "${archive.name}" removed.`, "ok");
    await loadArchives();
  } catch (err) {
    say(message, `The archive was not removed: ${err.message}`);
  }
}

$("#pacs-archive-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = { name: $("#pacs-archive-name").value, url: $("#pacs-archive-url").value,
    username: $("#pacs-archive-user").value, password: $("#pacs-archive-password").value };
  say(message, "Asking the archive for one study…", "ok");
  try {
    const archive = await api("/api/pacs/archives/", { method: "POST", body });
    say(message, `Archive "${archive.name}" answered and is connected.`, "ok");
    e.target.reset();
    await loadArchives();
  } catch (err) {
    say(message, `The archive was not connected: ${err.message}`);
  } finally {
    $("#pacs-archive-password").value = "";
  }
});

// ---------- search ----------

$("#pacs-search").addEventListener("submit", async (e) => {
  e.preventDefault();
  const query = new URLSearchParams();
  const fields = { patient_id: "#pacs-patient-id", patient_name: "#pacs-patient-name", date_from: "#pacs-date-from",
    date_to: "#pacs-date-to", modality: "#pacs-modality", description: "#pacs-description" };
  for (const [name, sel] of Object.entries(fields)) if ($(sel).value.trim()) query.set(name, $(sel).value.trim());
  say(message, "");
  $("#pacs-series").hidden = true;
  try {
    showStudies(await api(`/api/pacs/archives/${$("#pacs-archive").value}/studies/?${query}`));
  } catch (err) {
    say(message, `The search failed: ${err.message}`);
  }
});

function showStudies(studies) {
  const table = $("#pacs-studies");
  const tbody = table.querySelector("tbody");
  tbody.replaceChildren();
  table.hidden = false;
  for (const s of studies) {
    const tr = document.createElement("tr");
    cell(tr, isoDate(s.study_date));
    cell(tr, [s.patient_name, s.patient_id].filter(Boolean).join(" · "));
    cell(tr, s.description || s.accession_number || s.study_uid);
    cell(tr, s.modalities.join(", "));
    cell(tr, s.n_series ?? "").className = "num";
    cell(tr, "").append(button("Show series", () => showSeries(s)));
    tbody.append(tr);
  }
  if (!studies.length) {
    const tr = document.createElement("tr");
    cell(tr, "No study matches this search.").className = "empty";
    tbody.append(tr);
  }
}

async function showSeries(study) {
  state.study = study;
  const box = $("#pacs-series");
  let series;
  try {
    series = await api(`/api/pacs/archives/${$("#pacs-archive").value}/series/?study_uid=${encodeURIComponent(study.study_uid)}`);
  } catch (err) {
    say(message, `The series could not be listed: ${err.message}`);
    return;
  }
  $("#pacs-series-title").textContent = `Series of ${study.description || study.study_uid} (${isoDate(study.study_date)})`;
  const tbody = box.querySelector("tbody");
  tbody.replaceChildren();
  for (const s of series) {
    const tr = document.createElement("tr");
    const check = document.createElement("input");
    check.type = "checkbox";
    check.value = s.series_uid;
    check.checked = s.modality === "CT" && !s.imported;
    check.disabled = s.imported;
    cell(tr, "").append(check);
    cell(tr, s.number ?? "");
    cell(tr, s.modality);
    cell(tr, s.imported ? `${s.description} (imported already)` : s.description);
    cell(tr, s.n_instances ?? "").className = "num";
    tbody.append(tr);
  }
  box.hidden = false;
}

// ---------- import ----------

async function loadPools() {
  let pools = adminProjects.flatMap((p) => p.pools);
  if (page.is_superuser) pools = await api("/api/pools/");
  const seen = new Map(pools.map((p) => [p.id, p]));
  $("#pacs-pool").replaceChildren(...[...seen.values()].map((p) => option(p.id, p.name)));
}

$("#pacs-import").addEventListener("submit", async (e) => {
  e.preventDefault();
  const chosen = [...document.querySelectorAll("#pacs-series tbody input:checked")].map((b) => b.value);
  if (!chosen.length) { say(message, "Choose at least one series to import."); return; }
  try {
    const job = await api(`/api/pacs/archives/${$("#pacs-archive").value}/imports/`, { method: "POST",
      body: { pool: Number($("#pacs-pool").value), study_uid: state.study.study_uid, series_uids: chosen } });
    say(message, "");
    await followJob(job.id);
  } catch (err) {
    say(message, `The import was not started: ${err.message}`);
  }
});

async function followJob(jobId) {
  const status = $("#pacs-status");
  status.className = "";
  for (;;) {
    const job = await api(`/api/imports/${jobId}/`);
    state.job = job;
    if (job.status === "done" || job.status === "failed") { showResults(job); return; }
    status.textContent = job.status === "pending" || job.percent === 0
      ? "Retrieving the series from the archive…" : `Importing: ${Math.round(job.percent)} %`;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function showResults(job) {
  const errors = $("#pacs-errors");
  errors.replaceChildren();
  const ok = job.results.filter((r) => r.status === "imported");
  for (const r of job.results.filter((x) => x.status === "failed")) {
    const li = document.createElement("li");
    li.textContent = r.name ? `${r.name}: ${r.error}` : r.error;
    errors.append(li);
  }
  const failed = job.results.length - ok.length;
  $("#pacs-status").className = failed ? "warn" : "ok";
  $("#pacs-status").textContent = `Import finished: ${ok.length} series imported, ${failed} failed.`;
}

// ---------- start ----------

if (page.is_superuser || adminProjects.length) {
  $("#pacs").hidden = false;
  $("#pacs-archive-form").hidden = !page.is_superuser;
  loadArchives().catch((err) => say(message, err.message));
  loadPools().catch((err) => say(message, err.message));
}

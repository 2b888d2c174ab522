// Pools, chunked CT uploads with a progress bar per file, import results, members and roles.

import { api, liveEvents, pageData, say } from "./api.js";
import { closePairs, readableName } from "./labels.js";

const page = pageData();
const $ = (sel) => document.querySelector(sel);
const message = $("#message");
const CHUNK = 8 * 1024 * 1024;
const state = { pools: [], job: null, shownPool: null };
window.adminTools = state;

function option(value, text) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = text;
  return o;
}

// ---------- pools ----------

async function loadPools() {
  state.pools = await api("/api/pools/");
  const tbody = $("#pools tbody");
  tbody.replaceChildren();
  for (const pool of state.pools) {
    const tr = document.createElement("tr");
    tr.innerHTML = `<td></td><td class="num"></td><td><button type="button" class="secondary">Show scans</button></td>`;
    tr.children[0].textContent = pool.name;
    tr.children[1].textContent = pool.n_scans;
    tr.querySelector("button").addEventListener("click", () => showScans(pool));
    tbody.append(tr);
  }
  if (!state.pools.length) tbody.innerHTML = `<tr><td colspan="3" class="empty">No pool yet: create one below.</td></tr>`;
  // The pool chosen for the next import stays chosen: the next batch must land where the last one did.
  const chosen = $("#upload-pool").value;
  $("#upload-pool").replaceChildren(...state.pools.map((p) => option(p.id, p.name)));
  if (state.pools.some((p) => String(p.id) === chosen)) $("#upload-pool").value = chosen;
  const shown = state.shownPool && state.pools.find((p) => p.id === state.shownPool);
  if (shown) await showScans(shown);
}

async function showScans(pool) {
  state.shownPool = pool.id;
  const box = $("#pool-scans");
  const scans = await api(`/api/pools/${pool.id}/scans/`);
  box.innerHTML = `<h2></h2><ul class="scan-list"></ul>`;
  box.querySelector("h2").textContent = `Scans of ${pool.name}`;
  for (const s of scans) {
    const li = document.createElement("li");
    li.innerHTML = `<a></a> <span class="muted"></span>`;
    li.firstChild.href = `/scans/${s.id}/`;
    li.firstChild.textContent = s.name;
    li.lastChild.textContent = `${s.shape.join(" × ")} voxels · ${s.status}` +
      (s.reference_label_sets && s.reference_label_sets.length ? " · reference labels" : "");
    box.querySelector("ul").append(li);
  }
  if (!scans.length) box.querySelector("ul").outerHTML = `<p class="empty">No scan in this pool yet.</p>`;
}

$("#pool-project").replaceChildren(...page.projects.filter((p) => p.can_manage_members).map((p) => option(p.id, p.name)));
$("#pool-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    const pool = await api("/api/pools/", { method: "POST", body: { project: Number($("#pool-project").value), name: $("#pool-name").value } });
    say(message, `Pool "${pool.name}" created.`, "ok");
    $("#pool-name").value = "";
    await loadPools();
  } catch (err) {
    say(message, `The pool was not created: ${err.message}`);
  }
});

// ---------- uploads ----------

$("#upload-folder").addEventListener("change", (e) => { $("#upload-files").webkitdirectory = e.target.checked; });
// A reference label map is one volume file: never a zip, a DICOM slice or a MetaImage's raw data.
const LABEL_MAP = /\.(nii|nii\.gz|mha|mhd|nrrd|nhdr)$/i;

$("#upload-files").addEventListener("change", () => {
  const files = [...$("#upload-files").files].filter((f) => LABEL_MAP.test(nameOf(f)));
  $("#upload-labels").replaceChildren(option("", "none"), ...files.map((f) => option(nameOf(f), nameOf(f))));
});

function nameOf(file) {
  return file.webkitRelativePath || file.name;
}

function fileRow(file) {
  const li = document.createElement("li");
  li.innerHTML = `<div class="file-row"><span class="fname"></span><div class="progress"><div></div></div><span class="pct muted">waiting</span></div>`;
  li.querySelector(".fname").textContent = nameOf(file);
  $("#upload-list").append(li);
  return (sent, text) => {
    li.querySelector(".progress > div").style.width = `${(100 * sent) / Math.max(1, file.size)}%`;
    li.querySelector(".pct").textContent = text || `${Math.round((100 * sent) / Math.max(1, file.size))} %`;
  };
}

async function sendFile(jobId, file, show) {
  const url = `/api/imports/${jobId}/files/${nameOf(file).split("/").map(encodeURIComponent).join("/")}`;
  let start = 0;
  if (file.size === 0) throw new Error(`${nameOf(file)} is empty`);
  while (start < file.size) {
    const end = Math.min(start + CHUNK, file.size);
    await api(url, { method: "PUT", body: file.slice(start, end),
      headers: { "Content-Range": `bytes ${start}-${end - 1}/${file.size}`, "Content-Type": "application/octet-stream" } });
    start = end;
    show(start);
  }
  show(file.size, "uploaded");
}

function showResults(job) {
  const errors = $("#upload-errors");
  errors.replaceChildren();
  const ok = job.results.filter((r) => r.status === "imported");
  for (const r of job.results.filter((x) => x.status === "failed")) {
    const li = document.createElement("li");
    // The server's message often starts with the file's name already: say it once.
    li.textContent = String(r.error || "").startsWith(`${r.name}:`) ? r.error : `${r.name}: ${r.error}`;
    errors.append(li);
  }
  const links = $("#upload-scans");
  links.replaceChildren(...ok.map((r) => {
    const li = document.createElement("li");
    const a = Object.assign(document.createElement("a"), { href: `/scans/${r.scan_id}/`, textContent: `Open ${r.name}` });
    li.append(a);
    return li;
  }));
  const failed = job.results.length - ok.length;
  $("#upload-status").className = failed ? "warn" : "ok";
  $("#upload-status").textContent = job.status === "failed" && !job.results.length
    ? "The import failed before any scan was read." : `Import finished: ${ok.length} scan(s) imported, ${failed} failed.`;
}

async function followJob(jobId) {
  for (;;) {
    const job = await api(`/api/imports/${jobId}/`);
    state.job = job;
    if (job.status === "done" || job.status === "failed") { showResults(job); await loadPools(); return; }
    $("#upload-status").className = "";
    $("#upload-status").textContent = `Importing on the server: ${Math.round(job.percent)} %`;
    await new Promise((r) => setTimeout(r, 1500));
  }
}

$("#upload-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const files = [...$("#upload-files").files];
  if (!files.length) { say(message, "Choose the files to import first."); return; }
  $("#upload-list").replaceChildren();
  $("#upload-errors").replaceChildren();
  $("#upload-scans").replaceChildren();
  say(message, "");
  $("#upload-start").disabled = true;
  try {
    const labelSet = $("#upload-label-set").value;
    const job = await api("/api/imports/uploads/", { method: "POST",
      body: { pool: Number($("#upload-pool").value), ...(labelSet ? { label_set: Number(labelSet) } : {}) } });
    state.job = job;
    const rows = files.map(fileRow);
    for (let k = 0; k < files.length; k++) await sendFile(job.id, files[k], rows[k]);
    await api(`/api/imports/${job.id}/complete/`, { method: "POST",
      body: $("#upload-labels").value ? { labels: $("#upload-labels").value } : {} });
    await followJob(job.id);
  } catch (err) {
    say(message, `The upload stopped: ${err.message}`);
  } finally {
    $("#upload-start").disabled = false;
  }
});

liveEvents("/ws/events/", (ev) => {
  if (ev.type === "import" && state.job && ev.job === state.job.id && ev.status === "running") {
    $("#upload-status").textContent = `Importing ${ev.file}: ${Math.round(ev.percent)} %`;
  }
});

// ---------- members ----------

function renderMembers() {
  const box = $("#members");
  box.replaceChildren();
  for (const p of page.projects) {
    const section = document.createElement("div");
    section.innerHTML = `<h2></h2><table><thead><tr><th>User</th><th>Role</th><th></th></tr></thead><tbody></tbody></table>`;
    section.querySelector("h2").textContent = p.name;
    const tbody = section.querySelector("tbody");
    for (const m of p.members) {
      const tr = document.createElement("tr");
      tr.innerHTML = `<td></td><td></td><td></td>`;
      tr.children[0].textContent = m.username;
      if (p.can_manage_members) {
        const select = document.createElement("select");
        select.append(...page.roles.map((r) => option(r, r)));
        select.value = m.role;
        select.addEventListener("change", async () => {
          try {
            await api(`/api/projects/${p.id}/members/${m.user}/`, { method: "PATCH", body: { role: select.value } });
            m.role = select.value;
            say(message, `${m.username} is now ${m.role} of ${p.name}.`, "ok");
          } catch (err) {
            select.value = m.role;
            say(message, `The role was not changed: ${err.message}`);
          }
        });
        tr.children[1].append(select);
        const remove = Object.assign(document.createElement("button"), { type: "button", className: "secondary", textContent: "Remove" });
        remove.addEventListener("click", async () => {
          if (!confirm(`Remove ${m.username} from ${p.name}?`)) return;
          try {
            await api(`/api/projects/${p.id}/members/${m.user}/`, { method: "DELETE" });
            p.members = p.members.filter((x) => x !== m);
            renderMembers();
          } catch (err) {
            say(message, `${m.username} was not removed: ${err.message}`);
          }
        });
        tr.children[2].append(remove);
      } else {
        tr.children[1].textContent = m.role;
      }
      tbody.append(tr);
    }
    if (p.can_manage_members) {
      const form = document.createElement("form");
      form.className = "controls";
      form.innerHTML = `<label>User name <input name="username" required></label><label>Role <select name="role"></select></label><button type="submit">Add member</button>`;
      form.role.append(...page.roles.map((r) => option(r, r)));
      form.role.value = "annotator";
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        try {
          const m = await api(`/api/projects/${p.id}/members/`, { method: "POST", body: { username: form.username.value, role: form.role.value } });
          p.members.push({ user: m.user, username: m.username, role: m.role });
          renderMembers();
          say(message, `${m.username} added to ${p.name} as ${m.role}.`, "ok");
        } catch (err) {
          say(message, `The member was not added: ${err.message}`);
        }
      });
      section.append(form);
    }
    box.append(section);
  }
  if (!page.projects.length) box.innerHTML = `<p class="empty">You lead no project.</p>`;
}

async function loadLabelSets() {
  const sets = await api("/api/label-sets/");
  const list = Array.isArray(sets) ? sets : sets.results || [];
  $("#upload-label-set").append(...list.map((s) => option(s.id, s.name)));
}

// ---------- structure colours ----------

function renderColours() {
  const project = page.projects.find((p) => String(p.id) === $("#colour-project").value);
  const box = $("#colours");
  box.replaceChildren();
  if (!project) return;
  for (const label of project.labels) {
    const row = document.createElement("label");
    row.className = "inline colour-row";
    const input = Object.assign(document.createElement("input"), { type: "color", value: label.colour });
    input.dataset.value = label.value;
    input.addEventListener("change", async () => {
      try {
        const saved = await api(`/api/projects/${project.id}/labels/${label.value}/`, { method: "PATCH", body: { colour: input.value } });
        label.colour = saved.colour;
        say(message, `${readableName(label.name)} is now ${saved.colour} in ${project.name}.`, "ok");
      } catch (err) {
        input.value = label.colour;
        say(message, `The colour was not changed: ${err.message}`);
      }
      warnClose(project);
    });
    row.append(input, document.createTextNode(` ${label.value} · ${readableName(label.name, label.side)}`));
    box.append(row);
  }
  warnClose(project);
}

/** Structures whose colours are hard to tell apart (less than 30 CIELAB units). */
function warnClose(project) {
  $("#colour-warnings").replaceChildren(...closePairs(project.labels).map(([a, b, d]) => Object.assign(
    document.createElement("li"), { textContent: `${readableName(a.name)} and ${readableName(b.name)} are hard to tell apart (${d.toFixed(0)} CIELAB units).` })));
}

const colourProjects = page.projects.filter((p) => p.can_manage_members && p.labels.length);
$("#colours-panel").hidden = !colourProjects.length;
$("#colour-project").replaceChildren(...colourProjects.map((p) => option(p.id, p.name)));
$("#colour-project").addEventListener("change", renderColours);
renderColours();

renderMembers();
state.ready = Promise.all([loadPools(), loadLabelSets()]).catch((err) => say(message, `The page could not be loaded: ${err.message}`));

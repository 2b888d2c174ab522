// The scan viewer's "Send to PACS": the shown segmentation, as DICOM-SEG over the CT's own
// series, into an archive the site's administrators configured (POST segmentations/<id>/pacs/).
// Shown to the project's leads and admins only, as the API allows; what cannot be sent (a scan
// not imported from DICOM, an archive that refuses) comes back from the API with the reason.
//
// scan_viewer.js announces the segmentation it shows with a "myolabel:segmentation" event.

import { api, say } from "./api.js";

const $ = (sel) => document.querySelector(sel);
const panel = $("#pacs-send");
const select = $("#pacs-send-archive");
const button = $("#pacs-send-button");
const message = $("#pacs-send-message");
const SENDERS = new Set(["lead", "admin"]);
let shown = null; // {project, segmentation}

document.addEventListener("myolabel:segmentation", (e) => show(e.detail.project, e.detail.segmentation));
button.addEventListener("click", send);

async function show(project, segmentation) {
  shown = { project, segmentation };
  panel.hidden = true;
  say(message, "");
  if (!segmentation || segmentation.status !== "done" || !SENDERS.has(project.role)) return;
  let archives;
  try {
    archives = await api("/api/pacs/archives/");
  } catch (err) {
    return; // not a lead of any project after all: nothing to offer
  }
  if (shown.segmentation !== segmentation) return; // another project was chosen meanwhile
  select.replaceChildren(...archives.map((a) => Object.assign(document.createElement("option"),
    { value: a.id, textContent: a.name })));
  button.disabled = !archives.length;
  panel.hidden = false;
  if (!archives.length) {
    say(message, "No PACS archive is configured yet: an administrator adds one on the administration page.", "info");
  }
}

async function send() {
  const { project, segmentation } = shown;
  const archive = select.selectedOptions[0];
  button.disabled = true;
  say(message, `Sending the segmentation to ${archive.textContent} as DICOM-SEG…`, "info");
  try {
    const sent = await api(`/api/projects/${project.id}/segmentations/${segmentation.id}/pacs/`,
      { method: "POST", body: { archive: Number(archive.value) } });
    say(message, `Sent to ${archive.textContent}: SEG series ${sent.series_uid} in study ${sent.study_uid}, `
      + `over CT series ${sent.referenced_series_uid}.`, "ok");
  } catch (err) {
    say(message, `Not sent: ${err.message}`);
  } finally {
    button.disabled = false;
  }
}

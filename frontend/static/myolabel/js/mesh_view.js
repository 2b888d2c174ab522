// The scan viewer's 3D view and biomechanics downloads: the shown segmentation's structure
// meshes (three.js, vendored), rotatable, each structure toggled on and off.
//
// scan_viewer.js announces the segmentation it shows with a "myolabel:segmentation" event;
// this module owns #mesh-panel. Meshes are made on demand (the button), because making them
// costs the server a second or more on a large scan. Under the page's strict CSP: an ES module,
// no inline script or style (sizes and colours go through the CSSOM), no eval, no workers.

import * as THREE from "../vendor/three/three.module.js";
import { api, say } from "./api.js";

const $ = (sel) => document.querySelector(sel);
const panel = $("#mesh-panel");
const state = { segmentation: null, project: null, structures: [], renderer: null, loading: false };
window.meshView = state;

panel.replaceChildren(...html(`
  <h2>3D view and biomechanics</h2>
  <p class="muted" id="mesh-status">No finished segmentation of this scan yet.</p>
  <button type="button" id="mesh-show" class="secondary" hidden>Show structures in 3D</button>
  <div id="mesh-canvas" class="mesh-canvas" hidden aria-label="3D view of the segmented structures"></div>
  <p class="muted hint" id="mesh-hint" hidden>Drag: rotate · wheel: zoom · patient's left on the right, seen from the front.</p>
  <fieldset id="mesh-toggles" class="mesh-toggles" hidden><legend>Structures</legend></fieldset>
  <div class="row" id="mesh-downloads" hidden>
    <a id="download-meshes">Meshes (STL, OBJ)</a>
    <a id="download-muscle-html">Muscle report</a>
    <a id="download-muscle-csv">(CSV)</a>
    <a id="download-seg-nrrd">Slicer .seg.nrrd</a>
  </div>`));

function html(text) {
  const template = document.createElement("template");
  template.innerHTML = text.trim();
  return [...template.content.childNodes];
}

document.addEventListener("myolabel:segmentation", (e) => show(e.detail.project, e.detail.segmentation));

function show(project, segmentation) {
  clear();
  state.project = project;
  state.segmentation = segmentation;
  const done = segmentation && segmentation.status === "done";
  $("#mesh-status").textContent = done ? "Closed, smoothed surfaces of every structure, in patient coordinates (mm)."
    : "No finished segmentation of this scan yet.";
  $("#mesh-show").hidden = !done;
  $("#mesh-downloads").hidden = !done;
  if (!done) return;
  const base = `/api/projects/${project.id}/segmentations/${segmentation.id}`;
  $("#download-meshes").href = `${base}/meshes.zip`;
  $("#download-muscle-html").href = `${base}/muscle-report.html`;
  $("#download-muscle-csv").href = `${base}/muscle-report.csv`;
  $("#download-seg-nrrd").href = `${base}/labels.seg.nrrd`;
}

$("#mesh-show").addEventListener("click", async () => {
  if (state.loading || !state.segmentation) return;
  state.loading = true;
  $("#mesh-show").disabled = true;
  $("#mesh-status").textContent = "Making the surfaces…";
  const seg = state.segmentation;
  try {
    const body = await api(`/api/projects/${state.project.id}/segmentations/${seg.id}/meshes/`);
    if (seg !== state.segmentation) return;  // another project was chosen meanwhile
    draw(body.structures);
    $("#mesh-show").hidden = true;
    $("#mesh-status").textContent = `${body.structures.length} structures.` +
      (body.stride.some((s) => s > 1) ? " Drawn from every " + body.stride.join(" × ") + " voxels (z × y × x); the downloads are full resolution." : "");
  } catch (err) {
    say($("#message"), `The 3D surfaces could not be made: ${err.message}`);
    $("#mesh-status").textContent = "";
  } finally {
    state.loading = false;
    $("#mesh-show").disabled = false;
  }
});

/** base64 of little-endian numbers -> a typed array of `Kind`. */
function decode(text, Kind) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new Kind(bytes.buffer);
}

function draw(structures) {
  const wrap = $("#mesh-canvas");
  wrap.hidden = false;
  $("#mesh-hint").hidden = false;
  const width = wrap.clientWidth || 340, height = Math.round(width * 0.9);
  const renderer = new THREE.WebGLRenderer({ antialias: true });
  renderer.setPixelRatio(window.devicePixelRatio || 1);
  renderer.setSize(width, height);
  renderer.setClearColor(0xf4f6f8);
  wrap.replaceChildren(renderer.domElement);
  const scene = new THREE.Scene();
  // LPS (x left, y posterior, z superior) -> screen (x right, y up, z to the viewer): a rotation of
  // -90 degrees about x, so superior is up and the viewer looks at the patient's front.
  const patient = new THREE.Group();
  patient.rotation.x = -Math.PI / 2;
  const turntable = new THREE.Group();  // what the mouse turns
  turntable.add(patient);
  scene.add(turntable);
  scene.add(new THREE.AmbientLight(0xffffff, 0.55));
  const camera = new THREE.PerspectiveCamera(35, width / height, 1, 100000);
  const light = new THREE.DirectionalLight(0xffffff, 1.6);
  camera.add(light);
  scene.add(camera);

  state.structures = structures.map((s) => {
    const geometry = new THREE.BufferGeometry();
    geometry.setAttribute("position", new THREE.BufferAttribute(decode(s.positions, Float32Array), 3));
    geometry.setIndex(new THREE.BufferAttribute(decode(s.indices, Uint32Array), 1));
    geometry.computeVertexNormals();
    const mesh = new THREE.Mesh(geometry, new THREE.MeshLambertMaterial({ color: s.colour }));
    mesh.name = s.name;
    patient.add(mesh);
    return { name: s.name, value: s.value, colour: s.colour, volume_ml: s.volume_ml, mesh };
  });
  // Centre the structures on the turntable's axis; back the camera off to hold them all.
  const box = new THREE.Box3().setFromObject(patient);
  const centre = box.getCenter(new THREE.Vector3());
  const radius = Math.max(1, box.getSize(new THREE.Vector3()).length() / 2);
  patient.position.sub(centre);
  const view = { distance: radius / Math.tan((camera.fov * Math.PI) / 360) * 1.1 };
  const render = () => {
    camera.position.set(0, 0, view.distance);
    camera.lookAt(0, 0, 0);
    renderer.render(scene, camera);
    state.frames = (state.frames || 0) + 1;
  };
  state.renderer = renderer;
  state.render = render;
  toggles();
  controls(renderer.domElement, turntable, view, radius, render);
  render();
}

function toggles() {
  const box = $("#mesh-toggles");
  box.hidden = false;
  box.replaceChildren(box.querySelector("legend") || document.createElement("legend"));
  for (const s of state.structures) {
    const label = document.createElement("label");
    label.className = "mesh-toggle";
    const input = Object.assign(document.createElement("input"), { type: "checkbox", checked: true, value: s.name });
    input.addEventListener("change", () => { s.mesh.visible = input.checked; state.render(); });
    const swatch = Object.assign(document.createElement("span"), { className: "swatch inline-swatch" });
    swatch.style.background = s.colour;  // CSSOM: allowed by the page's CSP
    label.append(input, " ", swatch, ` ${s.name} (${Number(s.volume_ml).toFixed(1)} mL)`);
    box.append(label);
  }
}

/** Drag turns the structures (about the vertical, then the horizontal axis); the wheel zooms. */
function controls(canvas, turntable, view, radius, render) {
  let drag = null;
  canvas.addEventListener("pointerdown", (e) => { canvas.setPointerCapture(e.pointerId); drag = { x: e.clientX, y: e.clientY }; });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    turntable.rotation.y += (e.clientX - drag.x) * 0.01;
    turntable.rotation.x = Math.max(-Math.PI / 2, Math.min(Math.PI / 2, turntable.rotation.x + (e.clientY - drag.y) * 0.01));
    drag = { x: e.clientX, y: e.clientY };
    render();
  });
  canvas.addEventListener("pointerup", () => { drag = null; });
  canvas.addEventListener("wheel", (e) => {
    e.preventDefault();
    view.distance = Math.max(radius * 0.5, Math.min(radius * 20, view.distance * (e.deltaY < 0 ? 0.9 : 1.1)));
    render();
  }, { passive: false });
}

function clear() {
  if (state.renderer) state.renderer.dispose();
  for (const s of state.structures) { s.mesh.geometry.dispose(); s.mesh.material.dispose(); }
  Object.assign(state, { structures: [], renderer: null, render: null, frames: 0 });
  $("#mesh-canvas").replaceChildren();
  $("#mesh-canvas").hidden = true;
  $("#mesh-hint").hidden = true;
  $("#mesh-toggles").hidden = true;
  $("#mesh-show").hidden = true;
}

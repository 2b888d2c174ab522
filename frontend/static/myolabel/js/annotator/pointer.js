// The pointer over a slice: paint with the left button, pan with the middle one (or the Pan
// tool), window/level with the right one (or the W/L tool); the wheel zooms. Between presses it
// draws the brush outline and says what is under the cursor (structure and HU).

/** Wire `viewport` of a SliceViewer (`getViewer()`); `h` has the callbacks:
 *  press(p, event) -> true when the tool took the press as a stroke; drag(p); release();
 *  windowLevel(window, level); hover(p) for the readout (p null when the pointer left);
 *  radius() and brushVisible() for the outline; wheel(event) -> true when it handled the wheel. */
export function installPointer(viewport, getViewer, h) {
  let drag = null;
  const cursor = document.createElement("div");
  cursor.className = "brush-cursor";
  cursor.hidden = true;
  const pixelOf = (e) => getViewer().toPixel(e.clientX, e.clientY);

  function drawCursor(e) {
    const viewer = getViewer();
    if (!viewer || !h.brushVisible()) { cursor.hidden = true; return; }
    const p = pixelOf(e);
    const r = h.radius() + 0.5;
    const rect = viewport.getBoundingClientRect(), stage = viewer.stage.getBoundingClientRect();
    const scale = stage.width / viewer.width;
    const cx = stage.left - rect.left + (Math.floor(p.x) + 0.5) * scale;
    const cy = stage.top - rect.top + (Math.floor(p.y) + 0.5) * scale;
    // CSSOM, allowed by the page's CSP: a circle of the brush's radius in screen pixels.
    cursor.style.width = cursor.style.height = `${2 * r * scale}px`;
    cursor.style.transform = `translate(${cx - r * scale}px, ${cy - r * scale}px)`;
    cursor.hidden = false;
  }

  viewport.addEventListener("contextmenu", (e) => e.preventDefault());
  viewport.addEventListener("pointerdown", (e) => {
    const viewer = getViewer();
    if (!viewer) return;
    if (cursor.parentNode !== viewport) viewport.append(cursor);
    viewport.setPointerCapture(e.pointerId);
    const mode = e.button === 1 || h.tool() === "pan" ? "pan" : e.button === 2 || h.tool() === "wl" ? "wl" : "tool";
    drag = { mode, x: e.clientX, y: e.clientY, window: viewer.window, level: viewer.level, stroke: false };
    if (mode === "tool") drag.stroke = h.press(pixelOf(e), e);
    if (mode === "tool" && !drag.stroke) drag = null;
  });
  viewport.addEventListener("pointermove", (e) => {
    const viewer = getViewer();
    if (!viewer) return;
    if (cursor.parentNode !== viewport) viewport.append(cursor);
    drawCursor(e);
    h.hover(pixelOf(e));
    if (!drag) return;
    if (drag.mode === "pan") { viewer.panBy(e.clientX - drag.x, e.clientY - drag.y); drag.x = e.clientX; drag.y = e.clientY; return; }
    if (drag.mode === "wl") { h.windowLevel(drag.window + (e.clientX - drag.x) * 4, drag.level + (e.clientY - drag.y) * 2); return; }
    h.drag(pixelOf(e));
  });
  const end = () => {
    if (drag && drag.stroke) h.release();
    drag = null;
  };
  viewport.addEventListener("pointerup", end);
  viewport.addEventListener("pointercancel", end);
  viewport.addEventListener("pointerleave", () => { cursor.hidden = true; h.hover(null); });
  viewport.addEventListener("wheel", (e) => {
    const viewer = getViewer();
    if (!viewer) return;
    e.preventDefault();
    if (h.wheel && h.wheel(e)) return;
    viewer.zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX, e.clientY);
    drawCursor(e);
  }, { passive: false });
}

/** What the annotator's readout says of pixel (x, y): its HU, its label's name and where the label comes from. */
export function describePixel(editor, hu, nameOf, x, y) {
  const i = y * editor.width + x;
  const answered = editor.answers[i] !== 255;
  const shown = answered ? editor.answers[i] : editor.predicted[i];
  let source = "your answer";
  if (!editor.queryMask[i]) source = "model, fixed";
  else if (!answered) source = "prediction, to confirm";
  const name = shown === 0 ? (answered ? "Background" : "") : nameOf.get(shown);
  return { x, y, hu: hu ? hu[i] : null, name, source };
}

/** The readout's text for slice pixel (x, y): position, HU and the label with where it comes from. */
export function readoutText({ x, y, hu, name, source }) {
  const parts = [`x ${x}, y ${y}`];
  if (hu !== null && hu !== undefined) parts.push(`${hu} HU`);
  parts.push(name ? `${name}${source ? ` (${source})` : ""}` : source || "no structure");
  return parts.join(" · ");
}

// Stacked canvases of one slice (CT, uncertainty heat map, labels, query outline) inside a
// stage that zooms and pans with a CSS transform, so zooming never repaints pixels.
// Label repaints cover only the bounding box of the pixels that changed.

import { boxOf, heatRgba, labelsToRgba, outlineRgba, peekLabelsToRgba, queryLabelsToRgba, windowToRgba } from "./render.js";

const LAYERS = ["ct", "heat", "labels", "outline"];

export class SliceViewer {
  constructor(viewport, width, height) {
    this.viewport = viewport;
    this.width = width;
    this.height = height;
    this.stage = document.createElement("div");
    this.stage.className = "stage";
    this.stage.style.width = `${width}px`;
    this.stage.style.height = `${height}px`;
    this.canvases = {};
    this.ctx = {};
    for (const name of LAYERS) {
      const c = document.createElement("canvas");
      c.width = width;
      c.height = height;
      c.className = `layer layer-${name}`;
      c.dataset.layer = name;
      this.stage.appendChild(c);
      this.canvases[name] = c;
      this.ctx[name] = c.getContext("2d", { willReadFrequently: false });
    }
    viewport.replaceChildren(this.stage);
    this.zoom = 1;
    this.panX = 0;
    this.panY = 0;
    this.hu = null;
    this.window = 400;
    this.level = 40;
    this.alpha = 0.5;
    this.fit();
  }

  /** Scale the slice to fill the viewport and centre it. */
  fit() {
    const w = this.viewport.clientWidth || this.width, h = this.viewport.clientHeight || this.height;
    this.zoom = Math.min(w / this.width, h / this.height);
    this.panX = (w - this.width * this.zoom) / 2;
    this.panY = (h - this.height * this.zoom) / 2;
    this.applyTransform();
  }

  applyTransform() {
    this.stage.style.transform = `translate(${this.panX}px, ${this.panY}px) scale(${this.zoom})`;
  }

  /** Zoom by `factor` keeping the slice point under (clientX, clientY) in place. */
  zoomAt(factor, clientX, clientY) {
    const rect = this.viewport.getBoundingClientRect();
    const mx = clientX - rect.left, my = clientY - rect.top;
    const z = Math.min(16, Math.max(0.25, this.zoom * factor));
    this.panX = mx - ((mx - this.panX) * z) / this.zoom;
    this.panY = my - ((my - this.panY) * z) / this.zoom;
    this.zoom = z;
    this.applyTransform();
  }

  panBy(dx, dy) {
    this.panX += dx;
    this.panY += dy;
    this.applyTransform();
  }

  /** Slice pixel (fractional) under a client point. */
  toPixel(clientX, clientY) {
    const rect = this.stage.getBoundingClientRect();
    return { x: ((clientX - rect.left) / rect.width) * this.width, y: ((clientY - rect.top) / rect.height) * this.height };
  }

  setCt(hu) {
    this.hu = hu;
    this.renderCt();
  }

  setWindow(window, level) {
    this.window = Math.max(1, window);
    this.level = level;
    this.renderCt();
  }

  renderCt() {
    const img = this.ctx.ct.createImageData(this.width, this.height);
    if (this.hu) windowToRgba(this.hu, this.window, this.level, img.data);
    else img.data.fill(0);
    this.ctx.ct.putImageData(img, 0, 0);
  }

  setHeat(values) {
    const img = this.ctx.heat.createImageData(this.width, this.height);
    this.heatMax = heatRgba(values, img.data);
    this.ctx.heat.putImageData(img, 0, 0);
  }

  setOutline(mask) {
    const img = this.ctx.outline.createImageData(this.width, this.height);
    outlineRgba(mask, this.width, this.height, img.data);
    this.ctx.outline.putImageData(img, 0, 0);
  }

  show(layer, visible) {
    this.canvases[layer].hidden = !visible;
  }

  setOpacity(alpha) {
    // Opacity is a CSS property of the layer: changing it repaints nothing.
    this.alpha = alpha;
    this.canvases.labels.style.opacity = String(alpha);
  }

  /** Repaint the labels inside `box` (whole slice when omitted) through `labelAt(i)`. */
  renderLabels(labelAt, lut, box = null) {
    const b = box || { x0: 0, y0: 0, x1: this.width, y1: this.height };
    const w = b.x1 - b.x0, h = b.y1 - b.y0;
    if (w <= 0 || h <= 0) return;
    const img = this.ctx.labels.createImageData(w, h);
    labelsToRgba(labelAt, this.width, b, lut, 1, img.data);
    this.ctx.labels.putImageData(img, b.x0, b.y0);
  }

  /** Repaint only the box around the changed flat indices. */
  renderChanged(indices, labelAt, lut) {
    const box = boxOf(indices, this.width, this.height, 0);
    if (box) this.renderLabels(labelAt, lut, box);
    return box;
  }

  /** The annotator's overlay (answers solid, unconfirmed predictions hatched) in `box`, or everywhere. */
  renderQuery(editor, lut, box = null) {
    const b = box || { x0: 0, y0: 0, x1: this.width, y1: this.height };
    const w = b.x1 - b.x0, h = b.y1 - b.y0;
    if (w <= 0 || h <= 0) return;
    const img = this.ctx.labels.createImageData(w, h);
    queryLabelsToRgba(editor, b, lut, img.data);
    this.ctx.labels.putImageData(img, b.x0, b.y0);
  }

  /** A neighbouring slice's overlay: `labelled` solid, `predicted` hatched where nobody labelled (either may be null). */
  renderPeek(labelled, predicted, lut) {
    const img = this.ctx.labels.createImageData(this.width, this.height);
    peekLabelsToRgba(labelled, predicted, this.width, { x0: 0, y0: 0, x1: this.width, y1: this.height }, lut, img.data);
    this.ctx.labels.putImageData(img, 0, 0);
  }

  /** Centre slice point (x, y) in the viewport at zoom `zoom` (at least the current one). */
  centreOn(x, y, zoom = this.zoom) {
    const w = this.viewport.clientWidth || this.width, h = this.viewport.clientHeight || this.height;
    this.zoom = Math.min(16, Math.max(this.zoom, zoom));
    this.panX = w / 2 - x * this.zoom;
    this.panY = h / 2 - y * this.zoom;
    this.applyTransform();
  }
}

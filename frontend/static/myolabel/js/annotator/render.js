// Pixel rendering for the annotator's stacked canvases (CT, labels, uncertainty, outline).
// Everything works on whole typed arrays or on the bounding box of what changed, so that
// a brush stroke on a 512 x 512 slice repaints only a few hundred pixels.

import { UNANSWERED } from "./core.js";

/** The window/level of a preset button (the server renders them from its one definition), or of the
 *  default one when none is given. */
export function presetOf(button = document.querySelector("[data-preset][data-default]")) {
  return { window: Number(button.dataset.window), level: Number(button.dataset.level) };
}

/** "#rrggbb" -> [r, g, b]. */
export function hexToRgb(hex) {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 255, (v >> 8) & 255, v & 255];
}

/** A 256-entry RGBA lookup table (Uint8Array of 1024) from [{value, colour}]. */
export function colourTable(labels) {
  const lut = new Uint8Array(256 * 4);
  for (const { value, colour } of labels) {
    const [r, g, b] = hexToRgb(colour);
    lut.set([r, g, b, 255], value * 4);
  }
  return lut; // value 0 (background) and 255 (unanswered) stay transparent
}

/** Grey RGBA pixels of HU values (Int16Array) for a window/level. */
export function windowToRgba(hu, window, level, out) {
  const low = level - window / 2;
  const scale = 255 / Math.max(1, window);
  for (let i = 0, j = 0; i < hu.length; i++, j += 4) {
    let g = (hu[i] - low) * scale;
    g = g < 0 ? 0 : g > 255 ? 255 : g;
    out[j] = out[j + 1] = out[j + 2] = g;
    out[j + 3] = 255;
  }
  return out;
}

/** Label overlay RGBA for the box [x0, x1) x [y0, y1), reading labels through `labelAt(i)`. */
export function labelsToRgba(labelAt, width, box, lut, alpha, out) {
  const a = Math.round(alpha * 255);
  let j = 0;
  for (let y = box.y0; y < box.y1; y++) {
    for (let x = box.x0; x < box.x1; x++, j += 4) {
      const v = labelAt(y * width + x);
      const k = v * 4;
      out[j] = lut[k];
      out[j + 1] = lut[k + 1];
      out[j + 2] = lut[k + 2];
      out[j + 3] = lut[k + 3] ? a : 0;
    }
  }
  return out;
}

/** Alpha of a predicted label nobody confirmed at (x, y): hatched (half the pixels) and dimmed. The one
 *  convention of the query's pre-filled prediction, the neighbouring slices' and the reformats' predictions. */
export function hatchAlpha(x, y) {
  return ((x + y) & 3) < 2 ? 150 : 0;
}

/**
 * A neighbouring slice's overlay for the box: `labelled` (answered or reference labels) solid, and where
 * it has none (255, or no array) `predicted` hatched and dimmed. Either array may be null.
 */
export function peekLabelsToRgba(labelled, predicted, width, box, lut, out) {
  let j = 0;
  for (let y = box.y0; y < box.y1; y++) {
    for (let x = box.x0; x < box.x1; x++, j += 4) {
      const i = y * width + x;
      const own = labelled ? labelled[i] : UNANSWERED;
      const v = own !== UNANSWERED ? own : predicted ? predicted[i] : UNANSWERED;
      const k = v * 4;
      out[j] = lut[k];
      out[j + 1] = lut[k + 1];
      out[j + 2] = lut[k + 2];
      out[j + 3] = v === UNANSWERED || !lut[k + 3] ? 0 : own !== UNANSWERED ? 255 : hatchAlpha(x, y);
    }
  }
  return out;
}

/**
 * The annotator's label overlay for the box: outside the query the prediction (fixed); inside it an
 * answer solid, an answered background as white stripes (visible, unlike "no label"), and a pixel
 * still without an answer as its prediction hatched and dimmed: the suggestion to confirm or repaint.
 */
export function queryLabelsToRgba(editor, box, lut, out) {
  const { width, queryMask, answers, predicted } = editor;
  let j = 0;
  for (let y = box.y0; y < box.y1; y++) {
    for (let x = box.x0; x < box.x1; x++, j += 4) {
      const i = y * width + x;
      let v, a = 255;
      if (!queryMask[i]) {
        v = predicted[i];
      } else if (answers[i] === UNANSWERED) {
        v = predicted[i];
        a = hatchAlpha(x, y);
      } else if (answers[i] === 0) {
        const stripe = ((x - y) & 3) === 0;
        out[j] = out[j + 1] = out[j + 2] = 255;
        out[j + 3] = stripe ? 200 : 0;
        continue;
      } else {
        v = answers[i];
      }
      const k = v * 4;
      out[j] = lut[k];
      out[j + 1] = lut[k + 1];
      out[j + 2] = lut[k + 2];
      out[j + 3] = lut[k + 3] ? a : 0;
    }
  }
  return out;
}

/** Outline of the query region: queried pixels with a 4-neighbour outside it. */
export function outlineRgba(mask, width, height, out) {
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = y * width + x;
      if (!mask[i]) continue;
      const edge = x === 0 || y === 0 || x === width - 1 || y === height - 1 ||
        !mask[i - 1] || !mask[i + 1] || !mask[i - width] || !mask[i + width];
      if (edge) out.set([255, 255, 0, 255], i * 4);
    }
  }
  return out;
}

/** The heat map's one colour (magenta, more opaque where more uncertain): no structure colour of the
 *  default table and not the yellow query outline; its legend is drawn from the same value. */
export const HEAT_RGB = [255, 0, 255];

/** Heat map of the pixel uncertainty (Float32Array), scaled to its maximum; returns the maximum. */
export function heatRgba(values, out) {
  let max = 0;
  for (const v of values) if (v > max) max = v;
  const s = max > 0 ? 1 / max : 0;
  for (let i = 0, j = 0; i < values.length; i++, j += 4) {
    const t = values[i] * s;
    out[j] = HEAT_RGB[0];
    out[j + 1] = HEAT_RGB[1];
    out[j + 2] = HEAT_RGB[2];
    out[j + 3] = Math.round(220 * t);
  }
  return max;
}

/** Bounding box (exclusive ends) of flat indices, grown by `pad` and clipped. */
export function boxOf(indices, width, height, pad = 0) {
  let x0 = width, y0 = height, x1 = -1, y1 = -1;
  for (const i of indices) {
    const x = i % width, y = (i - x) / width;
    if (x < x0) x0 = x;
    if (x > x1) x1 = x;
    if (y < y0) y0 = y;
    if (y > y1) y1 = y;
  }
  if (x1 < 0) return null;
  return { x0: Math.max(0, x0 - pad), y0: Math.max(0, y0 - pad),
           x1: Math.min(width, x1 + 1 + pad), y1: Math.min(height, y1 + 1 + pad) };
}

export { UNANSWERED };

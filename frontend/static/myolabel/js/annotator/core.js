// The annotator's editing model, free of any DOM: what the expert may change and how.
//
// A query is a slice of width x height pixels. `queryMask[i]` is 1 where the model was
// unsure (u >= tau) and the expert must answer; everything else keeps the predicted
// label and can never be edited. Answers start as UNANSWERED inside the query.

export const UNANSWERED = 255;

/** The one rule of the annotator: only queried pixels are editable. */
export function isEditable(queryMask, index) {
  return queryMask[index] === 1;
}

export class LabelEditor {
  constructor(width, height, predicted, queryMask) {
    if (predicted.length !== width * height || queryMask.length !== width * height) {
      throw new Error(`slice is ${width} x ${height} but got ${predicted.length} labels and ${queryMask.length} mask values`);
    }
    this.width = width;
    this.height = height;
    this.predicted = predicted;
    this.queryMask = queryMask;
    this.answers = new Uint8Array(width * height).fill(UNANSWERED);
    this.queried = [];
    for (let i = 0; i < queryMask.length; i++) if (queryMask[i] === 1) this.queried.push(i);
    this.undoStack = [];
    this.redoStack = [];
    this.stroke = null;
    // An HU limit on the brush and fill (muscle, fat, bone presets): null, or {lo, hi} with this.hu set.
    this.hu = null;
    this.huRange = null;
    // The fill stops where the model's predicted label changes, not only at the expert's answers.
    this.stopAtEdges = false;
  }

  /** Whether a tool may change pixel i: queried, and inside the HU limit when one is set. */
  allowed(i) {
    if (!isEditable(this.queryMask, i)) return false;
    if (!this.huRange || !this.hu) return true;
    const v = this.hu[i];
    return v >= this.huRange.lo && v <= this.huRange.hi;
  }

  /** The class of pixel i a fill spreads through: its answer, and its prediction while unanswered when
   *  fills stop at label edges. */
  regionKey(i) {
    const a = this.answers[i];
    return this.stopAtEdges && a === UNANSWERED ? 1000 + this.predicted[i] : a;
  }

  /** Label shown at pixel i: the answer inside the query (if any), else the prediction. */
  displayed(i) {
    return isEditable(this.queryMask, i) ? this.answers[i] : this.predicted[i];
  }

  beginStroke() {
    this.stroke = new Map(); // index -> value before the stroke
  }

  endStroke() {
    // A pixel put back within the stroke (a push dragged back) is no change: undo must not step through it.
    if (this.stroke) for (const [i, before] of this.stroke) if (this.answers[i] === before) this.stroke.delete(i);
    if (this.stroke && this.stroke.size) {
      this.undoStack.push(this.stroke);
      this.redoStack = [];
    }
    this.stroke = null;
  }

  _set(i, value, limited = true) {
    if (!(limited ? this.allowed(i) : isEditable(this.queryMask, i)) || this.answers[i] === value) return false;
    const own = this.stroke === null;
    if (own) this.beginStroke();
    if (!this.stroke.has(i)) this.stroke.set(i, this.answers[i]);
    this.answers[i] = value;
    if (own) this.endStroke();
    return true;
  }

  /** Put pixels of the current stroke back as they were before it (a drag that redraws its result as
   *  the pointer moves); they stay in the stroke, so the stroke is still one undo step. */
  revert(indices) {
    for (const i of indices) if (this.stroke && this.stroke.has(i)) this.answers[i] = this.stroke.get(i);
  }

  /** Indices of the disc of `radius` pixels around (cx, cy), clipped to the slice. */
  disc(cx, cy, radius) {
    const out = [];
    const r = Math.max(0, radius);
    const x0 = Math.max(0, Math.ceil(cx - r)), x1 = Math.min(this.width - 1, Math.floor(cx + r));
    const y0 = Math.max(0, Math.ceil(cy - r)), y1 = Math.min(this.height - 1, Math.floor(cy + r));
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) out.push(y * this.width + x);
      }
    }
    return out;
  }

  /** Paint `value` in a disc; returns the indices that changed (only queried pixels can). */
  paint(cx, cy, radius, value) {
    return this.disc(cx, cy, radius).filter((i) => this._set(i, value));
  }

  erase(cx, cy, radius) {
    return this.paint(cx, cy, radius, UNANSWERED);
  }

  /** Copy the predicted label into the queried pixels of a disc. With radius Infinity (the whole query)
   *  every pixel without an answer takes it, whatever the HU limit: what the expert painted stays. */
  acceptPredicted(cx, cy, radius) {
    if (!Number.isFinite(radius)) {
      return this.queried.filter((i) => this.answers[i] === UNANSWERED && this._set(i, this.predicted[i], false));
    }
    return this.disc(cx, cy, radius).filter((i) => this._set(i, this.predicted[i]));
  }

  /** 4-connected flood fill of the answers equal to the seed's, bounded by the query region. */
  fill(x, y, value) {
    const seed = y * this.width + x;
    if (x < 0 || y < 0 || x >= this.width || y >= this.height || !this.allowed(seed)) return [];
    const target = this.regionKey(seed);
    if (this.answers[seed] === value) return [];
    const changed = [];
    const stack = [seed];
    const seen = new Uint8Array(this.width * this.height);
    seen[seed] = 1;
    while (stack.length) {
      const i = stack.pop();
      if (this._set(i, value)) changed.push(i);
      const px = i % this.width;
      const neighbours = [px > 0 ? i - 1 : -1, px < this.width - 1 ? i + 1 : -1, i - this.width, i + this.width];
      for (const n of neighbours) {
        if (n >= 0 && n < seen.length && !seen[n] && this.allowed(n) && this.regionKey(n) === target) {
          seen[n] = 1;
          stack.push(n);
        }
      }
    }
    return changed;
  }

  /**
   * Same pixels as fill(), for large regions: a typed-array stack and no per-pixel
   * allocations, so filling a query of tens of thousands of pixels stays within a frame.
   */
  fillRegion(x, y, value) {
    const W = this.width, H = this.height;
    if (x < 0 || y < 0 || x >= W || y >= H) return [];
    const seed = y * W + x;
    if (!this.allowed(seed)) return [];
    const target = this.regionKey(seed);
    if (this.answers[seed] === value) return [];
    const seen = new Uint8Array(W * H);
    const stack = new Int32Array(W * H);
    const changed = [];
    const own = this.stroke === null;
    if (own) this.beginStroke();
    const visit = (n) => {
      if (!seen[n] && this.allowed(n) && this.regionKey(n) === target) {
        seen[n] = 1;
        stack[top++] = n;
      }
    };
    let top = 0;
    stack[top++] = seed;
    seen[seed] = 1;
    while (top) {
      const i = stack[--top];
      if (!this.stroke.has(i)) this.stroke.set(i, this.answers[i]);
      this.answers[i] = value;
      changed.push(i);
      const px = i % W;
      if (px > 0) visit(i - 1);
      if (px < W - 1) visit(i + 1);
      if (i >= W) visit(i - W);
      if (i < W * (H - 1)) visit(i + W);
    }
    if (own) this.endStroke();
    return changed;
  }

  _swap(from, to) {
    const patch = from.pop();
    if (!patch) return [];
    const inverse = new Map();
    for (const [i, value] of patch) {
      inverse.set(i, this.answers[i]);
      this.answers[i] = value;
    }
    to.push(inverse);
    return [...patch.keys()];
  }

  undo() {
    return this._swap(this.undoStack, this.redoStack);
  }

  redo() {
    return this._swap(this.redoStack, this.undoStack);
  }

  unansweredCount() {
    return this.queried.reduce((n, i) => n + (this.answers[i] === UNANSWERED ? 1 : 0), 0);
  }

  /** The answers of the queried pixels, in raster order: what the server stores. */
  submission() {
    return Uint8Array.from(this.queried, (i) => this.answers[i]);
  }
}

// --- Encodings shared with the server (numpy packbits, big-endian bit order; base64). ---

export function base64ToBytes(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

export function bytesToBase64(bytes) {
  let binary = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) binary += String.fromCharCode(...bytes.subarray(i, i + chunk));
  return btoa(binary);
}

/** Inverse of numpy.packbits(bits) for `count` bits: a Uint8Array of 0/1. */
export function unpackBits(packed, count) {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = (packed[i >> 3] >> (7 - (i & 7))) & 1;
  return out;
}

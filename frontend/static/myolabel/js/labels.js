// Structures as an expert reads them: readable names, a key or a search for every one, and
// legends for the overlays. The colours are the label set's own (an admin edits them); the
// default set's table (projects migration 0003) keeps every pair at least 30 CIELAB units apart.

/** "gluteus_maximus" -> "Gluteus maximus"; "psoas_major_left" -> "Psoas major (left)". */
export function readableName(name, side = "") {
  let text = String(name || "").replace(/[_]+/g, " ").replace(/\s+/g, " ").trim();
  const sided = text.match(/^(.*) (left|right)$/i);
  if (sided) { text = sided[1]; side = side || sided[2].toLowerCase(); }
  text = text.charAt(0).toUpperCase() + text.slice(1);
  return side ? `${text} (${side})` : text;
}

// Keys of the structures in palette order: 1-9 and 0, then q w r t y u o, then z x v m.
// Letters the tools use (b e f a i c n g w p h s) are left out.
export const STRUCTURE_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0",
  "q", "r", "t", "y", "u", "o", "z", "x", "v", "m", "j", "k", "l"];

/** The palette rows: {value, name, colour, key} with readable names; background last, key "`". */
export function paletteRows(labels) {
  const rows = labels.map((l, k) => ({ value: l.value, colour: l.colour, name: readableName(l.name, l.side),
    raw: l.name, key: STRUCTURE_KEYS[k] || "" }));
  rows.push({ value: 0, colour: null, name: "Background (no structure)", raw: "background", key: "`" });
  return rows;
}

/** Rows whose name contains every word typed (any order, any case); exact starts first. */
export function searchRows(rows, text) {
  const words = String(text).toLowerCase().split(/\s+/).filter(Boolean);
  if (!words.length) return rows;
  const hits = rows.filter((r) => words.every((w) => r.name.toLowerCase().includes(w) || r.raw.toLowerCase().includes(w)));
  const starts = (r) => (r.name.toLowerCase().startsWith(words[0]) ? 0 : 1);
  return hits.sort((a, b) => starts(a) - starts(b));
}

/** One legend entry (swatch + text) as a <span>; `pattern` gives the swatch a CSS class. */
export function legendItem(text, colour, pattern = "") {
  const item = document.createElement("span");
  item.className = "legend-item";
  const swatch = document.createElement("span");
  swatch.className = `swatch ${pattern}`.trim();
  if (colour) swatch.style.background = colour;  // CSSOM: allowed by the page's CSP
  item.append(swatch, document.createTextNode(text));
  return item;
}

/** The legend of the label overlay: structures present in `values` (a Set), then the kinds of pixels. */
export function labelLegend(box, rows, values, extras = []) {
  const items = rows.filter((r) => r.value !== 0 && values.has(r.value)).map((r) => legendItem(r.name, r.colour));
  box.replaceChildren(...items, ...extras.map(([text, colour, pattern]) => legendItem(text, colour, pattern)));
}

/** CIELAB (D65) of "#rrggbb". */
export function hexToLab(hex) {
  const v = parseInt(hex.slice(1), 16);
  const lin = [(v >> 16) & 255, (v >> 8) & 255, v & 255].map((c) => {
    const x = c / 255;
    return x > 0.04045 ? ((x + 0.055) / 1.055) ** 2.4 : x / 12.92;
  });
  const xyz = [0.4124 * lin[0] + 0.3576 * lin[1] + 0.1805 * lin[2], 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2],
    0.0193 * lin[0] + 0.1192 * lin[1] + 0.9505 * lin[2]];
  const f = xyz.map((t, k) => {
    const r = t / [0.95047, 1, 1.08883][k];
    return r > 0.008856 ? Math.cbrt(r) : 7.787 * r + 16 / 116;
  });
  return [116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])];
}

/** Pairs of structures whose colours are less than `limit` CIELAB units apart: [[a, b, distance]]. */
export function closePairs(labels, limit = 30) {
  const out = [];
  const lab = labels.map((l) => hexToLab(l.colour));
  for (let i = 0; i < labels.length; i++) {
    for (let j = i + 1; j < labels.length; j++) {
      const d = Math.hypot(...lab[i].map((v, k) => v - lab[j][k]));
      if (d < limit) out.push([labels[i], labels[j], d]);
    }
  }
  return out;
}

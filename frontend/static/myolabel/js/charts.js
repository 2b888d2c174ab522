// Small SVG charts (lines, scatter with a fitted line, box plots), no library needed.
// Every chart returns an <svg> element sized by its viewBox, so it scales with its panel.

const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#2a6fdb", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285", "#c2255c"];

function el(name, attrs = {}, text = "") {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

/** About five round tick values covering [lo, hi]. */
export function ticks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function extent(values, pad = 0.05) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!Number.isFinite(lo)) return [0, 1];
  if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 0.5; hi += Math.abs(hi) * 0.1 || 0.5; }
  const d = (hi - lo) * pad;
  return [lo - d, hi + d];
}

/** Axis numbers as plain decimals (0.005, 0.0003), as a reader of the dashboard writes them; only
 *  values beyond a million or below a millionth fall back to powers of ten. */
function tickText(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-6 || a >= 1e6)) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

/** Frame with axes; returns {svg, x(v), y(v), plot} where plot is the group to draw in. */
function frame({ width = 520, height = 280, xDomain, yDomain, xLabel = "", yLabel = "", xTicks, yTicks }) {
  const m = { l: 56, r: 14, t: 12, b: 42 };
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
  const iw = width - m.l - m.r, ih = height - m.t - m.b;
  const x = (v) => m.l + ((v - xDomain[0]) / (xDomain[1] - xDomain[0])) * iw;
  const y = (v) => m.t + ih - ((v - yDomain[0]) / (yDomain[1] - yDomain[0])) * ih;
  const grid = el("g", { class: "grid" }), axis = el("g", { class: "axis" });
  for (const v of yTicks || ticks(...yDomain)) {
    grid.append(el("line", { x1: m.l, x2: m.l + iw, y1: y(v), y2: y(v) }));
    axis.append(el("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end" }, tickText(v)));
  }
  for (const t of xTicks || ticks(...xDomain).map((v) => ({ v, label: tickText(v) }))) {
    axis.append(el("line", { x1: x(t.v), x2: x(t.v), y1: m.t + ih, y2: m.t + ih + 4 }));
    axis.append(el("text", { x: x(t.v), y: m.t + ih + 16, "text-anchor": "middle" }, t.label));
  }
  axis.append(el("path", { d: `M${m.l},${m.t}V${m.t + ih}H${m.l + iw}`, fill: "none" }));
  axis.append(el("text", { x: m.l + iw / 2, y: height - 6, "text-anchor": "middle", "font-weight": 600 }, xLabel));
  axis.append(el("text", { x: 12, y: m.t + ih / 2, "text-anchor": "middle", "font-weight": 600,
    transform: `rotate(-90 12 ${m.t + ih / 2})` }, yLabel));
  const plot = el("g");
  svg.append(grid, axis, plot);
  return { svg, x, y, plot };
}

/** Lines with dots: series = [{name, colour?, points: [[x, y], ...]}]. */
export function lineChart(series, { xLabel, yLabel, yDomain, integerX = false } = {}) {
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1]));
  const xDomain = extent(xs, 0.04);
  const f = frame({ xDomain, yDomain: yDomain || extent(ys, 0.1), xLabel, yLabel,
    xTicks: integerX ? [...new Set(xs)].sort((a, b) => a - b).map((v) => ({ v, label: String(v) })) : undefined });
  series.forEach((s, k) => {
    const colour = s.colour || PALETTE[k % PALETTE.length];
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    f.plot.append(el("polyline", { points: pts.map(([a, b]) => `${f.x(a)},${f.y(b)}`).join(" "), fill: "none",
      stroke: colour, "stroke-width": 2 }));
    for (const [a, b] of pts) {
      const dot = el("circle", { cx: f.x(a), cy: f.y(b), r: 3.5, fill: colour });
      dot.append(el("title", {}, `${s.name}: ${tickText(a)}, ${b.toFixed(3)}`));
      f.plot.append(dot);
    }
  });
  return f.svg;
}

/** Scatter of points [{x, y, label}] with the line y = alpha x + beta when given. */
export function scatterFit(points, { alpha, beta, xLabel, yLabel, flag = () => false } = {}) {
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  const xDomain = extent(xs, 0.08);
  const lineYs = alpha != null ? xDomain.map((v) => alpha * v + beta) : [];
  const f = frame({ xDomain, yDomain: extent([...ys, ...lineYs], 0.08), xLabel, yLabel });
  if (alpha != null) {
    f.plot.append(el("line", { x1: f.x(xDomain[0]), y1: f.y(alpha * xDomain[0] + beta), x2: f.x(xDomain[1]),
      y2: f.y(alpha * xDomain[1] + beta), stroke: "#d9480f", "stroke-width": 2, "stroke-dasharray": "6 4" }));
  }
  for (const p of points) {
    const dot = el("circle", { cx: f.x(p.x), cy: f.y(p.y), r: 4.5, fill: flag(p) ? "#b3262d" : "#2a6fdb", "fill-opacity": 0.8 });
    dot.append(el("title", {}, `${p.label}: PSV ${Number(p.x.toPrecision(3))}, Dice ${p.y.toFixed(3)}`));
    f.plot.append(dot);
  }
  return f.svg;
}

export function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  const pos = (sorted.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Box plots (median, quartiles, whiskers at 1.5 IQR, outliers) of groups [{label, values}]. */
export function boxPlot(groups, { xLabel, yLabel } = {}) {
  const all = groups.flatMap((g) => g.values);
  const n = groups.length;
  const f = frame({ xDomain: [0.4, n + 0.6], yDomain: extent(all, 0.1), xLabel, yLabel,
    xTicks: groups.map((g, k) => ({ v: k + 1, label: g.label })) });
  const half = Math.min(22, (f.x(1.4) - f.x(1)) );
  groups.forEach((g, k) => {
    const v = [...g.values].sort((a, b) => a - b);
    if (!v.length) return;
    const q1 = quantile(v, 0.25), q2 = quantile(v, 0.5), q3 = quantile(v, 0.75), iqr = q3 - q1;
    const lo = v.find((a) => a >= q1 - 1.5 * iqr), hi = [...v].reverse().find((a) => a <= q3 + 1.5 * iqr);
    const cx = f.x(k + 1);
    const box = el("g");
    box.append(el("line", { x1: cx, x2: cx, y1: f.y(lo), y2: f.y(hi), stroke: "#5c6773" }));
    box.append(el("rect", { x: cx - half, width: 2 * half, y: f.y(q3), height: Math.max(1, f.y(q1) - f.y(q3)),
      fill: "#d9e6fb", stroke: "#2a6fdb" }));
    box.append(el("line", { x1: cx - half, x2: cx + half, y1: f.y(q2), y2: f.y(q2), stroke: "#1d232b", "stroke-width": 2 }));
    for (const o of v.filter((a) => a < lo || a > hi)) box.append(el("circle", { cx, cy: f.y(o), r: 2.5, fill: "#5c6773" }));
    box.append(el("title", {}, `${g.label}: median ${tickText(q2)}, quartiles ${tickText(q1)}–${tickText(q3)}, n = ${v.length}`));
    f.plot.append(box);
  });
  return f.svg;
}

/** A legend row for series names and colours. */
export function legend(series) {
  const div = document.createElement("div");
  div.className = "legend";
  series.forEach((s, k) => {
    const span = document.createElement("span");
    span.style.setProperty("--c", s.colour || PALETTE[k % PALETTE.length]);
    span.textContent = s.name;
    div.append(span);
  });
  return div;
}

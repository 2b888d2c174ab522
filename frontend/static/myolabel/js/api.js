// Talking to the server from any page: JSON requests with the CSRF token, errors turned
// into sentences a radiologist can act on, and a websocket that reconnects by itself.

function cookie(name) {
  const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return hit ? decodeURIComponent(hit.slice(name.length + 1)) : "";
}

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** The readable part of a DRF error body ({detail}, {field: [msgs]}, [msgs]). */
export function errorText(body, status) {
  if (status === 403) return (body && body.detail) || "Your role in this project does not allow this.";
  if (status === 404) return (body && body.detail) || "This item does not exist or is not shared with you.";
  if (!body) return `The server answered with an error (HTTP ${status}).`;
  if (typeof body === "string") return body;
  if (Array.isArray(body)) return body.join(" ");
  if (body.detail) return Array.isArray(body.detail) ? body.detail.join(" ") : String(body.detail);
  return Object.entries(body).map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(" ") : v}`).join("; ");
}

/** fetch() with JSON in and out; throws ApiError with a readable message. */
export async function api(url, { method = "GET", body, raw = false, headers = {} } = {}) {
  const init = { method, credentials: "same-origin", headers: { ...headers } };
  if (method !== "GET") init.headers["X-CSRFToken"] = cookie("csrftoken");
  if (body !== undefined) {
    if (body instanceof Blob || body instanceof ArrayBuffer || ArrayBuffer.isView(body)) {
      init.body = body;
    } else {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (err) {
    throw new ApiError("The server cannot be reached. Check the network connection and try again.", 0, "network");
  }
  if (resp.status === 401 || (resp.redirected && resp.url.includes("/accounts/login/"))) {
    throw new ApiError("Your session has ended. Reload the page and log in again.", 401, "login");
  }
  if (!resp.ok) {
    let payload = null;
    try { payload = await resp.json(); } catch { /* not JSON */ }
    throw new ApiError(errorText(payload, resp.status), resp.status, payload && payload.code);
  }
  if (raw) return resp;
  if (resp.status === 204) return null;
  const type = resp.headers.get("Content-Type") || "";
  return type.includes("json") ? resp.json() : resp.text();
}

/** Show `message` in the page's message area (role=alert); empty clears it. */
export function say(element, message, kind = "error") {
  if (!element) return;
  element.textContent = message || "";
  element.className = `notice ${message ? kind : ""}`;
  element.hidden = !message;
}

/** A websocket to `path` that reconnects; `onEvent(payload)` for every JSON message. */
export function liveEvents(path, onEvent, onStatus = () => {}) {
  let closedByUs = false;
  let delay = 500;
  let socket;
  const open = () => {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${path}`);
    socket.onopen = () => { delay = 500; onStatus("live"); };
    socket.onmessage = (msg) => {
      try { onEvent(JSON.parse(msg.data)); } catch (err) { console.error(err); }
    };
    socket.onclose = (ev) => {
      if (closedByUs) return;
      if (ev.code === 4401 || ev.code === 4404) { onStatus("refused"); return; }
      onStatus("reconnecting");
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  open();
  return { close() { closedByUs = true; socket.close(); }, get socket() { return socket; } };
}

/** The JSON a template put in <script type="application/json" id=...>. */
export function pageData(id = "page-data") {
  return JSON.parse(document.getElementById(id).textContent);
}

export function fmt(value, digits = 3) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
}

/** Inflate zlib bytes (Python's zlib.compress) in the browser. */
export async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** zlib-compress bytes (readable by Python's zlib.decompress). */
export async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** IEEE half floats (little-endian bytes) to Float32Array. */
export function halfToFloat(bytes) {
  const n = bytes.length >> 1;
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let i = 0; i < n; i++) {
    const h = view.getUint16(2 * i, true);
    const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    out[i] = e === 0 ? s * 2 ** -14 * (f / 1024) : e === 31 ? (f ? NaN : s * Infinity) : s * 2 ** (e - 15) * (1 + f / 1024);
  }
  return out;
}

// What a query costs the expert, sent with the answer: the seconds spent while the page was
// visible, and the input events (every press, key, wheel notch, change of a control, and pointer
// move while a button is held, on the workspace).

/** Count on `workspace` while `active()`; {reset(), seconds(), events}. */
export function trackEffort(workspace, active) {
  let activeMs = 0, since = null, events = 0;
  const count = () => { if (active()) events++; };
  for (const type of ["pointerdown", "wheel", "change"]) workspace.addEventListener(type, count, true);
  document.addEventListener("keydown", count, true);
  workspace.addEventListener("pointermove", (e) => { if (e.buttons) count(); }, true);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") since = performance.now();
    else if (since !== null) { activeMs += performance.now() - since; since = null; }
  });
  return {
    reset() {
      activeMs = 0;
      events = 0;
      since = document.visibilityState === "visible" ? performance.now() : null;
    },
    seconds() {
      return (activeMs + (since === null ? 0 : performance.now() - since)) / 1000;
    },
    get events() { return events; },
  };
}

// The annotator's keyboard: tools, structures (every one has a key), undo/redo, Enter to submit,
// "/" to search a structure, PageUp/PageDown through the neighbouring slices, Esc back to the query.

export const TOOL_KEYS = { b: "brush", e: "eraser", f: "fill", i: "island", c: "confirm", g: "push", a: "accept", w: "wl", p: "pan" };

/** Listen on the document; `act` has the page's actions (see page.js). Keys typed into a field stay there. */
export function installKeys(act) {
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, textarea, select") || !act.active()) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if ((e.ctrlKey || e.metaKey) && key === "z" && !e.shiftKey) { e.preventDefault(); act.undo(); return; }
    if ((e.ctrlKey || e.metaKey) && (key === "y" || (key === "z" && e.shiftKey))) { e.preventDefault(); act.redo(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (key === "PageDown" || key === "PageUp") { e.preventDefault(); act.peek(key === "PageDown" ? 1 : -1); return; }
    if (key === "Escape") { act.back(); return; }
    if (key === "Enter") {
      if (e.target.closest("button, a")) return;  // Enter on a focused button presses that button
      e.preventDefault();
      act.submit();
      return;
    }
    if (key === "/") { e.preventDefault(); act.search(); return; }
    if (TOOL_KEYS[key]) { act.setTool(TOOL_KEYS[key]); return; }
    if (key === "n") { act.nextIsland(); return; }
    if (key === "h") { act.heat(); return; }
    if (key === "[" || key === "]") { act.radius(key === "]" ? 1 : -1); return; }
    act.structure(key);
  });
}

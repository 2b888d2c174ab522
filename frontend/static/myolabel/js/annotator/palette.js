// The structure palette: every structure with its colour, readable name and key, and a search
// box (press "/") that narrows the list as the expert types; Enter takes the first match.

import { searchRows } from "../labels.js";

/** Build the palette in `list` with the search box `search`; `pick(value)` selects a structure. */
export function buildPalette(list, search, rows, pick) {
  const buttons = new Map();
  for (const row of rows) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.label = row.value;
    b.title = row.key ? `${row.name} · key ${row.key}` : row.name;
    b.innerHTML = `<span class="swatch"></span><span class="name"></span><kbd></kbd>`;
    const swatch = b.querySelector(".swatch");
    if (row.colour) swatch.style.background = row.colour;  // CSSOM: allowed by the page's CSP
    else swatch.classList.add("background");
    b.querySelector(".name").textContent = row.name;
    b.querySelector("kbd").textContent = row.key;
    b.addEventListener("click", () => pick(row.value));
    buttons.set(row.value, b);
    list.append(b);
  }
  const filter = () => {
    const hits = new Set(searchRows(rows, search.value).map((r) => r.value));
    for (const [value, b] of buttons) b.hidden = !hits.has(value);
  };
  search.addEventListener("input", filter);
  search.addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      const first = searchRows(rows, search.value)[0];
      if (first) pick(first.value);
      search.value = "";
      filter();
      search.blur();
    } else if (e.key === "Escape") {
      search.value = "";
      filter();
      search.blur();
    }
  });
  return {
    select(value) {
      for (const [v, b] of buttons) b.setAttribute("aria-pressed", String(v === value));
    },
  };
}

/** The structure whose key is `key` (one character), or undefined. */
export function rowOfKey(rows, key) {
  return rows.find((r) => r.key && r.key === key);
}

// The home page's system status table, from /api/health/.

function cell(tag, text, className = "") {
  const el = document.createElement(tag);
  el.textContent = text;
  if (className) el.className = className;
  return el;
}

const tbody = document.querySelector("#health tbody");
fetch("/api/health/").then((r) => r.json()).then((report) => {
  tbody.replaceChildren(...Object.entries(report.checks).map(([name, c]) => {
    const tr = document.createElement("tr");
    tr.append(cell("th", name.replace("_", " ")), cell("td", c.ok ? "ok" : "down", c.ok ? "ok" : "bad"),
      cell("td", c.detail));
    return tr;
  }));
}).catch(() => {
  const tr = document.createElement("tr");
  tr.append(cell("td", "The server did not answer the status check.", "bad"));
  tbody.replaceChildren(tr);
});

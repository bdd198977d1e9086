// The atlas's only script (methods.md Sec. 10): index sorting and filtering, heatmap overlays on unit pages
// (drawn on load, shown when the reader ticks the box).
// No library, no request: everything it reads is in the page.
"use strict";

function indexPage() {
  const body = document.querySelector("#units tbody");
  const rows = Array.from(body.rows);
  const field = (id) => document.getElementById(id);
  const count = field("count");
  function apply() {
    const kind = field("f-kind").value;
    const layer = field("f-layer").value;
    const top = field("f-top").value;
    const low = field("f-emin").value === "" ? -Infinity : Number(field("f-emin").value);
    const high = field("f-emax").value === "" ? Infinity : Number(field("f-emax").value);
    const words = field("f-search").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of rows) {
      const d = row.dataset;
      const entropy = d.entropy === "" ? NaN : Number(d.entropy);
      const inRange = low === -Infinity && high === Infinity ? true : entropy >= low && entropy <= high;
      const text = row.textContent.toLowerCase();
      const ok = (!kind || d.kind === kind) && (!layer || d.layer === layer) && (!top || d.top === top) &&
        inRange && words.every((w) => text.includes(w));
      row.hidden = !ok;
      if (ok) shown += 1;
    }
    count.textContent = shown + " of " + rows.length + " units";
  }
  let current = { key: null, ascending: true };
  function sortBy(key, type) {
    current = { key: key, ascending: current.key === key ? !current.ascending : true };
    const column = Array.from(document.querySelectorAll("#units th button")).findIndex((b) => b.dataset.sort === key);
    const value = (row) => row.cells[column].textContent;
    const sign = current.ascending ? 1 : -1;
    const sorted = rows.slice().sort((a, b) => {
      if (type === "number") {
        const x = parseFloat(value(a)), y = parseFloat(value(b));
        if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);  // empty cells last either way
        return sign * (x - y);
      }
      return sign * value(a).localeCompare(value(b), undefined, { numeric: true });
    });
    for (const row of sorted) body.appendChild(row);
    for (const b of document.querySelectorAll("#units th button")) {
      b.removeAttribute("aria-sort");
      if (b.dataset.sort === key) b.setAttribute("aria-sort", current.ascending ? "ascending" : "descending");
    }
  }
  for (const b of document.querySelectorAll("#units th button")) {
    b.addEventListener("click", () => sortBy(b.dataset.sort, b.dataset.type));
  }
  for (const id of ["f-kind", "f-layer", "f-top", "f-emin", "f-emax", "f-search"]) {
    field(id).addEventListener("input", apply);
    field(id).addEventListener("change", apply);
  }
  apply();
}

function drawMap(canvas, grid, map) {
  const rows = grid[0], cols = grid[1];
  canvas.width = cols;
  canvas.height = rows;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i += 1) {
    pixels.data[4 * i] = 255;
    pixels.data[4 * i + 1] = 64;
    pixels.data[4 * i + 2] = 0;
    pixels.data[4 * i + 3] = Math.round(0.75 * map[i]);
  }
  context.putImageData(pixels, 0, 0);
}

function unitPage() {
  const data = document.getElementById("maps");
  if (!data) return;
  const payload = JSON.parse(data.textContent);
  const canvases = document.querySelectorAll("canvas.heat");
  for (const canvas of canvases) drawMap(canvas, payload.grid, payload.maps[Number(canvas.dataset.map)]);
  const toggle = document.getElementById("overlay");
  const show = () => {
    for (const canvas of canvases) canvas.hidden = !toggle.checked;
  };
  toggle.addEventListener("change", show);
  show();  // off by default; a browser may restore the box checked on reload
}

if (document.body.dataset.page === "index") indexPage();
else unitPage();

// The atlas's only script (methods.md Sec. 10): index sorting, filtering and paging, heatmap overlays on unit pages
// (drawn on load, shown when the reader ticks the box).
// No library, no request: everything it reads is in the page.
"use strict";

function indexPage() {
  // Paged: every unit is a row of the page, but only one page of the matching rows is shown at a time, so
  // that an index of tens of thousands of units stays quick to sort and filter (methods.md Sec. 10).
  const table = document.getElementById("units");
  const body = table.tBodies[0];
  const pageSize = Number(table.dataset.pageSize);
  const field = (id) => document.getElementById(id);
  const count = field("count");
  const position = field("position");
  // What filtering and sorting read of each row, read from the page once.
  const units = Array.from(body.rows, (row) => ({
    row: row,
    kind: row.dataset.kind,
    layer: row.dataset.layer,
    top: row.dataset.top,
    entropy: row.dataset.entropy === "" ? NaN : Number(row.dataset.entropy),
    text: row.textContent.toLowerCase(),
  }));
  const columns = Array.from(document.querySelectorAll("#units th button"), (b) => b.dataset.sort);
  const cellValue = (unit, key, type) => {  // cached per unit and column
    const name = "sort_" + key;
    if (!(name in unit)) {
      const text = unit.row.cells[columns.indexOf(key)].textContent;
      unit[name] = type === "number" ? parseFloat(text) : text;
    }
    return unit[name];
  };
  let matching = units;
  let shown = units.filter((u) => !u.row.hidden);
  let first = 0;
  let order = { key: null, ascending: true, type: null };
  function show() {
    for (const unit of shown) unit.row.hidden = true;
    shown = matching.slice(first, first + pageSize);
    for (const unit of shown) {
      unit.row.hidden = false;
      body.appendChild(unit.row);  // in the order of the page
    }
    count.textContent = matching.length + " of " + units.length + " units";
    position.textContent = matching.length ? (first + 1) + "-" + (first + shown.length) : "none";
    field("previous").disabled = first === 0;
    field("next").disabled = first + pageSize >= matching.length;
  }
  function sort() {
    if (order.key === null) return;
    const sign = order.ascending ? 1 : -1;
    matching.sort((a, b) => {
      const x = cellValue(a, order.key, order.type), y = cellValue(b, order.key, order.type);
      if (order.type === "number") {
        if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);  // empty cells last either way
        return sign * (x - y);
      }
      return sign * x.localeCompare(y, undefined, { numeric: true });
    });
  }
  function apply() {
    const kind = field("f-kind").value;
    const layer = field("f-layer").value;
    const top = field("f-top").value;
    const low = field("f-emin").value === "" ? -Infinity : Number(field("f-emin").value);
    const high = field("f-emax").value === "" ? Infinity : Number(field("f-emax").value);
    const words = field("f-search").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const anyEntropy = low === -Infinity && high === Infinity;
    matching = units.filter((u) => (!kind || u.kind === kind) && (!layer || u.layer === layer) &&
      (!top || u.top === top) && (anyEntropy || (u.entropy >= low && u.entropy <= high)) &&
      words.every((w) => u.text.includes(w)));
    sort();
    first = 0;
    show();
  }
  function sortBy(key, type) {
    order = { key: key, ascending: order.key === key ? !order.ascending : true, type: type };
    sort();
    first = 0;
    show();
    for (const b of document.querySelectorAll("#units th button")) {
      b.removeAttribute("aria-sort");
      if (b.dataset.sort === key) b.setAttribute("aria-sort", order.ascending ? "ascending" : "descending");
    }
  }
  for (const b of document.querySelectorAll("#units th button")) {
    b.addEventListener("click", () => sortBy(b.dataset.sort, b.dataset.type));
  }
  for (const id of ["f-kind", "f-layer", "f-top", "f-emin", "f-emax", "f-search"]) {
    field(id).addEventListener("input", apply);
    field(id).addEventListener("change", apply);
  }
  field("previous").addEventListener("click", () => { first = Math.max(0, first - pageSize); show(); });
  field("next").addEventListener("click", () => { first += pageSize; show(); });
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

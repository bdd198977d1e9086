// The atlas's only script (methods.md Sec. 10): index sorting, filtering and paging, heatmap overlays on unit pages
// (drawn on load, shown when the reader ticks the box).
// No library, no request: everything it reads is in the page.
"use strict";

function indexPage() {
  // Paged: the units are data (the JSON of #rows), and only the table rows of one page of the matching units
  // are built at a time, so that an index of ~100,000 units stays quick to load, sort and filter
  // (methods.md Sec. 10).
  const table = document.getElementById("units");
  const body = table.tBodies[0];
  const pageSize = Number(table.dataset.pageSize);
  const field = (id) => document.getElementById(id);
  const count = field("count");
  const position = field("position");
  const payload = JSON.parse(field("rows").textContent);
  const at = {};
  payload.fields.forEach((name, i) => { at[name] = i; });
  const columns = Array.from(document.querySelectorAll("#units th button"), (b) => b.dataset.sort);
  // What filtering reads of each unit, computed once.
  const units = payload.rows.map((row, i) => ({
    i: i,
    row: row,
    entropy: row[at.entropy] === "" ? NaN : Number(row[at.entropy]),
    text: columns.map((key) => row[at[key]]).join(" ").toLowerCase(),
  }));
  const collator = new Intl.Collator(undefined, { numeric: true });
  const sortKeys = {};  // per column, every unit's sort key (by unit.i), computed when first sorted by
  const keysOf = (key, type) => {
    if (!(key in sortKeys)) {
      sortKeys[key] = units.map((u) => type === "number" ? parseFloat(u.row[at[key]]) : u.row[at[key]]);
    }
    return sortKeys[key];
  };
  function breakable(tag, text) {  // a key or site name with a line break allowed after each dot
    const element = document.createElement(tag);
    const parts = text.split(".");
    parts.forEach((part, i) => {
      const last = i === parts.length - 1;
      element.append(last ? part : part + ".");
      if (!last) element.append(document.createElement("wbr"));
    });
    return element;
  }
  function tableRow(unit) {
    const row = unit.row;
    const tr = document.createElement("tr");
    for (const name of ["kind", "layer", "entropy", "top", "unit", "page", "dead"]) tr.dataset[name] = row[at[name]];
    for (const key of columns) {
      const td = tr.insertCell();
      if (key === "unit" && row[at.page]) {
        const link = breakable("a", row[at.unit]);
        link.className = "key";
        link.setAttribute("href", "units/" + row[at.kind] + "/" + row[at.unit] + ".html");
        td.append(link);
      } else if (key === "unit") {
        const text = breakable("span", row[at.unit]);
        text.className = "index-only";
        text.title = row[at.dead] ? table.dataset.dead : table.dataset.indexOnly;
        td.append(text);
      } else if (key === "layer") {
        const text = breakable("span", row[at.layer]);
        text.className = "key";
        td.append(text);
      } else {
        td.textContent = row[at[key]];
      }
    }
    return tr;
  }
  let matching = units;
  let first = 0;
  let order = { key: null, ascending: true, type: null };
  function show() {
    const shown = matching.slice(first, first + pageSize);
    body.replaceChildren(...shown.map(tableRow));
    count.textContent = matching.length + " of " + units.length + " units";
    position.textContent = matching.length ? (first + 1) + "-" + (first + shown.length) : "none";
    field("previous").disabled = first === 0;
    field("next").disabled = first + pageSize >= matching.length;
  }
  function sort() {
    if (order.key === null) return;
    const sign = order.ascending ? 1 : -1;
    const keys = keysOf(order.key, order.type);
    if (order.type === "number") {
      matching.sort((a, b) => {
        const x = keys[a.i], y = keys[b.i];
        if (isNaN(x) || isNaN(y)) return isNaN(x) - isNaN(y);  // empty cells last either way
        return sign * (x - y);
      });
    } else {
      matching.sort((a, b) => sign * collator.compare(keys[a.i], keys[b.i]));
    }
  }
  function apply() {
    const kind = field("f-kind").value;
    const layer = field("f-layer").value;
    const top = field("f-top").value;
    const low = field("f-emin").value === "" ? -Infinity : Number(field("f-emin").value);
    const high = field("f-emax").value === "" ? Infinity : Number(field("f-emax").value);
    const words = field("f-search").value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    const anyEntropy = low === -Infinity && high === Infinity;
    matching = units.filter((u) => (!kind || u.row[at.kind] === kind) && (!layer || u.row[at.layer] === layer) &&
      (!top || u.row[at.top] === top) && (anyEntropy || (u.entropy >= low && u.entropy <= high)) &&
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

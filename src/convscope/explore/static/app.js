// convscope explore: the page. Plain JS, no library; every number comes from the JSON API.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const state = { model: null, layer: null, rows: {}, maps: null, channel: null, unit: null, input: null };

const $ = (id) => document.getElementById(id);
const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : String(n));
const shape = (s) => (s && s.length ? s.join("×") : "scalar");
const num = (v) => {
  if (v === null || v === undefined) return "";
  const t = Number(v).toPrecision(6);
  return String(Number(t)).replace("-", "−");
};

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(message) {
  const bar = $("error-bar");
  bar.textContent = message;
  bar.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => { bar.hidden = true; }, 6000);
}

async function api(path, options) {
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = { error: `${response.status} ${response.statusText}` }; }
  if (!response.ok) {
    const message = (data && data.error) || `request failed (${response.status})`;
    showError(message);
    throw new Error(message);
  }
  return data;
}

const q = (params) => new URLSearchParams(params).toString();

// ----- architecture ---------------------------------------------------------------------
function drawArchitecture(diagram) {
  const svg = $("arch");
  svg.replaceChildren();
  const defs = svgEl("defs");
  const marker = svgEl("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7",
    markerHeight: "7", orient: "auto-start-reverse" });
  marker.appendChild(svgEl("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#555" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  svg.appendChild(svgEl("text", { x: diagram.width / 2, y: 34, "text-anchor": "middle", "font-size": 18,
    "font-weight": "bold" }, diagram.title));
  svg.appendChild(svgEl("text", { x: diagram.width / 2, y: 56, "text-anchor": "middle", "font-size": 12, fill: "#444" },
    diagram.subtitle));
  for (const edge of diagram.edges) {
    const attrs = { points: edge.points.map((p) => p.join(",")).join(" "), fill: "none", stroke: "#555", "stroke-width": 1.3 };
    if (edge.arrow) attrs["marker-end"] = "url(#arrow)";
    svg.appendChild(svgEl("polyline", attrs));
  }
  for (const box of diagram.boxes) {
    const [fill, stroke] = diagram.colours[box.kind] || ["#fff", "#333"];
    const g = svgEl("g", { class: "node" });
    if (box.names.length) {
      g.dataset.names = box.names.join(" ");
      g.dataset.name = box.names[0];
      g.addEventListener("click", (event) => { if (!state.dragged) selectLayer(box.names[0]); event.stopPropagation(); });
    }
    if (box.tooltip) g.appendChild(svgEl("title", {}, box.tooltip));
    g.appendChild(svgEl("rect", { x: box.x, y: box.y, width: box.w, height: box.h, rx: 5, fill, stroke, "stroke-width": 1.2 }));
    box.lines.forEach((line, i) => {
      g.appendChild(svgEl("text", { x: box.x + box.w / 2, y: box.y + 7 + 15 * (i + 1) - 3.5, "text-anchor": "middle",
        "font-size": 11, "font-weight": i === 0 ? "bold" : "normal", fill: i < 2 ? "#222" : "#555" }, line));
    });
    svg.appendChild(g);
  }
  const view = $("arch-view");
  const width = view.clientWidth || 400;
  const scale = Math.min(1, width / diagram.width);
  state.view = { x: 0, y: 0, w: width / scale, h: (view.clientHeight || 600) / scale };
  state.view.x = (diagram.width - state.view.w) / 2;
  applyView();
}

function applyView() {
  const v = state.view;
  $("arch").setAttribute("viewBox", `${v.x} ${v.y} ${v.w} ${v.h}`);
}

function panZoom() {
  const view = $("arch-view");
  let start = null;
  view.addEventListener("pointerdown", (e) => { start = { x: e.clientX, y: e.clientY, vx: state.view.x, vy: state.view.y }; state.dragged = false; });
  window.addEventListener("pointerup", () => { start = null; setTimeout(() => { state.dragged = false; }, 0); });
  view.addEventListener("pointermove", (e) => {
    if (!start) return;
    const k = state.view.w / view.clientWidth;
    const dx = e.clientX - start.x, dy = e.clientY - start.y;
    if (Math.abs(dx) + Math.abs(dy) > 4) state.dragged = true;
    state.view.x = start.vx - dx * k;
    state.view.y = start.vy - dy * k;
    applyView();
  });
  view.addEventListener("wheel", (e) => {
    e.preventDefault();
    const rect = view.getBoundingClientRect();
    const factor = e.deltaY > 0 ? 1.15 : 1 / 1.15;
    const px = state.view.x + (e.clientX - rect.left) / rect.width * state.view.w;
    const py = state.view.y + (e.clientY - rect.top) / rect.height * state.view.h;
    state.view.w *= factor; state.view.h *= factor;
    state.view.x = px - (px - state.view.x) * factor;
    state.view.y = py - (py - state.view.y) * factor;
    applyView();
  }, { passive: false });
}

function fillLayerList(rows) {
  const list = $("layer-list");
  list.replaceChildren();
  for (const row of rows) {
    const item = el("li", { "data-name": row.name }, `${row.name}  ${row.call}  → ${shape(row.output_shape)}`);
    item.style.marginLeft = `${row.depth * 10}px`;
    item.addEventListener("click", () => selectLayer(row.name));
    list.appendChild(item);
  }
}

// ----- a layer ---------------------------------------------------------------------------
async function selectLayer(name) {
  state.layer = name;
  for (const node of document.querySelectorAll("#arch .node")) {
    node.classList.toggle("selected", (node.dataset.names || "").split(" ").includes(name));
  }
  for (const item of document.querySelectorAll("#layer-list li")) item.classList.toggle("selected", item.dataset.name === name);
  const info = await api(`/api/layer?${q({ name })}`);
  $("layer-title").textContent = `${info.name}  ${info.call}`;
  $("layer-hint").hidden = true;
  $("layer-counts").hidden = false;
  $("layer-output").textContent = `${shape(info.input_shape)} → ${shape(info.output_shape)}`;
  $("layer-weights").textContent = fmt(info.weights);
  $("layer-biases").textContent = fmt(info.biases);
  $("layer-params").textContent = fmt(info.params);
  $("layer-macs").textContent = fmt(info.macs);
  $("layer-memory").textContent = `${fmt(info.memory_bytes)} bytes`;
  const rf = info.receptive_field;
  $("layer-field").textContent = rf ? (rf.global ? "the whole input" : `${rf.size.join("×")} pixels, stride ${rf.stride.join("×")}`) : "";
  const explain = $("layer-explain");
  explain.replaceChildren(...info.explain.map((line) => el("li", {}, line)));
  const row = state.rows[name];
  $("unit-panel").hidden = true;
  $("field-rect").setAttribute("visibility", "hidden");
  state.unit = null;
  if (row && row.maps) await showMaps(name); else { $("maps-panel").hidden = true; }
  if (row && !row.maps && row.output_shape.length === 1) await showVector(name); else $("vector-panel").hidden = true;
  if (row && row.filters) await showFilters(name); else $("filters-panel").hidden = true;
}

async function showMaps(name) {
  const maps = await api(`/api/maps?${q({ layer: name })}`);
  state.maps = maps;
  $("maps-panel").hidden = false;
  $("maps-title").textContent = `${maps.layer}: ${shape(maps.shape)}` + (maps.shown < maps.channels ? ` (first ${maps.shown} of ${maps.channels} channels)` : "");
  $("maps-range").textContent = `${num(maps.min)} … ${num(maps.max)}`;
  const img = $("maps-img");
  img.src = maps.png;
  const natural = maps.cols * (maps.tile_drawn[1] + 1) - 1;
  img.style.width = `${Math.min(520, natural * Math.max(1, Math.floor(380 / natural)))}px`;
  await showChannel(0);
}

async function showChannel(channel) {
  const data = await api(`/api/values?${q({ layer: state.maps.layer, channel })}`);
  state.channel = channel;
  state.values = data;
  $("channel-title").textContent = `${channel} of ${state.maps.channels}`;
  const rows = data.values, h = rows.length, w = rows[0].length;
  const canvas = $("map-canvas");
  const cell = Math.max(1, Math.floor(Math.min(300 / w, 300 / h)));
  canvas.width = w * cell; canvas.height = h * cell;
  canvas.dataset.cell = cell; canvas.dataset.h = h; canvas.dataset.w = w;
  const ctx = canvas.getContext("2d");
  const lo = data.min, span = (data.max - data.min) || 1;
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      ctx.fillStyle = viridis((rows[i][j] - lo) / span);
      ctx.fillRect(j * cell, i * cell, cell, cell);
    }
  }
  drawUnitMark();
}

function drawUnitMark() {
  const canvas = $("map-canvas");
  if (!state.unit || state.unit.channel !== state.channel || state.unit.layer !== state.maps.layer) return;
  const cell = Number(canvas.dataset.cell);
  const ctx = canvas.getContext("2d");
  ctx.strokeStyle = "#d6336c"; ctx.lineWidth = Math.max(1, cell / 4);
  ctx.strokeRect(state.unit.j * cell, state.unit.i * cell, cell, cell);
}

// viridis at 8 stops, linearly interpolated
const VIRIDIS = [[68, 1, 84], [70, 50, 127], [54, 92, 141], [39, 127, 142], [31, 161, 135], [74, 194, 109], [159, 218, 58], [253, 231, 37]];
function viridis(t) {
  t = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
  const c = VIRIDIS[i].map((a, k) => Math.round(a + (VIRIDIS[i + 1][k] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

async function showVector(name) {
  const data = await api(`/api/values?${q({ layer: name })}`);
  const values = data.values, svg = $("vector-svg");
  $("vector-panel").hidden = false;
  $("vector-title").textContent = `${name}: ${values.length} values, ${num(data.min)} … ${num(data.max)}`;
  svg.replaceChildren();
  const W = 600, H = 150, n = values.length, bw = W / n;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  const top = Math.max(data.max, 0), bottom = Math.min(data.min, 0), span = (top - bottom) || 1;
  const zero = H * top / span;
  svg.appendChild(svgEl("line", { x1: 0, x2: W, y1: zero, y2: zero, stroke: "#999" }));
  values.forEach((v, k) => {
    const y = H * (top - Math.max(v, 0)) / span, hgt = Math.max(1, H * Math.abs(v) / span);
    const bar = svgEl("rect", { x: k * bw, y, width: Math.max(bw * 0.85, 0.5), height: hgt, fill: "#5b7bb6", "data-unit": k });
    bar.appendChild(svgEl("title", {}, `${name}[${k}] = ${num(v)}`));
    bar.addEventListener("click", () => selectUnit(name, [k]));
    svg.appendChild(bar);
  });
}

async function showFilters(name) {
  const data = await api(`/api/filters?${q({ layer: name })}`);
  $("filters-panel").hidden = false;
  $("filters-title").textContent = `${data.layer}: weight ${shape(data.shape)}` +
    (data.filters_shown < data.shape[0] || data.channels_shown < data.shape[1] ? ` (first ${data.filters_shown} filters × ${data.channels_shown} channels)` : "");
  $("filters-max").textContent = num(data.max_abs);
  const img = $("filters-img");
  img.src = data.png;
  img.onload = () => {
    const scale = Math.max(1, Math.floor(Math.min(420 / img.naturalWidth, 300 / img.naturalHeight)));
    img.style.width = `${Math.min(560, img.naturalWidth * scale)}px`;
  };
}

// ----- a unit ----------------------------------------------------------------------------
async function selectUnit(layer, unit) {
  const data = await api(`/api/unit?${q({ layer, unit: unit.join(",") })}`);
  state.unit = { layer, unit: data.unit, channel: data.unit.length > 1 ? data.unit[0] : null, i: data.unit[1] || 0, j: data.unit[2] || 0 };
  if (data.unit.length === 2) { state.unit.i = 0; state.unit.j = data.unit[1]; }
  $("unit-panel").hidden = false;
  $("unit-title").textContent = `${layer} [${data.unit.join(", ")}]  (${data.type})`;
  $("unit-value").textContent = num(data.value);
  $("unit-value").dataset.value = data.value;
  $("unit-sum-wrap").hidden = data.sum === null;
  $("unit-sum").textContent = data.sum === null ? "" : num(data.sum);
  $("unit-sum").dataset.value = data.sum === null ? "" : data.sum;
  $("unit-lines").textContent = data.lines.join("\n");
  const f = data.field;
  const rect = $("field-rect");
  const spatial = state.input.shape.slice(1);
  const [y0, x0] = f.start.length === 2 ? f.start : [0, f.start[0]];
  const [h, w] = f.size.length === 2 ? f.size : [spatial.length === 2 ? spatial[0] : 1, f.size[0]];
  rect.setAttribute("x", x0); rect.setAttribute("y", y0);
  rect.setAttribute("width", w); rect.setAttribute("height", h);
  rect.dataset.size = f.size.join("x");
  rect.dataset.start = f.start.join(",");
  rect.setAttribute("visibility", "visible");
  $("unit-field-text").textContent = f.global ? "receptive field: the whole input (outlined)" :
    `receptive field: ${f.size.join("×")} input pixels starting at (${f.start.join(", ")}) — outlined on the input` +
    (f.start.some((s) => s < 0) || f.start.some((s, k) => s + f.size[k] > spatial[k]) ? "; the part outside the image is padding" : "");
  if (state.maps && state.maps.layer === layer) showChannel(state.channel);
  if (!$("saliency-out").hidden) showSaliency();
}

function mapClick(event) {
  const canvas = $("map-canvas");
  const cell = Number(canvas.dataset.cell);
  const scale = canvas.width / canvas.getBoundingClientRect().width;
  const j = Math.floor(event.offsetX * scale / cell), i = Math.floor(event.offsetY * scale / cell);
  const unit = state.maps.shape.length === 2 ? [state.channel, j] : [state.channel, i, j];
  selectUnit(state.maps.layer, unit);
}

function tileClick(event) {
  const img = $("maps-img"), m = state.maps;
  const px = event.offsetX * img.naturalWidth / img.clientWidth, py = event.offsetY * img.naturalHeight / img.clientHeight;
  const col = Math.floor(px / (m.tile_drawn[1] + 1)), row = Math.floor(py / (m.tile_drawn[0] + 1));
  const channel = row * m.cols + col;
  if (channel < m.shown) showChannel(channel);
}

// ----- the input -------------------------------------------------------------------------
function showInput(info) {
  state.input = info;
  $("input-label").textContent = info.label;
  $("input-img").src = info.png;
  const [h, w] = info.shape.length === 3 ? info.shape.slice(1) : [info.shape[0], info.shape[1]];
  $("input-overlay").setAttribute("viewBox", `0 0 ${w} ${h}`);
  $("input-overlay").setAttribute("preserveAspectRatio", "none");
  $("input-prep").textContent = `model input ${shape(info.shape)}; ${info.preprocessing}`;
  const list = $("predictions");
  list.replaceChildren();
  for (const t of info.top) {
    const logit = info.outputs_are === "logits" ? ` (logit ${num(t.output)})` : "";
    const item = el("li", { "data-class": t.class }, `${t.name}: ${(100 * t.probability).toPrecision(4)}%${logit}`);
    const bar = el("span", { class: "bar" });
    bar.style.width = `${Math.round(120 * t.probability)}px`;
    item.appendChild(bar);
    list.appendChild(item);
  }
  if (!info.top.length) list.appendChild(el("li", {}, "the output is not a vector of class scores"));
  const select = $("class-select");
  if (select.options.length !== info.classes) {
    select.replaceChildren();
    const names = {};
    for (const t of info.top) names[t.class] = t.name;
    for (let k = 0; k < info.classes; k++) select.appendChild(el("option", { value: k }, String(k)));
  }
  if (info.top.length) select.value = info.top[0].class;
  $("backward-panel").hidden = !info.classes;
}

async function inputChanged(info) {
  showInput(info);
  $("saliency-out").hidden = true;
  if (state.layer) {
    const row = state.rows[state.layer];
    if (row && row.maps) await showMaps(state.layer);
    if (row && !row.maps && row.output_shape.length === 1) await showVector(state.layer);
    if (state.unit) await selectUnit(state.unit.layer, state.unit.unit);
  }
}

async function chooseSample(key) {
  const info = await api("/api/input", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ sample: key }) });
  await inputChanged(info);
}

async function upload(file) {
  const info = await api(`/api/upload?${q({ name: file.name })}`, { method: "POST", body: file,
    headers: { "Content-Type": "application/octet-stream" } });
  $("sample-select").value = "";
  await inputChanged(info);
}

// ----- backward --------------------------------------------------------------------------
async function showSaliency() {
  const params = { class: $("class-select").value };
  if (state.unit) { params.layer = state.unit.layer; params.unit = state.unit.unit.join(","); }
  const data = await api(`/api/saliency?${q(params)}`);
  $("saliency-out").hidden = false;
  $("saliency-img").src = data.png;
  $("saliency-text").textContent = `class ${data.name}: L = −log p = ${num(data.loss)}; brightest |dL/dx| = ${num(data.max)}`;
  const kg = data.unit && data.unit.kernel_grad;
  $("kernel-grad").hidden = !kg;
  if (kg) {
    $("kernel-grad-img").src = kg.png;
    $("kernel-grad-text").textContent = `unit ${data.unit.layer} [${data.unit.unit.join(", ")}]: dL/dy = ${num(data.unit.dL_dy)}; ` +
      `its share of dL/dW = dL/dy × its window, shape ${shape(kg.shape)} (one tile per input channel, ±${num(kg.max_abs)})`;
  }
}

// ----- the training run ------------------------------------------------------------------
async function showRun() {
  const data = await api("/api/run");
  $("run-panel").hidden = false;
  const svg = $("curves"), W = 420, H = 190, pad = 30;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const rows = data.history;
  const series = [["train_loss", "#1c7ed6", "train loss"], ["val_loss", "#74c0fc", "val loss"],
    ["train_accuracy", "#d6336c", "train acc"], ["val_accuracy", "#faa2c1", "val acc"]];
  const n = rows.length;
  const maxLoss = Math.max(1e-9, ...rows.flatMap((r) => [r.train_loss, r.val_loss].filter((v) => typeof v === "number")));
  svg.appendChild(svgEl("line", { x1: pad, y1: H - pad, x2: W - 10, y2: H - pad, stroke: "#888" }));
  svg.appendChild(svgEl("line", { x1: pad, y1: 10, x2: pad, y2: H - pad, stroke: "#888" }));
  svg.appendChild(svgEl("text", { x: W - 10, y: H - 6, "text-anchor": "end", "font-size": 11 }, `epoch 1–${n}`));
  svg.appendChild(svgEl("text", { x: 4, y: 12, "font-size": 10 }, `loss (max ${num(maxLoss)}) / accuracy (0–1)`));
  series.forEach(([key, colour, label], s) => {
    const pts = rows.map((r, k) => [r[key], k]).filter(([v]) => typeof v === "number").map(([v, k]) => {
      const x = pad + (n > 1 ? k / (n - 1) : 0.5) * (W - pad - 10);
      const y = (H - pad) - (key.includes("loss") ? v / maxLoss : v) * (H - pad - 20);
      return `${x},${y}`;
    });
    if (pts.length) svg.appendChild(svgEl("polyline", { points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": 2 }));
    svg.appendChild(svgEl("text", { x: pad + 62 * s, y: H - 6, "font-size": 10, fill: colour }, label));
  });
  const ev = data.evaluation, table = $("confusion");
  table.replaceChildren();
  if (ev) {
    $("evaluation").textContent = `test split of ${ev.data}: accuracy ${(100 * ev.accuracy).toFixed(2)}%, loss ${num(ev.loss)}, ${fmt(ev.samples)} samples; confusion matrix (rows: true, columns: predicted)`;
    const head = el("tr");
    head.appendChild(el("th", {}, "true\\pred"));
    ev.class_names.forEach((c) => head.appendChild(el("th", {}, c)));
    table.appendChild(head);
    ev.confusion_matrix.forEach((r, i) => {
      const tr = el("tr");
      tr.appendChild(el("th", {}, ev.class_names[i]));
      r.forEach((v, j) => { const td = el("td", {}, v ? String(v) : "·"); if (i === j && v) td.style.background = "#e7f5ff"; tr.appendChild(td); });
      table.appendChild(tr);
    });
  } else {
    $("evaluation").textContent = data.evaluation_error || "the run folder has no model.npz to evaluate";
  }
}

// ----- start -----------------------------------------------------------------------------
async function start() {
  const [model, input] = await Promise.all([api("/api/model"), api("/api/input")]);
  state.model = model;
  for (const row of model.layers) state.rows[row.name] = row;
  document.title = `convscope explore: ${model.label}`;
  $("model-label").textContent = model.label;
  $("headline").textContent = model.headline;
  $("weights-note").textContent = model.weights;
  drawArchitecture(model.diagram);
  panZoom();
  fillLayerList(model.layers);
  const select = $("sample-select");
  if (model.samples.length) {
    select.appendChild(el("option", { value: "" }, "built-in inputs…"));
    for (const s of model.samples) select.appendChild(el("option", { value: s.key }, s.label));
    select.addEventListener("change", () => { if (select.value) chooseSample(select.value); });
  } else {
    $("input-controls").hidden = true;
  }
  showInput(input);
  $("map-canvas").addEventListener("click", mapClick);
  $("maps-img").addEventListener("click", tileClick);
  $("saliency-button").addEventListener("click", showSaliency);
  $("file-input").addEventListener("change", (e) => { if (e.target.files[0]) upload(e.target.files[0]); });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault(); zone.classList.remove("over");
    if (e.dataTransfer.files[0]) upload(e.dataTransfer.files[0]);
  });
  if (model.run) await showRun();
  const first = model.layers.find((r) => r.filters) || model.layers[0];
  if (first) await selectLayer(first.name);
  document.body.dataset.ready = "true";
}

start().catch((error) => { showError(`the page could not start: ${error.message}`); });

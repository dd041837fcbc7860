// jaxmusic serve: the page's script. No libraries: fetch, FormData, inline SVG, a canvas.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#2f6fdb", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#0c8599", "#a61e4d", "#5c940d", "#862e9c", "#495057"];
let info = null;

function el(name, attrs, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  $("status").textContent = "";
}

function mb(bytes) { return (bytes / 1048576).toFixed(1) + " MB"; }

async function loadModels() {
  const res = await fetch("/api/models");
  info = await res.json();
  const select = $("model");
  for (const m of info.models) {
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = m.name;
    select.appendChild(opt);
  }
  select.value = info.default;
  describeModel();
  $("limits").textContent = `up to ${info.limits.max_mb} MB and ${info.limits.max_minutes} minutes` +
    (info.emotion ? `; emotion from ${info.emotion.name}` : "");
}

function describeModel() {
  const m = info.models.find((x) => x.name === $("model").value);
  if (!m) return;
  const size = m.resize ? `, ${m.resize[0]}x${m.resize[1]} pictures` : "";
  $("model-info").textContent = `${m.backbone} on ${m.beat ? "beat-synchronised" : "full-resolution"} ${m.view}${size}, ${m.labels.length} genres`;
}

async function classify(file) {
  $("error").hidden = true;
  delete $("result").dataset.ready;
  if (!file) { showError("no file chosen"); return; }
  if (info && file.size > info.limits.max_mb * 1048576) {
    showError(`${file.name}: ${mb(file.size)} is over the ${info.limits.max_mb} MB limit`);
    return;
  }
  if (file.size === 0) { showError(`${file.name}: empty file (0 bytes)`); return; }
  $("status").textContent = `analysing ${file.name} (${mb(file.size)})…`;
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", $("model").value);
  form.append("top_k", "all");
  form.append("spectrogram", "1");
  let res, body;
  try {
    res = await fetch("/api/predict", { method: "POST", body: form });
    body = await res.json();
  } catch (e) {
    showError(`${file.name}: the server did not answer (${e})`);
    return;
  }
  if (!res.ok) { showError(body.error || `${file.name}: error ${res.status}`); return; }
  render(body);
  $("status").textContent = "";
}

function render(r) {
  $("result").hidden = false;
  $("file-name").textContent = r.file;
  const top = r.genres[0];
  $("top-genre").textContent = top.label;
  $("top-probability").textContent = `(${(100 * top.probability).toFixed(1)} %)`;
  const flags = r.flags.length ? `; ${r.flags.join(", ")}` : "";
  $("summary").textContent = `${r.duration_s.toFixed(1)} s, ${r.windows} window${r.windows > 1 ? "s" : ""} of 30 s${flags}`;
  $("chart-model").textContent = r.model;
  barChart($("genre-chart"), r.genres.map((g) => [g.label, g.probability]), 0);
  if (r.emotion) {
    $("emotion-panel").hidden = false;
    $("emotion-model").textContent = r.emotion_model;
    barChart($("emotion-chart"), Object.entries(r.emotion), -1);
  } else {
    $("emotion-panel").hidden = true;
  }
  spectrogram($("spectrogram"), r.spectrogram);
  if (r.windows > 1) {
    $("timeline-panel").hidden = false;
    timeline($("timeline"), r.per_window, r.genres.slice(0, 5).map((g) => g.label));
  } else {
    $("timeline-panel").hidden = true;
  }
  $("result").dataset.ready = "1";
}

// Horizontal bars, values in [0, 1]; `highlight` is the index drawn in the accent colour.
function barChart(svg, rows, highlight) {
  clear(svg);
  const labelW = 110, barW = 300, rowH = 22, h = rows.length * rowH + 6;
  svg.setAttribute("width", labelW + barW + 60);
  svg.setAttribute("height", h);
  rows.forEach(([label, value], i) => {
    const y = 3 + i * rowH;
    const v = Math.max(0, Math.min(1, value));
    svg.appendChild(el("text", { x: labelW - 8, y: y + 15, "text-anchor": "end", class: "label" }, label));
    svg.appendChild(el("rect", { x: labelW, y: y + 3, width: barW, height: rowH - 8, class: "axis", fill: "#f2f4f7" }));
    svg.appendChild(el("rect", { x: labelW, y: y + 3, width: Math.max(1, v * barW), height: rowH - 8,
      class: i === highlight ? "bar top" : "bar", "data-label": label, "data-value": value }));
    svg.appendChild(el("text", { x: labelW + barW + 6, y: y + 15 }, value.toFixed(3)));
  });
}

// A perceptual-ish dark-blue-to-yellow ramp (viridis anchors).
const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function colour(t) {
  const x = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x)), f = x - i;
  return RAMP[i].map((c, k) => Math.round(c + f * (RAMP[i + 1][k] - c)));
}

function spectrogram(canvas, s) {
  const ctx = canvas.getContext("2d");
  if (!s || !s.frames) { ctx.clearRect(0, 0, canvas.width, canvas.height); return; }
  const bytes = Uint8Array.from(atob(s.data), (c) => c.charCodeAt(0));
  $("spectrogram-caption").textContent = `${s.unit}, ${s.bins} bands over [${s.range[0]}, ` +
    `${+s.range[1].toFixed(2)}], ${(s.frames * s.seconds_per_frame).toFixed(1)} s left to right`;
  canvas.width = s.frames;
  canvas.height = s.bins;
  const img = ctx.createImageData(s.frames, s.bins);
  for (let t = 0; t < s.frames; t++) {
    for (let b = 0; b < s.bins; b++) {
      const [r, g, bl] = colour(bytes[t * s.bins + b] / 255);
      const p = 4 * ((s.bins - 1 - b) * s.frames + t);  // low frequencies at the bottom
      img.data[p] = r; img.data[p + 1] = g; img.data[p + 2] = bl; img.data[p + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

function timeline(svg, windows, labels) {
  clear(svg);
  const w = 700, h = 220, left = 40, right = 120, top = 10, bottom = 30;
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  // The y axis ends at the largest probability shown, rounded up to a tenth.
  const peak = Math.max(0.1, ...windows.flatMap((win) => labels.map((l) => win.genres[l])));
  const ymax = Math.min(1, Math.ceil(peak * 10) / 10);
  const n = windows.length, x = (i) => left + (n === 1 ? 0 : i * (w - left - right) / (n - 1));
  const y = (p) => top + (1 - p / ymax) * (h - top - bottom);
  svg.appendChild(el("line", { x1: left, y1: y(0), x2: w - right, y2: y(0), class: "axis" }));
  svg.appendChild(el("line", { x1: left, y1: y(0), x2: left, y2: y(ymax), class: "axis" }));
  svg.appendChild(el("text", { x: left - 6, y: y(ymax) + 4, "text-anchor": "end" }, ymax.toFixed(1)));
  svg.appendChild(el("text", { x: left - 6, y: y(0) + 4, "text-anchor": "end" }, "0"));
  windows.forEach((win, i) => {
    svg.appendChild(el("text", { x: x(i), y: h - 10, "text-anchor": "middle" }, `${Math.round(win.start_s)} s`));
  });
  labels.forEach((label, k) => {
    const pts = windows.map((win, i) => `${x(i)},${y(win.genres[label])}`).join(" ");
    svg.appendChild(el("polyline", { points: pts, fill: "none", stroke: COLOURS[k], "stroke-width": 2, "data-label": label }));
    svg.appendChild(el("text", { x: w - right + 8, y: top + 14 + 16 * k, style: `fill: ${COLOURS[k]}` }, label));
  });
}

function setUp() {
  const drop = $("drop"), input = $("file");
  input.addEventListener("change", () => classify(input.files[0]));
  $("model").addEventListener("change", () => { describeModel(); if (input.files[0]) classify(input.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) classify(e.dataTransfer.files[0]);
  });
  loadModels().catch((e) => showError(`could not list the models: ${e}`));
}

setUp();

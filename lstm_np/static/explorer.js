"use strict";
// The lstm_np explorer page: reads /api/model once, /api/translate on every submit, and draws the answers
// on canvases. No libraries and no requests beyond the server that sent this file.

const QUANTITIES = [
  {key: "i", name: "i_t", label: "input gate", scale: "unit"},
  {key: "f", name: "f_t", label: "forget gate", scale: "unit"},
  {key: "o", name: "o_t", label: "output gate", scale: "unit"},
  {key: "c_tilde", name: "c~_t", label: "candidate", scale: "signed"},
  {key: "c", name: "c_t", label: "cell", scale: "cell"},
  {key: "h", name: "h_t", label: "hidden", scale: "signed"},
];
const LINE_COLOURS = {i: "#1f77b4", f: "#2ca02c", o: "#9467bd", c_tilde: "#ff7f0e", c: "#d62728", h: "#222222"};
// viridis (sequential, for values in [0, 1]) and RdBu reversed (diverging, for signed values), as stops
const VIRIDIS = [[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142], [31, 158, 137],
                 [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]];
const RDBU = [[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
              [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]];
const SPECIAL_GLYPHS = {"<eos>": "⏎", "<bos>": "▶", "<unk>": "?", "<pad>": "", " ": "␣"};
const FONT = "11px ui-monospace, 'DejaVu Sans Mono', monospace";

const $ = (id) => document.getElementById(id);
let model = null;    // the answer of /api/model
let result = null;   // the last answer of /api/translate
let unit = 0;        // the unit followed in the line charts and outlined in the maps

// ------------------------------------------------------------------------------------------------ helpers
function ramp(stops, t) {
  t = Math.min(1, Math.max(0, t));
  const x = t * (stops.length - 1);
  const k = Math.min(stops.length - 2, Math.floor(x));
  const u = x - k;
  const [a, b] = [stops[k], stops[k + 1]];
  return `rgb(${a.map((v, j) => Math.round(v + (b[j] - v) * u)).join(",")})`;
}

function colour(scale, value, range) {
  return scale === "unit" ? ramp(VIRIDIS, value) : ramp(RDBU, 0.5 + 0.5 * value / range);
}

function maxAbs(values) {
  return values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

// The colour range of c_t, which is not bounded: the 99th percentile of |c| (at least 1), so that one
// runaway unit does not wash out the others; larger values saturate (the read-out shows them exactly).
function cellRange(values) {
  const sorted = values.map(Math.abs).sort((a, b) => a - b);
  return Math.max(1, sorted[Math.min(sorted.length - 1, Math.floor(0.99 * sorted.length))]);
}

function glyph(token) {
  return token in SPECIAL_GLYPHS ? SPECIAL_GLYPHS[token] : token;
}

function quoted(token) {
  return token === " " ? "' ' (space)" : `'${token}'`;
}

function setState(state) {
  document.body.dataset.state = state;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  setState("error");
}

// Column labels along the top of a map: upright glyphs when every label is one character, else rotated.
function labelBand(ctx, labels) {
  ctx.font = FONT;
  const texts = labels.map(glyph);
  const upright = texts.every((t) => [...t].length <= 1);
  const height = upright ? 16 : Math.min(90, 8 + Math.max(...texts.map((t) => ctx.measureText(t).width)));
  return {texts, upright, height};
}

function drawLabels(ctx, band, left, top, width) {
  ctx.fillStyle = "#222";
  ctx.font = FONT;
  band.texts.forEach((t, k) => {
    const x = left + (k + 0.5) * width;
    if (band.upright) {
      ctx.textAlign = "center";
      ctx.fillText(t, x, top - 4);
    } else {
      ctx.save();
      ctx.translate(x + 4, top - 4);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = "left";
      ctx.fillText(t, 0, 0);
      ctx.restore();
    }
  });
}

// ------------------------------------------------------------------------------------------------ maps
// One quantity of one LSTM: hidden units (rows) × steps (columns); values arrive as steps × units.
function drawMap(canvas, values, labels, scale, range) {
  const steps = values.length;
  const units = values[0].length;
  const cw = steps > 60 ? Math.max(4, Math.floor(840 / steps)) : 14;
  const rh = Math.min(10, Math.max(2, Math.floor(256 / units)));
  const ctx = canvas.getContext("2d");
  const band = labelBand(ctx, labels);
  const left = 30;
  const top = band.height + 2;
  canvas.width = left + steps * cw + 2;
  canvas.height = top + units * rh + 2;
  for (let s = 0; s < steps; s++) {
    for (let u = 0; u < units; u++) {
      ctx.fillStyle = colour(scale, values[s][u], range);
      ctx.fillRect(left + s * cw, top + u * rh, cw, rh);
    }
  }
  drawLabels(ctx, band, left, top, cw);
  ctx.fillStyle = "#555";
  ctx.textAlign = "right";
  ctx.fillText("0", left - 4, top + 9);
  ctx.fillText(String(units - 1), left - 4, top + units * rh);
  if (unit < units) {
    ctx.strokeStyle = "#ff2d55";
    ctx.lineWidth = 1.5;
    ctx.strokeRect(left - 1, top + unit * rh - 1, steps * cw + 2, rh + 2);
  }
  canvas.grid = {left, top, cw, rh, steps, units};
  canvas.dataset.steps = steps;
  canvas.dataset.units = units;
}

function cellAt(canvas, event) {
  const g = canvas.grid;
  const box = canvas.getBoundingClientRect();
  const x = (event.clientX - box.left) * canvas.width / box.width;
  const y = (event.clientY - box.top) * canvas.height / box.height;
  const col = Math.floor((x - g.left) / g.cw);
  const row = Math.floor((y - g.top) / g.rh);
  return col >= 0 && col < g.steps && row >= 0 && row < g.units ? {col, row} : null;
}

function drawLSTM(which, data, labels, verb) {
  const box = $(which);
  box.replaceChildren();
  for (const q of QUANTITIES) {
    const values = data[q.key];
    const range = q.scale === "cell" ? cellRange(values.flat()) : 1;
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = `${q.name} ${q.label}` + (q.scale === "cell" ? ` ±${range.toFixed(1)}` : "");
    const canvas = document.createElement("canvas");
    canvas.className = "heatmap";
    canvas.dataset.lstm = which;
    canvas.dataset.quantity = q.key;
    figure.append(caption, canvas);
    box.append(figure);
    drawMap(canvas, values, labels, q.scale, range);
    canvas.addEventListener("mousemove", (event) => {
      const cell = cellAt(canvas, event);
      $("readout").textContent = cell === null ? "" :
        `${which} ${q.name} · step ${cell.col} ${verb} ${quoted(labels[cell.col])} · unit ${cell.row} = ` +
        values[cell.col][cell.row].toFixed(4);
    });
    canvas.addEventListener("click", (event) => {
      const cell = cellAt(canvas, event);
      if (cell !== null) selectUnit(cell.row);
    });
  }
}

function drawAttention(canvas, weights, rows, cols) {
  const size = 18;
  const ctx = canvas.getContext("2d");
  const band = labelBand(ctx, cols);
  const rowTexts = rows.map(glyph);
  const left = 10 + Math.max(...rowTexts.map((t) => ctx.measureText(t).width));
  const top = band.height + 2;
  canvas.width = left + cols.length * size + 2;
  canvas.height = top + rows.length * size + 2;
  weights.forEach((row, r) => row.forEach((w, c) => {
    ctx.fillStyle = colour("unit", w, 1);
    ctx.fillRect(left + c * size, top + r * size, size, size);
  }));
  drawLabels(ctx, band, left, top, size);
  ctx.fillStyle = "#222";
  ctx.font = FONT;
  ctx.textAlign = "right";
  rowTexts.forEach((t, r) => ctx.fillText(t, left - 5, top + r * size + 13));
  canvas.grid = {left, top, cw: size, rh: size, steps: cols.length, units: rows.length};
  canvas.dataset.rows = rows.length;
  canvas.dataset.cols = cols.length;
  canvas.onmousemove = (event) => {
    const cell = cellAt(canvas, event);
    $("readout").textContent = cell === null ? "" :
      `attention · output step ${cell.row} ${quoted(rows[cell.row])} ← source ${quoted(cols[cell.col])} = ` +
      weights[cell.row][cell.col].toFixed(4);
  };
}

// One unit's i, f, o, c~, c, h across the steps, as lines on one axis from -1 to 1; c_t, which is not
// bounded, is divided by its largest |c| when that exceeds 1 (the legend says by how much).
function drawUnitTrace(canvas, data, labels, title) {
  const steps = labels.length;
  const cw = steps > 60 ? Math.max(4, Math.floor(840 / steps)) : 22;
  const ctx = canvas.getContext("2d");
  const band = labelBand(ctx, labels);
  const left = 40;
  const top = band.height + 22;
  const height = 150;
  canvas.width = Math.max(420, left + steps * cw + 130);
  canvas.height = top + height + 8;
  const series = QUANTITIES.map((q) => data[q.key].map((row) => row[unit]));
  const cIndex = QUANTITIES.findIndex((q) => q.key === "c");
  const cScale = Math.max(1, maxAbs(series[cIndex]));
  series[cIndex] = series[cIndex].map((v) => v / cScale);
  const y = (v) => top + height * (0.5 - 0.5 * v);
  ctx.font = FONT;
  ctx.fillStyle = "#222";
  ctx.textAlign = "left";
  ctx.fillText(`${title} · unit ${unit}`, left, 12);
  ctx.strokeStyle = "#ccc";
  ctx.lineWidth = 1;
  for (const v of [-1, 0, 1]) {
    ctx.beginPath();
    ctx.moveTo(left, y(v));
    ctx.lineTo(left + steps * cw, y(v));
    ctx.stroke();
    ctx.textAlign = "right";
    ctx.fillStyle = "#555";
    ctx.fillText(["−1", "0", "+1"][v + 1], left - 4, y(v) + 4);
  }
  drawLabels(ctx, band, left, top - 6, cw);
  QUANTITIES.forEach((q, k) => {
    ctx.strokeStyle = LINE_COLOURS[q.key];
    ctx.lineWidth = q.key === "c" || q.key === "h" ? 2 : 1.2;
    ctx.beginPath();
    series[k].forEach((v, s) => {
      const px = left + (s + 0.5) * cw;
      if (s === 0) ctx.moveTo(px, y(v)); else ctx.lineTo(px, y(v));
    });
    ctx.stroke();
    ctx.fillStyle = LINE_COLOURS[q.key];
    ctx.textAlign = "left";
    const scaled = q.key === "c" && cScale > 1 ? ` / ${cScale.toFixed(2)}` : "";
    ctx.fillText(q.name + scaled, left + steps * cw + 12, top + 12 + k * 16);
  });
}

// ------------------------------------------------------------------------------------------------ page
function selectUnit(u) {
  const units = result.encoder.h[0].length;
  unit = Math.min(Math.max(0, Number.isFinite(u) ? u : 0), units - 1);
  $("unit").value = unit;
  render();
}

function render() {
  const r = result;
  $("result").hidden = false;
  $("translation").textContent = r.translation;
  $("translation-note").textContent = (r.beam === 1 ? "greedy search" : `beam search, width ${r.beam}`) +
    (r.truncated ? " · cut at the output limit: the model did not emit its end token" : "");
  $("attention-section").hidden = r.attention === null;
  if (r.attention !== null) drawAttention($("attention"), r.attention, r.target_tokens, r.source_tokens);
  const reversed = r.encoder.positions.length > 1 && r.encoder.positions[0] > r.encoder.positions[1];
  $("encoder-title").textContent = `Encoder · layer ${r.encoder.layer}` +
    (model.directions.length > 1 ? ` · ${r.encoder.direction === "fwd" ? "forward" : "reverse"} direction` : "") +
    (reversed ? " · reads the source from its end (columns in reading order)" : "");
  $("decoder-title").textContent = `Decoder · layer ${r.decoder.layer} · step t reads the previous output ` +
    "and emits the labelled token";
  drawLSTM("encoder", r.encoder, r.encoder.tokens, "reads");
  drawLSTM("decoder", r.decoder, r.decoder.outputs, "emits");
  drawUnitTrace($("encoder-unit"), r.encoder, r.encoder.tokens, "encoder");
  drawUnitTrace($("decoder-unit"), r.decoder, r.decoder.outputs, "decoder");
  $("unit").max = r.encoder.h[0].length - 1;
  setState("done");
}

async function translate(event) {
  if (event) event.preventDefault();
  const params = new URLSearchParams({src: $("src").value, beam: $("beam").value, layer: $("layer").value});
  if (model.directions.length > 1) params.set("direction", $("direction").value);
  $("submit").disabled = true;
  setState("busy");
  try {
    const response = await fetch("/api/translate?" + params.toString());
    const body = await response.json().catch(() => ({error: `the server answered ${response.status} without JSON`}));
    if (!response.ok) {
      showError(body.error);
      return;
    }
    $("error").hidden = true;
    result = body;
    render();
  } catch (err) {
    showError("cannot reach the server (is lstm-np serve still running?)");
  } finally {
    $("submit").disabled = false;
  }
}

function drawLegend(canvas, stops) {
  const ctx = canvas.getContext("2d");
  for (let x = 0; x < canvas.width; x++) {
    ctx.fillStyle = ramp(stops, x / (canvas.width - 1));
    ctx.fillRect(x, 0, 1, canvas.height);
  }
}

async function start() {
  setState("loading");
  drawLegend($("legend-unit"), VIRIDIS);
  drawLegend($("legend-signed"), RDBU);
  try {
    const response = await fetch("/api/model");
    model = await response.json();
    if (!response.ok) throw new Error(model.error);
  } catch (err) {
    showError(`cannot load the model: ${err.message}`);
    return;
  }
  const m = model.model;
  $("model-summary").textContent = `${model.name}` + (model.task ? ` · task ${model.task}` : "") +
    ` · ${model.layers} layer${model.layers > 1 ? "s" : ""} × ${model.encoder_units} units · ` +
    `${m.peephole} peephole · attention: ${m.attention || "none"}` +
    (m.bidirectional ? " · bidirectional encoder" : "") + ` · vocabularies ${model.source_vocab.size} → ` +
    `${model.target_vocab.size} ${model.source_vocab.tokens}s`;
  for (let layer = 0; layer < model.layers; layer++) $("layer").add(new Option(String(layer), String(layer)));
  $("layer").value = String(model.defaults.layer);
  for (const d of model.directions) $("direction").add(new Option(d === "fwd" ? "forward" : "reverse", d));
  $("direction-label").hidden = model.directions.length < 2;
  $("beam").max = model.limits.max_beam;
  if (model.example) $("src").value = model.example;
  $("form").addEventListener("submit", translate);
  for (const id of ["layer", "direction"]) $(id).addEventListener("change", () => { if (result) translate(); });
  $("unit").addEventListener("change", () => { if (result) selectUnit(parseInt($("unit").value, 10)); });
  setState("ready");
}

start();

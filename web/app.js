// The page of `qforge serve`: every number comes from the server's /api/plan and /api/rank
// (the same code as `qforge plan --json`); this file only gathers inputs, keeps them in the
// URL (?view=&model=&ctx=...) and draws tables and the memory bar.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { view: "run", models: [], timer: null, seq: 0 };

const GiB = 1024 ** 3, MiB = 1024 ** 2;
function size(b) { return b >= GiB ? (b / GiB).toFixed(2) + " GiB" : (b / MiB).toFixed(1) + " MiB"; }
function ctxFromSlider(v) { return Math.max(512, Math.round(2 ** (v / 4) / 256) * 256); }
function sliderFromCtx(c) { return Math.round(4 * Math.log2(c)); }
function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }
function option(select, value, label) { const o = document.createElement("option"); o.value = value; o.textContent = label || value; select.appendChild(o); }

async function api(path, body) {
  const res = await fetch(path, body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || ("HTTP " + res.status));
  return data;
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
  if (message) document.body.dataset.state = "error";
}

// The model part of a request, from the chosen source.
function modelRequest() {
  const source = $("source").value;
  if (source === "config") {
    try { return { config: JSON.parse($("config").value) }; } catch (e) { throw new Error("config.json: not valid JSON (" + e.message + ")"); }
  }
  if (source === "path") return { path: $("path").value.trim() };
  return { model: $("model").value };
}

function baseRequest() {
  const req = modelRequest();
  req.ctx = ctxFromSlider(Number($("ctx").value));
  req.ctk = $("ctk").value;
  req.ctv = $("ctv").value;
  req.np = Math.max(1, Number($("np").value) || 1);
  return req;
}

// Inputs -> URL (so a link reproduces the page), and back.
function saveUrl() {
  const p = new URLSearchParams();
  p.set("view", state.view);
  p.set("source", $("source").value);
  if ($("source").value === "catalogue") p.set("model", $("model").value);
  if ($("source").value === "path") p.set("path", $("path").value);
  p.set("ctx", ctxFromSlider(Number($("ctx").value)));
  for (const k of ["ctk", "ctv", "np", "gpu", "ram", "type"]) if ($(k).value) p.set(k, $(k).value);
  const cmp = [...document.querySelectorAll(".cmp")].map((e) => e.value.trim()).filter(Boolean);
  if (cmp.length) p.set("cmp", cmp.join(";"));
  history.replaceState(null, "", "?" + p.toString());
}

function loadUrl() {
  const p = new URLSearchParams(location.search);
  if (p.get("view")) state.view = p.get("view");
  if (p.get("source")) $("source").value = p.get("source");
  if (p.get("model")) $("model").value = p.get("model");
  if (p.get("path")) $("path").value = p.get("path");
  if (p.get("ctx")) $("ctx").value = sliderFromCtx(Number(p.get("ctx")));
  for (const k of ["ctk", "ctv", "np", "gpu", "ram", "type"]) if (p.get(k)) $(k).value = p.get(k);
  const cmp = (p.get("cmp") || "").split(";");
  document.querySelectorAll(".cmp").forEach((e, i) => { if (cmp[i]) e.value = cmp[i]; });
}

function layout() {
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("active", b.dataset.view === state.view));
  document.querySelectorAll("[data-view-only]").forEach((e) => { e.hidden = !e.dataset.viewOnly.split(" ").includes(state.view); });
  document.querySelectorAll("[data-source]").forEach((e) => { e.hidden = e.dataset.source !== $("source").value; });
  $("ctx-out").textContent = ctxFromSlider(Number($("ctx").value)).toLocaleString("en-US");
  const m = state.models.find((x) => x.id === $("model").value);
  if (m) { $("model-source").href = m.source; $("model-source").textContent = "source: " + m.source; }
}

function drawPlan(plan) {
  const body = $("plan-table").tBodies[0];
  body.replaceChildren();
  const gpu = plan.gpus.length > 0;
  for (const p of plan.plans) {
    const row = body.insertRow();
    Object.assign(row.dataset, { type: p.type, fileBytes: p.file_bytes, verdict: p.verdict, gpuTotal: p.gpu.total, ramTotal: p.ram.total, maxContext: p.max_context });
    if (p.type === plan.recommended) row.className = "recommended";
    cell(row, p.type); cell(row, p.bpw.toFixed(4)); cell(row, size(p.file_bytes));
    cell(row, gpu ? size(p.gpu.total) : "-"); cell(row, size(p.ram.total));
    cell(row, p.verdict === "partial" ? `partial (${p.n_gpu_layers}/${p.n_offloadable} layers)` : p.verdict, p.verdict);
    cell(row, p.max_context ? p.max_context.toLocaleString("en-US") : "-");
    cell(row, p.tokens_per_second_upper_bound > 0 ? p.tokens_per_second_upper_bound.toFixed(1) : "?");
  }
  const best = plan.plans.find((p) => p.type === plan.recommended);
  const where = gpu ? plan.gpus.map((g) => g.name).join(" + ") : "the CPU";
  $("verdict").dataset.recommended = plan.recommended || "";
  $("verdict").textContent = best
    ? `Yes: ${plan.recommended} ${best.verdict === "fits" ? "fits" : "runs partly offloaded"} on ${where} at ${plan.context.n_ctx.toLocaleString("en-US")} tokens (${size(best.file_bytes)} file).`
    : `No: nothing fits on ${where} at ${plan.context.n_ctx.toLocaleString("en-US")} tokens. Try a smaller type, a shorter context or a quantized KV cache.`;
  drawBar(best || plan.plans[plan.plans.length - 1], gpu);
  $("notes").replaceChildren(...plan.assumptions.map((a) => { const li = document.createElement("li"); li.textContent = a; return li; }));
}

// Stacked bar: what the chosen type puts in GPU memory (or RAM without a GPU) against its capacity.
function drawBar(p, gpu) {
  const bar = $("bar");
  bar.replaceChildren();
  if (!p) return;
  const m = gpu ? p.gpu : p.ram;
  const parts = gpu
    ? [["weights", m.weights], ["kv", m.kv], ["compute", m.compute], ["runtime", m.overhead]]
    : [["weights", m.weights], ["kv", m.kv], ["compute", m.buffers]];
  const scale = Math.max(m.capacity, m.total) || 1;
  for (const [name, bytes] of parts.concat([["free", Math.max(0, m.capacity - m.total)]])) {
    if (!(bytes > 0)) continue;
    const d = document.createElement("div");
    d.className = "seg-" + name;
    d.style.width = (100 * bytes / scale) + "%";
    d.textContent = `${name} ${size(bytes)}`;
    d.title = d.textContent;
    bar.appendChild(d);
  }
  bar.title = `${p.type}: ${size(m.total)} of ${size(m.capacity)} ${gpu ? "GPU memory" : "RAM"}`;
}

function drawRank(rank) {
  const body = $("rank-table").tBodies[0];
  body.replaceChildren();
  rank.devices.forEach((d, i) => {
    const row = body.insertRow();
    Object.assign(row.dataset, { name: d.name, verdict: d.verdict });
    cell(row, i + 1); cell(row, d.name); cell(row, size(d.memory_bytes)); cell(row, d.bandwidth_gbs);
    cell(row, d.verdict, d.verdict); cell(row, `${d.n_gpu_layers}/${d.n_offloadable}`);
    cell(row, d.max_context ? d.max_context.toLocaleString("en-US") : "-");
    cell(row, d.tokens_per_second_upper_bound > 0 ? d.tokens_per_second_upper_bound.toFixed(1) : "?");
  });
}

function drawCompare(names, plans) {
  const body = $("compare-table").tBodies[0];
  body.replaceChildren();
  const rows = [
    ["device", (p) => p.gpus.map((g) => g.name).join(" + ")],
    ["memory usable", (p) => size(p.plans[0].gpu.capacity)],
    ["bandwidth GB/s", (p) => p.gpus.map((g) => g.bandwidth_gbs).join(" + ")],
    ["verdict", (p) => p.plans[0].verdict],
    ["layers on GPU", (p) => `${p.plans[0].n_gpu_layers}/${p.plans[0].n_offloadable}`],
    ["GPU memory used", (p) => size(p.plans[0].gpu.total)],
    ["max context", (p) => (p.plans[0].max_context || 0).toLocaleString("en-US")],
    ["tok/s upper bound", (p) => p.plans[0].tokens_per_second_upper_bound.toFixed(1)],
  ];
  for (const [label, f] of rows) {
    const row = body.insertRow();
    cell(row, label);
    plans.forEach((p) => cell(row, f(p), label === "verdict" ? p.plans[0].verdict : ""));
  }
}

async function update() {
  layout();
  saveUrl();
  const seq = ++state.seq;
  document.body.dataset.state = "loading";
  try {
    let draw;
    if (state.view === "run") {
      const req = baseRequest();
      if ($("gpu").value.trim()) req.gpu = $("gpu").value.trim();
      if ($("ram").value.trim()) req.ram = $("ram").value.trim();
      const plan = await api("/api/plan", req);
      draw = () => drawPlan(plan);
    } else if (state.view === "choose") {
      const rank = await api("/api/rank", Object.assign(baseRequest(), { type: $("type").value }));
      draw = () => drawRank(rank);
    } else {
      const names = [...document.querySelectorAll(".cmp")].map((e) => e.value.trim()).filter(Boolean);
      if (names.length < 2) throw new Error("Compare hardware: name 2 to 4 devices");
      const plans = await Promise.all(names.map((gpu) => api("/api/plan", Object.assign(baseRequest(), { type: $("type").value, gpu }))));
      draw = () => drawCompare(names, plans);
    }
    if (seq !== state.seq) return;  // a newer request is on its way
    draw();
    showError("");
    document.body.dataset.state = "ready";
  } catch (e) {
    if (seq === state.seq) showError(e.message);
  }
}

function schedule() { clearTimeout(state.timer); state.timer = setTimeout(update, 150); }

async function start() {
  const [models, devices, options] = await Promise.all([api("/api/models"), api("/api/devices"), api("/api/options")]);
  state.models = models.models;
  for (const m of state.models) option($("model"), m.id, `${m.id} (${m.params_b} B)`);
  for (const d of devices.devices) option($("device-names"), d.id, d.name);
  for (const t of options.cache_types) { option($("ctk"), t); option($("ctv"), t); }
  for (const t of options.file_types) option($("type"), t);
  $("type").value = "Q4_K_M";
  $("model").value = state.models.some((m) => m.id === "meta-llama/Llama-3.1-8B-Instruct") ? "meta-llama/Llama-3.1-8B-Instruct" : state.models[0].id;
  loadUrl();
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => { state.view = b.dataset.view; update(); }));
  document.querySelectorAll("input, select, textarea").forEach((e) => e.addEventListener(e.type === "range" ? "input" : "change", schedule));
  $("ctx").addEventListener("input", layout);
  update();
}

start().catch((e) => showError(e.message));

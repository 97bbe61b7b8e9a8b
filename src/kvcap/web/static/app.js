// kvcap web page: plain JS, no build step. The state lives in the URL query (model, device or
// backend + memory, count, engine, o.NAME options, context, concurrency); every change rewrites
// the URL and asks the server's JSON API, which calls the same functions as the CLI.
"use strict";

const $ = (id) => document.getElementById(id);
let uploadLimit = 16 << 20;  // replaced by the server's limit (/api/engines max_upload)
let engines = {};          // name -> {options: {name: help}, backends: [...]}
let inflight = null;       // AbortController of the current refresh
let lastUpload = "";       // the token of the last config.json upload (safetensors headers join it)

function fmtInt(n) { return Number(n).toLocaleString("en-US"); }

function fmtBytes(n) {
  const units = [["TiB", 2 ** 40], ["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 1024]];
  for (const [u, s] of units) if (Math.abs(n) >= s) return (n / s).toFixed(2) + " " + u;
  return n + " B";
}

function fmtParams(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + "B";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  return fmtInt(n);
}

function fmtValue(v, unit) {
  if (typeof v === "number") {
    if (unit === "bytes") return fmtInt(Math.round(v)) + " B (" + fmtBytes(v) + ")";
    const s = Number.isInteger(v) ? fmtInt(v) : String(Math.round(v * 10000) / 10000);
    return unit ? s + " " + unit : s;
  }
  if (v === null || v === undefined) return "—";
  if (typeof v === "object") return JSON.stringify(v);
  return unit ? String(v) + " " + unit : String(v);
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function showError(msg) {
  const box = $("error");
  box.textContent = msg || "";
  box.hidden = !msg;
}

function table(node, head, rows) {
  node.replaceChildren();
  const tr = el("tr");
  head.forEach((h) => tr.appendChild(el("th", h)));
  node.appendChild(tr);
  rows.forEach((r) => {
    const row = el("tr");
    r.forEach((c) => row.appendChild(c instanceof Node ? c : el("td", c)));
    node.appendChild(row);
  });
}

// ---- state <-> form <-> URL ------------------------------------------------------------
function optionRows() { return Array.from($("options").querySelectorAll(".option")); }

function addOption(name, value) {
  const row = el("div", null, "option row");
  const n = el("input"); n.className = "opt-name"; n.setAttribute("list", "option-names");
  n.placeholder = "option"; n.value = name || ""; n.spellcheck = false;
  const v = el("input"); v.className = "opt-value"; v.placeholder = "value"; v.value = value || ""; v.spellcheck = false;
  const x = el("button", "×"); x.type = "button"; x.className = "remove"; x.title = "remove this option";
  x.addEventListener("click", () => { row.remove(); changed(); });
  n.addEventListener("change", () => { describeOption(n); changed(); });
  v.addEventListener("change", changed);
  row.append(n, v, x);
  $("options").appendChild(row);
  describeOption(n);
  return row;
}

function describeOption(input) {
  const e = engines[$("engine").value];
  input.title = (e && e.options[input.value]) || "";
}

function custom() { return $("devkind-custom").checked; }

function stateFromForm() {
  const q = new URLSearchParams();
  const put = (k, v) => { if (v !== undefined && v !== null && String(v).trim() !== "") q.set(k, String(v).trim()); };
  put("model", $("model").value);
  if (custom()) { put("backend", $("backend").value); put("memory", $("memory").value); }
  else put("device", $("device").value);
  if ($("count").value && $("count").value !== "1") put("count", $("count").value);
  put("engine", $("engine").value);
  optionRows().forEach((r) => {
    const name = r.querySelector(".opt-name").value.trim();
    if (name) put("o." + name, r.querySelector(".opt-value").value);
  });
  put("context", $("context").value);
  put("concurrency", $("concurrency").value);
  return q;
}

function formFromState(q) {
  $("model").value = q.get("model") || "";
  const isCustom = !q.get("device") && (q.get("backend") || q.get("memory"));
  $("devkind-custom").checked = !!isCustom;
  $("devkind-catalog").checked = !isCustom;
  $("device").value = q.get("device") || "";
  if (q.get("backend")) $("backend").value = q.get("backend");
  $("memory").value = q.get("memory") || "";
  $("count").value = q.get("count") || "1";
  if (q.get("engine") && engines[q.get("engine")]) $("engine").value = q.get("engine");
  $("options").replaceChildren();
  for (const [k, v] of q.entries()) if (k.startsWith("o.")) addOption(k.slice(2), v);
  $("context").value = q.get("context") || "";
  $("concurrency").value = q.get("concurrency") || "";
  showDeviceKind();
  fillOptionNames();
}

function showDeviceKind() {
  $("dev-catalog").hidden = custom();
  $("dev-custom").hidden = !custom();
}

function fillOptionNames() {
  const list = $("option-names");
  list.replaceChildren();
  const e = engines[$("engine").value];
  if (!e) return;
  Object.entries(e.options).forEach(([name, help]) => {
    const o = el("option"); o.value = name; o.label = help; list.appendChild(o);
  });
  optionRows().forEach((r) => describeOption(r.querySelector(".opt-name")));
}

function changed() {
  const q = stateFromForm();
  history.replaceState(null, "", "?" + q.toString());
  refresh(q);
}

// ---- talking to the server ---------------------------------------------------------------
async function getJSON(path, q, signal) {
  const r = await fetch(path + "?" + q.toString(), { signal });
  let doc;
  try { doc = await r.json(); } catch (e) { throw new Error("the server answered " + r.status + " without JSON"); }
  if (!r.ok) throw new Error(doc.error || ("error " + r.status));
  return doc;
}

function ready(q) { return q.get("model") && (q.get("device") || (q.get("backend") && q.get("memory"))); }

async function refresh(q) {
  if (inflight) inflight.abort();
  inflight = new AbortController();
  const signal = inflight.signal;
  if (!ready(q)) {
    showError("");
    $("kv-tokens").textContent = "—";
    return;
  }
  const plan = getJSON("/api/plan", q, signal).then(renderPlan).catch((e) => {
    if (e.name === "AbortError") return;
    showError(e.message);
    renderEmpty();
  });
  const compare = getJSON("/api/compare", q, signal).then(renderCompare).catch((e) => {
    if (e.name === "AbortError") return;
    inlineError("compare", e.message);
  });
  const chart = loadChart(q, signal);
  await Promise.allSettled([plan, compare, chart]);
}

async function loadChart(q, signal) {
  const img = $("chart");
  img.classList.add("stale");   // the chart shown is for the previous state until the new one loads
  try {
    const r = await fetch("/api/plot?" + q.toString(), { signal });
    if (!r.ok) {
      let msg = "error " + r.status;
      try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    const blob = await r.blob();
    if (img.dataset.url) URL.revokeObjectURL(img.dataset.url);
    img.dataset.url = URL.createObjectURL(blob);
    await new Promise((resolve) => {
      img.onload = img.onerror = resolve;
      img.src = img.dataset.url;
    });
    img.dataset.state = q.toString();   // which state the chart shows (tests wait on it)
    img.classList.remove("stale");
    img.hidden = false;
    inlineError("chart", "");
  } catch (e) {
    if (e.name === "AbortError") return;
    img.hidden = true;
    inlineError("chart", e.message);
  }
}

function inlineError(which, msg) {
  const box = $(which + "-error");
  box.textContent = msg;
  box.hidden = !msg;
  if (msg && which === "compare") $("compare").replaceChildren();
}

// ---- rendering -------------------------------------------------------------------------
function renderEmpty() {
  $("kv-tokens").textContent = "—";
  $("engine-config").textContent = "";
  $("binding").replaceChildren();
  $("warnings").replaceChildren();
  $("ledger").replaceChildren();
  $("whatif").replaceChildren();
  $("launch-panel").hidden = true;
}

function renderPlan(doc) {
  showError("");
  const p = doc.plan;
  $("kv-tokens").textContent = doc.fits ? fmtInt(p.kv_tokens) : "does not fit";
  $("headline").className = doc.fits ? "" : "nofit";
  $("engine-config").textContent = p.engine + (p.mode ? " (" + p.mode + ")" : "") + " on " + p.device.name + ": " +
    Object.entries(p.engine_config).map(([k, v]) => k + "=" + fmtValue(v, "")).join(", ");
  const b = $("binding");
  b.replaceChildren(el("span", "Binding limit: "), el("b", p.binding.name), el("span", " — " + p.binding.reason));
  if (p.binding.source) b.appendChild(el("span", " [" + p.binding.source + "]", "source"));
  const w = $("warnings");
  w.replaceChildren();
  p.warnings.forEach((t) => w.appendChild(el("li", t)));
  table($("ledger"), ["", "line", "value", "formula", "source"], p.ledger.map((l) => [
    l.estimate ? "~" : "", l.name, fmtValue(l.value, l.unit), l.formula + (l.note ? " (" + l.note + ")" : ""), l.source]));
  table($("whatif"), ["change", "KV tokens", "gain", "binding", "knob"], p.what_if.map((x) => [
    x.change, x.kv_tokens === null ? "—" : fmtInt(x.kv_tokens), x.gain ? "×" + x.gain.toFixed(2) : "—", x.binding, x.knob]));
  const m = doc.model;
  $("model-info").textContent = m.name + " — " + m.model_type + ", " + m.num_hidden_layers + " layers, " +
    m.num_key_value_heads + " KV heads × " + m.head_dim + ", context " + (m.context_window ? fmtInt(m.context_window) : "—") +
    ", " + fmtParams(m.num_params) + " parameters" +
    (m.stored_bytes ? ", stored " + fmtBytes(m.stored_bytes) + " (" + fmtInt(m.stored_bytes) + " B)" : "");
  const d = doc.device;
  $("device-info").textContent = d.name + " — " + d.backend + ", " + fmtBytes(d.memory_bytes) +
    (d.count > 1 ? " × " + d.count : "") + (d.memory_source ? " (" + d.memory_source + ")" : "");
  renderLaunch(doc.launch);
}

function renderLaunch(launch) {
  const panel = $("launch-panel");
  if (!launch) { panel.hidden = true; return; }
  panel.hidden = false;
  if (launch.error) { $("launch").textContent = "# " + launch.error; return; }
  const lines = launch.commands.map((c) => (c.where ? "# " + c.where + "\n" : "") + c.shell);
  launch.notes.forEach((n) => lines.push("# note: " + n));
  $("launch").textContent = lines.join("\n");
}

function renderCompare(doc) {
  inlineError("compare", "");
  table($("compare"), ["engine", "KV tokens", "max concurrency", "binding", "knob that relaxes it"], doc.rows.map((r) => {
    if (r.status === "ok" || r.status === "does_not_fit") {
      return [r.engine, r.kv_tokens === null ? "—" : fmtInt(r.kv_tokens),
        r.max_concurrency === null ? "—" : fmtInt(r.max_concurrency), r.binding || "", r.knob || "—"];
    }
    const why = el("td", r.status + ": " + r.reason, "reason"); why.colSpan = 4;
    return [r.engine, why];
  }));
}

// ---- search and upload -----------------------------------------------------------------
function debounce(fn, ms) {
  let t = null;
  return (...args) => { clearTimeout(t); t = setTimeout(() => fn(...args), ms); };
}

async function suggest(path, input, list, key, label) {
  const words = input.value.trim();
  if (words.startsWith("upload:")) return;
  try {
    const doc = await getJSON(path, new URLSearchParams({ q: words }));
    list.replaceChildren();
    doc[key].forEach((item) => {
      const o = el("option"); o.value = item.key; o.label = label(item); list.appendChild(o);
    });
  } catch (e) { /* suggestions are a convenience; the plan reports a bad name */ }
}

async function fileHead(file) {
  const lower = file.name.toLowerCase();
  if (lower.endsWith(".safetensors")) {
    const head = new DataView(await file.slice(0, 8).arrayBuffer());
    if (head.byteLength < 8) throw new Error(file.name + ": too short for a safetensors file");
    const n = Number(head.getBigUint64(0, true));
    if (n > uploadLimit) throw new Error(file.name + ": its header declares " + fmtInt(n) + " bytes, above the upload limit");
    return file.slice(0, 8 + n);
  }
  if (lower.endsWith(".gguf")) return file.slice(0, Math.min(file.size, uploadLimit));
  return file;  // config.json: the whole file (the server refuses one above the limit)
}

async function upload(file) {
  const body = await fileHead(file);
  const q = new URLSearchParams({ filename: file.name });
  if (file.name.toLowerCase().endsWith(".safetensors") && lastUpload) q.set("token", lastUpload);
  const r = await fetch("/api/upload?" + q.toString(), {
    method: "POST", body, headers: { "X-Kvcap": "1", "Content-Type": "application/octet-stream" } });
  let doc;
  try { doc = await r.json(); } catch (e) { throw new Error("upload failed: the server answered " + r.status); }
  if (!r.ok) throw new Error(doc.error || ("upload failed: " + r.status));
  if (!file.name.toLowerCase().endsWith(".safetensors")) lastUpload = doc.token;
  $("model").value = doc.model_param;
  $("model-info").textContent = doc.label + ": " + doc.model.name + (doc.note ? " — " + doc.note : "");
  changed();
}

// ---- start -----------------------------------------------------------------------------
async function start() {
  try {
    const doc = await getJSON("/api/engines", new URLSearchParams());
    doc.engines.forEach((e) => {
      engines[e.name] = e;
      const o = el("option", e.name); o.value = e.name; $("engine").appendChild(o);
    });
    doc.backends.forEach((b) => { const o = el("option", b); o.value = b; $("backend").appendChild(o); });
    if (doc.max_upload) uploadLimit = doc.max_upload;
  } catch (e) { showError("cannot list engines: " + e.message); }
  const q = new URLSearchParams(location.search);
  formFromState(q);
  const models = debounce(() => suggest("/api/models", $("model"), $("model-list"), "models", (m) => m.source), 150);
  const devices = debounce(() => suggest("/api/devices", $("device"), $("device-list"), "devices",
    (d) => d.name + " — " + d.backend + ", " + fmtBytes(d.memory_bytes)), 150);
  $("model").addEventListener("input", models);
  $("device").addEventListener("input", devices);
  models(); devices();
  ["model", "device", "backend", "memory", "count", "context", "concurrency"].forEach((id) =>
    $(id).addEventListener("change", changed));
  $("engine").addEventListener("change", () => { fillOptionNames(); changed(); });
  document.querySelectorAll("input[name=devkind]").forEach((r) =>
    r.addEventListener("change", () => { showDeviceKind(); changed(); }));
  $("add-option").addEventListener("click", () => addOption("", "").querySelector(".opt-name").focus());
  $("upload").addEventListener("change", async () => {
    const file = $("upload").files[0];
    if (!file) return;
    try { await upload(file); } catch (e) { showError(e.message); }
    $("upload").value = "";
  });
  $("copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("launch").textContent);
      $("copied").textContent = "copied";
    } catch (e) {
      const range = document.createRange(); range.selectNodeContents($("launch"));
      const sel = getSelection(); sel.removeAllRanges(); sel.addRange(range);
      $("copied").textContent = "selected: press Ctrl+C";
    }
  });
  refresh(q);
}

start();

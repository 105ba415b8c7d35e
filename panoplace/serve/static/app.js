// panoplace web map: the map's trajectory to scale, localise a dropped image, play a folder of
// frames as a session. Talks only to the server that served it (no tiles, fonts or CDNs).
"use strict";

const $ = (id) => document.getElementById(id);
const canvas = $("map");
const ctx = canvas.getContext("2d");
const state = { map: null, frames: [], view: null, estimate: null, trail: [], playing: false, session: null };

function token() { return $("token").value.trim() || localStorage.getItem("panoplace-token") || ""; }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  const r = await fetch(path, Object.assign({}, options, { headers }));
  if (r.status === 401) {
    $("token-box").hidden = false;
    throw new Error("this server needs a token: enter it at the top right");
  }
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

// ---- drawing (x east, y north, metres; north up, equal scale on both axes)
function makeView() {
  const [x0, y0, x1, y1] = state.map.bounds_xy;
  const pad = 30, w = canvas.width, h = canvas.height;
  const span = Math.max(x1 - x0, y1 - y0, 1);
  const scale = Math.min((w - 2 * pad) / Math.max(x1 - x0, span * 1e-3), (h - 2 * pad) / Math.max(y1 - y0, span * 1e-3));
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
  return { scale, px: (x) => w / 2 + (x - cx) * scale, py: (y) => h / 2 - (y - cy) * scale };
}

function confidenceColour(c) {
  const t = Math.max(0, Math.min(1, c / 0.2)); // 0 = red (ambiguous) .. >= 0.2 = green
  return `rgb(${Math.round(214 - 170 * t)}, ${Math.round(39 + 121 * t)}, ${Math.round(40 + 4 * t)})`;
}

function scaleBar(v) {
  const target = 120 / v.scale; // metres in ~120 px
  const p = Math.pow(10, Math.floor(Math.log10(target)));
  const m = [1, 2, 5, 10].map((f) => f * p).filter((x) => x <= target).pop() || p;
  const len = m * v.scale, x = 20, y = canvas.height - 18;
  ctx.strokeStyle = "#222"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(x, y); ctx.lineTo(x + len, y); ctx.moveTo(x, y - 5); ctx.lineTo(x, y + 5);
  ctx.moveTo(x + len, y - 5); ctx.lineTo(x + len, y + 5); ctx.stroke();
  ctx.fillStyle = "#222"; ctx.font = "12px sans-serif"; ctx.fillText(`${m} m`, x + len + 6, y + 4);
  ctx.fillText("N ↑", canvas.width - 36, 20);
}

function draw() {
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.map) return;
  const v = state.view;
  ctx.strokeStyle = "#9aa8b5"; ctx.lineWidth = 2; ctx.beginPath();
  state.frames.forEach((f, i) => { const X = v.px(f.x), Y = v.py(f.y); if (i) ctx.lineTo(X, Y); else ctx.moveTo(X, Y); });
  ctx.stroke();
  ctx.fillStyle = "#7a8a99";
  for (const f of state.frames) { ctx.beginPath(); ctx.arc(v.px(f.x), v.py(f.y), 2.5, 0, 2 * Math.PI); ctx.fill(); }
  ctx.fillStyle = "#f0a030";
  for (const p of state.trail) { ctx.beginPath(); ctx.arc(v.px(p.x), v.py(p.y), 3, 0, 2 * Math.PI); ctx.fill(); }
  scaleBar(v);
  const e = state.estimate;
  if (e && e.position) {
    const X = v.px(e.position.x), Y = v.py(e.position.y);
    ctx.strokeStyle = "#000";
    if (e.heading_deg !== null && e.heading_deg !== undefined) {
      // heading: compass degrees, clockwise from north (+y), as the frames CSV gives it
      const a = e.heading_deg * Math.PI / 180;
      ctx.lineWidth = 3;
      ctx.beginPath(); ctx.moveTo(X, Y); ctx.lineTo(X + 24 * Math.sin(a), Y - 24 * Math.cos(a)); ctx.stroke();
    }
    ctx.fillStyle = confidenceColour(e.confidence);
    ctx.lineWidth = 1.5;
    ctx.beginPath(); ctx.arc(X, Y, 9, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
    canvas.dataset.markerPx = `${Math.round(X)},${Math.round(Y)}`;
    canvas.dataset.markerColour = ctx.fillStyle;
  }
}

// ---- results
function fmt(v, digits) { return v === null || v === undefined ? "–" : Number(v).toFixed(digits); }

async function showResult(r, label) {
  state.estimate = r;
  if (r.position) state.trail.push(r.position);
  if (state.trail.length > 500) state.trail.shift();
  draw();
  const p = r.position;
  $("position").textContent = p ? `x ${fmt(p.x, 1)} m, y ${fmt(p.y, 1)} m` + (p.lat !== null ? ` (${fmt(p.lat, 6)}, ${fmt(p.lon, 6)})` : "") : "–";
  $("heading").textContent = r.heading_deg === null ? "– (not estimated for this map)" : `${fmt(r.heading_deg, 1)}°`;
  $("confidence").textContent = fmt(r.confidence, 3);
  $("confidence-meter").value = r.confidence;
  $("frame-info").textContent = label;
  canvas.dataset.localised = String(Number(canvas.dataset.localised || 0) + 1);
  const box = $("candidates");
  const urls = await Promise.all(r.candidates.map((c) => thumbnail(c.index)));
  box.textContent = "";
  r.candidates.forEach((c, i) => {
    const div = document.createElement("div");
    div.className = "cand" + (i === 0 ? " best" : "");
    const img = document.createElement("img");
    if (urls[i]) img.src = urls[i];
    img.alt = `map frame ${c.index}`;
    const txt = document.createElement("div");
    txt.textContent = `#${c.rank} frame ${c.index} score ${fmt(c.score, 3)}` + (c.heading_deg !== null ? ` heading ${fmt(c.heading_deg, 0)}°` : "");
    div.append(img, txt);
    box.append(div);
  });
}

const thumbCache = new Map();
async function thumbnail(index) {
  if (thumbCache.has(index)) return thumbCache.get(index);
  try {
    const blob = await (await api(`/v1/frames/${index}/thumbnail`)).blob();
    const url = URL.createObjectURL(blob);
    thumbCache.set(index, url);
    return url;
  } catch (e) { return null; }
}

function imageType(file) {
  const n = file.name.toLowerCase();
  return file.type || (n.endsWith(".png") ? "image/png" : "image/jpeg");
}

function kParam() { const k = parseInt($("k").value, 10); return k >= 1 && k <= 50 ? `?k=${k}` : ""; }

// ---- one image
async function localise(file) {
  setStatus(`localising ${file.name}…`);
  try {
    const r = await api("/v1/localize" + kParam(), { method: "POST", body: file, headers: { "Content-Type": imageType(file) } });
    state.trail = [];
    await showResult(await r.json(), file.name);
    setStatus(`localised ${file.name}`);
  } catch (e) { setStatus(e.message, true); }
}

// ---- a folder as a session
async function play(files) {
  const frames = Array.from(files).filter((f) => /\.(jpe?g|png)$/i.test(f.name))
    .sort((a, b) => (a.webkitRelativePath || a.name).localeCompare(b.webkitRelativePath || b.name, undefined, { numeric: true }));
  if (!frames.length) { setStatus("the folder holds no JPEG or PNG images", true); return; }
  state.playing = true; state.trail = []; $("stop").disabled = false;
  try {
    const s = await (await api("/v1/sessions", { method: "POST" })).json();
    state.session = s.session_id;
    for (let i = 0; i < frames.length && state.playing; i++) {
      const f = frames[i];
      const r = await (await api(`/v1/sessions/${s.session_id}/frames` + kParam(),
        { method: "POST", body: f, headers: { "Content-Type": imageType(f) } })).json();
      await showResult(r, `session frame ${r.frame + 1}/${frames.length}: ${f.name}` + (r.relocalised ? " (relocalised)" : ""));
      setStatus(`playing ${i + 1}/${frames.length}`);
      const delay = Math.max(0, Math.min(5000, parseInt($("delay").value, 10) || 0));
      if (delay) await new Promise((ok) => setTimeout(ok, delay));
    }
    setStatus(state.playing ? `played ${frames.length} frames` : "stopped");
  } catch (e) { setStatus(e.message, true); }
  finally {
    if (state.session) { try { await api(`/v1/sessions/${state.session}`, { method: "DELETE" }); } catch (e) { /* expired */ } }
    state.session = null; state.playing = false; $("stop").disabled = true;
  }
}

// ---- wiring
async function loadMap() {
  try {
    const fc = await (await api("/v1/map")).json();
    state.map = fc;
    state.frames = fc.features.filter((f) => f.geometry.type === "Point").map((f) => f.properties);
    state.view = makeView();
    $("map-name").textContent = `map “${fc.name}”: ${state.frames.length} frames` + (fc.per_crop ? ", headings" : "");
    canvas.dataset.frames = String(state.frames.length);
    draw();
  } catch (e) { setStatus(e.message, true); }
}

const drop = $("drop");
drop.addEventListener("click", () => $("file-input").click());
drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file-input").click(); });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault(); drop.classList.remove("over");
  const files = e.dataTransfer.files;
  if (files.length === 1) localise(files[0]); else if (files.length > 1) play(files);
});
$("file-input").addEventListener("change", (e) => { if (e.target.files.length) localise(e.target.files[0]); });
$("folder-input").addEventListener("change", (e) => play(e.target.files));
$("stop").addEventListener("click", () => { state.playing = false; });
$("token").addEventListener("change", () => { localStorage.setItem("panoplace-token", $("token").value.trim()); loadMap(); });
loadMap();

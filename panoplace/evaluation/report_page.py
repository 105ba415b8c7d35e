"""The inline CSS and JavaScript of the report page (:mod:`panoplace.evaluation.report`).

The script reads the JSON in ``<script id="report-data">`` and draws everything with the DOM and
SVG: no library, no network. Elements the browser test relies on: ``#cards .card`` (one per
matcher), ``#map circle.query`` (``data-q`` = query index), ``#detail img.query-img`` /
``img.match-img`` / ``#topk tr``, ``#pr path.curve``, ``#recall path.curve``,
``#failures .failure``, ``#conditions table`` (several drives), ``select#drive``/``#matcher``.
"""

from __future__ import annotations

PAGE_STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 1.5em 2em; color: #222; max-width: 96em; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 1.5em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin: 0.8em 0 0.4em; }
select { font-size: 1em; }
.note { font-size: 0.85em; color: #555; }
#cards { display: flex; flex-wrap: wrap; gap: 0.8em; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 0.9em; min-width: 12em; cursor: pointer; background: #fafafa; }
.card.selected { border-color: #1f77b4; box-shadow: 0 0 0 2px #1f77b4 inset; background: #fff; }
.card h3 { margin: 0 0 0.3em; font-size: 1em; }
.card .big { font-size: 1.6em; font-weight: 600; }
.card table td { padding: 0 0.4em 0 0; font-size: 0.85em; }
.row { display: flex; flex-wrap: wrap; gap: 1.5em; }
.panel { flex: 1 1 30em; min-width: 20em; }
svg { background: #fff; border: 1px solid #ddd; max-width: 100%; height: auto; }
circle.query { cursor: pointer; stroke: #fff; stroke-width: 0.6; }
circle.query.selected { stroke: #000; stroke-width: 2; }
.thumbs { display: flex; gap: 0.8em; flex-wrap: wrap; }
.thumbs figure { margin: 0; }
.thumbs img, .noimg { width: 240px; border: 3px solid #ccc; display: block; }
.noimg { width: 160px; height: 60px; font-size: 0.75em; color: #666; overflow: hidden; padding: 2px; }
img.ok, .noimg.ok { border-color: #1a9850; } img.bad, .noimg.bad { border-color: #d73027; }
#topk { border-collapse: collapse; margin-top: 0.6em; }
#topk td, #topk th, table.results td, table.results th { border: 1px solid #ccc; padding: 0.2em 0.5em; font-size: 0.9em; }
#topk img { width: 120px; display: block; }
table.results { border-collapse: collapse; } table.results td { text-align: right; }
#conditions table { border-collapse: collapse; } #conditions td, #conditions th { border: 1px solid #ccc; padding: 0.2em 0.6em; }
#conditions th.drive { cursor: pointer; text-decoration: underline; }
#failures { display: flex; flex-wrap: wrap; gap: 0.6em; }
.failure { border: 1px solid #ddd; padding: 0.3em; cursor: pointer; font-size: 0.8em; background: #fff; }
.failure img, .failure .noimg { max-width: 150px; border-width: 2px; }
.failure .pair { display: flex; gap: 0.2em; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 30em; } figcaption { font-size: 0.85em; color: #444; max-width: 30em; }
.legend { font-size: 11px; }
"""

PAGE_SCRIPT = r"""
(function () {
"use strict";
var D = JSON.parse(document.getElementById("report-data").textContent);
var SVGNS = "http://www.w3.org/2000/svg";
var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
var GREEN = "#1a9850", RED = "#d73027", GREY = "#9e9e9e";
var di = 0, mi = 0, sel = -1, shown = 0;

function $(id) { return document.getElementById(id); }
function el(tag, attrs, parent, text) {
  var e = document.createElement(tag);
  for (var k in attrs) { e.setAttribute(k, attrs[k]); }
  if (text !== undefined && text !== null) { e.textContent = text; }
  if (parent) { parent.appendChild(e); }
  return e;
}
function sv(tag, attrs, parent) {
  var e = document.createElementNS(SVGNS, tag);
  for (var k in attrs) { e.setAttribute(k, attrs[k]); }
  if (parent) { parent.appendChild(e); }
  return e;
}
function fmt(v, d) { return (v === null || v === undefined) ? "n/a" : Number(v).toFixed(d === undefined ? 3 : d); }
function thumb(idx, label, cls, parent) {
  if (idx === undefined || idx === null || idx < 0) { return el("div", {"class": "noimg " + cls}, parent, label); }
  return el("img", {src: D.images[idx], alt: label, title: label, "class": cls}, parent);
}
function drive() { return D.drives[di]; }
function matcher() { return drive().matchers[Math.min(mi, drive().matchers.length - 1)]; }
function dbName(j) { return (D.db.ids && j >= 0) ? D.db.ids[j] : String(j); }

function fillSelects() {
  var ds = $("drive"), ms = $("matcher");
  ds.innerHTML = ""; ms.innerHTML = "";
  D.drives.forEach(function (d, i) { el("option", {value: i}, ds, d.name); });
  drive().matchers.forEach(function (m, i) { el("option", {value: i}, ms, m.name); });
  ds.value = di; ms.value = Math.min(mi, drive().matchers.length - 1);
  ds.parentNode.style.display = D.drives.length > 1 ? "" : "none";
}

function cards() {
  var box = $("cards"); box.innerHTML = "";
  drive().matchers.forEach(function (m, i) {
    var c = el("div", {"class": "card" + (i === mi ? " selected" : ""), "data-m": i}, box);
    el("h3", {}, c, m.name);
    var s = m.summary, keys = Object.keys(s.recall);
    el("div", {"class": "big"}, c, "R@" + keys[0] + " " + fmt(s.recall[keys[0]]));
    var t = el("table", {}, c);
    keys.slice(1).forEach(function (n) { var r = el("tr", {}, t); el("td", {}, r, "R@" + n); el("td", {}, r, fmt(s.recall[n])); });
    [["PR-AUC", s.pr_auc], ["R@100%P", s.recall_at_100p]].forEach(function (p) {
      var r = el("tr", {}, t); el("td", {}, r, p[0]); el("td", {}, r, fmt(p[1]));
    });
    Object.keys(s.within).forEach(function (x) { var r = el("tr", {}, t); el("td", {}, r, "\u2264" + x + " m"); el("td", {}, r, fmt(s.within[x])); });
    el("div", {"class": "note"}, c, s.n_queries + " of " + s.n_total + " queries evaluated");
    c.addEventListener("click", function () { mi = i; render(); });
  });
}

function bounds(sets) {
  var b = [Infinity, Infinity, -Infinity, -Infinity];
  sets.forEach(function (pts) { (pts || []).forEach(function (p) {
    if (p[0] === null || p[1] === null) { return; }
    b[0] = Math.min(b[0], p[0]); b[1] = Math.min(b[1], p[1]); b[2] = Math.max(b[2], p[0]); b[3] = Math.max(b[3], p[1]);
  }); });
  return b;
}

function map() {
  var box = $("map"); box.innerHTML = "";
  var q = drive().query_xy, db = D.db.xy;
  if (!q) { el("p", {"class": "note"}, box, "No query positions: no map."); return; }
  var b = bounds([q, db]), W = 640, pad = 14;
  var sx = Math.max(b[2] - b[0], 1e-9), sy = Math.max(b[3] - b[1], 1e-9);
  var s = Math.min((W - 2 * pad) / sx, (W - 2 * pad) / sy);
  var H = Math.max(160, Math.min(W, sy * s + 2 * pad));
  function X(p) { return pad + (p[0] - b[0]) * s; }
  function Y(p) { return H - pad - (p[1] - b[1]) * s; }
  var svg = sv("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "map"}, box);
  if (db) {
    var dpath = db.filter(function (p) { return p[0] !== null; }).map(function (p, i) { return (i ? "L" : "M") + X(p).toFixed(1) + " " + Y(p).toFixed(1); }).join("");
    sv("path", {d: dpath, fill: "none", stroke: GREY, "stroke-width": 3, "stroke-linejoin": "round", "class": "route"}, svg);
  }
  var m = matcher();
  var g = sv("g", {}, svg);
  q.forEach(function (p, i) {
    if (p[0] === null) { return; }
    var col = !m.valid[i] ? GREY : (m.correct[i] ? GREEN : RED);
    var c = sv("circle", {cx: X(p).toFixed(1), cy: Y(p).toFixed(1), r: 4, fill: col, "class": "query" + (i === sel ? " selected" : ""), "data-q": i}, g);
    var t = sv("title", {}, c); t.textContent = drive().query_ids[i] + (m.correct[i] ? " (correct)" : " (wrong)");
    c.addEventListener("click", function () { select(i); });
  });
  if (sel >= 0 && db && m.top1[sel] >= 0 && q[sel][0] !== null) {
    var p = q[sel], t1 = db[m.top1[sel]];
    sv("line", {x1: X(p), y1: Y(p), x2: X(t1), y2: Y(t1), stroke: m.correct[sel] ? GREEN : RED, "stroke-width": 2, "stroke-dasharray": "4 3", "class": "match-line"}, svg);
    sv("circle", {cx: X(t1), cy: Y(t1), r: 6, fill: "none", stroke: "#000", "stroke-width": 2, "class": "match"}, svg);
  }
}

function axes(svg, W, H, pad, xl, yl, xticks) {
  sv("line", {x1: pad, y1: H - pad, x2: W - 10, y2: H - pad, stroke: "#000"}, svg);
  sv("line", {x1: pad, y1: 10, x2: pad, y2: H - pad, stroke: "#000"}, svg);
  for (var i = 0; i <= 4; i++) {
    var y = H - pad - i / 4 * (H - pad - 10);
    sv("line", {x1: pad - 4, y1: y, x2: W - 10, y2: y, stroke: "#eee"}, svg);
    var t = sv("text", {x: pad - 6, y: y + 4, "text-anchor": "end", "font-size": 10}, svg); t.textContent = (i / 4).toFixed(2);
  }
  xticks.forEach(function (tk) { var t = sv("text", {x: tk[0], y: H - pad + 14, "text-anchor": "middle", "font-size": 10}, svg); t.textContent = tk[1]; });
  var a = sv("text", {x: (W + pad) / 2, y: H - 4, "text-anchor": "middle", "font-size": 11}, svg); a.textContent = xl;
  var b = sv("text", {x: 12, y: (H - pad) / 2, "font-size": 11, transform: "rotate(-90 12 " + (H - pad) / 2 + ")", "text-anchor": "middle"}, svg); b.textContent = yl;
}

function legend(svg, names, x, y) {
  names.forEach(function (n, i) {
    sv("rect", {x: x, y: y + i * 14, width: 10, height: 10, fill: COLORS[i % COLORS.length]}, svg);
    var t = sv("text", {x: x + 14, y: y + i * 14 + 9, "class": "legend"}, svg); t.textContent = n;
  });
}

function curves() {
  var W = 420, H = 320, pad = 44, ms = drive().matchers;
  var pr = $("pr"); pr.innerHTML = "";
  var svg = sv("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "precision-recall"}, pr);
  var fx = function (v) { return pad + v * (W - pad - 10); }, fy = function (v) { return H - pad - v * (H - pad - 10); };
  axes(svg, W, H, pad, "recall", "precision", [0, 0.25, 0.5, 0.75, 1].map(function (v) { return [fx(v), v.toFixed(2)]; }));
  ms.forEach(function (m, i) {
    var d = "M" + fx(0) + " " + fy(1), prev = 1;
    for (var j = 0; j < m.pr.recall.length; j++) {
      var r = m.pr.recall[j], p = m.pr.precision[j];
      if (r === null || p === null) { continue; }
      d += "L" + fx(r).toFixed(1) + " " + fy(prev).toFixed(1) + "L" + fx(r).toFixed(1) + " " + fy(p).toFixed(1);
      prev = p;
    }
    sv("path", {d: d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": i === mi ? 2.5 : 1.5, "class": "curve"}, svg);
  });
  legend(svg, ms.map(function (m) { return m.name + " (AP " + fmt(m.summary.pr_auc) + ")"; }), pad + 8, H - pad - 14 * ms.length - 4);
  var rc = $("recall"); rc.innerHTML = "";
  var svg2 = sv("svg", {width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "recall at N"}, rc);
  var ns = Object.keys(ms[0].summary.recall).map(Number);
  var gx = function (i) { return pad + (ns.length > 1 ? i / (ns.length - 1) : 0.5) * (W - pad - 20); };
  axes(svg2, W, H, pad, "N", "Recall@N", ns.map(function (n, i) { return [gx(i), String(n)]; }));
  ms.forEach(function (m, i) {
    var d = ns.map(function (n, j) { var v = m.summary.recall[String(n)]; return (j ? "L" : "M") + gx(j).toFixed(1) + " " + fy(v === null ? 0 : v).toFixed(1); }).join("");
    sv("path", {d: d, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": i === mi ? 2.5 : 1.5, "class": "curve"}, svg2);
    ns.forEach(function (n, j) { var v = m.summary.recall[String(n)]; sv("circle", {cx: gx(j), cy: fy(v === null ? 0 : v), r: 3, fill: COLORS[i % COLORS.length]}, svg2); });
  });
  legend(svg2, ms.map(function (m) { return m.name; }), W - 160, H - pad - 14 * ms.length - 4);
}

function failureList() {
  var m = matcher(), out = [];
  for (var i = 0; i < m.top1.length; i++) { if (m.valid[i] && !m.correct[i] && m.top1[i] >= 0) { out.push(i); } }
  out.sort(function (a, b) { return (m.confidence[b] || -Infinity) - (m.confidence[a] || -Infinity); });
  return out;
}

function failures(more) {
  var box = $("failures"), list = failureList(), m = matcher(), d = drive();
  if (!more) { box.innerHTML = ""; shown = 0; }
  var old = $("more"); if (old) { old.remove(); }
  if (!list.length) { el("p", {"class": "note"}, box, "No wrong predictions for " + m.name + "."); return; }
  list.slice(shown, shown + 48).forEach(function (i) {
    var f = el("div", {"class": "failure", "data-q": i}, box);
    var pair = el("div", {"class": "pair"}, f);
    thumb(d.query_thumb[i], d.query_ids[i], "", pair);
    thumb(D.db.thumb[String(m.top1[i])], dbName(m.top1[i]), "bad", pair);
    el("div", {}, f, d.query_ids[i] + " \u2192 " + dbName(m.top1[i]));
    el("div", {}, f, "confidence " + fmt(m.confidence[i]) + (m.distance[i] !== null ? ", " + fmt(m.distance[i], 1) + " m off" : ""));
    f.addEventListener("click", function () { select(i); });
  });
  shown += 48;
  if (shown < list.length) {
    var b = el("button", {id: "more"}, box, "show more (" + (list.length - shown) + " left)");
    b.addEventListener("click", function () { failures(true); });
  }
}

function detail() {
  var box = $("detail"); box.innerHTML = "";
  var d = drive(), m = matcher();
  if (sel < 0 || sel >= m.top1.length) { el("h2", {}, box, "Query"); el("p", {"class": "note"}, box, "Click a query on the map or in the failure list."); return; }
  var i = sel;
  el("h2", {}, box, "Query " + d.query_ids[i]);
  el("p", {}, box, m.name + ": " + (!m.valid[i] ? "not evaluated (no map image nearby)" : (m.correct[i] ? "correct" : "wrong")) +
     ", confidence " + fmt(m.confidence[i]) + (m.distance[i] !== null ? ", top-1 " + fmt(m.distance[i], 1) + " m away" : ""));
  var row = el("div", {"class": "thumbs"}, box);
  var f1 = el("figure", {}, row); thumb(d.query_thumb[i], d.query_ids[i], "query-img", f1); el("figcaption", {}, f1, "query " + d.query_ids[i]);
  var f2 = el("figure", {}, row);
  thumb(D.db.thumb[String(m.top1[i])], dbName(m.top1[i]), "match-img " + (m.correct[i] ? "ok" : "bad"), f2);
  el("figcaption", {}, f2, "best match " + (m.top1[i] >= 0 ? dbName(m.top1[i]) : "(none)"));
  var t = el("table", {id: "topk"}, box);
  var h = el("tr", {}, t); ["rank", "map image", "", "cost (lower = better)", "positive", "distance"].forEach(function (x) { el("th", {}, h, x); });
  m.cand[i].forEach(function (j, r) {
    if (j < 0) { return; }
    var tr = el("tr", {"data-rank": r + 1}, t);
    el("td", {}, tr, String(r + 1)); el("td", {}, tr, dbName(j));
    var td = el("td", {}, tr); thumb(D.db.thumb[String(j)], dbName(j), m.hit[i][r] === 1 ? "ok" : (m.hit[i][r] === 0 ? "bad" : ""), td);
    el("td", {}, tr, fmt(m.cost[i][r], 4));
    el("td", {}, tr, m.hit[i][r] === 1 ? "yes" : (m.hit[i][r] === 0 ? "no" : "?"));
    var q = d.query_xy ? d.query_xy[i] : null, p = D.db.xy ? D.db.xy[j] : null;
    el("td", {}, tr, (q && p && q[0] !== null && p[0] !== null) ? fmt(Math.hypot(q[0] - p[0], q[1] - p[1]), 1) + " m" : "");
  });
}

function conditions() {
  var sec = $("conditions-section"), box = $("conditions");
  if (D.drives.length < 2) { sec.hidden = true; return; }
  sec.hidden = false; box.innerHTML = "";
  var names = [];
  D.drives.forEach(function (d) { d.matchers.forEach(function (m) { if (names.indexOf(m.name) < 0) { names.push(m.name); } }); });
  var t = el("table", {}, box), h = el("tr", {}, t);
  el("th", {}, h, "matcher \\ drive (R@1 / PR-AUC)");
  D.drives.forEach(function (d, k) {
    var th = el("th", {"class": "drive", "data-d": k}, h, d.name + (k === di ? " \u25c0" : ""));
    th.addEventListener("click", function () { di = k; sel = -1; render(); });
  });
  names.forEach(function (n) {
    var tr = el("tr", {}, t); el("th", {}, tr, n);
    D.drives.forEach(function (d) {
      var m = d.matchers.filter(function (x) { return x.name === n; })[0];
      var r1 = m ? m.summary.recall[Object.keys(m.summary.recall)[0]] : null;
      el("td", {}, tr, m ? fmt(r1) + " / " + fmt(m.summary.pr_auc) : "");
    });
  });
}

function select(i) { sel = i; map(); detail(); }

function render() {
  fillSelects(); conditions(); cards(); map(); curves(); failures(false); detail();
}

$("drive").addEventListener("change", function () { di = Number(this.value); sel = -1; render(); });
$("matcher").addEventListener("change", function () { mi = Number(this.value); render(); });
render();
document.body.setAttribute("data-ready", "1");
})();
"""

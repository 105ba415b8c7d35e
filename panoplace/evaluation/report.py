"""The evaluation report: one self-contained HTML page, plus the PNG plots and the per-query CSV.

:func:`write_report` (one query drive) and :func:`write_drives_report` (several drives, e.g. one
per condition, against one map) write into ``out_dir``:

- ``index.html``: one page with everything inline (CSS, JS, SVG, JSON data and JPEG thumbnails
  as ``data:`` URIs; no CDN, no request to any server), so it works opened from a ``file://``
  URL or served by any web server. It shows

  - a summary card per matcher (Recall@N, PR-AUC, R@100%P, localisation within X m);
  - the map (SVG): database route in grey, queries green (correct) / red (wrong); a click on a
    query opens its detail: the query, its best match and its top-k with the matcher's costs;
  - precision-recall and Recall@N curves (SVG), one line per matcher;
  - a failure browser: the wrong predictions of the chosen matcher, most confident first;
  - with several drives, a condition x matcher table and the drive/condition selector;
  - below, the static PNG plots written beside the page;
- ``pr.png``, ``recall_at_n.png``, ``trajectory.png`` (with positions), ``gallery.png`` (with image
  paths), ``per_query.csv`` and ``metrics.json`` for the first drive; with several drives, the
  same files of every drive in ``<drive>/`` under ``out_dir``.

Every file is written atomically.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import cv2
import numpy as np

from panoplace.atomic import write_text_atomic
from panoplace.errors import InputError
from panoplace.evaluation import plots
from panoplace.evaluation.metrics import EvaluationResult, _fmt, _key
from panoplace.evaluation.report_page import PAGE_SCRIPT, PAGE_STYLE

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
THUMB_WIDTH = 240
THUMB_QUALITY = 80

__all__ = ["Drive", "write_report", "write_drives_report", "THUMB_WIDTH"]


@dataclass
class Drive:
    """One query drive evaluated against the map by one or more matchers.

    name: label of the drive (e.g. its condition).
    results: matcher name → result (same queries, same order).
    query_xy: ``(Q, 2)`` metric positions or None. query_paths: Q image paths or None.
    """

    name: str
    results: Dict[str, EvaluationResult]
    query_xy: Optional[np.ndarray] = None
    query_paths: Optional[Sequence[PathLike]] = None


class _Thumbs:
    """Thumbnails as JPEG ``data:`` URIs, each image encoded once, at most ``limit`` in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.uris: List[str] = []
        self.index: Dict[str, int] = {}
        self.missing = 0

    def add(self, path: Optional[PathLike]) -> int:
        if path is None:
            return -1
        key = str(path)
        if key in self.index:
            return self.index[key]
        if len(self.uris) >= self.limit:
            self.missing += 1
            return -1
        bgr = cv2.imread(key, cv2.IMREAD_COLOR)
        if bgr is None or bgr.size == 0:
            log.warning("report: cannot read image %s; shown without a thumbnail", key)
            self.index[key] = -1
            return -1
        h, w = bgr.shape[:2]
        if w > THUMB_WIDTH:
            bgr = cv2.resize(bgr, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=cv2.INTER_AREA)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
        if not ok:
            self.index[key] = -1
            return -1
        self.uris.append("data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii"))
        self.index[key] = len(self.uris) - 1
        return self.index[key]


def _num(v: Any) -> Any:
    """JSON-safe number (NaN/inf → None), rounded to keep the page small."""
    f = float(v)
    return None if not np.isfinite(f) else round(f, 6)


def _xy(a: Optional[np.ndarray], n: int, what: str) -> Optional[List[List[Any]]]:
    if a is None:
        return None
    a = np.asarray(a, dtype=np.float64)
    if a.shape != (n, 2):
        raise InputError(f"{what} positions have shape {a.shape}, expected ({n}, 2)")
    return [[_num(x), _num(y)] for x, y in a]


def _matcher_data(name: str, r: EvaluationResult, top_k: int) -> Dict[str, Any]:
    pq = r.per_query
    cand = r.candidates if r.candidates is not None else np.asarray(pq["top1_index"], np.int64)[:, None]
    k = min(top_k, cand.shape[1])
    costs = r.candidate_costs[:, :k] if r.candidate_costs is not None else np.full((len(cand), k), np.nan)
    hits = np.full((len(cand), k), -1, dtype=np.int64)  # 1 positive, 0 not, -1 unknown
    if r.candidate_hits is not None:
        hits[:] = r.candidate_hits[:, :k]
    else:
        hits[:, 0] = np.asarray(pq["correct"], bool)
    return {
        "name": name,
        "summary": {"recall": {str(n): _num(v) for n, v in sorted(r.recall.items())},
                    "pr_auc": _num(r.pr_auc), "recall_at_100p": _num(r.recall_at_100p),
                    "n_queries": r.n_queries, "n_total": r.n_total, "n_findable": r.n_findable,
                    "within": {_key(x): _num(v) for x, v in sorted(r.within.items())}},
        "params": r.params,
        "pr": {"recall": [_num(v) for v in r.pr.recall], "precision": [_num(v) for v in r.pr.precision]},
        "top1": np.asarray(pq["top1_index"], np.int64).tolist(),
        "correct": np.asarray(pq["correct"], bool).astype(int).tolist(),
        "valid": np.asarray(pq["valid"], bool).astype(int).tolist(),
        "confidence": [_num(v) for v in pq["confidence"]],
        "distance": [_num(v) for v in pq["distance_m"]],
        "first_hit": np.asarray(pq["first_hit_rank"]).astype(np.int64).tolist(),
        "cand": cand[:, :k].astype(np.int64).tolist(),
        "cost": [[_num(v) for v in row] for row in costs],
        "hit": hits.tolist(),
    }


def _results_table(drives: Sequence[Drive]) -> str:
    """All results as one HTML table (drive, matcher, Recall@N, PR-AUC, R@100%P, within X m)."""
    first = next(iter(drives[0].results.values()))
    ns = sorted(first.recall)
    radii = sorted(first.within)
    head = ["drive", "matcher", "queries"] + [f"R@{n}" for n in ns] + ["PR-AUC", "R@100%P"]
    head += [f"&le;{_key(x)} m" for x in radii]
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for d in drives:
        for name, r in d.results.items():
            cells = [html.escape(d.name), html.escape(name), f"{r.n_queries}/{r.n_total}"]
            cells += [_fmt(r.recall.get(n, float("nan"))) for n in ns]
            cells += [_fmt(r.pr_auc), _fmt(r.recall_at_100p)]
            cells += [_fmt(r.within.get(x, float("nan"))) for x in radii]
            rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<table class=\"results\">\n" + "\n".join(rows) + "\n</table>"


def _slug(name: str, used: set) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "drive"
    base, i = s, 2
    while s in used:
        s, i = f"{base}_{i}", i + 1
    used.add(s)
    return s


def _static_files(folder: Path, drive: Drive, db_xy: Optional[np.ndarray],
                  db_paths: Optional[Sequence[PathLike]], max_gallery: int) -> List[tuple]:
    """The PNG plots, per-query CSV and metrics JSON of one drive; returns (file, caption) of the plots."""
    folder.mkdir(parents=True, exist_ok=True)
    results = drive.results
    first = next(iter(results.values()))
    pq = first.per_query
    top1 = np.asarray(pq["top1_index"], dtype=np.int64)
    correct = np.asarray(pq["correct"], dtype=bool)
    valid = np.asarray(pq["valid"], dtype=bool)
    figures = [("pr.png", "Precision-recall of the top-1 match swept over its confidence"),
               ("recall_at_n.png", "Recall@N")]
    plots.plot_pr_curve(results, folder / "pr.png")
    plots.plot_recall_at_n(results, folder / "recall_at_n.png")
    if drive.query_xy is not None and db_xy is not None:
        plots.plot_trajectory(drive.query_xy, db_xy, top1, correct, folder / "trajectory.png", valid=valid)
        figures.append(("trajectory.png", "Database route (grey), queries correct (green) / wrong (red), "
                                          "red lines to the wrong predicted position"))
    if drive.query_paths is not None and db_paths is not None:
        rows = plots.select_gallery(correct, max_gallery, valid)
        if len(rows):
            plots.plot_gallery([drive.query_paths[i] for i in rows],
                               [db_paths[top1[i]] if top1[i] >= 0 else None for i in rows],
                               correct[rows], folder / "gallery.png",
                               labels=[str(pq["query_id"][i]) for i in rows], max_rows=max_gallery)
            figures.append(("gallery.png", "Query | best match (green = correct, red = wrong)"))
    first.write_csv(folder / "per_query.csv")
    write_text_atomic(folder / "metrics.json",
                      json.dumps({k: v.to_json() for k, v in results.items()}, indent=2, allow_nan=False) + "\n")
    return figures


def write_drives_report(out_dir: PathLike, drives: Sequence[Drive], *, db_xy: Optional[np.ndarray] = None,
                        db_paths: Optional[Sequence[PathLike]] = None, db_ids: Optional[Sequence[str]] = None,
                        title: str = "panoplace evaluation", top_k: int = 5, max_gallery: int = 12,
                        max_thumbnails: int = 4000) -> Path:
    """Write the report of one or more query drives against one map (see the module docstring).

    Args:
        out_dir: folder to write into (created).
        drives: the query drives; each with its results by matcher.
        db_xy: ``(N, 2)`` metric positions of the map, for the map view and distances.
        db_paths: N image paths of the map, for thumbnails and the gallery.
        db_ids: N names shown for map images (default: file names of ``db_paths``, else indices).
        top_k: candidates listed per query in the detail view.
        max_thumbnails: thumbnails embedded at most (queries first, then the map images that
            appear in some top-k); the rest are shown as names only.

    Returns:
        path of ``index.html``.
    """
    if not drives:
        raise InputError("no query drive to report")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_db: Optional[int] = None
    for d in drives:
        if not d.results:
            raise InputError(f"drive {d.name!r} has no results")
        for name, r in d.results.items():
            if not r.per_query:
                raise InputError(f"result {name!r} of drive {d.name!r} has no per-query rows to report")
            n = len(r.per_query["top1_index"])
            if d.query_paths is not None and len(d.query_paths) != n:
                raise InputError(f"{len(d.query_paths)} query image paths for {n} queries")
    if db_xy is not None:
        n_db = len(db_xy)
    elif db_paths is not None:
        n_db = len(db_paths)
    thumbs = _Thumbs(max_thumbnails)
    used: set = set()
    drive_data: List[Dict[str, Any]] = []
    for i, d in enumerate(drives):
        folder = out if i == 0 else out / _slug(d.name, used)
        if i == 0:
            used.add("")
        figures = _static_files(folder, d, db_xy, db_paths, max_gallery)
        prefix = "" if i == 0 else folder.name + "/"
        first = next(iter(d.results.values()))
        q = len(first.per_query["top1_index"])
        qthumb = [thumbs.add(p) for p in d.query_paths] if d.query_paths is not None else [-1] * q
        drive_data.append({
            "name": d.name, "query_ids": [str(x) for x in first.per_query["query_id"]],
            "query_xy": _xy(d.query_xy, q, f"drive {d.name!r} query"), "query_thumb": qthumb,
            "matchers": [_matcher_data(name, r, top_k) for name, r in d.results.items()],
            "figures": [[prefix + f, c] for f, c in figures],
            "files": [prefix + "per_query.csv", prefix + "metrics.json"],
        })
    db_thumb: Dict[int, int] = {}
    if db_paths is not None:
        wanted = sorted({j for dd in drive_data for m in dd["matchers"] for row in m["cand"] for j in row if j >= 0})
        for j in wanted:
            db_thumb[j] = thumbs.add(db_paths[j])
    if thumbs.missing:
        log.warning("report: %d images over the %d-thumbnail limit are shown by name only", thumbs.missing, max_thumbnails)
    if db_ids is None:
        db_ids = [Path(p).name for p in db_paths] if db_paths is not None else None
    data = {
        "title": title,
        "top_k": top_k,
        "db": {"xy": _xy(db_xy, n_db or 0, "database") if db_xy is not None else None,
               "ids": [str(x) for x in db_ids] if db_ids is not None else None,
               "thumb": {str(k): v for k, v in db_thumb.items()}},
        "images": thumbs.uris,
        "drives": drive_data,
    }
    payload = json.dumps(data, allow_nan=False, separators=(",", ":")).replace("</", "<\\/")
    static = "\n".join(
        f'<figure><a href="{html.escape(f)}"><img src="{html.escape(f)}" alt="{html.escape(c)}" loading="lazy"></a>'
        f"<figcaption>{html.escape(d['name'])}: {html.escape(c)}</figcaption></figure>"
        for d in drive_data for f, c in d["figures"])
    links = " ".join(f'<a href="{html.escape(f)}">{html.escape(f)}</a>' for d in drive_data for f in d["files"])
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{PAGE_STYLE}</style>
</head>
<body>
<header><h1>{html.escape(title)}</h1>
<div id="controls"><label>drive <select id="drive"></select></label>
<label>matcher <select id="matcher"></select></label></div></header>
<section id="conditions-section" hidden><h2>Conditions side by side</h2><div id="conditions"></div></section>
<section><h2>Summary</h2><div id="cards"></div>
<p class="note">Recall@N: share of evaluated queries with a correct map image among the first N.
PR-AUC: average precision of the top-1 match swept over its confidence; R@100%P: recall at 100 % precision.
&le;X m: share of queries whose top-1 lies within X metres.</p></section>
<section class="row"><div class="panel"><h2>Map</h2><div id="map"></div>
<p class="note">Grey: map route. Green/red: queries whose top-1 is correct/wrong. Click a query.</p></div>
<div class="panel" id="detail"><h2>Query</h2><p class="note">Click a query on the map or in the failure list.</p></div></section>
<section class="row"><div class="panel"><h2>Precision-recall</h2><div id="pr"></div></div>
<div class="panel"><h2>Recall@N</h2><div id="recall"></div></div></section>
<section><h2>Failures, most confident first</h2><div id="failures"></div></section>
<section><h2>All results</h2>
{_results_table(drives)}
<p class="note">Parameters: <code>{html.escape(json.dumps({d.name: {m: r.params for m, r in d.results.items()} for d in drives}, sort_keys=True))}</code></p></section>
<section><h2>Files</h2><p>{links}</p>
<details><summary>Static plots (PNG files beside this page)</summary>
{static}
</details></section>
<script type="application/json" id="report-data">{payload}</script>
<script>{PAGE_SCRIPT}</script>
</body>
</html>
"""
    path = write_text_atomic(out / "index.html", page)
    log.info("report written to %s", path)
    return path


def write_report(out_dir: PathLike, result: EvaluationResult, *,
                 others: Optional[Mapping[str, EvaluationResult]] = None,
                 query_xy: Optional[np.ndarray] = None, db_xy: Optional[np.ndarray] = None,
                 query_paths: Optional[Sequence[PathLike]] = None,
                 db_paths: Optional[Sequence[PathLike]] = None,
                 title: str = "panoplace evaluation", max_gallery: int = 12, top_k: int = 5) -> Path:
    """Write the report of one query drive (``result`` and optional ``others`` to compare).

    Args:
        out_dir: folder to write into (created).
        result: the main result (its per-query rows give the PNG trajectory and gallery).
        others: more results by name, on the same queries, shown beside it.
        query_xy, db_xy: ``(Q, 2)`` / ``(N, 2)`` metric positions for the map.
        query_paths, db_paths: Q / N image paths for the thumbnails and the gallery.
        max_gallery: rows of the PNG gallery. top_k: candidates listed per query.

    Returns:
        path of ``index.html``.
    """
    if not result.per_query:
        raise InputError("the result has no per-query rows to report")
    name = result.matcher or "result"
    results = {name: result}
    for k, v in (others or {}).items():
        results[k if k not in results else f"{k} (2)"] = v
    return write_drives_report(out_dir, [Drive("queries", results, query_xy, query_paths)], db_xy=db_xy,
                               db_paths=db_paths, title=title, top_k=top_k, max_gallery=max_gallery)

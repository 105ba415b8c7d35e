"""One-folder HTML report of an evaluation: metrics table, plots and the per-query CSV.

:func:`write_report` writes into ``out_dir``:

- ``index.html``: the metrics table, the plots (linked ``<img>``), a link to the CSV;
- ``pr.png`` (precision-recall), ``recall_at_n.png``;
- ``trajectory.png`` when query and database positions are given;
- ``gallery.png`` (query | best match, up to ``max_gallery`` rows) when image paths are given;
- ``per_query.csv`` and ``metrics.json``.

Every file is written atomically (temp file + ``os.replace``).
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Union

import numpy as np

from panoplace.errors import InputError
from panoplace.evaluation import plots
from panoplace.atomic import write_text_atomic
from panoplace.evaluation.metrics import EvaluationResult, _fmt, _key

log = logging.getLogger(__name__)

PathLike = Union[str, Path]

__all__ = ["write_report"]


def _metrics_rows(results: Mapping[str, EvaluationResult]) -> str:
    first = next(iter(results.values()))
    ns = sorted(first.recall)
    radii = sorted(first.within)
    head = ["matcher", "queries"] + [f"R@{n}" for n in ns] + ["PR-AUC", "R@100%P"]
    head += [f"&le;{_key(x)} m (FPR)" for x in radii]
    rows = ["<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for name, r in results.items():
        cells = [html.escape(name), f"{r.n_queries}/{r.n_total}"]
        cells += [_fmt(r.recall.get(n, float("nan"))) for n in ns]
        cells += [_fmt(r.pr_auc), _fmt(r.recall_at_100p)]
        cells += [f"{_fmt(r.within.get(x, float('nan')))} ({_fmt(r.false_positive_rate.get(x, float('nan')))})"
                  for x in radii]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "\n".join(rows)


def write_report(out_dir: PathLike, result: EvaluationResult, *,
                 others: Optional[Mapping[str, EvaluationResult]] = None,
                 query_xy: Optional[np.ndarray] = None, db_xy: Optional[np.ndarray] = None,
                 query_paths: Optional[Sequence[PathLike]] = None,
                 db_paths: Optional[Sequence[PathLike]] = None,
                 title: str = "panoplace evaluation", max_gallery: int = 12) -> Path:
    """Write the HTML report of ``result`` (and optional other results for comparison).

    Args:
        out_dir: folder to write into (created).
        result: the main result (its per-query rows give the trajectory and gallery).
        others: more results by name, drawn in the same PR and Recall@N plots and table.
        query_xy, db_xy: ``(Q, 2)`` / ``(N, 2)`` metric positions for the trajectory map.
        query_paths, db_paths: Q / N image paths for the gallery.
        max_gallery: rows of the gallery.

    Returns:
        path of ``index.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq = result.per_query
    if not pq:
        raise InputError("the result has no per-query rows to report")
    name = result.matcher or "result"
    results = {name: result}
    for k, v in (others or {}).items():
        results[k if k not in results else f"{k} (2)"] = v
    top1 = np.asarray(pq["top1_index"], dtype=np.int64)
    correct = np.asarray(pq["correct"], dtype=bool)
    valid = np.asarray(pq["valid"], dtype=bool)

    figures: List[tuple] = []
    plots.plot_pr_curve(results, out / "pr.png")
    figures.append(("pr.png", "Precision-recall of the top-1 match swept over its confidence"))
    plots.plot_recall_at_n(results, out / "recall_at_n.png")
    figures.append(("recall_at_n.png", "Recall@N"))
    if query_xy is not None and db_xy is not None:
        plots.plot_trajectory(query_xy, db_xy, top1, correct, out / "trajectory.png", valid=valid)
        figures.append(("trajectory.png", "Database route (grey), queries correct (green) / wrong (red), "
                                          "red lines to the wrong predicted position"))
    if query_paths is not None and db_paths is not None:
        if len(query_paths) != len(top1):
            raise InputError(f"{len(query_paths)} query image paths for {len(top1)} queries")
        rows = plots.select_gallery(correct, max_gallery, valid)
        if len(rows):
            plots.plot_gallery([query_paths[i] for i in rows],
                               [db_paths[top1[i]] if top1[i] >= 0 else None for i in rows],
                               correct[rows], out / "gallery.png",
                               labels=[str(pq["query_id"][i]) for i in rows], max_rows=max_gallery)
            figures.append(("gallery.png", "Query | best match (green = correct, red = wrong)"))
    result.write_csv(out / "per_query.csv")
    write_text_atomic(out / "metrics.json",
                       json.dumps({k: v.to_json() for k, v in results.items()}, indent=2, allow_nan=False) + "\n")

    params = html.escape(json.dumps(result.params, sort_keys=True))
    figs = "\n".join(f'<figure><img src="{f}" alt="{html.escape(c)}"><figcaption>{html.escape(c)}'
                     f"</figcaption></figure>" for f, c in figures)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }}
th {{ background: #eee; }}
figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
figure img {{ max-width: 32em; }}
figcaption {{ font-size: 0.85em; color: #444; max-width: 32em; }}
code {{ font-size: 0.85em; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
<p>Matcher <b>{html.escape(name)}</b>; parameters <code>{params}</code>.</p>
<table>
{_metrics_rows(results)}
</table>
<p>Recall@N: fraction of evaluated queries with a correct database image among the first N.
PR-AUC: average precision of the top-1 match over its confidence; R@100%P: recall at 100 % precision.
&le;X m: fraction of queries whose top-1 lies within X metres (FPR: confident predictions farther than X).</p>
<p>Per-query rows: <a href="per_query.csv">per_query.csv</a>; all metrics: <a href="metrics.json">metrics.json</a>.</p>
{figs}
</body>
</html>
"""
    path = write_text_atomic(out / "index.html", page)
    log.info("report written to %s", path)
    return path

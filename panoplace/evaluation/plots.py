"""Evaluation plots (matplotlib, Agg canvas: no display, no pyplot global state).

Every function writes one PNG atomically (temp file in the same folder + ``os.replace``) and
returns its path.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from panoplace.atomic import atomic_path
from panoplace.errors import InputError
from panoplace.evaluation.metrics import EvaluationResult

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
Results = Union[EvaluationResult, Mapping[str, EvaluationResult]]

GREEN = "#1a9850"
RED = "#d73027"
GREY = "#9e9e9e"

__all__ = ["plot_gallery", "plot_pr_curve", "plot_recall_at_n", "plot_trajectory", "save_figure",
           "select_gallery"]


def save_figure(fig: Figure, path: PathLike, dpi: int = 110) -> Path:
    """Render ``fig`` to a PNG at ``path`` atomically."""
    FigureCanvasAgg(fig)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return Path(path)


def _named(results: Results) -> Mapping[str, EvaluationResult]:
    if isinstance(results, EvaluationResult):
        return {results.matcher or "result": results}
    if not results:
        raise InputError("no results to plot")
    return results


def plot_pr_curve(results: Results, path: PathLike, title: str = "Precision-recall") -> Path:
    """Precision against recall of one or several results (legend shows PR-AUC)."""
    fig = Figure(figsize=(5, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for name, r in _named(results).items():
        rec = np.concatenate([[0.0], r.pr.recall])
        prec = np.concatenate([[1.0], r.pr.precision])
        auc = "n/a" if not np.isfinite(r.pr_auc) else f"{r.pr_auc:.3f}"
        ax.step(rec, prec, where="post", label=f"{name} (AP {auc})")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_recall_at_n(results: Results, path: PathLike, title: str = "Recall@N") -> Path:
    """Recall@N against N (log-scaled N axis) of one or several results."""
    fig = Figure(figsize=(5, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    for name, r in _named(results).items():
        ns = sorted(r.recall)
        ax.plot(ns, [r.recall[n] for n in ns], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("N (candidates)")
    ax.set_ylabel("Recall@N")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_trajectory(query_xy: np.ndarray, db_xy: np.ndarray, top1: np.ndarray, correct: np.ndarray,
                    path: PathLike, valid: Optional[np.ndarray] = None,
                    title: str = "Localisation") -> Path:
    """Map of the database route (grey), queries (green correct / red wrong) and a line from
    each wrong query to its predicted database position.

    Shape:
        query_xy: ``(Q, 2)`` metres; db_xy: ``(N, 2)``; top1: int ``(Q,)`` (``-1`` = none);
        correct: bool ``(Q,)``; valid: optional bool ``(Q,)`` (invalid queries drawn hollow).
    """
    q = np.asarray(query_xy, dtype=np.float64)
    d = np.asarray(db_xy, dtype=np.float64)
    top1 = np.asarray(top1, dtype=np.int64)
    ok = np.asarray(correct, dtype=bool)
    if q.ndim != 2 or q.shape[1] != 2 or d.ndim != 2 or d.shape[1] != 2:
        raise InputError(f"positions must be (Q, 2) and (N, 2), got {q.shape} and {d.shape}")
    if top1.shape != (len(q),) or ok.shape != (len(q),):
        raise InputError(f"top1 and correct must have shape ({len(q)},)")
    val = np.ones(len(q), bool) if valid is None else np.asarray(valid, dtype=bool)
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(d[:, 0], d[:, 1], s=6, c=GREY, label="database", zorder=1)
    has = top1 >= 0
    wrong = val & has & ~ok
    if wrong.any():
        segs = np.stack([q[wrong], d[top1[wrong]]], axis=1)
        ax.add_collection(LineCollection(list(segs), colors=RED, linewidths=0.6, alpha=0.6, zorder=2))
    right = val & ok
    ax.scatter(q[right, 0], q[right, 1], s=10, c=GREEN, label=f"correct ({int(right.sum())})", zorder=3)
    miss = val & ~ok
    ax.scatter(q[miss, 0], q[miss, 1], s=10, c=RED, label=f"wrong ({int(miss.sum())})", zorder=4)
    if (~val).any():
        ax.scatter(q[~val, 0], q[~val, 1], s=10, facecolors="none", edgecolors="k",
                   label=f"not evaluated ({int((~val).sum())})", zorder=3)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x / east (m)")
    ax.set_ylabel("y / north (m)")
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def select_gallery(correct: np.ndarray, max_rows: int = 12, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Query indices for a gallery: up to half wrong and the rest correct, evenly spread
    over the sequence. int64 ``(<= max_rows,)`` in query order."""
    ok = np.asarray(correct, dtype=bool)
    val = np.ones(len(ok), bool) if valid is None else np.asarray(valid, dtype=bool)
    wrong = np.flatnonzero(val & ~ok)
    right = np.flatnonzero(val & ok)

    def spread(idx: np.ndarray, n: int) -> np.ndarray:
        if n <= 0 or len(idx) == 0:
            return idx[:0]
        if len(idx) <= n:
            return idx
        return idx[np.linspace(0, len(idx) - 1, n).round().astype(np.int64)]

    w = spread(wrong, min(len(wrong), max_rows // 2))
    r = spread(right, max_rows - len(w))
    if len(w) + len(r) < max_rows:
        w = spread(wrong, max_rows - len(r))
    return np.sort(np.concatenate([w, r])).astype(np.int64)


def _load_rgb(path: Optional[PathLike]) -> Optional[np.ndarray]:
    if path is None:
        return None
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        log.warning("gallery: cannot read %s", path)
        return None
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def plot_gallery(query_paths: Sequence[PathLike], match_paths: Sequence[Optional[PathLike]],
                 correct: Sequence[bool], path: PathLike, labels: Optional[Sequence[str]] = None,
                 max_rows: int = 12, title: str = "Query | best match") -> Path:
    """Rows of query image | best-match image, bordered green (correct) or red (wrong).

    Args:
        query_paths, match_paths, correct: one entry per row (a None match = no prediction);
            only the first ``max_rows`` rows are drawn (pick them with :func:`select_gallery`).
        labels: optional caption per row.
    """
    n = min(len(query_paths), int(max_rows))
    if len(match_paths) < n or len(correct) < n:
        raise InputError("gallery: query_paths, match_paths and correct must have the same length")
    if n == 0:
        raise InputError("gallery: no rows to draw")
    first = next((im for im in (_load_rgb(q) for q in query_paths[:n]) if im is not None), None)
    row_h = 1.9 if first is None else min(3.4, max(0.8, 3.3 * first.shape[0] / first.shape[1]))
    fig = Figure(figsize=(7, row_h * n + 0.4))
    for i in range(n):
        colour = GREEN if bool(correct[i]) else RED
        for col, p in enumerate((query_paths[i], match_paths[i])):
            ax = fig.add_subplot(n, 2, 2 * i + col + 1)
            img = _load_rgb(p)
            if img is None:
                ax.imshow(np.full((8, 16, 3), 200, np.uint8))
                ax.text(0.5, 0.5, "no image" if p is None else "unreadable", ha="center", va="center",
                        transform=ax.transAxes, fontsize=8)
            else:
                ax.imshow(img, aspect="equal")  # keep the image's shape (annular images are square)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(4)
            if col == 0 and labels is not None:
                ax.set_ylabel(str(labels[i]), fontsize=7, rotation=0, ha="right", va="center")
            if i == 0:
                ax.set_title("query" if col == 0 else "best match", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / (row_h * n + 0.4)))
    return save_figure(fig, path)

"""The ``pca`` step: PCA-whitening fitted on database descriptors, stored in the model checkpoint
(optionally with Recall@N before/after at several dimensions)."""

from __future__ import annotations

import json as jsonlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from panoplace.atomic import write_text_atomic
from panoplace.data import GroundTruth, load_pair
from panoplace.errors import DatasetError, InputError
from panoplace.steps.resolve import PathLike
from panoplace.store import check_compatible, load_descriptors
from panoplace.training.pca import DEFAULT_MAX_SAMPLES, pca_recall_table, whiten_checkpoint
from panoplace.outputs import Output, claim, given, output_file

log = logging.getLogger(__name__)

__all__ = ["PcaResult", "pca"]

RecallTable = Dict[Optional[int], Dict[int, float]]


@dataclass
class PcaResult:
    """checkpoint: the whitened model. mean ``(D,)``, components ``(dim, D)``: the whitening.
    recall: ``{dims or None (no whitening): {N: Recall@N}}`` when evaluated, else None; recall_ns:
    its N."""

    checkpoint: Path
    mean: np.ndarray
    components: np.ndarray
    recall: Optional[RecallTable] = None
    recall_ns: Sequence[int] = (1, 5, 10)

    def table(self) -> str:
        """The recall table as text (one row per whitening dimension, ``none`` first)."""
        if self.recall is None:
            return ""
        dims = sorted((d for d in self.recall if d is not None), reverse=True)
        ns = list(self.recall_ns)
        lines = ["whitening  " + "  ".join(f"R@{n:<4d}" for n in ns)]
        for d in [None] + dims:
            name = "none" if d is None else str(d)
            lines.append(f"{name:<10} " + "  ".join(f"{self.recall[d][n]:.3f} " for n in ns))
        return "\n".join(lines) + "\n"


def pca(database: PathLike, checkpoint: PathLike, dim: int, out: PathLike, *,
        max_samples: Optional[int] = DEFAULT_MAX_SAMPLES, seed: int = 0, queries: Optional[PathLike] = None,
        db_set: Optional[PathLike] = None, query_set: Optional[PathLike] = None, radius: float = 25.0,
        eval_dims: Optional[Sequence[int]] = None, recall: Sequence[int] = (1, 5, 10),
        json: Optional[PathLike] = None) -> PcaResult:
    """Fit PCA-whitening to ``dim`` dimensions on the store ``database`` (extracted with
    ``checkpoint``) and save the model with it to ``out``.

    Args:
        max_samples, seed: fit on at most that many descriptors drawn at random.
        queries, db_set, query_set: to measure Recall@N (``recall``) without whitening and with
            whitening at each of ``eval_dims`` (default 4096, 512, 128 and ``dim``): a query store
            of the same checkpoint and the datasets with positions (positives within ``radius`` m).
        json: write the recall table as JSON.

    Returns:
        :class:`PcaResult`.
    """
    with claim([Output(Path(out), "out"), output_file(json, "json")], given(database, checkpoint, queries),
               overwrite=True):
        wanted = [queries, db_set, query_set]
        if any(w is not None for w in wanted) and not all(w is not None for w in wanted):
            raise InputError("evaluation needs all of --queries, --db-set and --query-set")
        path, mean, comps = whiten_checkpoint(checkpoint, database, dim, out, max_samples=max_samples, seed=seed)
        log.info("whitened model (%d dims) -> %s", dim, path)
        result = PcaResult(Path(path), mean, comps, recall_ns=list(recall))
        if queries is not None and db_set is not None and query_set is not None:
            db = load_descriptors(database)
            q = load_descriptors(queries)
            check_compatible(q, db)
            pair = load_pair(db_set, query_set, radius=radius)
            if pair.queries is None or pair.database.xy is None or pair.queries.xy is None:
                raise DatasetError(f"{db_set} and {query_set} need positions for the recall table")
            db_xy = pair.database.xy[pair.database.rows_for(db.ids)]
            q_xy = pair.queries.xy[pair.queries.rows_for(q.ids)]
            gt = GroundTruth.from_positions(db_xy, q_xy, radius)
            dims = eval_dims or sorted({4096, 512, 128, dim}, reverse=True)
            result.recall = pca_recall_table(db.descriptors, q.descriptors, gt, dims, ns=recall,
                                             max_samples=max_samples, seed=seed)
            if json:
                write_text_atomic(json, jsonlib.dumps(
                    {("none" if d is None else str(d)): {str(n): r for n, r in rec.items()}
                     for d, rec in result.recall.items()}, indent=2) + "\n")
        return result

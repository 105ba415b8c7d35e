"""The ``evaluate`` step: query + database descriptors + a dataset's ground truth → metrics
(Recall@N, PR-AUC, localised within X m), optionally JSON, a per-query CSV and an HTML report."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from panoplace.data import Dataset, GroundTruth, ImageSet, load_dataset
from panoplace.errors import DatasetError, InputError
from panoplace.evaluation.metrics import DEFAULT_NS, DEFAULT_RADII, EvaluationResult
from panoplace.evaluation.pipeline import evaluate_differences
from panoplace.evaluation.report import write_report
from panoplace.steps.resolve import PathLike
from panoplace.outputs import claim, given, output_file
from panoplace.steps.stores import Stores, check_combination, pair_differences, store_items, store_pairs
from panoplace.store import DescriptorSet

log = logging.getLogger(__name__)

__all__ = ["align_to_images", "evaluate"]


def align_to_images(store: DescriptorSet, imageset: ImageSet, what: str) -> Tuple[np.ndarray, List[str]]:
    """Descriptors of ``store`` in the order of ``imageset`` (every image must be in the store).

    Shape:
        returns ``(len(imageset), ...)`` descriptors and their ids.
    """
    rows = imageset.rows_for(store.ids)
    n = len(imageset)
    if len(rows) != n or len(np.unique(rows)) != n:
        have = np.zeros(n, dtype=bool)
        have[rows] = True
        if have.all():
            raise DatasetError(f"the {what} store lists some of the dataset's {n} images more than once")
        first = imageset.paths[int(np.flatnonzero(~have)[0])]
        raise DatasetError(f"the {what} store has {len(store)} descriptors but the dataset has {n} {what} "
                           f"images ({int((~have).sum())} missing, first: {first})")
    order = np.argsort(rows, kind="stable")
    return store.descriptors[order], [store.ids[i] for i in order]


def evaluate(query: Stores, database: Stores, dataset: Union[str, Path, Dataset], *, matcher: str = "single",
             ds: int = 10, mode: str = "offline", vmin: float = 0.8, vmax: float = 1.2,
             radius: Optional[float] = None, within: Sequence[float] = DEFAULT_RADII,
             fp_threshold: Optional[float] = None, recall_n: Sequence[int] = DEFAULT_NS,
             report: Optional[PathLike] = None, csv: Optional[PathLike] = None, json: Optional[PathLike] = None,
             matcher_options: Optional[Mapping[str, Any]] = None, weights: Optional[Sequence[float]] = None,
             standardise_columns: bool = False) -> EvaluationResult:
    """Match the queries to the database and measure the result against the dataset's ground truth.

    Args:
        query, database: descriptor stores (``.h5``) or :class:`~panoplace.store.DescriptorSet`\\ s
            of the same model (or pixel size); every image of the dataset's queries/database must be
            in them. Place descriptors are compared by cosine distance, pixel descriptors
            (``extract --descriptor pixels``) by mean absolute difference. Lists of stores are pairs
            (query i with database i) combined into one difference matrix: each pair's rows
            z-scored, then summed (:func:`panoplace.matching.differences.combined_differences`).
        weights: one per pair (default all 1), for several pairs.
        standardise_columns: z-score every database column of the (combined) matrix over all
            queries, which removes "hub" frames; offline mode only.
        dataset: a dataset spec (:func:`panoplace.data.load_dataset`) or a
            :class:`~panoplace.data.Dataset` with queries and ground truth.
        matcher: ``single`` or a sequence matcher (``seqslam``, ``hmm``, ``seqslam_classic``) over
            ``ds`` frames, ``mode`` offline or online, speeds ``vmin``..``vmax``.
        radius: metres: positives are the database images this close (default: the dataset's own).
        within, fp_threshold, recall_n: the fraction localised within X m (and its false-positive
            rate above ``fp_threshold`` confidence) and the N of Recall@N.
        report, csv, json: an HTML report folder, a per-query CSV, the metrics as JSON.
        matcher_options: further parameters of the sequence matcher (e.g. ``enhance_window``), see
            :func:`panoplace.matching.sequence.match_sequence`.

    Returns:
        :class:`~panoplace.evaluation.metrics.EvaluationResult` (``.summary()`` is the table).

    Shape:
        every store ``(n, D)`` (or ``(n, K, D)``) with ``n`` >= the dataset's images of its side;
        the difference matrix matched is ``(Q, N)`` in the dataset's order.

    Example (a 4-frame route; query i was taken at database frame i):
        >>> import numpy as np
        >>> from panoplace.data import Dataset, GroundTruth, ImageSet
        >>> from panoplace.steps import evaluate
        >>> from panoplace.store import DescriptorSet
        >>> xy = np.array([[0.0, 0], [20, 0], [40, 0], [60, 0]])
        >>> db = ImageSet("db", ".", [f"db/{i}.png" for i in range(4)], xy=xy)
        >>> q = ImageSet("q", ".", [f"q/{i}.png" for i in range(4)], xy=xy + 1)
        >>> data = Dataset(db, q, GroundTruth.from_positions(db.xy, q.xy, radius=5))
        >>> x = np.eye(4, dtype=np.float32)
        >>> r = evaluate(DescriptorSet(x, q.paths, {}, "w"), DescriptorSet(x, db.paths, {}, "w"), data)
        >>> r.recall[1]
        1.0

    Two pairs combined (the second, alone, would rank query 0 at database 1):
        >>> y = np.eye(4, dtype=np.float32)[[1, 1, 2, 3]]
        >>> r = evaluate([DescriptorSet(x, q.paths, {}, "w"), DescriptorSet(y, q.paths, {}, "v")],
        ...              [DescriptorSet(x, db.paths, {}, "w"), DescriptorSet(np.eye(4, dtype=np.float32), db.paths,
        ...                                                                  {}, "v")], data, weights=[2, 1])
        >>> r.recall[1]
        1.0
    """
    with claim([output_file(csv, "csv"), output_file(json, "json"), output_file(report, "report", folder=True)],
               given(*store_items(query), *store_items(database)), overwrite=True):
        if ds < 1:
            raise InputError(f"--ds must be >= 1, got {ds}")
        pairs = store_pairs(query, database)
        check_combination(len(pairs), weights, standardise_columns, mode)
        data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
        if data.queries is None or data.ground_truth is None:
            raise DatasetError(f"dataset {dataset} has no queries and ground truth; give a spec with both "
                               f"(e.g. DB.csv,QUERIES.csv or aligned:DB_DIR,QUERY_DIR)")
        gt = data.ground_truth
        if radius is not None:
            if radius <= 0:
                raise InputError(f"--radius must be > 0 metres, got {radius}")
            if data.database.xy is None or data.queries.xy is None:
                raise DatasetError("--radius needs positions for both database and query images")
            gt = GroundTruth.from_positions(data.database.xy, data.queries.xy, radius, valid=gt.valid)
        aligned: List[Tuple[DescriptorSet, DescriptorSet]] = []
        for i, (q_set, d_set) in enumerate(pairs):
            nth = f" #{i + 1}" if len(pairs) > 1 else ""
            q_desc, q_ids = align_to_images(q_set, data.queries, "query" + nth)
            d_desc, d_ids = align_to_images(d_set, data.database, "database" + nth)
            if aligned:  # in the dataset's order like the first pair: the same images, whatever the ids' spelling
                q_ids, d_ids = aligned[0][0].ids, aligned[0][1].ids
            aligned.append((DescriptorSet(q_desc, q_ids, q_set.config, q_set.fingerprint),
                            DescriptorSet(d_desc, d_ids, d_set.config, d_set.fingerprint)))
        D = pair_differences(aligned, weights, standardise_columns)
        log.info("difference matrix %d x %d from %d store pair(s)%s; matcher %s", *D.shape, len(pairs),
                 ", columns standardised" if standardise_columns else "", matcher)
        q_ids, d_ids = aligned[0][0].ids, aligned[0][1].ids
        result = evaluate_differences(
            D, gt, matcher, ds=ds, mode=mode, vmin=vmin, vmax=vmax,
            query_ids=q_ids, db_ids=d_ids, query_xy=data.queries.xy, db_xy=data.database.xy,
            ns=recall_n, radii=within, fp_threshold=fp_threshold, **dict(matcher_options or {}))
        if json:
            log.info("metrics → %s", result.write_json(json))
        if csv:
            log.info("per-query rows → %s", result.write_csv(csv))
        if report:
            name = dataset if isinstance(dataset, (str, Path)) else "a dataset"
            page = write_report(report, result, query_xy=data.queries.xy, db_xy=data.database.xy,
                                query_paths=[str(p) for p in data.queries.abs_paths()],
                                db_paths=[str(p) for p in data.database.abs_paths()],
                                title=f"panoplace evaluate: {matcher} on {name}")
            log.info("report → %s", page)
        return result

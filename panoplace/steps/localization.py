"""The ``localize`` step: where were the queries taken? Top-k database places per query (or
sequence matching over an ordered traverse), with confidence, heading and positions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from panoplace.config import PipelineConfig
from panoplace.data import load_dataset
from panoplace.data.frames import ImageSet
from panoplace.errors import InputError
from panoplace.extract import extract as run_extraction
from panoplace.index import PlaceIndex, load_index
from panoplace.matching.retrieval import (
    DEFAULT_PLACE_RADIUS,
    Retrieval,
    prediction_rows,
    retrieve,
    retrieve_sequence,
    write_predictions,
)
from panoplace.matching.scene_rerank import SceneEvidence
from panoplace.matching.sequence import match_sequence
from panoplace.pixels import PixelConfig, PixelModel
from panoplace.scene.predict import scene_probs_from_csv
from panoplace.steps.resolve import PathLike, image_list, place_model
from panoplace.outputs import claim, given, output_file
from panoplace.steps.stores import (StoreLike, Stores, check_combination, in_order, pair_differences, store_items,
                                   store_list, store_pairs)
from panoplace.store import PIXELS, DescriptorSet, is_sharded_store, load_descriptors

log = logging.getLogger(__name__)

__all__ = ["Localization", "describe_queries", "localize", "scene_evidence"]

STORE_SUFFIXES = (".h5", ".hdf5")
SCENE_MODES = ("rerank", "filter")


@dataclass
class Localization:
    """What :func:`localize` found.

    query_ids, database_ids: the ids of the query rows and of the index rows.
    retrieval: scores, database rows, confidence, headings (:class:`~panoplace.matching.retrieval.Retrieval`).
    rows: one dict per (query, rank), the columns of the predictions CSV.
    method: how the queries were matched (``retrieval``, ``sequence matching (hmm)``, ...).
    """

    query_ids: List[str]
    database_ids: List[str]
    retrieval: Retrieval
    rows: List[Dict[str, object]]
    method: str

    def summary(self) -> str:
        """One line: how many queries, how, and the median confidence."""
        return (f"localised {len(self.query_ids)} queries against {len(self.database_ids)} database images by "
                f"{self.method}; median confidence {float(np.median(self.retrieval.confidence)):.3f}")


def describe_queries(source: Union[PathLike, ImageSet], index: PlaceIndex, checkpoint: Optional[PathLike] = None,
                     batch_size: int = 8, device: str = "auto", progress: bool = True) -> DescriptorSet:
    """Describe query images with the model and panorama config the index was built from.

    Args:
        source: an image file, a folder of images, a ``.txt`` list or a dataset CSV.
        checkpoint: the model checkpoint (needed for NetVLAD; without one the model is rebuilt
            from the index's config, which works for pretrained GeM/avg/max pipelines).

    Returns:
        the query :class:`DescriptorSet` (not yet checked against the index).
    """
    pipeline = PipelineConfig.from_dict(index.config) if index.config else None
    root, paths = image_list(source)
    if checkpoint is not None:
        model, panorama = place_model(checkpoint, panorama=pipeline.panorama if pipeline else None)
    else:
        model, panorama = place_model(pipeline=pipeline)
    return run_extraction(root, paths, model, panorama, batch_size=batch_size, device=device,
                          progress=progress).descriptors


def scene_evidence(scenes: Optional[PathLike], database_scenes: Optional[PathLike], query_ids: Sequence[str],
                   database_ids: Sequence[str], weight: float = 0.1, mode: str = "rerank",
                   sequence: bool = False) -> Optional[SceneEvidence]:
    """The :class:`SceneEvidence` of the query and database scene CSVs (``scene predict``), or
    None without them. ``mode``: ``rerank`` (Bhattacharyya agreement) or ``filter`` (top-1)."""
    if scenes is None and database_scenes is None:
        return None
    if scenes is None or database_scenes is None:
        raise InputError("scene re-ranking needs both --scenes (queries) and --database-scenes (database)")
    if sequence:
        raise InputError("scene re-ranking works on frame-by-frame retrieval; leave out --sequence")
    if not np.isfinite(weight) or weight < 0:
        raise InputError(f"--scene-weight must be a number >= 0, got {weight}")
    if mode not in SCENE_MODES:
        raise InputError(f"unknown scene mode {mode!r}; choose one of {', '.join(SCENE_MODES)}")
    db_probs, categories = scene_probs_from_csv(database_scenes, list(database_ids))
    q_probs, _ = scene_probs_from_csv(scenes, list(query_ids), categories)
    kind = "top1" if mode == "filter" else "bhattacharyya"
    return SceneEvidence(q_probs, db_probs, weight=weight, kind=kind, mode=mode)


def _is_store(item: Union[StoreLike, ImageSet]) -> bool:
    if isinstance(item, DescriptorSet):
        return True
    if isinstance(item, ImageSet):
        return False
    return Path(item).suffix.lower() in STORE_SUFFIXES or is_sharded_store(item)


def _dense_queries(item: Union[StoreLike, ImageSet], database: DescriptorSet, batch_size: int,
                   progress: bool) -> DescriptorSet:
    """A query store of a pair: a store as given, or images described like the pair's database store
    (pixel stores only: they need no model)."""
    if isinstance(item, DescriptorSet):
        return item
    if _is_store(item):
        return load_descriptors(item)  # type: ignore[arg-type]
    if database.kind != PIXELS:
        raise InputError("query images with database stores: only pixel stores describe them here; describe the "
                         "images with `panoplace extract` (the database's model) and give their store")
    if not isinstance(item, ImageSet) and not Path(item).exists():
        raise InputError(f"no such query file or folder: {item}")
    root, paths = image_list(item)
    pano = PipelineConfig.from_dict({"panorama": database.config.get("panorama", {})}).panorama
    model = PixelModel(PixelConfig.from_dict(database.config[PIXELS]))
    return run_extraction(root, paths, model, pano, batch_size=batch_size, device="cpu",
                          progress=progress).descriptors


def _dense_match(database: Stores, queries: Union[Stores, ImageSet], k: int, sequence: Optional[str], ds: int,
                 mode: str, weights: Optional[Sequence[float]], standardise_columns: bool, batch_size: int,
                 progress: bool) -> Tuple[List[str], List[str], Retrieval]:
    """Match query stores to database stores through their full (combined) difference matrix."""
    db_sets = store_list(database)
    q_items = [queries] if isinstance(queries, (str, Path, DescriptorSet, ImageSet)) else list(queries)
    if len(q_items) != len(db_sets):
        raise InputError(f"{len(q_items)} query input(s) but {len(db_sets)} database store(s): give them in pairs")
    q_sets = [_dense_queries(q, d, batch_size, progress) for q, d in zip(q_items, db_sets)]
    pairs = store_pairs(q_sets, db_sets)
    check_combination(len(pairs), weights, standardise_columns, mode)
    q0, d0 = pairs[0]
    pairs = [pairs[0]] + [(in_order(q, q0.ids, f"query #{i}"), in_order(d, d0.ids, f"database #{i}"))
                          for i, (q, d) in enumerate(pairs[1:], start=2)]
    D = pair_differences(pairs, weights, standardise_columns)
    match = match_sequence(D, method=sequence or "single", ds=ds, mode=mode, return_scores=True)
    ids = match.ranked(min(int(k), D.shape[1]))
    rows = np.arange(len(ids))[:, None]
    scores = np.where(ids >= 0, -D[rows, np.maximum(ids, 0)], -np.inf).astype(np.float32)
    return q0.ids, d0.ids, Retrieval(scores, ids, np.asarray(match.confidence, np.float32), None)


def localize(index: Union[PathLike, PlaceIndex, None] = None,
             queries: Union[PathLike, DescriptorSet, ImageSet, Sequence[StoreLike], None] = None,
             out: Union[PathLike, IO[str], None] = None, *, k: int = 5,
             database_set: Union[str, Path, ImageSet, None] = None,
             place_radius: float = DEFAULT_PLACE_RADIUS, nprobe: Optional[int] = None, rotation: bool = True,
             scenes: Optional[PathLike] = None, database_scenes: Optional[PathLike] = None,
             scene_weight: float = 0.1, scene_mode: str = "rerank", sequence: Optional[str] = None,
             ds: int = 10, mode: str = "offline", checkpoint: Optional[PathLike] = None, batch_size: int = 8,
             device: str = "auto", progress: bool = True, database: Optional[Stores] = None,
             weights: Optional[Sequence[float]] = None, standardise_columns: bool = False) -> Localization:
    """Localise queries against an index (or database stores); write the predictions CSV to ``out`` when given.

    Args:
        index: an index file (``index`` step) or a :class:`~panoplace.index.PlaceIndex`
            (``nprobe`` changes it in place).
        queries: a descriptor store (``.h5`` or a sharded store folder), a :class:`~panoplace.store.DescriptorSet`, or
            images (a file, folder, ``.txt`` list or dataset CSV) described with the index's model
            config and ``checkpoint`` (needed for NetVLAD).
        out: CSV path (written atomically) or an open text stream.
        database_set: the database's dataset (spec or :class:`ImageSet`): positions in the CSV and
            the different-place test of the confidence (``place_radius`` metres).
        rotation: per-crop descriptors: re-rank by best crop shift and report headings.
        scenes, database_scenes, scene_weight, scene_mode: scene-aware re-ranking from the scene
            CSVs of ``scene predict`` (frame-by-frame only).
        sequence: ``hmm`` or ``seqslam`` to match the queries as an ordered traverse of ``ds``
            frames (``mode`` offline or online) instead of frame by frame.
        database: instead of ``index``: database descriptor stores (one, or a list paired with a
            list of ``queries``), matched densely through the full query x database difference
            matrix: cosine for place descriptors, mean absolute difference for pixel descriptors
            (``extract --descriptor pixels``), several pairs combined (each pair's rows z-scored,
            summed with ``weights``; :func:`panoplace.matching.differences.combined_differences`).
            Queries are stores, or images when the database store holds pixels. Without
            ``sequence`` each query takes its nearest frames (confidence: uniqueness ratio);
            ``mode="online"`` runs the dense matcher causally (no later query is used). The CSV's
            ``score`` is then minus the (combined) difference; no headings, no scene re-ranking.
        weights: one per store pair (several pairs only).
        standardise_columns: z-score every database column over all queries (offline only).

    Returns:
        :class:`Localization`.

    Raises:
        DescriptorMismatchError: queries from another model/config, NaN/inf, empty; store pairs
            of other images.

    Shape:
        ``found.retrieval.db_indices`` / ``scores``: ``(Q, k)``; ``confidence``: ``(Q,)``.

    Example:
        >>> import numpy as np
        >>> from panoplace.steps import index, localize
        >>> from panoplace.store import DescriptorSet
        >>> x = np.eye(4, dtype=np.float32)
        >>> idx = index(DescriptorSet(x, ["a.png", "b.png", "c.png", "d.png"], {}, "w"))
        >>> found = localize(idx, DescriptorSet(x[[2, 0]], ["q1.png", "q2.png"], {}, "w"), k=2)
        >>> [(r["query_id"], r["rank"], r["database_id"]) for r in found.rows if r["rank"] == 1]
        [('q1.png', 1, 'c.png'), ('q2.png', 1, 'a.png')]

    The same against the database store itself (dense), two store pairs combined:
        >>> db = DescriptorSet(x, ["a.png", "b.png", "c.png", "d.png"], {}, "w")
        >>> q = DescriptorSet(x[[2, 0]], ["q1.png", "q2.png"], {}, "w")
        >>> found = localize(queries=[q, q], database=[db, db], k=1)
        >>> [r["database_id"] for r in found.rows]
        ['c.png', 'a.png']
    """
    if queries is None:
        raise InputError("no queries given")
    stores = [*(store_items(queries) if not isinstance(queries, ImageSet) else []),
              *(store_items(database) if database is not None else [])]
    with claim([output_file(out, "out")], given(index, *stores, scenes, database_scenes, checkpoint),
               overwrite=True):
        db_images = None
        if database_set is not None:
            db_images = database_set if isinstance(database_set, ImageSet) else load_dataset(database_set).database
        if database is not None:
            if index is not None:
                raise InputError("give an index or database stores, not both")
            ignored = [name for name, used in (("nprobe", nprobe is not None), ("checkpoint", checkpoint is not None),
                                               ("scene re-ranking", scenes is not None or database_scenes is not None))
                       if used]
            if ignored:
                raise InputError(f"{', '.join(ignored)}: for localising against an index, not database stores")
            query_ids, database_ids, result = _dense_match(database, queries, k, sequence, ds, mode, weights,
                                                           standardise_columns, batch_size, progress)
            n_pairs = 1 if isinstance(database, (str, Path, DescriptorSet)) else len(database)
            method = (f"dense sequence matching ({sequence})" if sequence else "dense nearest frames") + (
                f" of {n_pairs} combined store pairs" if n_pairs > 1 else " of database stores")
            return _finish(query_ids, database_ids, result, method, db_images, out)
        if index is None:
            raise InputError("give an index (or database stores) to localise against")
        if weights is not None or standardise_columns or not isinstance(queries, (str, Path, DescriptorSet, ImageSet)):
            raise InputError("combining stores needs full difference matrices: give database stores, not an index "
                             "(the index's sparse and online matching take one descriptor store)")
        idx = index if isinstance(index, PlaceIndex) else load_index(index)
        if nprobe is not None:
            if idx.kind != "ivfpq":
                raise InputError(f"--nprobe applies only to an IVF-PQ index; this index is {idx.kind} (exact search)")
            idx.set_nprobe(nprobe)
        if isinstance(queries, DescriptorSet) or (not isinstance(queries, ImageSet) and (
                Path(queries).suffix.lower() in STORE_SUFFIXES or is_sharded_store(queries))):
            if checkpoint is not None:
                raise InputError("--checkpoint describes query images; the queries are descriptors already")
            query_set = queries if isinstance(queries, DescriptorSet) else load_descriptors(queries)
        else:
            if not isinstance(queries, ImageSet) and not Path(queries).exists():
                raise InputError(f"no such query file or folder: {queries}")
            query_set = describe_queries(queries, idx, checkpoint, batch_size, device, progress=progress)
        idx.check_query(query_set)
        scene = scene_evidence(scenes, database_scenes, query_set.ids, idx.ids, scene_weight, scene_mode,
                               sequence=bool(sequence))
        xy = None
        if db_images is not None and db_images.xy is not None:
            xy = db_images.xy[db_images.rows_for(idx.ids)]
        if sequence:
            result = retrieve_sequence(idx, query_set, k, method=sequence, ds=ds, mode=mode)
        else:
            result = retrieve(idx, query_set, k, database_xy=xy, place_radius=place_radius, rotation=rotation,
                              scene=scene)
        method = f"sequence matching ({sequence})" if sequence else "retrieval"
        if scene is not None:
            method += f" with scene {scene_mode} (weight {scene_weight:g})"
        return _finish(list(query_set.ids), list(idx.ids), result, method, db_images, out)


def _finish(query_ids: List[str], database_ids: List[str], result: Retrieval, method: str,
            db_images: Optional[ImageSet], out: Union[PathLike, IO[str], None]) -> Localization:
    """The prediction rows (positions from the database's images), written to ``out`` when given."""
    rows = db_images.rows_for(database_ids) if db_images is not None else None
    table = prediction_rows(query_ids, result, database_ids, db_images, rows)
    if out is not None:
        write_predictions(table, out)
    found = Localization(list(query_ids), list(database_ids), result, table, method)
    log.info("%s%s", found.summary(), f"; wrote {out}" if isinstance(out, (str, Path)) else "")
    return found

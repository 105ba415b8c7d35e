"""The ``localize`` step: where were the queries taken? Top-k database places per query (or
sequence matching over an ordered traverse), with confidence, heading and positions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, List, Optional, Sequence, Union

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
from panoplace.scene.predict import scene_probs_from_csv
from panoplace.steps.resolve import PathLike, image_list, place_model
from panoplace.store import DescriptorSet, is_sharded_store, load_descriptors
from panoplace.outputs import claim, given, output_file

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


def describe_queries(source: PathLike, index: PlaceIndex, checkpoint: Optional[PathLike] = None,
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


def localize(index: Union[PathLike, PlaceIndex], queries: Union[PathLike, DescriptorSet],
             out: Union[PathLike, IO[str], None] = None, *, k: int = 5,
             database_set: Union[str, Path, ImageSet, None] = None,
             place_radius: float = DEFAULT_PLACE_RADIUS, nprobe: Optional[int] = None, rotation: bool = True,
             scenes: Optional[PathLike] = None, database_scenes: Optional[PathLike] = None,
             scene_weight: float = 0.1, scene_mode: str = "rerank", sequence: Optional[str] = None,
             ds: int = 10, mode: str = "offline", checkpoint: Optional[PathLike] = None, batch_size: int = 8,
             device: str = "auto", progress: bool = True) -> Localization:
    """Localise queries against an index; write the predictions CSV to ``out`` when given.

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

    Returns:
        :class:`Localization`.

    Raises:
        DescriptorMismatchError: queries from another model/config, NaN/inf, empty.

    Example:
        >>> import numpy as np
        >>> from panoplace.steps import index, localize
        >>> from panoplace.store import DescriptorSet
        >>> x = np.eye(4, dtype=np.float32)
        >>> idx = index(DescriptorSet(x, ["a.png", "b.png", "c.png", "d.png"], {}, "w"))
        >>> found = localize(idx, DescriptorSet(x[[2, 0]], ["q1.png", "q2.png"], {}, "w"), k=2)
        >>> [(r["query_id"], r["rank"], r["database_id"]) for r in found.rows if r["rank"] == 1]
        [('q1.png', 1, 'c.png'), ('q2.png', 1, 'a.png')]
    """
    with claim([output_file(out, "out")], given(index, queries, scenes, database_scenes, checkpoint),
               overwrite=True):
        idx = index if isinstance(index, PlaceIndex) else load_index(index)
        if nprobe is not None:
            if idx.kind != "ivfpq":
                raise InputError(f"--nprobe applies only to an IVF-PQ index; this index is {idx.kind} (exact search)")
            idx.set_nprobe(nprobe)
        if isinstance(queries, DescriptorSet) or Path(queries).suffix.lower() in STORE_SUFFIXES \
                or is_sharded_store(queries):
            if checkpoint is not None:
                raise InputError("--checkpoint describes query images; the queries are descriptors already")
            query_set = queries if isinstance(queries, DescriptorSet) else load_descriptors(queries)
        else:
            if not Path(queries).exists():
                raise InputError(f"no such query file or folder: {queries}")
            query_set = describe_queries(queries, idx, checkpoint, batch_size, device, progress=progress)
        idx.check_query(query_set)
        scene = scene_evidence(scenes, database_scenes, query_set.ids, idx.ids, scene_weight, scene_mode,
                               sequence=bool(sequence))
        database = rows = xy = None
        if database_set is not None:
            database = database_set if isinstance(database_set, ImageSet) else load_dataset(database_set).database
            rows = database.rows_for(idx.ids)
            xy = database.xy[rows] if database.xy is not None else None
        if sequence:
            result = retrieve_sequence(idx, query_set, k, method=sequence, ds=ds, mode=mode)
        else:
            result = retrieve(idx, query_set, k, database_xy=xy, place_radius=place_radius, rotation=rotation,
                              scene=scene)
        table = prediction_rows(query_set.ids, result, idx.ids, database, rows)
        if out is not None:
            write_predictions(table, out)
        method = f"sequence matching ({sequence})" if sequence else "retrieval"
        if scene is not None:
            method += f" with scene {scene_mode} (weight {scene_weight:g})"
        found = Localization(list(query_set.ids), list(idx.ids), result, table, method)
        log.info("%s%s", found.summary(), f"; wrote {out}" if isinstance(out, (str, Path)) else "")
        return found

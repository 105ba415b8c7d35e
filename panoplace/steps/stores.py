"""Several descriptor stores matched as one: the query/database store pairs of ``evaluate`` and
``localize``.

A pair is a query store and the database store it is compared with (the same model, or the same
pixel size). Each pair gives one difference matrix (:func:`panoplace.matching.differences.store_differences`:
cosine for place descriptors, mean absolute difference for pixels); several pairs are combined
into one by :func:`panoplace.matching.differences.combined_differences`. Every pair must describe
the same query images and the same database images: a store of another pair in another order is
put in the first pair's order, one with other images is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from panoplace.errors import DescriptorMismatchError, InputError
from panoplace.matching.differences import combined_differences, store_differences
from panoplace.steps.indexing import descriptor_set
from panoplace.steps.resolve import PathLike
from panoplace.store import DescriptorSet, check_compatible

log = logging.getLogger(__name__)

__all__ = ["StoreLike", "Stores", "check_combination", "in_order", "pair_differences", "store_items", "store_list",
           "store_pairs"]

StoreLike = Union[PathLike, DescriptorSet]
"""A descriptor store path (``.h5`` or a sharded store folder) or a :class:`DescriptorSet`."""
Stores = Union[StoreLike, Sequence[StoreLike]]
"""One store, or several (one per pair)."""

Pair = Tuple[DescriptorSet, DescriptorSet]


def store_items(stores: Stores) -> List[StoreLike]:
    """One store or several as a list (a path or a set is one store)."""
    if isinstance(stores, (str, Path, DescriptorSet)):
        return [stores]
    return list(stores)


def store_list(stores: Stores) -> List[DescriptorSet]:
    """The stores read (paths) or taken as they are (sets), in the order given."""
    items = store_items(stores)
    if not items:
        raise InputError("no descriptor store given")
    return [descriptor_set(s) for s in items]


def store_pairs(query: Stores, database: Stores) -> List[Pair]:
    """``(query, database)`` sets paired by position, each pair checked
    (:func:`panoplace.store.check_compatible`; with several pairs the error names the pair).

    Raises:
        InputError: another number of query stores than database stores.
        DescriptorMismatchError: a pair of two models, two kinds, NaN/inf, empty sets.
    """
    q_items, d_items = store_items(query), store_items(database)
    if len(q_items) != len(d_items):
        raise InputError(f"{len(q_items)} query store(s) but {len(d_items)} database store(s): "
                         f"give them in pairs, a query store with each database store")
    pairs = list(zip(store_list(q_items), store_list(d_items)))
    for i, (q, d) in enumerate(pairs):
        try:
            check_compatible(q, d)
        except DescriptorMismatchError as exc:
            if len(pairs) == 1:
                raise
            raise DescriptorMismatchError(f"store pair {i + 1} ({_name(q_items[i])} vs {_name(d_items[i])}): "
                                          f"{exc}") from None
    return pairs


def _name(store: StoreLike) -> str:
    return str(store) if isinstance(store, (str, Path)) else "a descriptor set"


def check_combination(n_pairs: int, weights: Optional[Sequence[float]], standardise_columns: bool,
                      mode: str) -> None:
    """Refuse options that do not fit ``n_pairs`` store pairs: ``weights`` (one per pair, only with
    several pairs, finite, >= 0, not all 0) and column standardisation with online matching."""
    if weights is not None:
        if n_pairs < 2:
            raise InputError("weights combine several store pairs; there is one (add pairs to combine)")
        if len(weights) != n_pairs:
            raise InputError(f"{len(weights)} weight(s) for {n_pairs} store pairs; give one weight per pair")
        if not all(np.isfinite(w) and w >= 0 for w in weights) or not any(weights):
            raise InputError(f"weights must be finite, >= 0 and not all 0; got {list(weights)}")
    if standardise_columns and mode == "online":
        raise InputError("column standardisation looks at every query (later ones too), so it is for offline "
                         "matching only; leave it out with online mode")


def in_order(ds: DescriptorSet, ids: Sequence[str], what: str) -> DescriptorSet:
    """``ds`` with its rows in the order of ``ids`` (the same images, perhaps in another order).

    Raises:
        DescriptorMismatchError: ``ds`` holds other images (or some twice).
    """
    ids = list(ids)
    if ds.ids == ids:
        return ds
    where = {name: i for i, name in enumerate(ds.ids)}
    if len(ds) != len(ids) or len(where) != len(ds):
        raise DescriptorMismatchError(f"the {what} store has {len(ds)} descriptors ({len(where)} images) where "
                                      f"the first pair's has {len(ids)}: every pair must describe the same images")
    missing = [name for name in ids if name not in where]
    if missing:
        raise DescriptorMismatchError(f"the {what} store lacks {len(missing)} image(s) of the first pair's "
                                      f"(first: {missing[0]}): every pair must describe the same images")
    return ds.subset([where[name] for name in ids])


def pair_differences(pairs: Sequence[Pair], weights: Optional[Sequence[float]] = None,
                     standardise_columns: bool = False) -> np.ndarray:
    """One difference matrix of the pairs: each pair's (rows and columns in its stores' order, which
    must be the same for every pair; see :func:`in_order`) combined by
    :func:`~panoplace.matching.differences.combined_differences`.

    Shape:
        returns float32 ``(Q, N)`` (queries and database images of the pairs).
    """
    mats = [store_differences(q, d) for q, d in pairs]
    for i, (q, d) in enumerate(pairs[1:], start=2):
        if q.ids != pairs[0][0].ids or d.ids != pairs[0][1].ids:
            raise DescriptorMismatchError(f"store pair {i} lists its images in another order than the first pair")
    return combined_differences(mats, weights, standardise_columns)

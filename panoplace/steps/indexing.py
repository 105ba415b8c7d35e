"""The ``index`` step: database descriptors → a faiss search index (saved when ``out`` is given)."""

from __future__ import annotations

import logging
from typing import Optional, Union

from panoplace.index import IndexParams, PlaceIndex, build_index, save_index
from panoplace.steps.resolve import PathLike
from panoplace.store import DescriptorSet, load_descriptors
from panoplace.outputs import claim, given, output_file

log = logging.getLogger(__name__)

__all__ = ["index", "descriptor_set"]

_D = IndexParams()


def descriptor_set(store: Union[PathLike, DescriptorSet]) -> DescriptorSet:
    """A descriptor store path read with :func:`panoplace.store.load_descriptors`, or the set itself."""
    return store if isinstance(store, DescriptorSet) else load_descriptors(store)


def index(database: Union[PathLike, DescriptorSet], out: Optional[PathLike] = None, *, kind: str = _D.kind,
          nlist: int = _D.nlist, m: int = _D.m, nbits: int = _D.nbits, nprobe: int = _D.nprobe,
          pca: int = _D.pca) -> PlaceIndex:
    """Index the database descriptors; save the index to ``out`` when given.

    Args:
        database: a descriptor store (``.h5``) or a :class:`~panoplace.store.DescriptorSet`.
        kind: ``flat`` (exact) or ``ivfpq``; nlist, m, nbits, nprobe, pca: see
            :class:`panoplace.index.IndexParams`.

    Returns:
        the :class:`~panoplace.index.PlaceIndex` (it keeps the model config and weights
        fingerprint of the descriptors, so queries from another model are refused).

    Example:
        >>> import numpy as np
        >>> from panoplace.steps import index
        >>> from panoplace.store import DescriptorSet
        >>> x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
        >>> x /= np.linalg.norm(x, axis=1, keepdims=True)
        >>> idx = index(DescriptorSet(x, [f"db/{i}.png" for i in range(5)], {}, "w"))
        >>> len(idx), idx.dim, idx.kind
        (5, 8, 'flat')
    """
    with claim([output_file(out, "out")], given(database), overwrite=True):
        ds = descriptor_set(database)
        built = build_index(ds, kind=kind, nlist=nlist, m=m, nbits=nbits, nprobe=nprobe, pca=pca)
        if out is not None:
            save_index(built, out)
        shape = "x".join(str(s) for s in ds.descriptors.shape[1:])
        log.info("indexed %d descriptors (%s, %s)%s", len(built), shape, kind, f" → {out}" if out is not None else "")
        return built

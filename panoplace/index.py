"""faiss index over database descriptors: build, search, save, load.

Two kinds:

- ``flat`` (default): exact inner-product search (``faiss.IndexFlatIP``). For L2-normalised
  descriptors the score is the cosine similarity and the ranking equals the L2 ranking.
- ``ivfpq``: inverted file with ``nlist`` coarse cells and product quantisation (``m``
  sub-quantisers of ``nbits`` bits each), inner-product metric, trained on the database itself;
  ``nprobe`` cells are visited per query. For maps of ~10^5-10^6 images.

Per-crop database descriptors ``(N, K, D)`` are indexed through their fused view (sum over the K
crops, then L2 normalisation, see :func:`fuse_crops`) for candidate search; the crop
descriptors are kept with the index so that :mod:`panoplace.matching.rotation` can re-rank the
candidates under circular crop shifts and estimate the relative heading.

On disk an index is two files, each written atomically: ``OUT.<token>.faiss``, the faiss
index in faiss's own format, which :func:`load_index` memory-maps (a million-frame IVF-PQ map
opens in milliseconds and its pages are shared between processes), and the HDF5 file ``OUT``
written last: ``ids`` (utf-8), optional ``crop_descriptors`` ``(N, K, D)``, and attributes
``faiss_file`` (the name of the faiss file) and ``faiss_size``, ``config`` (pipeline config
JSON), ``fingerprint``, ``kind``, ``params`` (JSON), ``descriptor_shape`` (JSON),
``train_residual`` and ``format_version``. Copy both files together. Format 1 files (the faiss
bytes embedded as the dataset ``faiss_index``) still load.

A map grows with :func:`update_index`: new rows are added to the trained index without
retraining, with a warning when they have drifted from the training data.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import faiss
import h5py
import numpy as np

from panoplace.atomic import atomic_path
from panoplace.crop_fusion import fuse_crops
from panoplace.errors import DescriptorMismatchError, InputError
from panoplace.store import PIXELS, DescriptorSet, check_compatible, check_finite, h5_writer

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
INDEX_KINDS = ("flat", "ivfpq")
FORMAT_VERSION = 2  # 2: the faiss index in a memory-mappable file beside the HDF5 metadata


@dataclass
class IndexParams:
    """Index kind and IVF-PQ parameters (ignored by ``flat``).

    nlist: coarse cells; the database must hold at least ``nlist`` descriptors to train
        (faiss recommends >= 39 * nlist). m: PQ sub-quantisers, must divide D.
    nbits: bits per sub-quantiser code (needs >= 2**nbits training descriptors).
    nprobe: cells visited per query (recall/speed trade-off, changeable after loading).
    pca: IVF-PQ only: project to this many dimensions first (faiss ``PCAR``: PCA + random
        rotation, trained on the database) so that each sub-quantiser codes fewer dimensions;
        0 = no projection. ``m`` must then divide ``pca``.
    """

    kind: str = "flat"
    nlist: int = 1024
    m: int = 64
    nbits: int = 8
    nprobe: int = 32
    pca: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise InputError(f"unknown index kind {self.kind!r}; choose one of {list(INDEX_KINDS)}")
        for name in ("nlist", "m", "nbits", "nprobe"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"index parameter {name} must be >= 1, got {getattr(self, name)}")
            setattr(self, name, int(getattr(self, name)))
        if self.nbits > 16:
            raise InputError(f"nbits must be <= 16, got {self.nbits}")
        self.pca = int(self.pca)
        if self.pca < 0:
            raise InputError(f"pca must be >= 0 (0 = no projection), got {self.pca}")
        if self.pca and self.kind != "ivfpq":
            raise InputError("a PCA projection (pca > 0) is for IVF-PQ indexes; the flat index is exact")


class PlaceIndex:
    """A faiss index over N database descriptors plus the metadata needed to use it safely.

    Attributes:
        index: the faiss index (over ``(N, D)`` fused descriptors).
        ids: N database image ids (from the descriptor store).
        config, fingerprint: the pipeline config and weights hash the descriptors came from.
        descriptor_shape: per-image descriptor shape in the store, ``(D,)`` or ``(K, D)``.
        params: :class:`IndexParams`.
        crop_descriptors: ``(N, K, D)`` float32 for per-crop databases, else None.
        train_residual: IVF-PQ: mean squared distance of held-out training descriptors to their
            nearest cell centroid (:func:`coarse_residual`), the reference for drift warnings
            when the map grows (:func:`update_index`); 0.0 for flat indexes.
    """

    def __init__(self, index: Any, ids: List[str], config: Dict[str, Any], fingerprint: str,
                 descriptor_shape: Tuple[int, ...], params: IndexParams,
                 crop_descriptors: Optional[np.ndarray] = None, train_residual: float = 0.0) -> None:
        self.index = index
        self.train_residual = float(train_residual)
        self.ids = list(ids)
        self.config = dict(config)
        self.fingerprint = fingerprint
        self.descriptor_shape = tuple(int(s) for s in descriptor_shape)
        self.params = params
        self.crop_descriptors = crop_descriptors
        if index.ntotal != len(self.ids):
            raise InputError(f"index holds {index.ntotal} vectors but {len(self.ids)} ids")
        self.set_nprobe(params.nprobe)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    @property
    def dim(self) -> int:
        """D, the dimension of the searched (fused) vectors."""
        return int(self.index.d)

    @property
    def n_crops(self) -> Optional[int]:
        """K for a per-crop database, else None."""
        return self.descriptor_shape[0] if len(self.descriptor_shape) == 2 else None

    @property
    def kind(self) -> str:
        return self.params.kind

    def set_nprobe(self, nprobe: int) -> None:
        """Cells visited per query (IVF-PQ only; no effect on ``flat``)."""
        if self.params.kind == "ivfpq":
            faiss.extract_index_ivf(self.index).nprobe = int(nprobe)
            self.params.nprobe = int(nprobe)

    def reference(self) -> DescriptorSet:
        """A one-row, metadata-only stand-in for the database descriptors (zeros with the
        database's shape, config and fingerprint), for :func:`panoplace.store.check_compatible`."""
        return DescriptorSet(np.zeros((1, *self.descriptor_shape), np.float32), ["<index>"],
                             self.config, self.fingerprint)

    def check_query(self, query: DescriptorSet) -> None:
        """Refuse query descriptors that cannot be compared with this database.

        Raises:
            DescriptorMismatchError: empty set, NaN/inf, other dimension, other model weights
                or config, or another number of crops for per-crop descriptors.
        """
        check_compatible(query, self.reference())
        if query.per_crop and self.n_crops is not None and query.descriptors.shape[1] != self.n_crops:
            raise DescriptorMismatchError(
                f"query descriptors have {query.descriptors.shape[1]} crops but the database has {self.n_crops}"
            )
        if query.per_crop != (self.n_crops is not None):
            raise DescriptorMismatchError(
                "query descriptors are " + ("per-crop" if query.per_crop else "one per image")
                + " but the database's are " + ("per-crop" if self.n_crops is not None else "one per image")
            )

    def _prepare(self, queries: np.ndarray) -> np.ndarray:
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q[None]
        q = np.ascontiguousarray(fuse_crops(q))
        if q.shape[1] != self.dim:
            raise DescriptorMismatchError(
                f"query descriptors have dimension {q.shape[1]} but the index has {self.dim}"
            )
        if not np.isfinite(q).all():
            raise DescriptorMismatchError("query descriptors contain NaN/inf values")
        return q

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """Top-k database entries per query by inner product.

        Args:
            queries: ``(Q, D)`` float32, or ``(Q, K, D)`` per-crop (searched through the fused
                view), or one ``(D,)`` descriptor.
            k: results per query (clipped to the database size).

        Returns:
            ``scores`` ``(Q, k)`` float32 (higher = more similar, descending) and ``ids``
            ``(Q, k)`` int64 database rows; IVF-PQ gives ``-1`` (score ``-inf``) where fewer than
            k entries were found in the probed cells.
        """
        if int(k) < 1:
            raise InputError(f"k must be >= 1, got {k}")
        q = self._prepare(queries)
        k = min(int(k), len(self))
        if len(q) == 0:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        scores, ids = self.index.search(q, k)
        if self.index.metric_type == 1:  # faiss.METRIC_L2 (PCA indexes): squared distance -> similarity
            scores = 1.0 - scores / 2.0
        ids = ids.astype(np.int64)
        scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
        return scores, ids

    def similarities(self, queries: np.ndarray) -> np.ndarray:
        """Full query × database similarity matrix (for sequence matching).

        Returns:
            ``(Q, N)`` float32 inner products; entries IVF-PQ did not reach are ``-inf``.
        """
        q = self._prepare(queries)
        n = len(self)
        if self.params.kind == "flat":
            return (q @ self.index.reconstruct_n(0, n).T).astype(np.float32)
        scores, ids = self.search(q, n)
        out = np.full((len(q), n), -np.inf, np.float32)
        rows = np.broadcast_to(np.arange(len(q))[:, None], ids.shape)
        ok = ids >= 0
        out[rows[ok], ids[ok]] = scores[ok]
        return out


def new_index(d: int, params: IndexParams) -> Any:
    """An empty faiss index for ``d``-dimensional (fused) descriptors: ``flat`` is ready to add,
    ``ivfpq`` must be trained first (:func:`train_index`).

    Raises:
        InputError: ``pca`` >= D, or ``m`` does not divide D (or ``pca``).
    """

    if params.kind == "flat":
        return faiss.IndexFlatIP(d)
    if params.pca >= d:
        raise InputError(f"IVF-PQ: --pca {params.pca} must be below the descriptor dimension {d}")
    coded = params.pca or d
    if coded % params.m:
        what = f"the PCA dimension {coded}" if params.pca else f"the dimension {d}"
        raise InputError(f"IVF-PQ: m={params.m} sub-quantisers must divide {what}")
    factory = (f"PCAR{params.pca}," if params.pca else "") + f"IVF{params.nlist},PQ{params.m}x{params.nbits}"
    # PCA centres the data, which biases inner products by <mean, y>; L2 distances do not
    # move under a translation, and for unit descriptors |x - y|^2 = 2 - 2 <x, y> ranks the
    # same as the inner product (search() reports 1 - |x - y|^2 / 2 as the score)
    metric = faiss.METRIC_L2 if params.pca else faiss.METRIC_INNER_PRODUCT
    index = faiss.index_factory(d, factory, metric)
    # the factory turns on polysemous training (slow; only useful for Hamming-filtered search)
    ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(index))  # SWIG objects: untyped attributes
    ivf.do_polysemous_training = False
    return index


def train_index(index: Any, x: np.ndarray, params: IndexParams) -> None:
    """Train an index from :func:`new_index` on ``x`` ``(n, D)`` float32 (no-op for ``flat``).

    Raises:
        InputError: too few descriptors to train IVF-PQ.
    """
    if params.kind == "flat":
        return
    n, d = x.shape
    need = max(params.nlist, 2 ** params.nbits)
    if n < need:
        raise InputError(
            f"IVF-PQ with nlist={params.nlist}, nbits={params.nbits} needs at least {need} database "
            f"descriptors to train, the database has {n}; use --kind flat or a smaller --nlist/--nbits"
        )
    if n < 39 * params.nlist:
        log.warning("IVF-PQ: %d descriptors for %d cells; faiss recommends >= %d (39 per cell)",
                    n, params.nlist, 39 * params.nlist)
    log.info("training IVF%d,PQ%dx%d%s on %d descriptors of dimension %d", params.nlist, params.m,
             params.nbits, f" after PCA to {params.pca}" if params.pca else "", n, d)
    index.train(x)
    if params.pca:  # the full D x D eigenvector matrix is only needed to train: drop it (64 MB at 4096-D)
        chain: Any = faiss.downcast_index(index)
        pca_transform: Any = faiss.downcast_VectorTransform(chain.chain.at(0))
        pca_transform.PCAMat.clear()


def merge_indexes(base: Any, parts: Sequence[Any]) -> Any:
    """Append the vectors of ``parts`` (faiss indexes trained like ``base``, e.g. copies of one
    trained index each filled with a shard) to ``base`` in order; the rows of a part follow
    those of the parts before it. Returns ``base``."""
    for part in parts:
        ivf = faiss.try_extract_index_ivf(base)
        if ivf is not None:
            ivf.merge_from(faiss.extract_index_ivf(part), ivf.ntotal)
            base.ntotal = ivf.ntotal
        else:
            base.merge_from(part)
    return base


#: rows held out of IVF-PQ training to measure the drift reference (:func:`coarse_residual`)
HOLDOUT_FRACTION = 0.1
HOLDOUT_MAX = 20000


def _holdout(n: int, params: IndexParams) -> Tuple[np.ndarray, np.ndarray]:
    """Training rows and held-out rows (seeded, sorted) for an index of ``n`` descriptors.

    Flat indexes train nothing; where holding rows out would leave too few to train, every row
    trains and the reference is measured in-sample (the held-out array is then all rows).
    """
    rows = np.arange(n)
    h = min(int(n * HOLDOUT_FRACTION), HOLDOUT_MAX)
    if params.kind == "flat" or h < 1 or n - h < max(params.nlist, 2 ** params.nbits):
        return rows, rows[:: max(1, n // HOLDOUT_MAX)]
    perm = np.random.default_rng(0).permutation(n)
    return np.sort(perm[h:]), np.sort(perm[:h])


def build_index(
    ds: DescriptorSet,
    kind: str = "flat",
    nlist: int = 1024,
    m: int = 64,
    nbits: int = 8,
    nprobe: int = 32,
    pca: int = 0,
    trained: Optional[Any] = None,
) -> PlaceIndex:
    """Build a :class:`PlaceIndex` over the database descriptors ``ds``.

    Args:
        ds: database descriptors ``(N, D)`` or per-crop ``(N, K, D)``.
        kind: ``flat`` (exact) or ``ivfpq`` (see :class:`IndexParams` for the others).
        trained: an already trained, empty faiss index of this kind (e.g. the quantizer of a
            sharded build); a copy is filled and nothing is trained.

    Raises:
        DescriptorMismatchError: empty set or NaN/inf descriptors.
        InputError: unknown kind, ``m`` does not divide D (or ``pca``), ``pca`` >= D, too few
            descriptors to train IVF-PQ, or pixel descriptors (compared by mean absolute difference,
            which this inner-product index does not rank by).
    """
    if ds.kind == PIXELS:
        raise InputError("pixel descriptors are compared by mean absolute difference, which the index does not "
                         "search: match the store densely (localize --database, evaluate)")
    params = IndexParams(kind=kind, nlist=nlist, m=m, nbits=nbits, nprobe=nprobe, pca=pca)
    check_finite(ds, "database descriptors")
    x = np.ascontiguousarray(fuse_crops(ds.descriptors))
    if trained is not None:
        index = faiss.deserialize_index(faiss.serialize_index(trained))
        if index.d != x.shape[1]:
            raise InputError(f"the trained index has dimension {index.d}, the descriptors {x.shape[1]}")
        residual = coarse_residual(index, x[:: max(1, len(x) // 20000)])
    else:
        index = new_index(x.shape[1], params)
        train_rows, held_out = _holdout(len(x), params)
        train_index(index, x[train_rows], params)
        # the drift reference is measured on rows the quantizer did not see: on its own training
        # rows a small map's residual is biased low (over-fitted cells), and any new data would
        # look drifted
        residual = coarse_residual(index, x[held_out])
    index.add(x)
    crops = np.ascontiguousarray(ds.descriptors, np.float32) if ds.per_crop else None
    return PlaceIndex(index, ds.ids, ds.config, ds.fingerprint, ds.descriptors.shape[1:], params, crops,
                      train_residual=residual)


def _sidecars(path: Path) -> List[Path]:
    return sorted(path.parent.glob(f"{path.name}.*.faiss"))


def save_index(index: PlaceIndex, path: PathLike) -> Path:
    """Write ``index``: the faiss index to ``<path>.<token>.faiss`` beside ``path`` (faiss's own
    format, which :func:`load_index` memory-maps) and the metadata to the HDF5 file ``path``,
    which names that file. Both are written atomically, the HDF5 file last, so a reader never
    sees a metadata file with another run's faiss file; sidecars of earlier versions are then
    removed. Returns ``path``.
    """
    path = Path(path)
    sidecar = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.faiss")
    with atomic_path(sidecar) as tmp:
        faiss.write_index(index.index, str(tmp))
    try:
        with atomic_path(path) as tmp:
            with h5_writer(tmp) as f:
                f.create_dataset("ids", data=np.array(index.ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
                if index.crop_descriptors is not None:
                    f.create_dataset("crop_descriptors", data=index.crop_descriptors, dtype=np.float32)
                f.attrs["faiss_file"] = sidecar.name
                f.attrs["faiss_size"] = sidecar.stat().st_size
                f.attrs["config"] = json.dumps(index.config, sort_keys=True)
                f.attrs["fingerprint"] = index.fingerprint
                f.attrs["kind"] = index.params.kind
                f.attrs["params"] = json.dumps(asdict(index.params))
                f.attrs["descriptor_shape"] = json.dumps(list(index.descriptor_shape))
                f.attrs["train_residual"] = index.train_residual
                f.attrs["format_version"] = FORMAT_VERSION
    except BaseException:
        sidecar.unlink(missing_ok=True)
        raise
    for old in _sidecars(path):
        if old != sidecar:
            old.unlink(missing_ok=True)
    return path


def _no_prefetch_threads(index: Any) -> None:
    """Memory-mapped inverted lists (faiss ``OnDiskInvertedLists``) start one thread per probed
    cell on every search to read the cells ahead ("prefetch"): 16 thread creations per query at
    nprobe 16, about half a millisecond of system time per query on this machine and the largest
    source of jitter in the online localiser's per-frame time. The operating system already reads
    a mapped file on demand (and keeps it cached), so panoplace turns that prefetch off."""
    ivf: Any = faiss.try_extract_index_ivf(index)  # SWIG objects: untyped attributes
    if ivf is None:
        return
    lists: Any = faiss.downcast_InvertedLists(ivf.invlists)
    if isinstance(lists, faiss.OnDiskInvertedLists):
        lists.prefetch_nthread = 0


def load_index(path: PathLike, mmap: bool = True) -> PlaceIndex:
    """Read an index written by :func:`save_index` (or ``panoplace index``).

    Args:
        mmap: map the faiss file read-only into memory instead of reading it: an IVF-PQ map of
            a million frames opens in milliseconds, its pages are loaded on first use and shared
            between processes that open the same file. ``False`` reads a private, writable copy
            (needed to add frames, see :func:`update_index`).

    Raises:
        InputError: the file is missing or is not a panoplace index, or its faiss file is missing
            or does not match.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"index file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "ids" not in f or ("faiss_index" not in f and "faiss_file" not in f.attrs):
                raise InputError(f"{path} is not a panoplace index (no faiss index or 'ids')")
            raw = f["faiss_index"][...] if "faiss_index" in f else None  # format 1: embedded
            sidecar = str(f.attrs.get("faiss_file", ""))
            size = int(f.attrs.get("faiss_size", -1))
            ids = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["ids"][...]]
            crops = f["crop_descriptors"][...] if "crop_descriptors" in f else None
            config = json.loads(f.attrs.get("config", "{}"))
            fingerprint = str(f.attrs.get("fingerprint", ""))
            params = IndexParams(**json.loads(f.attrs["params"]))
            shape = tuple(json.loads(f.attrs["descriptor_shape"]))
            train_residual = float(f.attrs.get("train_residual", 0.0))
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise InputError(f"cannot read index file {path}: {exc}") from None
    if not isinstance(config, dict):
        raise InputError(f"{path}: its config attribute is not a JSON object; the index file is damaged")
    if raw is not None:
        try:
            index = faiss.deserialize_index(np.asarray(raw, dtype=np.uint8))
        except RuntimeError as exc:
            raise InputError(f"cannot read the faiss index in {path}: {str(exc).strip().splitlines()[-1]}") from None
    else:
        file = path.parent / sidecar
        if Path(sidecar).name != sidecar or not file.is_file():
            raise InputError(f"{path}: its faiss file {file} is missing (copy both files together)")
        if file.stat().st_size != size:
            raise InputError(f"{path}: its faiss file {file} has another size than recorded; it does not belong to it")
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        try:
            index = faiss.read_index(str(file), flags)
        except RuntimeError as exc:
            raise InputError(f"cannot read the faiss file {file}: {str(exc).strip().splitlines()[-1]}") from None
        _no_prefetch_threads(index)
    if index.ntotal != len(ids):
        raise InputError(f"{path}: its faiss index holds {index.ntotal} vectors but the file lists {len(ids)} ids; "
                         "the index is damaged or its faiss file belongs to another index")
    return PlaceIndex(index, ids, config, fingerprint, shape, params, crops, train_residual=train_residual)


def coarse_residual(index: Any, x: np.ndarray) -> float:
    """Mean squared distance of ``x`` ``(n, D)`` to its nearest IVF cell centroid (after the PCA
    of a PCA index): how well the trained quantizer fits the data; 0.0 for flat indexes."""
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is None or len(x) == 0:
        return 0.0
    x = np.ascontiguousarray(x, np.float32)
    chain: Any = faiss.downcast_index(index)
    if isinstance(chain, faiss.IndexPreTransform):
        transforms: Any = chain.chain  # a SWIG vector (size/at), typed as a list by faiss's stubs
        for i in range(transforms.size()):
            x = faiss.downcast_VectorTransform(transforms.at(i)).apply(x)
    _, cell = ivf.quantizer.search(x, 1)  # nearest cell by the index's own metric
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    return float(np.mean(np.sum((x - centroids[cell[:, 0]]) ** 2, axis=1)))


# retraining pays when new descriptors sit this much farther from the cell centroids than the
# training data did (mean squared distance); see benchmarks/bench_growth.py for how it was chosen
DRIFT_RATIO = 1.25


@dataclass
class IndexUpdate:
    """What :func:`update_index` did: rows added, ids already there, and the drift measure."""

    added: int
    already: int
    residual_ratio: float  # mean coarse residual of the new rows / that of the training data (0 for flat)

    @property
    def drifted(self) -> bool:
        return self.residual_ratio > DRIFT_RATIO


def update_index(index: PlaceIndex, ds: DescriptorSet) -> IndexUpdate:
    """Add the rows of ``ds`` whose ids ``index`` does not hold yet, without retraining (a map that
    grows). ``index`` must have been loaded with ``mmap=False``. Logs a warning when the new
    descriptors have drifted from the training data enough that retraining would pay
    (:data:`DRIFT_RATIO`).

    Raises:
        DescriptorMismatchError: ``ds`` comes from another model, config or crop count.
    """
    index.check_query(ds)
    known = set(index.ids)
    new = [i for i, name in enumerate(ds.ids) if name not in known]
    ratio = 0.0
    if new:
        part = ds.subset(new)
        x = np.ascontiguousarray(fuse_crops(part.descriptors))
        if index.train_residual > 0:
            ratio = coarse_residual(index.index, x) / index.train_residual
        index.index.add(x)
        index.ids.extend(part.ids)
        if index.crop_descriptors is not None:
            index.crop_descriptors = np.concatenate([index.crop_descriptors, part.descriptors.astype(np.float32)])
    update = IndexUpdate(len(new), len(ds) - len(new), ratio)
    if update.drifted:
        log.warning("the %d new descriptors sit %.2fx farther from the index's cells than its training data: "
                    "rebuilding the index (retraining) would pay", update.added, ratio)
    return update

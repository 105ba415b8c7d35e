"""Sparse sequence matching over index candidates agrees with the dense matchers."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from panoplace.data import load_dataset
from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import InputError
from panoplace.evaluation.pipeline import cosine_distances, evaluate_match
from panoplace.index import build_index
from panoplace.matching.graph import MapGraph
from panoplace.matching.seqslam_classic import seqslam_preprocess
from panoplace.matching.sequence import HMMParams, SeqSLAMParams, match
from panoplace.matching.sparse import IndexVectors, sparse_match
from panoplace.store import DescriptorSet


def _set(x: np.ndarray) -> DescriptorSet:
    return DescriptorSet(x, [str(i) for i in range(len(x))], {}, "")


@pytest.mark.parametrize("kw", [dict(kind="flat"), dict(kind="ivfpq", nlist=8, m=8, nbits=6),
                                dict(kind="ivfpq", nlist=8, m=8, nbits=6, pca=16)])
def test_index_vectors_score_like_the_index(rng, kw):
    x = rng.normal(size=(600, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index = build_index(_set(x), **kw)
    vectors = IndexVectors(index)
    sims, ids = index.search(x[:4], 6)
    for s, i, q in zip(sims, ids, x[:4]):
        np.testing.assert_allclose(vectors.similarities(vectors.prepare(q), i), s, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_sparse_seqslam_costs_equal_dense_costs(route_map, mode):
    db, queries, truth = route_map
    params = SeqSLAMParams(ds=10, mode=mode)
    dense = match(cosine_distances(queries, db), params)
    sparse = sparse_match(build_index(_set(db)), queries, params, k=10)
    rows = np.arange(len(queries))[:, None]
    ok = sparse.candidates >= 0
    np.testing.assert_allclose(sparse.candidate_costs[ok], dense.scores[rows, np.maximum(sparse.candidates, 0)][ok],
                               rtol=1e-5, atol=1e-5)
    found = dense.best == sparse.best
    assert found.mean() >= 0.95  # the dense best lies among the sparse candidates nearly always
    assert sparse.scores is None and sparse.ranked(3).shape == (len(queries), 3)


@pytest.mark.parametrize("method", ["seqslam", "hmm"])
@pytest.mark.parametrize("mode", ["offline", "online"])
def test_sparse_recall_no_worse_than_dense(route_map, method, mode):
    """On this synthetic route the sparse matcher is 2-3 points *better* (frames that no window
    frame retrieves cannot win); the real-data tests below check the 0.5-point agreement."""
    db, queries, truth = route_map
    params = (SeqSLAMParams if method == "seqslam" else HMMParams)(ds=10, mode=mode)
    dense = match(cosine_distances(queries, db), params)
    sparse = sparse_match(build_index(_set(db)), queries, params, k=10)
    r_dense = (np.abs(dense.best - truth) <= 2).mean()
    r_sparse = (np.abs(sparse.best - truth) <= 2).mean()
    assert r_dense >= 0.9
    assert r_sparse >= r_dense - 0.005


def test_sparse_follows_a_reordered_map(route_map):
    """The graph, not the index order, says which frames follow which."""
    db, queries, truth = route_map
    perm = np.random.default_rng(1).permutation(len(db))
    shuffled = db[perm]  # database row r holds place perm[r]
    graph = MapGraph.from_sequences(np.zeros(len(db)), position=perm.astype(float))
    sparse = sparse_match(build_index(_set(shuffled)), queries, HMMParams(ds=10, mode="online"), graph, k=10)
    assert (np.abs(perm[sparse.best] - truth) <= 2).mean() >= 0.9


def test_sparse_bad_inputs(route_map):
    db, queries, _ = route_map
    index = build_index(_set(db))
    with pytest.raises(InputError, match="map graph"):
        sparse_match(index, queries, graph=MapGraph.chain(3))
    with pytest.raises(InputError, match="k and n_out"):
        sparse_match(index, queries, k=0)


def _pixels(paths, size):
    """Patch-normalised grey thumbnails, flattened and L2-normalised (SeqSLAM-style descriptors)."""
    x = seqslam_preprocess([cv2.imread(str(p)) for p in paths], size).reshape(len(paths), -1)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _agreement(db, queries, gt, params, k=10):
    dense = evaluate_match(match(cosine_distances(queries, db), params), gt, ns=(1,)).recall[1]
    sparse = evaluate_match(sparse_match(build_index(_set(db)), queries, params, k=k), gt, ns=(1,)).recall[1]
    return dense, sparse


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("params", [HMMParams(ds=20), SeqSLAMParams(ds=20, mode="online")])
def test_sparse_agrees_with_dense_on_nordland(shared_data, params):
    root = shared_data / "nordland_thumbs"
    names = sorted(p.name for p in (root / "summer").glob("images-*.png"))[:600]
    if len(names) < 600:
        pytest.skip("nordland_thumbs is incomplete")
    db = _pixels([root / "summer" / n for n in names], (32, 16))
    queries = _pixels([root / "winter" / n for n in names], (32, 16))
    dense, sparse = _agreement(db, queries, GroundTruth.from_tolerance(600, 600, tolerance=2), params)
    assert dense >= 0.7
    assert sparse >= dense - 0.005  # measured: sparse 0.5-1.5 points above dense (see bench_sparse_sequence)


@pytest.mark.data
@pytest.mark.parametrize("params", [HMMParams(ds=5), SeqSLAMParams(ds=5)])
def test_sparse_agrees_with_dense_on_the_corridor(shared_data, params):
    data = load_dataset(shared_data / "corridor")
    db = _pixels([Path(data.database.root) / p for p in data.database.paths], (64, 48))
    queries = _pixels([Path(data.queries.root) / p for p in data.queries.paths], (64, 48))
    dense, sparse = _agreement(db, queries, data.ground_truth, params)
    assert sparse >= dense - 0.005

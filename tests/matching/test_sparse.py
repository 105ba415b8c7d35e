"""Sparse sequence matching over index candidates agrees with the dense matchers."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.evaluation.pipeline import cosine_distances
from panoplace.index import build_index
from panoplace.matching.graph import MapGraph
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

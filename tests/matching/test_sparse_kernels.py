"""The compiled sparse window (panoplace/matching/sparse_kernels.py) gives the outputs of the numpy
implementation it replaced (tests/matching/sparse_reference.py): same best frames and candidate
lists, costs and confidences to float rounding, on a single route, on several traversals with
links, with flat, IVF-PQ and PCA indexes, offline and online, and when its caches recycle."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.index import build_index
from panoplace.matching.graph import MapGraph
from panoplace.matching.online import OnlineLocaliser, OnlineParams
from panoplace.matching.sequence import HMMParams, SeqSLAMParams, window_lengths, window_offsets
from panoplace.matching.sparse import IndexVectors, SparseWindow, calibrate, follow, sparse_match
from panoplace.matching.sparse_kernels import expand
from panoplace.store import DescriptorSet
from tests.matching.conftest import observe, route_descriptors
from tests.matching.sparse_reference import _expand, reference_online, reference_sparse_match

INDEXES = [dict(kind="flat"), dict(kind="ivfpq", nlist=16, m=8, nbits=6, nprobe=8),
           dict(kind="ivfpq", nlist=16, m=8, nbits=6, nprobe=8, pca=16)]


def _index(db: np.ndarray, **kw):
    return build_index(DescriptorSet(db, [str(i) for i in range(len(db))], {}, ""), **kw)


@pytest.fixture
def two_traversals(rng):
    """Two traversals of one street, then a branch each; a query driving the second branch,
    kidnapped half-way back onto the street. (db (1000, 32), graph with links, queries)."""
    a, b, c = route_descriptors(rng, 300), route_descriptors(rng, 200), route_descriptors(rng, 200)
    db = np.concatenate([observe(rng, a, 0.3), observe(rng, b, 0.3), observe(rng, a, 0.3), observe(rng, c, 0.3)])
    s = np.arange(500.0)
    xy = np.concatenate([np.c_[np.minimum(s, 300), np.maximum(s - 300, 0)], np.c_[s, np.zeros(500)]])
    graph = MapGraph.from_sequences(np.repeat([1, 2], 500), xy=xy)
    places = np.concatenate([np.concatenate([a, c])[np.arange(200, 400)], a[np.arange(20, 120)]])
    return db, graph, observe(rng, places, 1.3)


@pytest.mark.parametrize("kw", INDEXES)
@pytest.mark.parametrize("params", [HMMParams(ds=10, mode="online"), HMMParams(ds=10, mode="offline"),
                                    SeqSLAMParams(ds=10, mode="online"), SeqSLAMParams(ds=10, mode="offline")])
def test_sparse_match_equals_the_numpy_implementation(route_map, kw, params):
    db, queries, _ = route_map
    index = _index(db, **kw)
    graph = MapGraph.chain(len(db))
    m = sparse_match(index, queries, params, graph, k=10, n_out=10)
    r_best, _, r_raw, r_cands, r_costs = reference_sparse_match(index, queries, params, graph, k=10, n_out=10)
    np.testing.assert_array_equal(m.best, r_best)
    np.testing.assert_array_equal(m.candidates, r_cands)
    ok = np.isfinite(r_costs)
    np.testing.assert_array_equal(np.isfinite(m.candidate_costs), ok)
    np.testing.assert_allclose(m.candidate_costs[ok], r_costs[ok], rtol=1e-5, atol=1e-5)
    lengths = window_lengths(len(queries), window_offsets(params.ds, params.mode))
    expected = calibrate(r_raw, lengths, params, len(db)) if params.calibrate else r_raw
    np.testing.assert_allclose(m.confidence, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("matcher", [HMMParams(ds=10, mode="online"), SeqSLAMParams(ds=10, mode="online")])
@pytest.mark.parametrize("kw", INDEXES[:2])
def test_online_localiser_equals_the_numpy_implementation(two_traversals, matcher, kw):
    db, graph, queries = two_traversals
    index = _index(db, **kw)
    params = OnlineParams(matcher=matcher, k=10)
    loc = OnlineLocaliser(index, graph, params)
    est = [loc.update(q) for q in queries]
    ref = reference_online(index, graph, params, queries)
    assert [e.frame for e in est] == [r[0] for r in ref]
    for e, (_, _, cands, costs) in zip(est, ref):
        np.testing.assert_array_equal(e.candidates, cands)
        want = np.exp(-costs) if isinstance(matcher, HMMParams) else -costs
        np.testing.assert_allclose(e.scores, want, rtol=1e-4, atol=1e-6)
    # the links matter here: the estimate moves between the traversals
    assert len({int(graph.chain_of[graph.rank[e.frame]]) for e in est}) == 2


def test_recycled_caches_give_the_same_costs(rng):
    """Column slots (and the PQ codes copied into them) are recycled (a small table, a long drive
    with jumps) without changing a result; a table too small for one window grows."""
    db = route_descriptors(rng, 8000)
    truth = np.concatenate([np.arange(100, 400), np.arange(6000, 6300), np.arange(3000, 3300)])
    queries = observe(rng, db[truth], 1.5)
    index = _index(db, kind="ivfpq", nlist=32, m=8, nbits=6, nprobe=8)
    graph = MapGraph.chain(len(db))
    params = HMMParams(ds=6, mode="online")
    vectors = IndexVectors(index)
    window = SparseWindow(vectors, graph, params, 0.1, 4, slots=64)
    sims, ids = index.search(queries, 4)
    track = None
    best, seen = [], set()
    for i, q in enumerate(queries):
        window.add(i, vectors.prepare(q), graph.rank[ids[i][ids[i] >= 0]])
        s = window.score(i, track)
        assert s is not None
        track = follow(s, params, graph)
        best.append(int(graph.order[s.ranks[s.best]]))
        seen.update(s.ranks.tolist())
    assert len(seen) > len(window._slot_rank)  # recycled
    r_best = reference_sparse_match(index, queries, params, graph, k=4)[0]
    np.testing.assert_array_equal(best, r_best)


def test_expand_equals_the_interval_union(rng):
    graph = MapGraph.from_sequences(np.repeat([0, 1, 2], [50, 7, 40]))
    for _ in range(20):
        ranks = np.unique(rng.integers(0, graph.n, size=rng.integers(1, 15)))
        lo, hi = -int(rng.integers(0, 6)), int(rng.integers(0, 6))
        got = expand(ranks, lo, hi, graph.chain_start, graph.chain_of)
        np.testing.assert_array_equal(got, _expand(ranks, lo, hi, graph))

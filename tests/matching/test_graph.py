"""MapGraph: chains from traversal ids, cuts at gaps, links between traversals."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.matching.graph import MapGraph


def test_chain_is_one_traversal_in_order():
    g = MapGraph.chain(7)
    assert g.order.tolist() == list(range(7)) and g.n_chains == 1 and g.n_links == 0
    assert g.lo(np.array([3])).tolist() == [0] and g.hi(np.array([3])).tolist() == [7]
    with pytest.raises(InputError):
        MapGraph.chain(0)


def test_sequences_ordered_by_position_and_cut_at_gaps():
    # traversal "b" stored backwards in the database, traversal "a" with a 50 m gap
    seq = np.array(["b", "b", "b", "a", "a", "a", "a"])
    pos = np.array([2, 1, 0, 0, 1, 2, 3])
    xy = np.array([[2, 9], [1, 9], [0, 9], [0, 0], [1, 0], [51, 0], [52, 0]], float)
    g = MapGraph.from_sequences(seq, position=pos, xy=xy, link_radius=0.1)
    assert g.order.tolist() == [3, 4, 5, 6, 2, 1, 0]
    assert g.chain_start.tolist() == [0, 2, 4, 7]  # "a" cut at the gap
    np.testing.assert_array_equal(g.rank[g.order], np.arange(7))


def test_links_join_traversals_heading_the_same_way_only():
    t = np.arange(20.0)
    xy = np.concatenate([np.c_[t, 0 * t], np.c_[t + 0.2, 0 * t + 0.5], np.c_[t[::-1], 0 * t + 0.3]])
    seq = np.repeat([0, 1, 2], 20)
    g = MapGraph.from_sequences(seq, xy=xy, link_radius=1.0)
    src, tgt = g.links(g.rank[np.array([5])])
    linked = g.order[tgt]
    assert 25 in linked or 26 in linked  # the parallel drive, same direction
    assert not np.isin(linked, np.arange(40, 60)).any()  # never the opposite direction

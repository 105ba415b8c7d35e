"""rank_costs: the k lowest costs per row through panoplace.topk (ties by the lower index)."""

from __future__ import annotations

import numpy as np

from panoplace.matching.sequence.core import rank_costs


def _reference(costs: np.ndarray, k: int, best: np.ndarray) -> np.ndarray:
    order = np.argsort(costs, axis=1, kind="stable")[:, :min(k, costs.shape[1])]
    out = order.astype(np.int64)
    out[~np.isfinite(np.take_along_axis(costs, order, axis=1))] = -1
    out[best < 0] = -1
    return out


def test_rank_costs_is_a_stable_sort_with_infinite_costs_dropped() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        q, n = int(rng.integers(1, 5)), int(rng.integers(1, 400))
        costs = rng.integers(0, 4, (q, n)).astype(np.float32)  # many ties, on both top-k paths
        costs[rng.random((q, n)) < 0.3] = np.inf
        best = np.where(rng.random(q) < 0.2, -1, 0)
        for k in (1, 3, 7, n + 2):
            np.testing.assert_array_equal(rank_costs(costs, k, best), _reference(costs, k, best))


def test_rank_costs_breaks_ties_by_the_lower_database_index() -> None:
    costs = np.full((1, 1000), 5.0, np.float32)
    costs[0, [900, 17, 400]] = 1.0
    assert rank_costs(costs, 2).tolist() == [[17, 400]]
    assert rank_costs(costs, 4).tolist() == [[17, 400, 900, 0]]

"""GroundTruth constructors against brute-force computations."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.data import GroundTruth
from panoplace.errors import DatasetError


def brute_force(db: np.ndarray, q: np.ndarray, radius: float) -> list:
    d = np.linalg.norm(q[:, None, :] - db[None, :, :], axis=2)
    return [np.flatnonzero(row <= radius) for row in d]


def test_from_positions_equals_brute_force() -> None:
    rng = np.random.default_rng(3)
    db = rng.uniform(0, 500, size=(600, 2))
    q = np.concatenate([rng.uniform(-50, 550, size=(250, 2)), db[:5]])  # some exact duplicates
    q[0] = db[7] + [25.0, 0.0]  # exactly on the radius: inclusive
    gt = GroundTruth.from_positions(db, q, radius=25.0)
    expected = brute_force(db, q, 25.0)
    assert len(gt) == len(q) and gt.n_database == len(db)
    for got, want in zip(gt.positives, expected):
        np.testing.assert_array_equal(got, want)
    assert 7 in gt.positives[0]
    assert gt.valid.all() and gt.n_positives.sum() > len(q)  # non-trivial case


def test_from_positions_handles_queries_without_positives() -> None:
    db = np.array([[0.0, 0.0], [100.0, 0.0]])
    q = np.array([[1000.0, 0.0], [99.0, 0.0], [5000.0, 1.0]])
    gt = GroundTruth.from_positions(db, q, radius=10.0)
    assert [p.tolist() for p in gt.positives] == [[], [1], []]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("tol", [0, 2])
def test_from_tolerance_equals_brute_force(reverse: bool, tol: int) -> None:
    n = 30
    gt = GroundTruth.from_tolerance(n, n, tolerance=tol, reverse=reverse)
    for i, p in enumerate(gt.positives):
        centre = n - 1 - i if reverse else i
        want = [j for j in range(n) if abs(j - centre) <= tol]
        assert p.tolist() == want
    assert gt.positives[0].tolist() == ([n - 1 - t for t in range(tol, -1, -1)] if reverse else list(range(tol + 1)))


def test_from_tolerance_refuses_different_lengths() -> None:
    with pytest.raises(DatasetError, match="same number of frames"):
        GroundTruth.from_tolerance(10, 11, 1)


def test_from_lists_checks_indices_and_dense_view() -> None:
    gt = GroundTruth.from_lists([[2, 0], [], [1]], n_database=3, valid=[True, False, True])
    assert [p.tolist() for p in gt.positives] == [[0, 2], [], [1]]
    np.testing.assert_array_equal(gt.to_dense(), [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    hits = gt.is_positive(np.array([[2, 1], [0, -1], [0, 1]]))
    np.testing.assert_array_equal(hits, [[True, False], [False, False], [False, True]])
    with pytest.raises(DatasetError, match="database index 3"):
        GroundTruth.from_lists([[3]], n_database=3)


def test_check_sizes_says_what_differs() -> None:
    gt = GroundTruth.from_tolerance(5, 5)
    gt.check_sizes(5, 5)
    with pytest.raises(DatasetError, match="5 queries but the query set has 6"):
        gt.check_sizes(6, 5)
    with pytest.raises(DatasetError, match="database has 4"):
        gt.check_sizes(5, 4)

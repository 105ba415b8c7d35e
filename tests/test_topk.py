"""Exact top-k: equal to a stable full sort (ties by the lower column), NaN worst, both directions."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace import topk
from panoplace.topk import top_k


@pytest.mark.parametrize("small", [True, False], ids=["as-is", "partition-path"])
@pytest.mark.parametrize("kind", ["floats", "ties", "inf-nan", "ints", "wide"])
def test_top_k_equals_a_stable_full_sort(kind: str, small: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not small:  # every matrix through the argpartition path, whatever its size
        monkeypatch.setattr(topk, "SMALL", 0)
    rng = np.random.default_rng(["floats", "ties", "inf-nan", "ints", "wide"].index(kind))
    for _ in range(300):
        n, m = int(rng.integers(1, 6)), int(rng.integers(1, 60))
        if kind == "floats":
            v = rng.random((n, m))
        elif kind == "ties":
            v = rng.integers(0, 3, (n, m)).astype(np.float32)
        elif kind == "inf-nan":
            v = rng.integers(0, 3, (n, m)).astype(np.float64)
            v[rng.random((n, m)) < 0.3] = np.inf
            v[rng.random((n, m)) < 0.2] = np.nan
        elif kind == "ints":
            v = rng.integers(-3, 3, (n, m))
        else:
            v = rng.integers(0, 5, (n, 50 * m)).astype(np.float32)  # k << M: the argpartition path
        for k in {1, 2, 3, int(rng.integers(1, v.shape[1] + 3))}:
            for largest in (False, True):
                want = np.argsort(-v if largest else v, axis=1, kind="stable")[:, :min(k, v.shape[1])]
                got = top_k(v, k, largest=largest)
                assert got.dtype == np.int64
                np.testing.assert_array_equal(got, want, err_msg=f"{kind} k={k} largest={largest}\n{v}")


def test_top_k_rejects_bad_input() -> None:
    with pytest.raises(InputError, match=r"\(N, M\)"):
        top_k(np.zeros(4), 2)
    with pytest.raises(InputError, match="k must be"):
        top_k(np.zeros((2, 4)), 0)
    assert top_k(np.zeros((0, 5)), 3).shape == (0, 3)

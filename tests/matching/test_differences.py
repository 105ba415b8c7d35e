"""Difference matrices by metric, and several combined (the rule of ``combine_differences``)."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import DescriptorMismatchError, InputError
from panoplace.matching.differences import (combined_differences, cosine_distances, descriptor_differences,
                                            store_differences)
from panoplace.matching.sequence import combine_differences, standardise_columns, standardise_rows
from panoplace.store import DescriptorSet

PIX = {"pixels": {"width": 4, "height": 2, "patch": 2}}


def test_sad_is_mean_absolute_difference_and_cosine_is_cosine(rng):
    q, d = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(4, 8)).astype(np.float32)
    brute = np.abs(q[:, None, :] - d[None, :, :]).mean(axis=2)
    np.testing.assert_allclose(descriptor_differences(q, d, "sad"), brute, rtol=1e-5)
    qn, dn = q / np.linalg.norm(q, axis=1, keepdims=True), d / np.linalg.norm(d, axis=1, keepdims=True)
    np.testing.assert_allclose(descriptor_differences(q, d, "cosine"), 1 - qn @ dn.T, atol=1e-6)
    np.testing.assert_array_equal(descriptor_differences(q, d), cosine_distances(q, d))
    with pytest.raises(InputError, match="unknown metric 'l2'"):
        descriptor_differences(q, d, "l2")
    with pytest.raises(DescriptorMismatchError, match="shape"):
        descriptor_differences(q, d[:, :4], "sad")


def test_store_differences_follow_what_the_stores_hold(rng):
    # scaled copies: cosine sees no difference, the mean absolute difference does
    base = rng.normal(size=(4, 8)).astype(np.float32)
    db = np.concatenate([base, 3 * base])
    q = 3 * base[:1]
    ids = [f"{i}" for i in range(8)]
    D_pix = store_differences(DescriptorSet(q, ["q"], PIX), DescriptorSet(db, ids, PIX))
    D_cos = store_differences(DescriptorSet(q, ["q"], {}), DescriptorSet(db, ids, {}))
    assert int(D_pix.argmin()) == 4 and D_pix[0, 4] == 0 and D_pix[0, 0] > 0
    assert D_cos[0, 0] == pytest.approx(D_cos[0, 4], abs=1e-6)
    with pytest.raises(DescriptorMismatchError, match="compare stores of one kind"):
        store_differences(DescriptorSet(q, ["q"], PIX), DescriptorSet(db, ids, {}))


def test_combined_differences_is_combine_differences_then_columns(rng):
    a, b = rng.random((6, 9)), 5 * rng.random((6, 9)) + 2
    np.testing.assert_allclose(combined_differences([a, b]), combine_differences(a, b))
    np.testing.assert_allclose(combined_differences([a, b], columns=True),
                               standardise_columns(combine_differences(a, b)))
    np.testing.assert_array_equal(combined_differences([a]), a.astype(np.float32))
    np.testing.assert_allclose(combined_differences([a], columns=True), standardise_columns(a))
    # weights: 0 drops a matrix, 2 doubles its row z-scores
    only_a = standardise_rows(a) - standardise_rows(a).min(axis=1, keepdims=True)
    np.testing.assert_allclose(combined_differences([a, b], weights=[1, 0]), only_a, atol=1e-6)
    twice = 2 * standardise_rows(a) + standardise_rows(b)
    np.testing.assert_allclose(combined_differences([a, b], weights=[2, 1]),
                               twice - twice.min(axis=1, keepdims=True), atol=1e-5)


def test_combination_errors(rng):
    a = rng.random((3, 4))
    with pytest.raises(InputError, match="at least one"):
        combined_differences([])
    with pytest.raises(InputError, match="there is one"):
        combined_differences([a], weights=[1.0])
    with pytest.raises(InputError, match="1 weight.s. for 2"):
        combine_differences(a, a, weights=[1.0])
    with pytest.raises(InputError, match="not all 0"):
        combine_differences(a, a, weights=[0, 0])
    with pytest.raises(InputError, match="not all 0"):
        combine_differences(a, a, weights=[1, float("nan")])
    with pytest.raises(InputError, match="differ in shape"):
        combined_differences([a, a[:, :3]])

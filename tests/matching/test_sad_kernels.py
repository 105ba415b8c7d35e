"""The compiled sum of absolute differences (panoplace/matching/sad_kernels.py, behind
``sad_matrix``) gives bit for bit the outputs of the numpy implementation it replaced
(tests/matching/sad_reference.py): float32, float64, integer and uint8 inputs, image-shaped
inputs, row lengths across numpy's pairwise-summation leaves and splits, database counts across
the kernel's blocks, ``Q != N``, views that are not contiguous."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.matching.sad_kernels import DATABASE_BLOCK, pairwise_plan
from panoplace.matching.seqslam_classic import patch_normalise, sad_matrix
from tests.matching.sad_reference import sad_matrix_reference

# below 8 (one accumulator), 8..128 (eight, with and without a rest), above 128 (split in two,
# halves not multiples of 8 / of 128), 32x16 and 64x32 images
LENGTHS = [1, 5, 7, 8, 9, 15, 16, 23, 127, 128, 129, 136, 137, 255, 257, 300, 512, 1000, 2048, 2051]


def _pairwise_plan_sum(x: np.ndarray) -> np.float32:
    starts, lens, prog = pairwise_plan(len(x))
    stack = []
    for op in prog:
        if op < 0:
            hi = stack.pop()
            stack.append(np.float32(stack.pop() + hi))
        else:
            a, m = starts[op], lens[op]
            if m < 8:
                res = np.float32(0.0)
                for v in x[a:a + m]:
                    res = np.float32(res + v)
            else:
                r = x[a:a + 8].copy()
                end = a + m - m % 8
                for k in range(a + 8, end, 8):
                    r += x[k:k + 8]
                res = np.float32(((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7])))
                for v in x[end:a + m]:
                    res = np.float32(res + v)
            stack.append(res)
    assert len(stack) == 1
    return stack[0]


@pytest.mark.parametrize("n", [0, 1, 7, 8, 100, 128, 129, 130, 1000, 2048, 4099])
def test_pairwise_plan_reproduces_numpys_float32_sum(rng, n):
    x = (rng.standard_normal(n) * 1000).astype(np.float32)
    assert _pairwise_plan_sum(x) == x.sum()
    starts, lens, _ = pairwise_plan(n)
    assert lens.sum() == n and np.array_equal(starts[1:], np.cumsum(lens)[:-1])


def test_summation_order_is_visible_at_these_sizes(rng):
    """The equality tests below could not tell another summation order apart if float32 sums
    in any order agreed: they do not (a plain running sum differs from numpy's in most pairs)."""
    q = (rng.standard_normal((9, 2048)) * 100).astype(np.float32)
    d = (rng.standard_normal((11, 2048)) * 100).astype(np.float32)
    diff = np.abs(q[:, None, :] - d[None, :, :])
    running = np.zeros((9, 11), np.float32)
    for k in range(2048):
        running += diff[:, :, k]
    assert np.mean(running / np.float32(2048) != sad_matrix_reference(q, d)) > 0.5


@pytest.mark.parametrize("p", LENGTHS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sad_matrix_bit_identical_to_numpy(rng, p, dtype):
    q = (rng.standard_normal((13, p)) * 50).astype(dtype)
    d = (rng.standard_normal((DATABASE_BLOCK + 3, p)) * 50).astype(dtype)
    got = sad_matrix(q, d)
    assert got.dtype == np.float32 and got.shape == (13, DATABASE_BLOCK + 3)
    np.testing.assert_array_equal(got, sad_matrix_reference(q, d))
    # and close to the float64 truth of the float32-rounded inputs
    q64, d64 = q.astype(np.float32).astype(np.float64), d.astype(np.float32).astype(np.float64)
    truth = np.abs(q64[:, None, :] - d64[None, :, :]).mean(axis=2)
    np.testing.assert_allclose(got, truth, rtol=2e-6, atol=0)


@pytest.mark.parametrize("nq,nd", [(1, 1), (1, 200), (200, 1), (5, DATABASE_BLOCK - 1), (3, DATABASE_BLOCK),
                                   (4, DATABASE_BLOCK + 1), (17, 2 * DATABASE_BLOCK + 7)])
def test_sad_matrix_across_database_blocks(rng, nq, nd):
    q = rng.standard_normal((nq, 16, 32)).astype(np.float32)
    d = rng.standard_normal((nd, 16, 32)).astype(np.float32)
    np.testing.assert_array_equal(sad_matrix(q, d), sad_matrix_reference(q, d))


def test_sad_matrix_on_patch_normalised_images_and_integer_inputs(rng):
    imgs = rng.integers(0, 256, size=(45, 32, 64)).astype(np.uint8)
    q, d = patch_normalise(imgs[:19]), patch_normalise(imgs[19:])
    np.testing.assert_array_equal(sad_matrix(q, d), sad_matrix_reference(q, d))
    np.testing.assert_array_equal(sad_matrix(imgs[:19], imgs[19:]), sad_matrix_reference(imgs[:19], imgs[19:]))
    ints = imgs.astype(np.int64) * 1000
    np.testing.assert_array_equal(sad_matrix(ints[:7], ints[7:]), sad_matrix_reference(ints[:7], ints[7:]))


def test_sad_matrix_non_contiguous_inputs_and_chunk_elems_ignored(rng):
    base = rng.standard_normal((40, 300)).astype(np.float32)
    q, d = base[::3, ::2], base.T[:150].T[1::2]  # strided views, (14, 150) and (20, 150)
    want = sad_matrix_reference(np.ascontiguousarray(q), np.ascontiguousarray(d))
    for chunk in (1, 100, 1 << 24):
        np.testing.assert_array_equal(sad_matrix(q, d, chunk_elems=chunk), want)
    np.testing.assert_array_equal(sad_matrix(list(q), list(d)), want)


def test_sad_matrix_edge_cases(rng):
    q = rng.standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(InputError, match="values"):
        sad_matrix(q, q[:, :3])
    empty = sad_matrix(np.zeros((2, 0), np.float32), np.zeros((3, 0), np.float32))
    assert empty.shape == (2, 3) and empty.dtype == np.float32 and np.isnan(empty).all()
    special = np.array([[np.inf, 1.0, 2.0], [np.nan, 0.0, 1.0]], np.float32)
    with np.errstate(invalid="ignore"):  # inf - inf
        want = sad_matrix_reference(special, special)
    np.testing.assert_array_equal(sad_matrix(special, special), want)

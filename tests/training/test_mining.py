"""Mining on a toy geometry: positives, negatives, hardness, margin, memory, caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.training.mining import DescriptorCache, TripletMiner, make_cache


def _line(xs) -> np.ndarray:
    return np.stack([np.asarray(xs, dtype=np.float64), np.zeros(len(xs))], axis=1)


def _angles(deg) -> np.ndarray:
    a = np.deg2rad(np.asarray(deg, dtype=np.float64))
    return np.stack([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


def test_positive_is_the_nearest_in_descriptor_space_within_10_m() -> None:
    db_xy = _line([0, 5, 9, 11, 30, 40, 60])
    # query at 0 m: potential positives are db 0, 1, 2 (within 10 m); db 3 (11 m) is neither
    miner = TripletMiner(db_xy, _line([0.0]), n_neg=2, n_neg_sample=100, margin=10.0)
    assert miner.positives[0].tolist() == [0, 1, 2]
    assert miner.negatives_mask(np.array([0]))[0].tolist() == [False] * 4 + [True] * 3
    db_desc = _angles([50, 80, 2, 0, 90, 10, 170])  # db 2 is the nearest positive, db 3 is nearer but at 11 m
    cache = DescriptorCache(len(db_xy), 2)
    cache.write(0, db_desc)
    t = miner.mine(np.array([0]), _angles([0]), cache, np.random.default_rng(0))
    assert t.query.tolist() == [0] and t.positive.tolist() == [2]
    # negatives: only db 4, 5, 6 (beyond 25 m), the hardest (nearest in descriptor space) first
    assert t.negatives.tolist() == [[5, 4]]


def test_only_margin_violating_negatives_are_kept_and_solved_queries_dropped() -> None:
    db_xy = _line([0, 100, 200, 300])
    miner = TripletMiner(db_xy, _line([0.0, 300.0]), n_neg=3, n_neg_sample=10, margin=0.1)
    cache = DescriptorCache(4, 2)
    cache.write(0, _angles([0, 10, 60, 180]))
    # query 0: d_pos = d(q, db0) = 0; d(db1) = 2 - 2cos10 = 0.030 < 0.1 violates, 60 deg = 1.0 does not
    # query 1 (at db3): positive db3 (0 deg from q); all negatives are >= 2-2cos(120) away -> solved
    t = miner.mine(np.array([0, 1]), _angles([0, 180]), cache, np.random.default_rng(0))
    assert t.query.tolist() == [0] and t.solved == 1
    assert t.negatives.tolist() == [[1, -1, -1]] and t.n_triplets == 1


def test_hard_negatives_are_remembered_between_rounds() -> None:
    db_xy = _line(np.arange(0, 500, 50.0))  # 10 images 50 m apart
    miner = TripletMiner(db_xy, _line([0.0]), n_neg=1, n_neg_sample=1, margin=10.0)
    desc = _angles(np.linspace(0, 180, 10))
    desc[7] = _angles([1])[0]  # db 7 is the hardest negative of a query at 0 deg
    cache = DescriptorCache(10, 2)
    cache.write(0, desc)
    found = set()
    rng = np.random.default_rng(3)
    for _ in range(40):
        t = miner.mine(np.array([0]), _angles([0]), cache, rng)
        found.add(int(t.negatives[0, 0]))
        if 7 in found:
            break
    assert 7 in found
    # once drawn, db 7 stays the hard negative although only one random negative is drawn per round
    for _ in range(5):
        t = miner.mine(np.array([0]), _angles([0]), cache, rng)
        assert t.negatives.tolist() == [[7]]
    assert miner.hard_negatives[0].tolist() == [7]


def test_same_image_is_never_its_own_positive() -> None:
    xy = _line([0, 4, 100])
    miner = TripletMiner(xy, xy, same_frame=np.array([0, 1, 2]))
    assert miner.positives[0].tolist() == [1] and miner.positives[1].tolist() == [0]
    assert miner.positives[2].tolist() == [] and miner.trainable.tolist() == [0, 1]


def test_negative_sample_is_drawn_without_replacement_from_negatives_only() -> None:
    rng = np.random.default_rng(0)
    db_xy = rng.uniform(0, 1000, (400, 2))
    q_xy = rng.uniform(0, 1000, (30, 2))
    miner = TripletMiner(db_xy, q_xy, n_neg=400, n_neg_sample=50, margin=100.0)
    cache = DescriptorCache(400, 8)
    cache.write(0, rng.standard_normal((400, 8)).astype(np.float32))
    t = miner.mine(np.arange(30), rng.standard_normal((30, 8)).astype(np.float32), cache, rng)
    assert len(t) == len(miner.trainable)
    far = np.linalg.norm(q_xy[t.query][:, None] - db_xy[np.maximum(t.negatives, 0)], axis=2) > 25
    real = t.negatives >= 0
    assert far[real].all()
    # every query got exactly its 50 samples (margin 100 makes all violators), no duplicates
    assert (real.sum(axis=1) == 50).all()
    assert all(len(set(r[r >= 0])) == 50 for r in t.negatives)


def test_hdf5_cache_gives_the_same_distances_as_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 16)).astype(np.float32)
    q = rng.standard_normal((7, 16)).astype(np.float32)
    mem = make_cache("memory", 300, 16)
    h5 = DescriptorCache(300, 16, tmp_path / "c.h5", block_rows=64)
    for c in (mem, h5):
        c.write(0, x[:100])
        c.write(100, x[100:])
    want = ((q[:, None] - x[None]) ** 2).sum(-1)
    np.testing.assert_allclose(mem.sq_distances(q), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(h5.sq_distances(q), want, rtol=1e-4, atol=1e-4)
    assert not h5.in_memory and (tmp_path / "c.h5").exists()
    h5.close()
    assert not (tmp_path / "c.h5").exists()
    assert not make_cache("auto", 10**6, 4096, tmp_path).in_memory
    with pytest.raises(InputError, match="does not fit"):
        mem.write(299, x[:2])


def test_bad_mining_input_raises() -> None:
    with pytest.raises(InputError, match="pos_radius"):
        TripletMiner(_line([0]), _line([0]), pos_radius=30, neg_radius=25)
    with pytest.raises(InputError, match="finite"):
        TripletMiner(_line([0, np.nan]), _line([0]))

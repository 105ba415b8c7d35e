"""Metrics against hand-computed examples, and the array-level evaluation pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import DatasetError, DescriptorMismatchError, InputError
from panoplace.evaluation import (
    evaluate,
    evaluate_descriptors,
    evaluate_differences,
    localisation_accuracy,
    pr_curve,
    recall_at_n,
)


@pytest.fixture
def hand_case():
    """5 queries against 10 database images; query 2 is off the route (not evaluated)."""
    candidates = np.array([
        [3, 1, 7, 2],      # positive 1 at rank 1
        [5, 6, 0, 9],      # positives 9, 4: first hit at rank 3
        [0, 1, 2, 3],      # invalid query (its hit must not count)
        [8, -1, -1, -1],   # no positives: a miss
        [2, 5, 6, 7],      # positive 2 at rank 0
    ])
    gt = GroundTruth.from_lists([[1], [9, 4], [0], [], [2]], n_database=10,
                                valid=np.array([True, True, False, True, True]))
    return candidates, gt


def test_recall_at_n_hand_computed(hand_case):
    candidates, gt = hand_case
    r = recall_at_n(candidates, gt, ns=(1, 2, 3, 4, 5))
    assert r == {1: 0.25, 2: 0.5, 3: 0.5, 4: 0.75, 5: 0.75}  # N=5 > k=4 uses all 4


def test_recall_counts_invalid_queries_nowhere(hand_case):
    candidates, gt = hand_case
    all_valid = GroundTruth(gt.positives, np.ones(5, bool), gt.n_database)
    assert recall_at_n(candidates, all_valid, ns=(1,))[1] == pytest.approx(2 / 5)  # query 2 now counts


def test_recall_rejects_mismatched_candidates(hand_case):
    candidates, gt = hand_case
    with pytest.raises(DatasetError):
        recall_at_n(candidates[:4], gt)
    with pytest.raises(DatasetError):
        recall_at_n(np.full((5, 2), 10), gt)
    with pytest.raises(InputError):
        recall_at_n(candidates.astype(float), gt)


def test_pr_curve_hand_computed_with_ties():
    conf = np.array([0.9, 0.8, 0.8, 0.5, 0.3])
    correct = np.array([True, True, False, False, True])
    pr = pr_curve(conf, correct, n_findable=4)
    np.testing.assert_allclose(pr.thresholds, [0.9, 0.8, 0.5, 0.3])
    np.testing.assert_allclose(pr.precision, [1.0, 2 / 3, 0.5, 0.6])
    np.testing.assert_allclose(pr.recall, [0.25, 0.5, 0.5, 0.75])
    assert pr.auc == pytest.approx(0.25 * 1 + 0.25 * 2 / 3 + 0.25 * 0.6)
    assert pr.recall_at_100p == pytest.approx(0.25)


def test_perfect_confidence_ordering():
    conf = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    correct = np.array([True, True, True, False, False])
    pr = pr_curve(conf, correct, n_findable=5)
    # AP equals the final recall reached by the correct matches, as does R@100P
    assert pr.auc == pytest.approx(0.6)
    assert pr.recall_at_100p == pytest.approx(0.6)
    everything = pr_curve(conf, np.ones(5, bool), n_findable=5)
    assert everything.auc == pytest.approx(1.0) and everything.recall_at_100p == pytest.approx(1.0)
    worst = pr_curve(-conf, correct, n_findable=5)  # the wrong ones are the most confident
    assert worst.recall_at_100p == 0.0 and worst.auc < pr.auc


def test_pr_curve_skips_queries_without_prediction():
    pr = pr_curve(np.array([0.9, 0.95]), np.array([True, False]), n_findable=2,
                  predicted=np.array([True, False]))
    np.testing.assert_allclose(pr.precision, [1.0])
    np.testing.assert_allclose(pr.recall, [0.5])
    with pytest.raises(InputError, match="NaN"):
        pr_curve(np.array([np.nan]), np.array([True]), 1)


def test_localisation_accuracy_hand_computed():
    q = np.zeros((4, 2))
    pred = np.array([[3.0, 4.0], [0.0, 8.0], [30.0, 40.0], [np.nan, np.nan]])  # 5, 8, 50 m, none
    conf = np.array([0.9, 0.2, 0.8, 0.5])
    acc = localisation_accuracy(q, pred, radii=(5, 10, 25, 60))
    assert acc["within"] == {5.0: 0.25, 10.0: 0.5, 25.0: 0.5, 60.0: 0.75}
    assert acc["false_positive_rate"] == pytest.approx({5.0: 2 / 3, 10.0: 1 / 3, 25.0: 1 / 3, 60.0: 0.0})
    sure = localisation_accuracy(q, pred, radii=(10,), confidence=conf, fp_threshold=0.5)
    assert sure["false_positive_rate"] == {10.0: 0.5}  # queries 0 (5 m) and 2 (50 m)
    with pytest.raises(InputError):
        localisation_accuracy(q, pred, radii=(0,))


def test_evaluate_rows_json_and_csv(hand_case, tmp_path):
    candidates, gt = hand_case
    conf = np.array([0.1, 0.2, 0.3, 0.4, 0.9])
    db_xy = np.stack([np.arange(10) * 10.0, np.zeros(10)], axis=1)
    q_xy = db_xy[[1, 9, 0, 5, 2]] + [0.0, 3.0]
    res = evaluate(candidates, conf, gt, query_ids=[f"q{i}" for i in range(5)],
                   db_ids=[f"d{i}" for i in range(10)], query_xy=q_xy, db_xy=db_xy, radii=(5, 25))
    assert res.n_queries == 4 and res.n_total == 5 and res.n_findable == 3
    assert res.recall[1] == 0.25
    # only query 4 is right at top-1; it is the most confident → precision 1 at recall 1/3
    assert res.recall_at_100p == pytest.approx(1 / 3) and res.pr_auc == pytest.approx(1 / 3)
    np.testing.assert_allclose(res.per_query["distance_m"], [np.hypot(20, 3),
                                                             np.hypot(40, 3), 3.0, np.hypot(30, 3), 3.0])
    assert res.within == {5.0: 0.25, 25.0: 0.5}
    assert list(res.per_query["top1_id"]) == ["d3", "d5", "d0", "d8", "d2"]
    assert list(res.per_query["correct"]) == [False, False, True, False, True]
    assert list(res.per_query["first_hit_rank"]) == [1, 3, 0, -1, 0]
    js = res.to_json()
    assert js["recall"] == {"1": 0.25, "5": 0.75, "10": 0.75, "20": 0.75}
    assert {"pr_auc", "recall_at_100p", "n_queries"} <= set(js)
    assert js["within_m"] == {"5": 0.25, "25": 0.5}
    path = res.write_json(tmp_path / "m.json")
    assert json.loads(path.read_text())["n_queries"] == 4
    lines = res.write_csv(tmp_path / "rows.csv").read_text().splitlines()
    assert lines[0].startswith("query_index,query_id,valid,top1_index,top1_id,correct")
    assert lines[1].split(",")[:6] == ["0", "q0", "1", "3", "d3", "0"]
    assert len(lines) == 6
    assert "Recall@1" in res.summary() and "within 25 m" in res.summary()


def test_nan_metrics_become_null_in_json():
    gt = GroundTruth.from_lists([[0]], n_database=2, valid=np.array([False]))
    res = evaluate(np.array([[0, 1]]), np.array([1.0]), gt)
    js = res.to_json()
    assert js["recall"]["1"] is None and js["pr_auc"] is None and js["n_queries"] == 0
    json.dumps(js, allow_nan=False)


def test_evaluate_descriptors_from_arrays(rng):
    db = rng.normal(size=(40, 16)).astype(np.float32)
    q = db + rng.normal(scale=0.05, size=db.shape).astype(np.float32)
    gt = GroundTruth.from_tolerance(40, 40, tolerance=1)
    res = evaluate_descriptors(q, db, gt, "single")
    assert res.recall[1] == 1.0 and res.pr_auc == pytest.approx(1.0)
    seq = evaluate_descriptors(q, db, gt, "hmm", ds=5, mode="online")
    assert seq.recall[1] >= 0.95 and seq.matcher == "hmm" and seq.params["mode"] == "online"
    per_crop = evaluate_descriptors(np.stack([q, q], 1), np.stack([db, db], 1), gt, "seqslam", ds=5)
    assert per_crop.recall[1] >= 0.95


def test_evaluate_descriptors_refuses_bad_input(rng):
    db = rng.normal(size=(10, 8)).astype(np.float32)
    gt = GroundTruth.from_tolerance(10, 10)
    bad = db.copy()
    bad[3, 2] = np.nan
    with pytest.raises(DescriptorMismatchError, match="NaN"):
        evaluate_descriptors(bad, db, gt)
    with pytest.raises(DescriptorMismatchError, match="dimension"):
        evaluate_descriptors(db[:, :4], db, gt)
    with pytest.raises(DatasetError, match="lists 10 queries"):
        evaluate_descriptors(db[:7], db, gt)
    with pytest.raises(InputError, match="empty"):
        evaluate_descriptors(db[:0], db, gt)
    with pytest.raises(InputError, match="unknown matcher"):
        evaluate_differences(np.ones((10, 10)), gt, "oracle")

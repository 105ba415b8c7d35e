"""Scene-aware re-ranking and filtering of retrieval candidates."""

from __future__ import annotations

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.matching.scene_rerank import rerank_by_scene, scene_agreement

# 3 database images: a plaza, a street, an uncertain one; 2 queries
DB = np.array([[0.9, 0.1], [0.1, 0.9], [0.5, 0.5]], np.float32)
Q = np.array([[1.0, 0.0], [0.2, 0.8]], np.float32)


def test_agreement_kinds() -> None:
    cand = np.array([[0, 1, -1], [2, 1, 0]])
    b = scene_agreement(Q, DB, cand, "bhattacharyya")
    assert b[0, 0] == pytest.approx(np.sqrt(0.9)) and b[0, 1] == pytest.approx(np.sqrt(0.1)) and b[0, 2] == 0.0
    d = scene_agreement(Q, DB, cand, "dot")
    assert d[1].tolist() == pytest.approx([0.5, 0.74, 0.26])
    t = scene_agreement(Q, DB, cand, "top1")
    assert t.tolist() == [[1, 0, 0], [0, 1, 0]]  # argmax of a tie is the first category
    same = scene_agreement(DB, DB, np.arange(3)[:, None], "bhattacharyya")
    assert np.allclose(same, 1.0, atol=1e-6)


def test_rerank_moves_agreeing_candidates_up_by_weight() -> None:
    scores = np.array([[0.80, 0.78, 0.50], [0.9, 0.88, -np.inf]], np.float32)
    cand = np.array([[1, 0, 2], [0, 1, -1]])
    s0, c0 = rerank_by_scene(scores, Q, DB, cand, weight=0.0)
    assert np.array_equal(c0, cand)  # no weight: the retrieval order
    s1, c1 = rerank_by_scene(scores, Q, DB, cand, weight=0.1)
    # query 0 (a plaza): db 0 (plaza, 0.78 + 0.1*0.949) overtakes db 1 (street, 0.80 + 0.1*0.316)
    assert c1[0].tolist() == [0, 1, 2] and s1[0, 0] == pytest.approx(0.78 + 0.1 * np.sqrt(0.9), abs=1e-6)
    assert c1[1].tolist() == [1, 0, -1] and s1[1, 2] == -np.inf  # a missing candidate stays last
    assert np.all(np.diff(s1, axis=1)[np.isfinite(np.diff(s1, axis=1))] <= 0)


def test_filter_drops_disagreeing_candidates_but_never_all() -> None:
    scores = np.array([[0.9, 0.8, 0.7], [0.9, 0.8, 0.7]], np.float32)
    cand = np.array([[1, 0, 2], [0, 0, 0]])
    s, c = rerank_by_scene(scores, Q, DB, cand, mode="filter", kind="top1")
    assert c[0].tolist() == [0, 2, -1] and s[0].tolist() == pytest.approx([0.8, 0.7, -np.inf])
    # query 1 (a street) has no street candidate: its list is kept
    assert c[1].tolist() == [0, 0, 0] and s[1].tolist() == pytest.approx([0.9, 0.8, 0.7])


def test_bad_inputs_raise_input_error() -> None:
    scores = np.zeros((2, 2), np.float32)
    with pytest.raises(InputError, match="same categories"):
        rerank_by_scene(scores, Q, np.ones((3, 4)), np.zeros((2, 2), int))
    with pytest.raises(InputError, match="past the 3"):
        rerank_by_scene(scores, Q, DB, np.array([[0, 3], [0, 1]]))
    with pytest.raises(InputError, match="mode"):
        rerank_by_scene(scores, Q, DB, np.zeros((2, 2), int), mode="vote")
    with pytest.raises(InputError, match="agreement"):
        scene_agreement(Q, DB, np.zeros((2, 2), int), kind="kl")


def test_scene_evidence_keeps_headings_with_their_candidates() -> None:
    from panoplace.matching.scene_rerank import SceneEvidence

    scores = np.array([[0.80, 0.78, 0.50]], np.float32)
    cand = np.array([[1, 0, 2]])
    headings = np.array([[10.0, -20.0, 30.0]])
    s, c, h = SceneEvidence(Q[:1], DB, weight=0.1).apply(scores, cand, headings)
    assert c.tolist() == [[0, 1, 2]] and h.tolist() == [[-20.0, 10.0, 30.0]]
    _, c, h = SceneEvidence(Q[:1], DB, mode="filter", kind="top1").apply(scores, cand, headings)
    # db 1 (a street) is dropped; db 2's top-1 (a tie, first category) is a plaza and stays
    assert c.tolist() == [[0, 2, -1]] and h[0, :2].tolist() == [-20.0, 30.0] and np.isnan(h[0, 2])


def test_scene_probs_from_csv_aligns_rows_and_names_missing_ids(tmp_path) -> None:
    from panoplace.scene.predict import scene_probs_from_csv, write_scene_csv

    cats = ["plaza", "street", "park"]
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    write_scene_csv(tmp_path / "s.csv", ["a.jpg", "b.jpg"], probs, cats, top=2)
    got, names = scene_probs_from_csv(tmp_path / "s.csv", ["b.jpg", "a.jpg"])
    assert names == ["park", "plaza", "street"]  # every category the CSV names, sorted
    assert np.allclose(got, [[0.8, 0.1, 0.0], [0.0, 0.7, 0.2]])  # below the top 2: 0
    got, _ = scene_probs_from_csv(tmp_path / "s.csv", ["a.jpg"], ["street", "plaza", "beach"])
    assert np.allclose(got, [[0.2, 0.7, 0.0]])
    with pytest.raises(InputError, match="no rows for 1 of 2 images.*c.jpg"):
        scene_probs_from_csv(tmp_path / "s.csv", ["a.jpg", "c.jpg"])

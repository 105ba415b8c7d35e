"""Retrieval with confidence, sequence localisation, and the localize verb."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from panoplace.cli import main
from panoplace.data import ImageSet, write_csv
from panoplace.errors import DescriptorMismatchError
from panoplace.index import build_index, save_index
from panoplace.matching.retrieval import place_margin, retrieve, retrieve_sequence
from panoplace.store import DescriptorSet, save_descriptors

CONFIG = {"panorama": {"n_crops": 1}, "model": {"backbone": "b", "aggregator": "gem", "fusion": "add"}}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def route_descriptors(rng: np.random.Generator, n: int, d: int = 32, smooth: float = 0.9) -> np.ndarray:
    """Descriptors along a route: neighbouring frames look alike (AR(1) walk), ``(n, d)``."""
    x = np.empty((n, d))
    x[0] = rng.normal(size=d)
    for i in range(1, n):
        x[i] = smooth * x[i - 1] + np.sqrt(1 - smooth ** 2) * rng.normal(size=d)
    return unit(x)


def dset(x: np.ndarray, prefix: str, fingerprint: str = "w", config: dict = CONFIG) -> DescriptorSet:
    return DescriptorSet(x, [f"{prefix}/{i:04d}.png" for i in range(len(x))], config, fingerprint)


def brute_margin(scores, ids, xy, radius):
    out = []
    for s, j in zip(scores, ids):
        second = s[-1]
        for r in range(1, len(j)):
            far = np.linalg.norm(xy[j[r]] - xy[j[0]]) > radius if xy is not None else j[r] != j[0]
            if far:
                second = s[r]
                break
        out.append(s[0] - second)
    return np.array(out)


def test_retrieve_topk_and_confidence_against_brute_force() -> None:
    rng = np.random.default_rng(0)
    db = route_descriptors(rng, 300)
    q = unit(db[::10] + 0.3 * rng.normal(size=(30, 32)))
    xy = np.stack([np.arange(300) * 3.0, np.zeros(300)], axis=1)  # a frame every 3 m
    index = build_index(dset(db, "db"))
    r = retrieve(index, q, k=5, database_xy=xy, place_radius=10.0, confidence_depth=20)
    sims = q @ db.T
    order = np.argsort(-sims, axis=1, kind="stable")
    np.testing.assert_array_equal(r.db_indices, order[:, :5])
    want = brute_margin(np.take_along_axis(sims, order[:, :20], 1), order[:, :20], xy, 10.0)
    np.testing.assert_allclose(r.confidence, want, atol=1e-5)
    assert r.headings is None and (r.confidence >= 0).all()
    # without positions the neighbouring frames count as other places: lower margins
    r2 = retrieve(index, q, k=5)
    assert (r2.confidence <= r.confidence + 1e-6).all() and r2.confidence.mean() < r.confidence.mean()
    np.testing.assert_allclose(r2.confidence, r2.scores[:, 0] - r2.scores[:, 1], atol=1e-6)


def test_place_margin_skips_the_same_place_and_falls_back_to_last() -> None:
    scores = np.array([[0.9, 0.85, 0.5, 0.4], [0.8, 0.79, 0.78, 0.7]])
    ids = np.array([[0, 1, 7, 8], [3, 4, 2, 4]])
    frames = place_margin(scores, ids, frame_separation=1)
    np.testing.assert_allclose(frames, [0.4, 0.1], atol=1e-6)  # row 1: no other place → last score
    xy = np.stack([np.arange(10) * 5.0, np.zeros(10)], axis=1)
    np.testing.assert_allclose(place_margin(scores, ids, xy, place_radius=6.0), [0.4, 0.1], atol=1e-6)
    np.testing.assert_allclose(place_margin(scores, ids), [0.05, 0.01], atol=1e-6)  # any other image
    np.testing.assert_allclose(place_margin(scores[:, :1], ids[:, :1]), [0.0, 0.0])


def test_retrieve_refuses_other_models() -> None:
    rng = np.random.default_rng(1)
    index = build_index(dset(unit(rng.normal(size=(20, 8))), "db"))
    with pytest.raises(DescriptorMismatchError, match="different model weights"):
        retrieve(index, dset(unit(rng.normal(size=(2, 8))), "q", fingerprint="other"))


def test_per_crop_retrieval_reranks_and_reports_heading() -> None:
    rng = np.random.default_rng(2)
    k_crops, n = 8, 150
    db = unit(rng.normal(size=(n, k_crops, 16)))
    turn = 3  # query crop k = database crop k + 3  →  heading 3 * 45°
    q = unit(np.roll(db[:20], -turn, axis=1) + 0.1 * rng.normal(size=(20, k_crops, 16)))
    cfg = {"panorama": {"n_crops": 8}, "model": {"fusion": "per-crop"}}
    index = build_index(dset(db, "db", config=cfg))
    r = retrieve(index, dset(q, "q", config=cfg), k=3, rerank_depth=n)
    assert (r.db_indices[:, 0] == np.arange(20)).all()
    np.testing.assert_allclose(np.abs(r.headings[:, 0] - 135.0), 0.0, atol=22.5)
    flat = retrieve(index, q, k=3, rotation=False)
    assert flat.headings is None


def test_retrieve_sequence_localises_a_traverse() -> None:
    rng = np.random.default_rng(3)
    db = route_descriptors(rng, 200, smooth=0.95)
    truth = np.arange(40, 100)
    q = unit(db[truth] + 0.2 * rng.normal(size=(len(truth), 32)))  # ~20% single-frame misses
    index = build_index(dset(db, "db"))
    single = retrieve(index, q, k=1)
    seq = retrieve_sequence(index, q, k=3, method="seqslam", ds=10)
    hit_single = (np.abs(single.db_indices[:, 0] - truth) <= 2).mean()
    hit_seq = (np.abs(seq.db_indices[:, 0] - truth) <= 2).mean()
    assert hit_seq >= 0.9 and hit_seq > hit_single
    sims = q @ db.T
    np.testing.assert_allclose(seq.scores[:, 0], sims[np.arange(len(q)), seq.db_indices[:, 0]], atol=1e-5)


@pytest.mark.parametrize("how", [dict(mode="online"), dict(mode="offline", sparse=True)])
def test_retrieve_sequence_online_and_sparse_without_a_full_matrix(how) -> None:
    rng = np.random.default_rng(3)
    db = route_descriptors(rng, 200, smooth=0.95)
    truth = np.arange(40, 100)
    q = unit(db[truth] + 0.2 * rng.normal(size=(len(truth), 32)))
    index = build_index(dset(db, "db"))
    index.similarities = None  # type: ignore[assignment]  # must not be called: no Q x N matrix
    seq = retrieve_sequence(index, q, k=3, method="hmm", ds=10, **how)
    assert seq.db_indices.shape == (len(truth), 3)
    assert (np.abs(seq.db_indices[10:, 0] - truth[10:]) <= 2).mean() >= 0.95
    sims = q @ db.T
    np.testing.assert_allclose(seq.scores[:, 0], sims[np.arange(len(q)), seq.db_indices[:, 0]], atol=1e-5)
    assert ((seq.confidence >= 0) & (seq.confidence <= 1)).all()


# ------------------------------------------------------------------ localize verb
@pytest.fixture
def world(tmp_path: Path):
    """A database store + index + positions CSV, and a query store of noisy copies."""
    rng = np.random.default_rng(4)
    db = route_descriptors(rng, 120)
    q = unit(db[[5, 50, 100]] + 0.05 * rng.normal(size=(3, 32)))
    dbs = dset(db, "db")
    save_descriptors(dbs, tmp_path / "db.h5")
    save_index(build_index(dbs), tmp_path / "db.index")
    save_descriptors(dset(q, "q"), tmp_path / "q.h5")
    xy = np.stack([np.arange(120) * 2.0, np.ones(120)], axis=1)
    write_csv(ImageSet("db", tmp_path, dbs.ids, xy=xy), tmp_path / "db.csv")
    return tmp_path


def read_rows(path: Path) -> list:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_localize_writes_predictions(world: Path) -> None:
    out = world / "pred.csv"
    assert main(["localize", "--index", str(world / "db.index"), str(world / "q.h5"), "--k", "2",
                 "--database-set", str(world / "db.csv"), "--out", str(out)]) == 0
    rows = read_rows(out)
    assert len(rows) == 6 and [r["rank"] for r in rows[:2]] == ["1", "2"]
    top = [r for r in rows if r["rank"] == "1"]
    assert [r["database_id"] for r in top] == ["db/0005.png", "db/0050.png", "db/0100.png"]
    assert [float(r["x"]) for r in top] == [10.0, 100.0, 200.0] and top[0]["y"] == "1.0"
    assert top[0]["query_id"] == "q/0000.png" and float(top[0]["confidence"]) >= 0
    assert top[0]["heading_deg"] == "" and top[0]["lat"] == ""


def test_localize_to_stdout_and_sequence(world: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["localize", "--index", str(world / "db.index"), str(world / "q.h5"), "--k", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("query_id,rank,database_id") and len(lines) == 4
    assert main(["localize", "--index", str(world / "db.index"), str(world / "q.h5"), "--sequence",
                 "seqslam", "--ds", "3", "--out", str(world / "seq.csv")]) == 0
    assert len([r for r in read_rows(world / "seq.csv") if r["rank"] == "1"]) == 3
    assert main(["localize", "--index", str(world / "db.index"), str(world / "q.h5"), "--sequence",
                 "hmm", "--ds", "3", "--mode", "online", "--out", str(world / "online.csv")]) == 0
    assert len([r for r in read_rows(world / "online.csv") if r["rank"] == "1"]) == 3


def _err(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    return err[-1] if err else ""


def test_localize_bad_input_gives_one_line_and_exit_2(world: Path, capsys: pytest.CaptureFixture) -> None:
    idx = str(world / "db.index")
    rng = np.random.default_rng(5)
    cases = {
        "other_model": (dset(unit(rng.normal(size=(2, 32))), "q", fingerprint="x"), "different model weights"),
        "other_dim": (dset(unit(rng.normal(size=(2, 16))), "q"), "dimension 16"),
        "nan": (dset(np.full((2, 32), np.nan, np.float32), "q"), "NaN"),
        "empty": (dset(np.zeros((0, 32), np.float32), "q"), "empty"),
    }
    for name, (ds, needle) in cases.items():
        save_descriptors(ds, world / f"{name}.h5")
        capsys.readouterr()
        assert main(["localize", "--index", idx, str(world / f"{name}.h5")]) == 2, name
        err = _err(capsys)
        assert err.startswith("panoplace localize: error:") and needle in err, (name, err)
    (world / "other.csv").write_text("image,x,y\nelse.png,0,0\n")
    assert main(["localize", "--index", idx, str(world / "q.h5"), "--database-set", str(world / "other.csv")]) == 2
    assert "db/0000.png" in _err(capsys)
    assert main(["localize", "--index", str(world / "none.index"), str(world / "q.h5")]) == 2
    assert "index file not found" in _err(capsys)
    # a VPR-Bench dataset whose ground truth does not match its images
    (world / "vpr" / "ref").mkdir(parents=True)
    (world / "vpr" / "query").mkdir()
    for i in range(3):
        (world / "vpr" / "ref" / f"{i}.png").write_bytes(b"")
        (world / "vpr" / "query" / f"{i}.png").write_bytes(b"")
    np.save(world / "vpr" / "ground_truth_new.npy", np.array([[0, [0]], [1, [1]]], dtype=object))
    assert main(["localize", "--index", idx, str(world / "q.h5"), "--database-set", str(world / "vpr")]) == 2
    assert "lists 2 queries but the query folder has 3 images" in _err(capsys)


def test_localize_scene_reranking_picks_the_place_whose_scene_agrees(world: Path, capsys: pytest.CaptureFixture) -> None:
    """db 60 is an alias of db 5 (same look, other place); the query's scene tells them apart."""
    from panoplace.scene.predict import write_scene_csv

    rng = np.random.default_rng(9)
    db = route_descriptors(rng, 120)
    db[60] = unit(db[5] + 0.01 * rng.normal(size=32))
    q = unit(db[60] + 0.3 * (db[5] - db[60]))[None]  # closer to the alias than to the true place
    dbs = dset(db, "db")
    save_index(build_index(dbs), world / "alias.index")
    save_descriptors(dset(q, "q"), world / "alias_q.h5")
    cats = ["plaza", "street"]
    db_probs = np.tile(np.array([[0.1, 0.9]], np.float32), (120, 1))
    db_probs[5] = [0.9, 0.1]  # the true place is a plaza, its alias a street
    write_scene_csv(world / "db_scenes.csv", dbs.ids, db_probs, cats)
    write_scene_csv(world / "q_scenes.csv", ["q/0000.png"], np.array([[0.95, 0.05]], np.float32), cats)
    base = ["localize", "--index", str(world / "alias.index"), str(world / "alias_q.h5"), "--k", "3"]
    scenes = ["--scenes", str(world / "q_scenes.csv"), "--database-scenes", str(world / "db_scenes.csv")]
    for extra, top in (([], "db/0060.png"), (scenes, "db/0005.png"), (scenes + ["--scene-mode", "filter"], "db/0005.png"),
                       (scenes + ["--scene-weight", "0"], "db/0060.png")):
        out = world / "scene_pred.csv"
        assert main(base + extra + ["--out", str(out), "--overwrite"]) == 0, extra
        rows = read_rows(out)
        assert rows[0]["database_id"] == top, (extra, rows[0])
    # bad use: one CSV only, a query the CSV lacks, sequence mode, negative weight
    capsys.readouterr()
    assert main(base + ["--scenes", str(world / "q_scenes.csv")]) == 2
    assert "needs both --scenes" in _err(capsys)
    assert main(["localize", "--index", str(world / "db.index"), str(world / "q.h5")] + scenes) == 2
    assert "no rows for 2 of 3 images" in _err(capsys)
    assert main(base + scenes + ["--sequence"]) == 2
    assert "leave out --sequence" in _err(capsys)
    assert main(base + scenes + ["--scene-weight", "-1"]) == 2
    assert "--scene-weight" in _err(capsys)


@pytest.mark.slow
def test_localize_images_with_the_index_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--image: query images are described with the checkpoint's model and the index's config."""
    cv2 = pytest.importorskip("cv2")
    torch = pytest.importorskip("torch")
    from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig
    from panoplace.extract import extract, list_images, load_model
    from panoplace.models.checkpoint import save_checkpoint

    rng = np.random.default_rng(6)
    (tmp_path / "imgs").mkdir()
    for i in range(6):
        cv2.imwrite(str(tmp_path / "imgs" / f"{i}.png"), (rng.random((64, 128, 3)) * 255).astype(np.uint8))
    pipeline = PipelineConfig(
        panorama=PanoramaConfig(projection="equirect", n_crops=4, pano_width=128, pano_height=32, crop_size=(32, 32)),
        model=ModelConfig(backbone="resnet18", weights="none", aggregator="gem", fusion="per-crop"))
    torch.manual_seed(0)
    model, panorama = load_model(None, pipeline)
    save_checkpoint(model, tmp_path / "model.pt", panorama)
    root, paths = list_images(tmp_path / "imgs")
    db = extract(root, paths, model, panorama, num_workers=0, device="cpu", progress=False).descriptors
    save_index(build_index(db), tmp_path / "db.index")
    out = tmp_path / "pred.csv"
    assert main(["-q", "localize", "--index", str(tmp_path / "db.index"), "--image", str(tmp_path / "imgs" / "3.png"),
                 "--checkpoint", str(tmp_path / "model.pt"), "--device", "cpu", "--out", str(out)]) == 0
    top = read_rows(out)[0]
    assert top["database_id"] == "3.png" and abs(float(top["heading_deg"])) < 1e-6
    torch.manual_seed(1)
    other, _ = load_model(None, pipeline)
    save_checkpoint(other, tmp_path / "other.pt", panorama)
    capsys.readouterr()
    assert main(["-q", "localize", "--index", str(tmp_path / "db.index"), "--image", str(tmp_path / "imgs"),
                 "--checkpoint", str(tmp_path / "other.pt"), "--device", "cpu"]) == 2
    assert "different model weights" in _err(capsys)

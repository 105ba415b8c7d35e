"""HTML report and plots: files written, linked, atomically."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import InputError
from panoplace.evaluation import evaluate_differences
from panoplace.evaluation.plots import plot_gallery, select_gallery
from panoplace.evaluation.report import write_report


@pytest.fixture
def route_case(rng, tmp_path):
    n = 30
    db_xy = np.stack([np.arange(n) * 5.0, np.sin(np.arange(n) / 5.0) * 20], axis=1)
    q_xy = db_xy + rng.normal(scale=1.0, size=db_xy.shape)
    D = rng.normal(1.0, 0.2, size=(n, n)).astype(np.float32)
    D[np.arange(n), np.arange(n)] -= 0.5
    gt = GroundTruth.from_positions(db_xy, q_xy, radius=6.0)
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    q_paths, d_paths = [], []
    for i in range(n):
        for name, paths in (("q", q_paths), ("d", d_paths)):
            p = img_dir / f"{name}{i:03d}.png"
            cv2.imwrite(str(p), rng.integers(0, 255, size=(16, 32, 3)).astype(np.uint8))
            paths.append(str(p))
    return D, gt, q_xy, db_xy, q_paths, d_paths


def test_report_writes_index_pngs_and_csv(route_case, tmp_path):
    D, gt, q_xy, db_xy, q_paths, d_paths = route_case
    res = evaluate_differences(D, gt, "seqslam", ds=5, query_xy=q_xy, db_xy=db_xy)
    single = evaluate_differences(D, gt, "single", query_xy=q_xy, db_xy=db_xy)
    out = tmp_path / "report"
    page = write_report(out, res, others={"single": single}, query_xy=q_xy, db_xy=db_xy,
                        query_paths=q_paths, db_paths=d_paths, max_gallery=6)
    assert page == out / "index.html"
    html = page.read_text()
    for name in ("pr.png", "recall_at_n.png", "trajectory.png", "gallery.png"):
        assert (out / name).stat().st_size > 1000
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{name}"' in html
    assert 'href="per_query.csv"' in html and "single" in html and "R@1" in html
    assert len((out / "per_query.csv").read_text().splitlines()) == 31
    assert not [p for p in out.iterdir() if ".tmp" in p.name]


def test_report_without_positions_or_images(route_case, tmp_path):
    D, gt, *_ = route_case
    res = evaluate_differences(D, gt, "hmm", ds=5)
    page = write_report(tmp_path / "r", res)
    names = {p.name for p in page.parent.iterdir()}
    assert {"index.html", "pr.png", "recall_at_n.png", "per_query.csv", "metrics.json"} <= names
    assert "trajectory.png" not in names and "gallery.png" not in names


def test_gallery_selection_and_unreadable_images(tmp_path):
    correct = np.array([True] * 20 + [False] * 5)
    rows = select_gallery(correct, max_rows=8)
    assert len(rows) == 8 and (~correct[rows]).sum() == 4
    assert len(select_gallery(correct[:3], max_rows=8)) == 3
    path = plot_gallery([tmp_path / "missing.png"], [None], [False], tmp_path / "g.png")
    assert path.stat().st_size > 0
    with pytest.raises(InputError):
        plot_gallery([], [], [], tmp_path / "none.png")

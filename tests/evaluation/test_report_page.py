"""The self-contained report page in headless chromium: map, curves, gallery, query detail."""

from __future__ import annotations

import functools
import http.server
import re
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from panoplace.data.groundtruth import GroundTruth
from panoplace.evaluation import evaluate_differences
from panoplace.evaluation.report import Drive, write_drives_report


@pytest.fixture
def two_drives(rng, tmp_path):
    """A 30-image map route and two query drives ('dusk' easy, 'night' hard), two matchers each."""
    n = 30
    db_xy = np.stack([np.arange(n) * 5.0, np.sin(np.arange(n) / 5.0) * 20], axis=1)
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    d_paths = []
    for i in range(n):
        p = img_dir / f"db{i:03d}.png"
        cv2.imwrite(str(p), rng.integers(0, 255, size=(16, 32, 3)).astype(np.uint8))
        d_paths.append(str(p))
    drives = []
    for name, noise in (("dusk", 0.15), ("night", 0.5)):
        q_xy = db_xy + rng.normal(scale=1.0, size=db_xy.shape)
        D = rng.normal(1.0, noise, size=(n, n)).astype(np.float32)
        D[np.arange(n), np.arange(n)] -= 0.5
        gt = GroundTruth.from_positions(db_xy, q_xy, radius=6.0)
        q_paths = []
        for i in range(n):
            p = img_dir / f"{name}{i:03d}.png"
            cv2.imwrite(str(p), rng.integers(0, 255, size=(16, 32, 3)).astype(np.uint8))
            q_paths.append(str(p))
        results = {"single": evaluate_differences(D, gt, "single", query_xy=q_xy, db_xy=db_xy, query_ids=[Path(p).name for p in q_paths]),
                   "seqslam": evaluate_differences(D, gt, "seqslam", ds=5, query_xy=q_xy, db_xy=db_xy, query_ids=[Path(p).name for p in q_paths])}
        drives.append(Drive(name, results, q_xy, q_paths))
    page = write_drives_report(tmp_path / "report", drives, db_xy=db_xy, db_paths=d_paths, title="two drives")
    return page, drives, d_paths


def test_page_is_self_contained(two_drives) -> None:
    page, drives, _ = two_drives
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)  # nothing from another host
    assert "<script src" not in text and "<link" not in text
    # the PNG plots stay available beside the page, the second drive's in its own folder
    for f in ("pr.png", "recall_at_n.png", "trajectory.png", "gallery.png", "per_query.csv",
              "night/pr.png", "night/gallery.png", "night/per_query.csv"):
        assert (page.parent / f).stat().st_size > 0, f


def _check_page(pg, drives, d_paths) -> None:
    pg.wait_for_selector("body[data-ready='1']", timeout=20000)
    assert pg.errors == []
    assert pg.locator("#cards .card").count() == 2
    assert pg.locator("#map circle.query").count() == 30
    assert pg.locator("#map path.route").count() == 1
    assert pg.locator("#pr path.curve").count() == 2 and pg.locator("#recall path.curve").count() == 2
    assert pg.locator("#conditions th.drive").count() == 2  # conditions side by side
    # failure browser: the wrong predictions of the first matcher, most confident first
    single = drives[0].results["single"].per_query
    wrong = np.flatnonzero(~single["correct"].astype(bool) & single["valid"].astype(bool))
    assert pg.locator("#failures .failure").count() == len(wrong) > 0
    order = [int(x) for x in pg.locator("#failures .failure").evaluate_all("els => els.map(e => e.dataset.q)")]
    assert order == sorted(wrong.tolist(), key=lambda i: -single["confidence"][i])
    # a click on a wrong query opens it: the query, its best match and its top-5 with costs
    q = int(wrong[0])
    pg.locator(f"#map circle.query[data-q='{q}']").click()
    top1 = int(single["top1_index"][q])
    assert pg.locator("#detail h2").inner_text() == f"Query {Path(drives[0].query_paths[q]).name}"
    assert pg.locator("#detail img.query-img").get_attribute("src").startswith("data:image/jpeg;base64,")
    assert pg.locator("#detail img.match-img").count() == 1
    assert pg.locator("#detail figcaption").nth(1).inner_text() == f"best match {Path(d_paths[top1]).name}"
    rows = pg.locator("#topk tr[data-rank]")
    assert rows.count() == 5
    cost = float(rows.nth(0).locator("td").nth(3).inner_text())
    r = drives[0].results["single"]
    assert cost == pytest.approx(r.candidate_costs[q, 0], abs=1e-4)
    assert pg.locator("#map line.match-line").count() == 1
    # the other drive: its own map, cards and failures
    pg.select_option("#drive", "1")
    night = drives[1].results["single"].per_query
    n_wrong = int((~night["correct"].astype(bool) & night["valid"].astype(bool)).sum())
    assert pg.locator("#failures .failure").count() == min(n_wrong, 48)
    assert pg.locator("#detail img.query-img").count() == 0  # selection cleared
    assert pg.errors == []


def test_report_page_in_chromium_from_a_file(two_drives, chromium_page) -> None:
    page, drives, d_paths = two_drives
    requests: list = []
    chromium_page.on("request", lambda req: requests.append(req.url))
    chromium_page.goto(page.resolve().as_uri())
    _check_page(chromium_page, drives, d_paths)
    assert all(u.startswith(("file:", "data:")) for u in requests), requests


def test_report_page_served_over_http(two_drives, chromium_page) -> None:
    page, drives, d_paths = two_drives
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(page.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        chromium_page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html", timeout=20000)
        _check_page(chromium_page, drives, d_paths)
    finally:
        server.shutdown()
        server.server_close()

"""``panoplace evaluate`` on small stores written by the test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from panoplace.cli import main
from panoplace.store import DescriptorSet, save_descriptors


@pytest.fixture
def setup(rng, tmp_path):
    """12-frame route: database and query CSVs (x, y) and descriptor stores whose ids are the
    image paths, the query store in shuffled order."""
    n = 12
    xy = np.stack([np.arange(n) * 10.0, np.zeros(n)], axis=1)
    for name, off in (("db", 0.0), ("q", 2.0)):
        lines = ["image,x,y"] + [f"{name}/{i:03d}.png,{x + off},{y}" for i, (x, y) in enumerate(xy)]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    db = rng.normal(size=(n, 8)).astype(np.float32)
    q = db + rng.normal(scale=0.05, size=db.shape).astype(np.float32)
    cfg = {"model": {"backbone": "x"}}
    save_descriptors(DescriptorSet(db, [f"db/{i:03d}.png" for i in range(n)], cfg, "w1"), tmp_path / "db.h5")
    perm = rng.permutation(n)
    save_descriptors(DescriptorSet(q[perm], [f"q/{i:03d}.png" for i in perm], cfg, "w1"), tmp_path / "q.h5")
    return tmp_path, q, db, cfg


def test_evaluate_cli_writes_json_csv_report(setup, capsys):
    d, *_ = setup
    rc = main(["evaluate", str(d / "q.h5"), str(d / "db.h5"), "--dataset", f"{d / 'db.csv'},{d / 'q.csv'}",
               "--matcher", "hmm", "--ds", "4", "--mode", "online", "--radius", "5",
               "--json", str(d / "m.json"), "--csv", str(d / "rows.csv"), "--report", str(d / "rep")])
    assert rc == 0
    js = json.loads((d / "m.json").read_text())
    assert set(js["recall"]) == {"1", "5", "10", "20"}
    assert {"pr_auc", "recall_at_100p", "n_queries"} <= set(js)
    assert js["n_queries"] == 12 and js["recall"]["1"] == 1.0  # shuffled store re-aligned
    assert js["params"]["mode"] == "online" and js["params"]["ds"] == 4
    assert js["within_m"]["5"] == 1.0
    rows = (d / "rows.csv").read_text().splitlines()
    assert rows[1].split(",")[1] == "q/000.png" and rows[1].split(",")[4] == "db/000.png"
    assert (d / "rep" / "index.html").is_file() and (d / "rep" / "trajectory.png").is_file()
    assert "Recall@1" in capsys.readouterr().out


def _fails(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("panoplace evaluate: error: ")
    return err[0]


def test_evaluate_cli_bad_input_exits_with_one_line(setup, capsys):
    d, q, db, cfg = setup
    spec = f"{d / 'db.csv'},{d / 'q.csv'}"
    save_descriptors(DescriptorSet(db, [f"db/{i:03d}.png" for i in range(12)], cfg, "other"), d / "db2.h5")
    assert "different model weights" in _fails(["evaluate", str(d / "q.h5"), str(d / "db2.h5"), "--dataset", spec], capsys)
    bad = q.copy()
    bad[1, 1] = np.nan
    save_descriptors(DescriptorSet(bad, [f"q/{i:03d}.png" for i in range(12)], cfg, "w1"), d / "nan.h5")
    assert "NaN" in _fails(["evaluate", str(d / "nan.h5"), str(d / "db.h5"), "--dataset", spec], capsys)
    save_descriptors(DescriptorSet(np.zeros((0, 8), np.float32), [], cfg, "w1"), d / "empty.h5")
    assert "empty" in _fails(["evaluate", str(d / "empty.h5"), str(d / "db.h5"), "--dataset", spec], capsys)
    save_descriptors(DescriptorSet(q[:9], [f"q/{i:03d}.png" for i in range(9)], cfg, "w1"), d / "short.h5")
    assert "3 missing" in _fails(["evaluate", str(d / "short.h5"), str(d / "db.h5"), "--dataset", spec], capsys)
    assert "has no queries and ground truth" in _fails(["evaluate", str(d / "q.h5"), str(d / "db.h5"), "--dataset", str(d / "db.csv")], capsys)

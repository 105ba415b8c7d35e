"""`panoplace demo` end to end on a tiny world (the README's main command, scaled down)."""

from __future__ import annotations

import json

import pytest

from panoplace.cli import main
from panoplace.demo import DemoConfig, run_demo
from panoplace.errors import InputError


@pytest.mark.slow
def test_demo_writes_report_and_localises(tmp_path):
    cfg = DemoConfig(frames=30, ds=5, conditions=("day2",), width=512, height=256, crops=4,
                     num_clusters=8, workers=0)
    res = run_demo(tmp_path / "demo", cfg, progress=False)
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    results = summary["results"]["day->day2"]
    assert set(results) == {"raw pixels", "GeM", "NetVLAD", "NetVLAD + hmm (ds=5)"}
    for r in results.values():
        assert set(r["recall"]) >= {"1", "5", "10"} and 0.0 <= r["pr_auc"] <= 1.0
        assert r["n_queries"] == 30
    # same condition, the next lane: chance is ~0.13 (about 4 of 30 frames lie within 10 m)
    assert results["NetVLAD"]["recall"]["1"] >= 0.5
    assert results["NetVLAD + hmm (ds=5)"]["recall"]["1"] >= results["NetVLAD"]["recall"]["1"]
    assert (tmp_path / "demo" / "index.html").is_file()
    page = tmp_path / "demo" / "reports" / "day2" / "index.html"
    assert page.is_file() and ".png" in page.read_text()
    assert (tmp_path / "demo" / "descriptors" / "day.h5").is_file()
    assert "NetVLAD" in res.table and "R@1" in res.table


def test_demo_bad_options(tmp_path, capsys):
    with pytest.raises(InputError, match="at least twice"):
        DemoConfig(frames=5, ds=10)
    assert main(["demo", "--out", str(tmp_path), "--frames", "4"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err

"""Behaviour regression: the README pipeline (synth → cluster → extract equirect/annular/GeM →
index → localize single/sequence → evaluate → pca → scene train/predict) on a tiny world gives
the outputs recorded before the 0.2 redesign (``reference/``, written by ``record.py``):
descriptors within 1e-6, the same ids, and the same CSV/JSON outputs (numbers within 1e-6)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.regression.pipeline import run

REFERENCE = Path(__file__).with_name("reference")


def _same(a: object, b: object, where: str) -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, str) and isinstance(b, str):
        try:
            fa, fb = float(a), float(b)
        except ValueError:
            assert a == b, where
        else:
            assert fa == pytest.approx(fb, abs=1e-6), where
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=1e-6, nan_ok=True), where
    else:
        assert a == b, where


@pytest.mark.slow
def test_readme_pipeline_outputs_unchanged(tmp_path: Path) -> None:
    out = run(tmp_path)
    arrays = np.load(REFERENCE / "arrays.npz")
    texts = json.loads((REFERENCE / "outputs.json").read_text())
    assert sorted(k for k, v in out.items() if isinstance(v, np.ndarray)) == sorted(arrays.files)
    for name in arrays.files:
        ref, got = arrays[name], out[name]
        assert isinstance(got, np.ndarray)
        if ref.dtype.kind in "fc":
            assert got.shape == ref.shape, name
            np.testing.assert_allclose(got, ref, atol=1e-6, rtol=0, err_msg=name)
        else:
            assert got.tolist() == ref.tolist(), name
    # JSON round trip so that tuples/ints compare like the recorded file
    _same(texts, json.loads(json.dumps({k: v for k, v in out.items() if not isinstance(v, np.ndarray)})),
          "outputs")

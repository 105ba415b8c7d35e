"""PCA-whitening: identity covariance on the fit data, nesting, the checkpoint layer, the verb."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import torch

from panoplace.cli import main
from panoplace.errors import DescriptorMismatchError, InputError
from panoplace.extract import extract, list_images
from panoplace.models.checkpoint import load_checkpoint
from panoplace.store import DescriptorSet, load_descriptors, save_descriptors
from panoplace.training.pca import fit_pca_whitening, pca_recall_table, whiten, whiten_checkpoint


def _correlated(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + 3.0).astype(np.float32)


@pytest.mark.parametrize("n,d,dim", [(40, 90, 30), (400, 24, 24), (400, 24, 10)], ids=["gram", "cov", "cov-cut"])
def test_whitened_fit_data_has_identity_covariance(n: int, d: int, dim: int) -> None:
    x = _correlated(n, d)
    mean, comps = fit_pca_whitening(x, dim)
    assert mean.shape == (d,) and comps.shape == (dim, d)
    y = (x - mean) @ comps.T
    np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(dim), atol=1e-6)
    # nested: the first rows of a larger fit are the smaller fit
    m2, c2 = fit_pca_whitening(x, dim // 2)
    np.testing.assert_allclose(c2, comps[: dim // 2], atol=1e-8)


def test_impossible_dimensions_raise() -> None:
    x = _correlated(10, 50)
    with pytest.raises(InputError, match="at most 9"):
        fit_pca_whitening(x, 10)
    dup = np.repeat(_correlated(3, 50), 4, axis=0)  # 12 rows spanning 2 centred dimensions
    with pytest.raises(InputError, match="span only 2"):
        fit_pca_whitening(dup, 5)
    with pytest.raises(InputError, match="NaN"):
        fit_pca_whitening(np.full((5, 3), np.nan), 2)


@pytest.fixture(scope="module")
def day_store(street: Dict[str, Path], clustered: Path, tmp_path_factory) -> Path:
    model, panorama = load_checkpoint(clustered)
    root, paths = list_images(street["day"])
    out = tmp_path_factory.mktemp("pca") / "day.h5"
    extract(root, paths, model, panorama, out=out, num_workers=0, device="cpu", progress=False)
    return out


def test_checkpoint_round_trip_applies_the_whitening(street, clustered, day_store, tmp_path) -> None:
    out, mean, comps = whiten_checkpoint(clustered, day_store, 12, tmp_path / "pca.pt")
    model, panorama = load_checkpoint(out)
    assert model.config.whitening_dim == 12 and model.descriptor_dim(2) == 12 and panorama.n_crops == 2
    plain = load_descriptors(day_store).descriptors
    # the loaded layer maps the fit data to identity covariance (before the final L2)
    with torch.no_grad():
        y = model.whitening(torch.from_numpy(plain)).double().numpy()
    np.testing.assert_allclose(np.cov(y, rowvar=False), np.eye(12), atol=1e-3)
    # extraction with the new checkpoint gives the whitened, L2-normalised descriptors
    root, paths = list_images(street["day"])
    got = extract(root, paths, model, panorama, num_workers=0, device="cpu", progress=False).descriptors
    assert got.descriptors.shape == (30, 12) and got.config["model"]["whitening_dim"] == 12
    np.testing.assert_allclose(got.descriptors, whiten(plain, mean, comps), atol=1e-4)
    with pytest.raises(InputError, match="already has a whitening"):
        whiten_checkpoint(out, day_store, 8, tmp_path / "again.pt")


def test_descriptors_of_another_model_are_refused(clustered, day_store, tmp_path) -> None:
    ds = load_descriptors(day_store)
    save_descriptors(DescriptorSet(ds.descriptors, ds.ids, ds.config, "0" * 16), tmp_path / "other.h5")
    with pytest.raises(DescriptorMismatchError, match="not extracted with"):
        whiten_checkpoint(clustered, tmp_path / "other.h5", 8, tmp_path / "x.pt")


def test_pca_verb_fits_and_reports_recall(street, clustered, day_store, tmp_path, capsys) -> None:
    q = tmp_path / "dusk.h5"
    assert main(["extract", str(street["dusk"]), "--checkpoint", str(clustered), "--out", str(q),
                 "--workers", "0", "--no-progress"]) == 0
    out = tmp_path / "pca.pt"
    rc = main(["pca", str(day_store), "--checkpoint", str(clustered), "--dim", "16", "--out", str(out),
               "--queries", str(q), "--db-set", str(street["day"]), "--query-set", str(street["dusk"]),
               "--eval-dims", "4096", "16", "8", "--json", str(tmp_path / "r.json")])
    assert rc == 0 and out.is_file()
    text = capsys.readouterr().out
    assert "none" in text and "16" in text and "4096" not in text  # 4096 > what 30 descriptors allow
    table = json.loads((tmp_path / "r.json").read_text())
    assert set(table) == {"none", "16", "8"} and all(0.0 <= v <= 1.0 for r in table.values() for v in r.values())
    assert load_checkpoint(out)[0].config.whitening_dim == 16
    # the library table agrees with the un-whitened recall of the same data
    from panoplace.data import load_pair

    pair = load_pair(street["day"], street["dusk"])
    lib = pca_recall_table(load_descriptors(day_store).descriptors, load_descriptors(q).descriptors,
                           pair.ground_truth, [8], ns=[1, 5, 10])
    assert lib[None][1] == pytest.approx(table["none"]["1"]) and lib[8][1] == pytest.approx(table["8"]["1"])
    assert main(["pca", str(day_store), "--checkpoint", str(clustered), "--dim", "8", "--out", str(out),
                 "--queries", str(q)]) == 2

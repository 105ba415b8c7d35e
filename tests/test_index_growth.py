"""Large maps: memory-mapped index files, format-1 files, and maps that grow without retraining."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

import faiss
import h5py
import numpy as np
import pytest

from panoplace.cli import main
from panoplace.errors import DescriptorMismatchError, InputError
from panoplace.index import (DRIFT_RATIO, build_index, load_index, new_index, save_index, train_index,
                             update_index)
from panoplace.store import DescriptorSet, save_descriptors

CONFIG = {"panorama": {"n_crops": 4}, "model": {"backbone": "b", "aggregator": "gem", "fusion": "add"}}


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, n: int, d: int, centres: np.ndarray) -> np.ndarray:
    return unit(centres[rng.integers(0, len(centres), n)] + 0.5 * rng.normal(size=(n, d)))


def make_set(x: np.ndarray, start: int = 0) -> DescriptorSet:
    return DescriptorSet(x, [f"db/{i:05d}.png" for i in range(start, start + len(x))], CONFIG, "w1")


def test_saved_ivfpq_index_is_memory_mapped_and_shared(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    db = clustered(rng, 3000, 32, rng.normal(size=(30, 32)))
    index = build_index(make_set(db), kind="ivfpq", nlist=16, m=8, nbits=6, nprobe=4)
    save_index(index, tmp_path / "map.index")
    sidecars = list(tmp_path.glob("map.index.*.faiss"))
    assert len(sidecars) == 1
    mapped = load_index(tmp_path / "map.index")
    copy = load_index(tmp_path / "map.index", mmap=False)
    maps = [line for line in Path("/proc/self/maps").read_text().splitlines() if sidecars[0].name in line]
    assert maps and all(" r--s " in line for line in maps)  # a shared, read-only file mapping
    q = db[:20]
    for loaded in (mapped, copy):
        np.testing.assert_array_equal(loaded.search(q, 5)[1], index.search(q, 5)[1])
    assert mapped.train_residual == pytest.approx(index.train_residual) and index.train_residual > 0
    # saving again replaces the faiss file; the old one is removed
    save_index(copy, tmp_path / "map.index")
    assert len(list(tmp_path.glob("map.index.*.faiss"))) == 1


def test_format_1_index_files_still_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    db = unit(rng.normal(size=(50, 16)))
    index = build_index(make_set(db))
    with h5py.File(tmp_path / "old.index", "w") as f:  # the 0.1 layout: faiss bytes embedded
        f.create_dataset("faiss_index", data=faiss.serialize_index(index.index))
        f.create_dataset("ids", data=np.array(index.ids, dtype=object), dtype=h5py.string_dtype("utf-8"))
        f.attrs["config"] = json.dumps(CONFIG)
        f.attrs["fingerprint"] = "w1"
        f.attrs["kind"] = "flat"
        f.attrs["params"] = json.dumps(asdict(index.params))
        f.attrs["descriptor_shape"] = json.dumps([16])
        f.attrs["format_version"] = 1
    old = load_index(tmp_path / "old.index")
    np.testing.assert_array_equal(old.search(db[:5], 3)[1], index.search(db[:5], 3)[1])


def test_a_missing_or_foreign_faiss_file_is_one_clear_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    save_index(build_index(make_set(unit(rng.normal(size=(40, 16))))), tmp_path / "a.index")
    sidecar = next(tmp_path.glob("a.index.*.faiss"))
    sidecar.write_bytes(sidecar.read_bytes()[:-8])
    with pytest.raises(InputError, match="another size"):
        load_index(tmp_path / "a.index")
    sidecar.unlink()
    with pytest.raises(InputError, match="is missing"):
        load_index(tmp_path / "a.index")


def test_update_adds_only_new_frames_and_equals_a_build_with_the_same_quantizer() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(30, 32))
    old, new = clustered(rng, 3000, 32, centres), clustered(rng, 300, 32, centres)
    index = build_index(make_set(old), kind="ivfpq", nlist=16, m=8, nbits=6, nprobe=4)
    trained = new_index(32, index.params)
    train_index(trained, old, index.params)
    everything = make_set(np.concatenate([old, new]))
    update = update_index(index, everything)  # the old frames are already there: only the new ones are added
    assert (update.added, update.already) == (300, 3000)
    assert not update.drifted and 0 < update.residual_ratio < DRIFT_RATIO
    assert index.ids == everything.ids
    ref = build_index(everything, kind="ivfpq", nlist=16, m=8, nbits=6, nprobe=4, trained=index_quantizer(index))
    np.testing.assert_array_equal(index.search(new[:30], 5)[1], ref.search(new[:30], 5)[1])
    assert update_index(index, everything).added == 0


def index_quantizer(index) -> object:  # the trained quantizer and codebooks of an index, emptied
    clone = faiss.deserialize_index(faiss.serialize_index(index.index))
    clone.reset()
    return clone


def test_drifted_new_frames_warn_that_retraining_pays(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(4)
    index = build_index(make_set(clustered(rng, 3000, 32, rng.normal(size=(30, 32)))), kind="ivfpq",
                        nlist=16, m=8, nbits=6)
    elsewhere = clustered(rng, 300, 32, rng.normal(size=(30, 32)))  # another city's appearance
    with caplog.at_level(logging.WARNING, logger="panoplace.index"):
        update = update_index(index, make_set(elsewhere, start=3000))
    assert update.drifted and "retraining" in caplog.text


def test_update_refuses_descriptors_of_another_model() -> None:
    rng = np.random.default_rng(5)
    index = build_index(make_set(unit(rng.normal(size=(40, 16)))))
    other = DescriptorSet(unit(rng.normal(size=(5, 16))), [f"n{i}" for i in range(5)], CONFIG, "w2")
    with pytest.raises(DescriptorMismatchError):
        update_index(index, other)


def test_index_verb_update(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(6)
    centres = rng.normal(size=(30, 32))
    x = clustered(rng, 3300, 32, centres)
    save_descriptors(make_set(x[:3000]), tmp_path / "old.h5")
    save_descriptors(make_set(x), tmp_path / "all.h5")
    args = ["--kind", "ivfpq", "--nlist", "16", "--m", "8", "--nbits", "6"]
    assert main(["index", str(tmp_path / "old.h5"), str(tmp_path / "map.index"), *args]) == 0
    assert main(["index", str(tmp_path / "all.h5"), str(tmp_path / "map.index"), "--update"]) == 0
    grown = load_index(tmp_path / "map.index")
    assert len(grown) == 3300 and grown.ids[-1] == "db/03299.png"
    code = main(["index", str(tmp_path / "all.h5"), str(tmp_path / "none.index"), "--update"])
    assert code == 2 and "no index to update" in capsys.readouterr().err


def test_extract_append_adds_only_new_images_and_half_stores(tmp_path: Path) -> None:
    from panoplace.store import load_descriptors

    assert main(["synth", str(tmp_path / "w"), "--frames", "8", "--traversals", "day", "--width", "256",
                 "--height", "128", "--no-progress"]) == 0
    images = sorted((tmp_path / "w/day/equirect").glob("*.jpg"))
    first = tmp_path / "first.txt"
    first.write_text("\n".join(p.name for p in images[:5]) + "\n")
    every = tmp_path / "every.txt"
    every.write_text("\n".join(p.name for p in images) + "\n")
    for f in (first, every):
        f.rename(tmp_path / "w/day/equirect" / f.name)
    src = tmp_path / "w/day/equirect"
    opts = ["--aggregator", "gem", "--projection", "equirect", "--crops", "2", "--crop-size", "64", "64",
            "--no-progress"]
    assert main(["extract", str(src / "every.txt"), "--out", str(tmp_path / "all.h5"), *opts]) == 0
    assert main(["extract", str(src / "first.txt"), "--out", str(tmp_path / "grow.h5"), *opts]) == 0
    assert len(load_descriptors(tmp_path / "grow.h5")) == 5
    assert main(["extract", str(src / "every.txt"), "--out", str(tmp_path / "grow.h5"), "--append", *opts]) == 0
    whole, grown = load_descriptors(tmp_path / "all.h5"), load_descriptors(tmp_path / "grow.h5")
    assert grown.ids == whole.ids
    np.testing.assert_allclose(grown.descriptors, whole.descriptors, atol=1e-6)
    # another model cannot append to the store; float16 stores read back within float16 precision
    code = main(["extract", str(src / "every.txt"), "--out", str(tmp_path / "grow.h5"), "--append",
                 *opts[:-1], "--aggregator", "avg", "--no-progress"])
    assert code == 2
    assert main(["extract", str(src / "every.txt"), "--out", str(tmp_path / "half.h5"), "--half", *opts]) == 0
    half = load_descriptors(tmp_path / "half.h5")
    with h5py.File(tmp_path / "half.h5", "r") as f:
        assert f["descriptors"].dtype == np.float16
    assert half.descriptors.dtype == np.float32
    np.testing.assert_allclose(half.descriptors, whole.descriptors, atol=2e-3)

"""Map building on Ray in local mode (the ``ray`` extra; CI installs it, so these run there)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator, Tuple

import numpy as np
import pytest
import torch

if not os.environ.get("CI"):
    pytest.importorskip("ray")

from panoplace.cli import main  # noqa: E402
from panoplace.errors import ImageReadError  # noqa: E402
from panoplace.extract import extract, list_images, load_model  # noqa: E402
from panoplace.index import IndexParams, build_index, new_index, train_index  # noqa: E402
from panoplace.ray_engine import RayError, build_index_ray, connect, extract_ray  # noqa: E402
from panoplace.shards import ShardRun, shard_name, write_manifest, write_shard  # noqa: E402
from panoplace.store import DescriptorSet, is_sharded_store, load_descriptors  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_local() -> Iterator[Any]:
    ray = connect(num_cpus=2)
    # the workers cannot import this test module: ship the classes defined here by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Path]:
    w = tmp_path_factory.mktemp("rayworld")
    assert main(["synth", str(w / "world"), "--frames", "10", "--traversals", "day", "--width", "256",
                 "--height", "128", "--no-progress"]) == 0
    assert main(["cluster", str(w / "world/day/frames.csv"), "--projection", "equirect", "--crops", "4",
                 "--crop-size", "64", "64", "--num-clusters", "8", "--out", str(w / "model.pt"),
                 "--no-progress"]) == 0
    return w / "world/day/frames.csv", w / "model.pt"


class CrashOnce(torch.nn.Module):
    """Wraps a place model; the first forward in any process kills that process (a worker dying
    mid-shard), once: a marker file records that it happened."""

    def __init__(self, model: Any, marker: str) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config
        self.marker = marker

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        return self.inner.preprocess(crops)

    def descriptor_dim(self, n_crops: int) -> int:
        return self.inner.descriptor_dim(n_crops)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        if not os.path.exists(self.marker):
            Path(self.marker).write_text("crashed")
            os._exit(1)
        return self.inner(crops)


def test_ray_extraction_equals_in_process_and_resumes(ray_local: Any, world: Tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    frames, ckpt = world
    root, paths = list_images(frames)
    model, panorama = load_model(ckpt)
    ref = extract(root, paths, model, panorama, progress=False).descriptors
    out = tmp_path / "shards"
    res = extract_ray(root, paths, model, panorama, out, shard_size=3, progress=False)
    assert res.computed == 4 and res.n_ok == len(paths) and is_sharded_store(out)
    got = load_descriptors(out)
    assert got.ids == ref.ids
    np.testing.assert_allclose(got.descriptors, ref.descriptors, atol=1e-5, rtol=0)
    assert got.config == ref.config and got.fingerprint == ref.fingerprint
    # a re-run computes nothing; a lost shard is the only one computed again
    assert extract_ray(root, paths, model, panorama, out, shard_size=3, progress=False).computed == 0
    before = (out / shard_name(0)).stat().st_mtime_ns
    (out / shard_name(2)).unlink()
    assert extract_ray(root, paths, model, panorama, out, shard_size=3, progress=False).computed == 1
    assert (out / shard_name(0)).stat().st_mtime_ns == before
    np.testing.assert_allclose(load_descriptors(out).descriptors, ref.descriptors, atol=1e-5, rtol=0)


def test_a_worker_that_dies_costs_a_retry_not_the_job(ray_local: Any, world: Tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    frames, ckpt = world
    root, paths = list_images(frames)
    model, panorama = load_model(ckpt)
    ref = extract(root, paths, model, panorama, progress=False).descriptors
    marker = tmp_path / "crashed"
    res = extract_ray(root, paths, CrashOnce(model, str(marker)), panorama, tmp_path / "out", shard_size=5,
                      progress=False)
    assert marker.exists()  # a worker did die
    got = load_descriptors(res.out)
    assert got.ids == ref.ids
    np.testing.assert_allclose(got.descriptors, ref.descriptors, atol=1e-5, rtol=0)


def test_bad_images_follow_on_error_like_in_process(ray_local: Any, world: Tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    frames, ckpt = world
    src_root, paths = list_images(frames)
    root = tmp_path / "images"
    shutil.copytree(src_root, root)
    bad = paths[4]
    (root / bad).write_bytes(b"not an image")
    model, panorama = load_model(ckpt)
    ref = extract(root, paths, model, panorama, on_error="skip", progress=False)
    res = extract_ray(root, paths, model, panorama, tmp_path / "skip", shard_size=3, on_error="skip",
                      progress=False)
    assert [p for p, _ in res.skipped] == [p for p, _ in ref.skipped] == [bad]
    got = load_descriptors(res.out)
    assert got.ids == ref.descriptors.ids
    np.testing.assert_allclose(got.descriptors, ref.descriptors.descriptors, atol=1e-5, rtol=0)
    with pytest.raises(ImageReadError, match="000004"):
        extract_ray(root, paths, model, panorama, tmp_path / "stop", shard_size=3, on_error="stop",
                    progress=False)
    assert not is_sharded_store(tmp_path / "stop")  # no manifest: the run did not finish


def test_cli_extract_and_index_with_the_ray_engine(ray_local: Any, world: Tuple[Path, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    frames, ckpt = world
    out = tmp_path / "day_shards"
    assert main(["extract", str(frames), "--checkpoint", str(ckpt), "--out", str(out), "--engine", "ray",
                 "--shard-size", "4", "--no-progress"]) == 0
    assert main(["extract", str(frames), "--checkpoint", str(ckpt), "--out", str(tmp_path / "day.h5"),
                 "--no-progress"]) == 0
    a, b = load_descriptors(out), load_descriptors(tmp_path / "day.h5")
    assert a.ids == b.ids
    np.testing.assert_allclose(a.descriptors, b.descriptors, atol=1e-5, rtol=0)
    # the sharded store reads wherever a store is read: index (Ray build) and evaluate
    assert main(["index", str(out), str(tmp_path / "day.index"), "--engine", "ray"]) == 0
    assert main(["localize", "--index", str(tmp_path / "day.index"), str(tmp_path / "day.h5"),
                 "--out", str(tmp_path / "pred.csv")]) == 0
    rows = (tmp_path / "pred.csv").read_text().splitlines()
    assert len(rows) > len(a)  # a header and the top-k of every query


def test_unreachable_cluster_is_one_line(tmp_path: Path, world: Tuple[Path, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RayError, match="cannot reach a Ray cluster at 127.0.0.1:1"):
        connect("127.0.0.1:1")
    frames, ckpt = world
    code = main(["extract", str(frames), "--checkpoint", str(ckpt), "--out", str(tmp_path / "x"),
                 "--engine", "ray", "--address", "127.0.0.1:1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("panoplace extract: error: cannot reach a Ray cluster at 127.0.0.1:1")
    assert not any("Traceback" in line for line in err)


def _random_shards(folder: Path, n: int = 900, d: int = 32, shard: int = 200) -> DescriptorSet:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"img{i:04d}" for i in range(n)]
    cfg = {"model": {"aggregator": "test"}}
    run = ShardRun(config=cfg, fingerprint="f", ids_hash="h", shard_size=shard, n_images=n)
    infos = []
    for j, s in enumerate(range(0, n, shard)):
        part = DescriptorSet(x[s:s + shard], ids[s:s + shard], cfg, "f")
        infos.append(write_shard(folder, j, s, min(s + shard, n), part, [], run))
    write_manifest(folder, run, infos)
    return DescriptorSet(x, ids, cfg, "f")


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_sharded_index_equals_a_single_process_build(ray_local: Any, tmp_path: Path, kind: str) -> None:
    full = _random_shards(tmp_path / "shards")
    params = IndexParams(kind=kind, nlist=8, m=4, nbits=6, nprobe=3)
    trained = new_index(full.dim, params)
    train_index(trained, full.descriptors[::2].copy(), params)
    merged = build_index_ray(tmp_path / "shards", params, trained=trained)
    single = build_index(full, kind=kind, nlist=8, m=4, nbits=6, nprobe=3, trained=trained)
    assert merged.ids == single.ids and len(merged) == len(full)
    q = full.descriptors[:50] + 0.05
    s1, i1 = merged.search(q, 10)
    s2, i2 = single.search(q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    # trained on a sample inside build_index_ray (no quantizer given): still a working index
    own = build_index_ray(tmp_path / "shards", params, train_samples=400)
    assert len(own) == len(full) and (own.search(full.descriptors[:5], 1)[1][:, 0] >= 0).all()

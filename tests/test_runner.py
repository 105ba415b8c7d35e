"""The image runner: typed bad-image records and the on_error policy, resume through the partial
store, prefetch/no prefetch/worker decoding giving the same rows, and the engine seam (a second
engine written here plugs in and gives the same results)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator, List

import cv2
import numpy as np
import pytest
import torch

from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig
from panoplace.errors import ImageReadError, InputError
from panoplace.extract import extract, load_model
from panoplace.panorama.project import PanoramaProjector
from panoplace.runner import (EARLIER_RUN, BadImage, Batch, BatchStep, CropDataset, ImageRunner, Job, PartialSpec,
                              StepFactory, list_images, run_hash)
from panoplace.store import DescriptorSet, PartialStore

PANO = PanoramaConfig(projection="equirect", n_crops=4, pano_width=256, pano_height=64, crop_size=(32, 32))


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """Ten small textured 'equirectangular' PNGs."""
    rng = np.random.default_rng(3)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(10):
        cv2.imwrite(str(d / f"{i:03d}.png"), (rng.random((64, 128, 3)) * 255).astype(np.uint8))
    return d


def mean_step(calls: List[int]) -> StepFactory:
    """A cheap exact step: the mean colour of every crop, ``(B, K, 3)``; counts images seen."""
    def factory(device: torch.device) -> BatchStep:
        def step(crops: torch.Tensor) -> np.ndarray:
            calls.append(crops.shape[0])
            return crops.float().mean(dim=(2, 3)).numpy()
        return step
    return factory


def runner(image_dir: Path, **kw) -> ImageRunner:
    root, paths = list_images(image_dir)
    kw = {"batch_size": 3, "device": "cpu", "progress": False, "num_workers": 0, **kw}
    return ImageRunner(root, paths, PANO, **kw)


def reference_rows(image_dir: Path) -> np.ndarray:
    """The step's rows computed image by image, without the runner."""
    root, paths = list_images(image_dir)
    proj = PanoramaProjector(PANO)
    return np.stack([proj.crops(cv2.cvtColor(cv2.imread(str(root / p)), cv2.COLOR_BGR2RGB)).astype(np.float32)
                     .mean(axis=(1, 2)) for p in paths])


def test_rows_come_back_in_image_order_equal_to_image_by_image(image_dir) -> None:
    calls: List[int] = []
    res = runner(image_dir).run(mean_step(calls), (4, 3))
    assert res.rows.shape == (10, 4, 3) and res.ok.all() and res.bad == []
    assert calls == [3, 3, 3, 1]
    np.testing.assert_allclose(res.rows, reference_rows(image_dir), rtol=0, atol=1e-4)


def test_bad_images_stop_or_are_skipped_as_typed_records(image_dir) -> None:
    (image_dir / "004.png").write_bytes(b"\x89PNG garbage")
    (image_dir / "007.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="004.png") as exc:
        runner(image_dir).run(mean_step([]), (4, 3))
    assert exc.value.path == "004.png" and exc.value.reason == "cannot be decoded as an image"
    assert not [t for t in threading.enumerate() if t.name == "panoplace-prefetch"]  # decoding stopped

    calls: List[int] = []
    res = runner(image_dir, on_error="skip").run(mean_step(calls), (4, 3))
    assert res.bad == [BadImage("004.png", "cannot be decoded as an image"), BadImage("007.png", "empty file")]
    assert all(isinstance(b, BadImage) for b in res.bad)
    assert res.ok.tolist() == [i not in (4, 7) for i in range(10)]
    assert sum(calls) == 8  # the model never sees the bad images
    assert not res.rows[[4, 7]].any()
    good = reference_rows_without(image_dir, (4, 7))
    np.testing.assert_allclose(res.rows[res.kept()], good, rtol=0, atol=1e-4)
    with pytest.raises(InputError, match="on_error"):
        runner(image_dir, on_error="ignore")


def reference_rows_without(image_dir: Path, bad: tuple) -> np.ndarray:
    for i in bad:
        (image_dir / f"{i:03d}.png").rename(image_dir.parent / f"bad{i}.png")
    try:
        return reference_rows(image_dir)
    finally:
        for i in bad:
            (image_dir.parent / f"bad{i}.png").rename(image_dir / f"{i:03d}.png")


def test_resume_after_an_interrupted_run_gives_identical_rows(image_dir, tmp_path) -> None:
    (image_dir / "005.png").write_bytes(b"not an image")
    clean = runner(image_dir, on_error="skip").run(mean_step([]), (4, 3))
    spec = PartialSpec.beside(tmp_path / "out.h5", {"what": "means"}, "fp")
    calls: List[int] = []
    inner = mean_step(calls)

    def dying(device: torch.device):
        step = inner(device)

        def run(crops: torch.Tensor) -> np.ndarray:
            if len(calls) == 2:
                raise KeyboardInterrupt  # killed during the third batch
            return step(crops)
        return run

    with pytest.raises(KeyboardInterrupt):
        runner(image_dir, on_error="skip").run(dying, (4, 3), spec)
    assert spec.path.exists()
    calls.clear()
    written = []
    res = runner(image_dir, on_error="skip").run(inner, (4, 3), spec, write=lambda r: written.append(len(r.rows)))
    assert sum(calls) == 4  # only the images of the batches not finished before
    assert written == [10] and not spec.path.exists()  # outputs written, then the partial store removed
    np.testing.assert_array_equal(res.rows, clean.rows)
    np.testing.assert_array_equal(res.ok, clean.ok)
    assert clean.bad == [BadImage("005.png", "cannot be decoded as an image")]
    assert res.bad == [BadImage("005.png", EARLIER_RUN)]  # read as bad before the interruption


def test_a_partial_store_of_another_run_is_not_resumed(image_dir, tmp_path) -> None:
    spec = PartialSpec.beside(tmp_path / "out.h5", {"what": "means"}, "fp")
    first = runner(image_dir)
    root, paths = first.root, first.paths
    stale = PartialStore(spec.path, spec.config, "other-weights", run_hash(root, paths), (4, 3))
    stale.open()
    stale.append(np.full((3, 4, 3), 7.0, np.float32), paths[:3], [True] * 3)
    stale.close()
    calls: List[int] = []
    res = first.run(mean_step(calls), (4, 3), spec)
    assert sum(calls) == 10 and not (res.rows == 7.0).all(axis=(1, 2)).any()


def test_prefetch_thread_no_thread_and_worker_process_give_identical_rows(image_dir) -> None:
    a = runner(image_dir, prefetch=True).run(mean_step([]), (4, 3))
    b = runner(image_dir, prefetch=False).run(mean_step([]), (4, 3))
    c = runner(image_dir, num_workers=1).run(mean_step([]), (4, 3))
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.rows, c.rows)


class ReversedSerialEngine:
    """A second engine: decodes in the calling thread, no DataLoader, and finishes the batches
    in reverse order (as a distributed engine may) - the runner has to put rows back in order."""

    def __init__(self) -> None:
        self.batches_run = 0

    def run(self, job: Job, step: StepFactory) -> Iterator[Batch]:
        fn = step(job.device)
        ds = CropDataset(job.root, job.paths, job.projector)
        groups = [job.indices[s:s + job.batch_size] for s in range(0, len(job.indices), job.batch_size)]
        for group in reversed(groups):
            items = [ds[i] for i in group]
            ok = [(c, i) for c, i, b in items if b is None]
            out = None
            if ok:
                with torch.inference_mode():
                    out = fn(torch.stack([c for c, _ in ok]).to(job.device))
            self.batches_run += 1
            yield Batch(np.array([i for _, i in ok], dtype=np.int64), out,
                        {i: b for _, i, b in items if b is not None})


def test_another_engine_plugs_in_and_gives_identical_results(image_dir, tmp_path) -> None:
    (image_dir / "002.png").write_bytes(b"broken")
    default = runner(image_dir, on_error="skip").run(mean_step([]), (4, 3))
    engine = ReversedSerialEngine()
    spec = PartialSpec.beside(tmp_path / "out.h5", {}, "fp")
    other = runner(image_dir, on_error="skip", engine=engine).run(mean_step([]), (4, 3), spec)
    assert engine.batches_run == 4
    np.testing.assert_array_equal(other.rows, default.rows)
    np.testing.assert_array_equal(other.ok, default.ok)
    assert other.bad == default.bad and not spec.path.exists()
    # a real model through extract(), with the second engine: the same descriptors
    torch.manual_seed(0)
    model, _ = load_model(None, _gem_pipeline())
    root, paths = list_images(image_dir)
    a = extract(root, paths, model, PANO, batch_size=3, device="cpu", on_error="skip", progress=False,
                num_workers=0)
    b = extract(root, paths, model, PANO, out=tmp_path / "d.h5", batch_size=3, device="cpu", on_error="skip",
                progress=False, engine=ReversedSerialEngine())
    np.testing.assert_array_equal(a.descriptors.descriptors, b.descriptors.descriptors)
    assert a.descriptors.ids == b.descriptors.ids and "002.png" not in a.descriptors.ids
    assert [s.path for s in b.skipped] == ["002.png"]


def _gem_pipeline() -> PipelineConfig:
    return PipelineConfig(panorama=PANO, model=ModelConfig(backbone="resnet18", weights="none", aggregator="gem"))


class WrappedModel:
    """A crop model that is not a torch module (as an exported model run by another runtime):
    the CropModel protocol is all the runner needs."""

    def __init__(self, model: torch.nn.Module) -> None:
        self._m = model.eval()
        self.config = model.config
        self.fingerprint = "wrapped"

    def preprocess(self, crops_uint8: torch.Tensor) -> torch.Tensor:
        return self._m.preprocess(crops_uint8)

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        return self._m(crops)

    def descriptor_dim(self, n_crops: int) -> int:
        return self._m.descriptor_dim(n_crops)


def test_a_crop_model_that_is_not_a_torch_module_extracts_the_same(image_dir) -> None:
    torch.manual_seed(0)
    model, _ = load_model(None, _gem_pipeline())
    root, paths = list_images(image_dir)
    kw = dict(batch_size=4, device="cpu", progress=False, num_workers=0)
    a = extract(root, paths, model, PANO, **kw).descriptors
    b = extract(root, paths, WrappedModel(model), PANO, **kw).descriptors
    np.testing.assert_array_equal(a.descriptors, b.descriptors)
    assert isinstance(b, DescriptorSet) and b.fingerprint == "wrapped"


def test_list_images_takes_every_image_extension(tmp_path) -> None:
    img = np.zeros((8, 8, 3), np.uint8)
    for name in ("a.jpg", "b.TIF", "c.webp", "d.png", "e.tiff", "f.bmp"):
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / "notes.txt").write_text("x")
    root, paths = list_images(tmp_path)
    assert paths == ["a.jpg", "b.TIF", "c.webp", "d.png", "e.tiff", "f.bmp"]
    assert list_images(tmp_path / "c.webp") == (tmp_path, ["c.webp"])

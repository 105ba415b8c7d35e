"""ONNX export (dynamic batch, int8), the ONNX Runtime extraction path and the export CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")  # the [onnx] extra; .ci/run installs it

from panoplace.cli import main  # noqa: E402
from panoplace.config import ModelConfig, PanoramaConfig  # noqa: E402
from panoplace.errors import InputError  # noqa: E402
from panoplace.export import OnnxPlaceModel, export_onnx  # noqa: E402
from panoplace.extract import extract, list_images  # noqa: E402
from panoplace.models.build import build_model, weights_fingerprint  # noqa: E402
from panoplace.models.checkpoint import save_checkpoint  # noqa: E402
from panoplace.store import load_descriptors  # noqa: E402

PANO = PanoramaConfig(projection="equirect", n_crops=2, pano_width=128, pano_height=64, crop_size=(56, 56))


def _model(aggregator: str, params: dict, fusion: str = "add", backbone: str = "resnet18"):
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone=backbone, weights="none", aggregator=aggregator,
                                   aggregator_params=params, fusion=fusion))


def _crops(b: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(b)
    return torch.randint(0, 256, (b, 2, 56, 56, 3), dtype=torch.uint8, generator=g)


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


@pytest.mark.parametrize("aggregator,params,fusion,backbone", [
    ("boq", {"proj_channels": 64, "num_queries": 4, "row_dim": 2}, "add", "resnet18"),
    ("mixvpr", {"out_channels": 16, "in_h": 4, "in_w": 4}, "per-crop", "resnet18"),
    ("gem_fc", {"fc_dim": 32}, "concat", "resnet18"),
    ("salad", {"num_clusters": 4, "cluster_dim": 8, "token_dim": 16, "hidden": 32}, "add", "dinov2_vits14"),
])
def test_onnx_matches_eager_for_any_batch(tmp_path: Path, aggregator: str, params: dict, fusion: str,
                                          backbone: str) -> None:
    model = _model(aggregator, params, fusion, backbone)
    path = export_onnx(model, tmp_path / "m.onnx", PANO)
    runtime = OnnxPlaceModel(path)
    assert runtime.fingerprint == weights_fingerprint(model) and runtime.config == model.config
    for b in (1, 3):  # dynamic batch
        x = _crops(b)
        with torch.no_grad():
            want = model(model.preprocess(x))
        got = runtime(runtime.preprocess(x))
        assert got.shape == want.shape
        assert float(_cos(got, want).min()) > 0.9999


def test_int8_is_marked_and_close(tmp_path: Path) -> None:
    model = _model("gem_fc", {"fc_dim": 32})
    path = export_onnx(model, tmp_path / "m8.onnx", PANO, int8=True)
    ops = {n.op_type for n in __import__("onnx").load(str(path)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops  # the FC layer runs in int8
    runtime = OnnxPlaceModel(path)
    assert runtime.quantization == "int8-dynamic:MatMul,Gemm" and runtime.fingerprint == weights_fingerprint(model) + "-int8"
    x = _crops(4)
    with torch.no_grad():
        want = model(model.preprocess(x))
    assert float(_cos(runtime(x), want).min()) > 0.9


def test_unexportable_model_and_wrong_crops_are_one_line(tmp_path: Path) -> None:
    model = build_model(ModelConfig(backbone="resnet18", weights="none", aggregator="gem", whitening_dim=8))
    with pytest.raises(InputError, match="cannot export this model to ONNX: the whitening layer") as err:
        export_onnx(model, tmp_path / "w.onnx", PANO)
    assert "\n" not in str(err.value) and not (tmp_path / "w.onnx").exists()
    runtime = OnnxPlaceModel(export_onnx(_model("gem_fc", {"fc_dim": 8}), tmp_path / "g.onnx", PANO))
    with pytest.raises(InputError, match="exported for 2 crops of 56x56"):
        runtime.check_panorama(PanoramaConfig(projection="equirect", n_crops=4, crop_size=(56, 56)))
    with pytest.raises(InputError, match="does not exist"):
        OnnxPlaceModel(tmp_path / "none.onnx")


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(5):
        cv2.imwrite(str(d / f"{i:03d}.png"), (rng.random((64, 128, 3)) * 255).astype(np.uint8))
    return d


def test_export_cli_then_extract_with_onnxruntime(tmp_path: Path, image_dir: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    model = _model("boq", {"proj_channels": 64, "num_queries": 4, "row_dim": 2})
    ckpt = save_checkpoint(model, tmp_path / "m.pt", panorama=PANO)
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "--onnx", str(onnx_path)]) == 0
    common = ["--workers", "0", "--no-progress"]
    assert main(["extract", str(image_dir), "--checkpoint", str(onnx_path), "--runtime", "onnxruntime",
                 "--out", str(tmp_path / "ort.h5"), *common]) == 0
    root, paths = list_images(image_dir)
    eager = extract(root, paths, model, PANO, num_workers=0, progress=False).descriptors
    ort = load_descriptors(tmp_path / "ort.h5")
    assert ort.fingerprint == eager.fingerprint and ort.config == eager.config
    assert float(_cos(torch.from_numpy(ort.descriptors), torch.from_numpy(eager.descriptors)).min()) > 0.9999
    code = main(["extract", str(image_dir), "--checkpoint", str(onnx_path), "--runtime", "onnxruntime",
                 "--crops", "4", "--out", str(tmp_path / "bad.h5"), *common])
    err = capsys.readouterr().err
    assert code == 2 and "exported for 2 crops" in err
    assert "Traceback" not in err and sum("error:" in line for line in err.splitlines()) == 1


def test_export_cli_static_int8_then_extract(tmp_path: Path, image_dir: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="efficientnet_lite0", weights="imagenet", aggregator="gem"))
    ckpt = save_checkpoint(model, tmp_path / "m.pt", panorama=PANO)
    out = tmp_path / "m8.onnx"
    assert main(["export", str(ckpt), "--onnx", str(out), "--int8", "--calibration-images", str(image_dir),
                 "--calibration-count", "4", "--no-progress"]) == 0
    runtime = OnnxPlaceModel(out)
    assert runtime.quantization.startswith("int8-static:") and runtime.quantization.endswith("calibration=3")
    common = ["--workers", "0", "--no-progress"]
    assert main(["extract", str(image_dir), "--checkpoint", str(out), "--runtime", "onnxruntime",
                 "--out", str(tmp_path / "ort8.h5"), *common]) == 0
    root, paths = list_images(image_dir)
    eager = extract(root, paths, model, PANO, num_workers=0, progress=False).descriptors
    int8 = load_descriptors(tmp_path / "ort8.h5")
    assert int8.fingerprint == runtime.fingerprint != eager.fingerprint
    assert float(_cos(torch.from_numpy(int8.descriptors), torch.from_numpy(eager.descriptors)).min()) >= 0.99


@pytest.mark.parametrize("extra,message", [
    (["--int8", "static"], "--int8 static needs --calibration-images"),
    (["--int8"], "--int8 static needs --calibration-images"),
    (["--int8", "dynamic", "--calibration-images", "{images}"], "--calibration-images is only used by --int8 static"),
    (["--calibration-count", "3"], "--calibration-count is only used by --int8 static"),
    (["--int8", "--calibration-images", "{images}", "--min-cosine", "nan"], "--min-cosine must be between"),
    (["--int8", "--calibration-images", "{images}", "--calibration-count", "0"], "--calibration-count must be >= 1"),
    (["--int8", "--calibration-images", "{missing}"], "calibration images: no such file or folder"),
    (["--int8", "--calibration-images", "{empty}"], "calibration images: no images"),
])
def test_export_cli_calibration_mistakes_are_one_line(tmp_path: Path, image_dir: Path, extra: list, message: str,
                                                      capsys: pytest.CaptureFixture) -> None:
    ckpt = save_checkpoint(_model("gem_fc", {"fc_dim": 8}), tmp_path / "m.pt", panorama=PANO)
    (tmp_path / "empty").mkdir()
    names = {"images": str(image_dir), "missing": str(tmp_path / "nope"), "empty": str(tmp_path / "empty")}
    code = main(["export", str(ckpt), "--onnx", str(tmp_path / "o.onnx"), *[a.format(**names) for a in extra]])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert "Traceback" not in err and sum("error:" in line for line in err.splitlines()) == 1
    assert not (tmp_path / "o.onnx").exists()


def test_export_cli_never_overwrites_an_input(tmp_path: Path, image_dir: Path, capsys: pytest.CaptureFixture) -> None:
    ckpt = save_checkpoint(_model("gem_fc", {"fc_dim": 8}), tmp_path / "m.pt", panorama=PANO)
    image = image_dir / "002.png"
    before = {p: p.read_bytes() for p in [ckpt, image]}
    for target in (ckpt, image):
        code = main(["export", str(ckpt), "--onnx", str(target), "--int8", "--calibration-images", str(image_dir)])
        err = capsys.readouterr().err
        assert code == 2 and "input" in err and "write to another path" in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in before} == before

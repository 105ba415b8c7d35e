"""Static int8 quantisation: calibration crops, Pad folding, the backbone-only QDQ graph, the
float-stage search, and its errors."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")  # the [onnx] extra; .ci/run installs it
ort = pytest.importorskip("onnxruntime")

from panoplace.config import ModelConfig, PanoramaConfig  # noqa: E402
from panoplace.errors import InputError  # noqa: E402
from panoplace.export import OnnxPlaceModel, export_onnx  # noqa: E402
from panoplace.extract import extract, list_images  # noqa: E402
from panoplace.models.build import build_model, weights_fingerprint  # noqa: E402
from panoplace.quantize import backbone_stages, calibration_crops, fold_pads, quantize_static_int8  # noqa: E402

PANO = PanoramaConfig(projection="equirect", n_crops=2, pano_width=128, pano_height=64, crop_size=(56, 56))


def _model(aggregator: str = "gem") -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone="efficientnet_lite0", weights="imagenet", aggregator=aggregator)).eval()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def fp32_and_crops(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory):
    """A float export of EfficientNet-Lite0 + GeM and calibration crops of the day drive."""
    model = _model()
    path = export_onnx(model, tmp_path_factory.mktemp("q") / "fp32.onnx", PANO)
    return model, path, calibration_crops(tiny_world / "day" / "frames.csv", PANO, 64)


def test_calibration_crops_are_extracts_crops(tiny_world: Path) -> None:
    crops = calibration_crops(tiny_world / "day" / "frames.csv", PANO, 5)
    assert crops.shape == (5, 2, 56, 56, 3) and crops.dtype == np.uint8
    root, paths = list_images(tiny_world / "day" / "frames.csv")
    assert len(paths) == 12
    seen = []
    extract(root, [paths[0], paths[-1]], _Spy(seen), PANO, num_workers=0, progress=False)
    np.testing.assert_array_equal(crops[0], seen[0][0])  # first and last image of the spread
    np.testing.assert_array_equal(crops[-1], seen[0][1])
    assert len(calibration_crops(tiny_world / "day" / "frames.csv", PANO, 100)) == 12  # all there are


class _Spy:
    """A CropModel that records the crops extract gives it."""

    config = ModelConfig()

    def __init__(self, seen: list) -> None:
        self.seen = seen

    def preprocess(self, crops: torch.Tensor) -> torch.Tensor:
        return crops

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        self.seen.append(crops.numpy().copy())
        return torch.zeros(len(crops), 4)

    def descriptor_dim(self, n_crops: int) -> int:
        return 4


def test_calibration_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="calibration images: no such file or folder") as err:
        calibration_crops(tmp_path / "missing", PANO)
    assert "\n" not in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="calibration images: no images"):
        calibration_crops(tmp_path / "empty", PANO)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="none of the calibration images"):
        calibration_crops(tmp_path / "bad", PANO)
    with pytest.raises(InputError, match=">= 1"):
        calibration_crops(tmp_path / "bad", PANO, 0)


def test_fold_pads_keeps_the_output_and_removes_the_pad(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
             helper.make_node("Conv", ["p", "w"], ["y"], strides=[2, 2], pads=[1, 0, 1, 0])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.array([0, 0, 0, 1, 0, 0, 1, 2], np.int64), "pads"),
                               numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((1, 3, 9, 8)).astype(np.float32)

    def run(m: object) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    want = run(model)
    assert fold_pads(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Conv"]
    assert list(next(a.ints for a in model.graph.node[0].attribute if a.name == "pads")) == [1, 1, 2, 2]
    np.testing.assert_allclose(run(model), want, rtol=1e-5, atol=1e-5)
    edge = helper.make_model(helper.make_graph(
        [helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 9, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([0, 0, 0, 1, 0, 0, 1, 2], np.int64), "pads")]))
    assert fold_pads(edge) == 0  # not constant zero, not feeding a Conv


def test_static_int8_is_close_to_eager_on_other_images(tiny_world: Path, fp32_and_crops, tmp_path: Path) -> None:
    model, _, crops = fp32_and_crops
    path = export_onnx(model, tmp_path / "s8.onnx", PANO, int8="static", calibration=crops)
    runtime = OnnxPlaceModel(path)
    assert runtime.quantization.startswith("int8-static:qdq,per-channel,minmax;float-stages=")
    assert runtime.fingerprint.startswith(weights_fingerprint(model) + "-int8s-")
    graph = onnx.load(str(path)).graph
    ops = [n.op_type for n in graph.node]
    assert ops.count("QuantizeLinear") >= 5 and ops.count("DequantizeLinear") >= 20  # an int8 backbone
    assert "Pad" not in ops  # folded into the convolutions
    root, paths = list_images(tiny_world / "dusk" / "frames.csv")  # not the calibration images
    eager = extract(root, paths, model, PANO, num_workers=0, progress=False).descriptors.descriptors
    int8 = extract(root, paths, runtime, PANO, num_workers=0, progress=False).descriptors.descriptors
    assert float(_cos(int8, eager).min()) >= 0.99
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s8.onnx"]  # no temporary file left


def test_stage_search_keeps_early_stages_float_until_the_cosine_holds(fp32_and_crops, tmp_path: Path) -> None:
    _, fp32, crops = fp32_and_crops
    stages = [name for name, _ in backbone_stages(onnx.load(str(fp32)))]
    assert stages[:3] == ["stem", "block0", "block1"]
    first = quantize_static_int8(fp32, tmp_path / "a.onnx", crops, min_cosine=-1.0)
    assert first.float_stages == [] and first.quantized_stages == stages and len(first.tried) == 1
    strict = min(1.0, first.cosine_min + 1e-6)  # just above what the all-int8 variant reaches
    second = quantize_static_int8(fp32, tmp_path / "b.onnx", crops, min_cosine=strict)
    assert second.float_stages == stages[:len(second.float_stages)] and len(second.float_stages) >= 1
    assert second.tried[0] == (0, first.cosine_min) and second.cosine_min >= strict
    assert second.float_stages + second.quantized_stages == stages
    quantized = {n.input[0] for n in onnx.load(str(tmp_path / "b.onnx")).graph.node if n.op_type == "DequantizeLinear"}
    assert quantized  # the later stages are int8


def test_head_stays_float(tmp_path: Path, tiny_world: Path) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="efficientnet_lite0", weights="imagenet", aggregator="netvlad",
                                    num_clusters=4)).eval()
    crops = calibration_crops(tiny_world / "day" / "frames.csv", PANO, 8)
    path = export_onnx(model, tmp_path / "v.onnx", PANO, int8="static", calibration=crops, min_cosine=-1.0)
    graph = onnx.load(str(path)).graph
    made_by = {o: n.op_type for n in graph.node for o in n.output}
    head = [n for n in graph.node if n.op_type in ("Softmax", "MatMul") or n.name == "/model/conv/Conv"]
    assert len(head) == 3 and all(made_by.get(i) != "DequantizeLinear" for n in head for i in n.input)
    assert any(made_by.get(n.input[1]) == "DequantizeLinear" for n in graph.node if n.op_type == "Conv")


def test_unreachable_cosine_and_missing_calibration_are_one_line(fp32_and_crops, tmp_path: Path) -> None:
    model, fp32, crops = fp32_and_crops
    with pytest.raises(InputError, match=r"cannot quantise this model to int8 keeping cosine >= 2.0") as err:
        export_onnx(model, tmp_path / "x.onnx", PANO, int8="static", calibration=crops[:4], min_cosine=2.0)
    assert "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # atomic: nothing written, no temporary left
    with pytest.raises(InputError, match="needs calibration images"):
        export_onnx(model, tmp_path / "x.onnx", PANO, int8="static")
    with pytest.raises(InputError, match="only used by static"):
        export_onnx(model, tmp_path / "x.onnx", PANO, int8="dynamic", calibration=crops)
    with pytest.raises(InputError, match="unknown int8 quantisation"):
        export_onnx(model, tmp_path / "x.onnx", PANO, int8="int4")
    with pytest.raises(InputError, match="uint8"):
        quantize_static_int8(fp32, tmp_path / "x.onnx", crops.astype(np.float32))
    rng = np.random.default_rng(0)
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), (rng.random((64, 128, 3)) * 255).astype(np.uint8))
    assert calibration_crops(folder, PANO).shape == (1, 2, 56, 56, 3)


def test_missing_onnxruntime_is_one_line(monkeypatch: pytest.MonkeyPatch, fp32_and_crops, tmp_path: Path) -> None:
    _, fp32, crops = fp32_and_crops
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setitem(sys.modules, "onnxruntime.quantization", None)
    with pytest.raises(InputError, match=r"needs the \[onnx\] extra"):
        quantize_static_int8(fp32, tmp_path / "x.onnx", crops)
    with pytest.raises(InputError, match=r"need the \[onnx\] extra"):
        export_onnx(_model(), tmp_path / "y.onnx", PANO, int8="static", calibration=crops)

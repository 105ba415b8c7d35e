"""ONNX export of place models and an ONNX Runtime model for extraction (the ``[onnx]`` extra).

:func:`export_onnx` writes one ``.onnx`` file: the whole descriptor computation for one panorama
config -- uint8 crops ``(B, K, H, W, 3)`` in, descriptors ``(B, D)`` (``(B, K, D)`` per-crop)
out: input normalisation, backbone, aggregator, crop fusion and whitening. The batch axis is
dynamic; ``K``, ``H`` and ``W`` are those of the panorama config it was exported for. The file's
metadata holds the pipeline config (JSON), the weights fingerprint and the quantisation, so
:class:`OnnxPlaceModel` can stand in for the :class:`~panoplace.models.build.PlaceModel` in
:func:`panoplace.extract.extract` and write stores that say what made them.

``int8="static"`` (the int8 that makes a CNN faster) quantises the backbone with calibration
crops from the user's own images (:mod:`panoplace.quantize`: QDQ, per-channel int8 weights,
MinMax-calibrated uint8 activations, the first backbone stages kept float until the
descriptors' cosine to the float model reaches ``min_cosine`` on held-out calibration crops).
``int8=True`` / ``"dynamic"`` applies ONNX Runtime's dynamic quantisation (weights to int8,
activations quantised on the fly) to the ``int8_ops`` layers: by default the MatMul/Gemm (linear)
layers -- all of a ViT's blocks and the heads of the new aggregators -- and not the
convolutions: ONNX Runtime's dynamic ``ConvInteger`` runs EfficientNet-Lite0 far slower than
eager torch and its descriptors fall to cosine ~0.4 (``benchmarks/bench_onnx.py``). An int8
model is another model: its descriptors carry the fingerprint ``<fingerprint>-int8`` (dynamic)
or ``<fingerprint>-int8s-<hash of the int8 file>`` (static: it depends on the calibration
images) and do not mix with the float model's.

The exporter is torch's TorchScript-based ``torch.onnx.export`` (``dynamo=False``; opset 17):
one self-contained file and a few seconds per model. A model that cannot be exported (e.g. a
whitening layer that was never fitted) is one :class:`~panoplace.errors.InputError` line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from panoplace.atomic import atomic_path
from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig
from panoplace.errors import InputError
from panoplace.models.build import PlaceModel, weights_fingerprint
from panoplace.panorama.crops import crop_windows
from panoplace.quantize import MIN_COSINE, quantize_static_int8

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
OPSET = 17
INT8_OPS: Tuple[str, ...] = ("MatMul", "Gemm")  # see the module docstring
INT8_ALL_OPS: Tuple[str, ...] = ("Conv", "MatMul", "Gemm")
INT8_MODES = ("none", "dynamic", "static")


def int8_mode(int8: Union[bool, str]) -> str:
    """``"none"``, ``"dynamic"`` or ``"static"`` from an ``int8`` argument (True means dynamic)."""
    mode = ("dynamic" if int8 else "none") if isinstance(int8, bool) else str(int8)
    if mode not in INT8_MODES:
        raise InputError(f"unknown int8 quantisation {int8!r}; choose one of {list(INT8_MODES)}")
    return mode


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def require_onnx() -> Tuple[Any, Any]:
    """``(onnx, onnxruntime)`` or one :class:`InputError` line naming the extra to install."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise InputError("ONNX export and the onnxruntime runtime need the [onnx] extra: "
                         "pip install 'panoplace[onnx]'") from None
    return onnx, onnxruntime


def panorama_crops(panorama: PanoramaConfig) -> int:
    """K, the crops per image of ``panorama`` (as :func:`panoplace.extract.count_crops`)."""
    if panorama.window_deg is not None and panorama.stride_deg is not None:
        return len(crop_windows(panorama.pano_width, window_deg=panorama.window_deg,
                                stride_deg=panorama.stride_deg))
    return panorama.n_crops


class _UInt8Model(nn.Module):
    """uint8 crops -> descriptors: :meth:`PlaceModel.preprocess` as graph operations, then the model.

    Shape: ``(B, K, H, W, 3)`` uint8 -> ``(B, D)`` or ``(B, K, D)``.
    """

    def __init__(self, model: PlaceModel) -> None:
        super().__init__()
        self.model = model
        std = torch.tensor(model.backbone.std, dtype=torch.float32).view(3, 1, 1)
        mean = torch.tensor(model.backbone.mean, dtype=torch.float32).view(3, 1, 1)
        self.scale: torch.Tensor
        self.shift: torch.Tensor
        self.register_buffer("scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("shift", mean / std, persistent=False)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        x = crops.permute(0, 1, 4, 2, 3).to(torch.float32)
        return self.model(x * self.scale - self.shift)


def export_onnx(model: PlaceModel, out: PathLike, panorama: PanoramaConfig, int8: Union[bool, str] = False,
                int8_ops: Tuple[str, ...] = INT8_OPS, calibration: Optional[np.ndarray] = None,
                min_cosine: float = MIN_COSINE) -> Path:
    """Write ``model`` for ``panorama``'s crops as an ONNX file (atomically).

    Args:
        model: the place model (put in eval mode here).
        out: the ``.onnx`` file to write.
        panorama: decides K and the crop size the graph takes.
        int8: ``False``/``"none"``, ``True``/``"dynamic"`` or ``"static"`` (see the module docstring).
        int8_ops: the ONNX operator types quantised with dynamic int8.
        calibration: static int8's calibration crops, ``(N, K, H, W, 3)`` uint8
            (:func:`panoplace.quantize.calibration_crops`).
        min_cosine: static int8's least cosine to the float descriptors on held-out calibration crops.

    Returns:
        the path written.

    Raises:
        InputError: the [onnx] extra is missing, the model cannot be exported or quantised, or
            static int8 has no calibration crops.
    """
    onnx, _ = require_onnx()
    out = Path(out)
    mode = int8_mode(int8)
    if mode == "static" and calibration is None:
        raise InputError("static int8 quantisation needs calibration images")
    if mode != "static" and calibration is not None:
        raise InputError("calibration images are only used by static int8 quantisation")
    model = model.cpu().eval()
    k = panorama_crops(panorama)
    h, w = panorama.crop_size
    dummy = torch.zeros(2, k, h, w, 3, dtype=torch.uint8)
    wrapper = _UInt8Model(model).eval()
    with torch.no_grad():
        try:
            expected = wrapper(dummy)
        except Exception as err:  # noqa: BLE001 - a model that does not run cannot be exported
            raise InputError(f"cannot export this model to ONNX: {_first_line(err)}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = weights_fingerprint(model)
    with atomic_path(out) as tmp:
        quantized = mode != "none"
        fp32 = Path(str(tmp) + ".fp32.onnx") if quantized else Path(tmp)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(wrapper, (dummy,), str(fp32), input_names=["crops"], output_names=["descriptors"],
                                  dynamic_axes={"crops": {0: "batch"}, "descriptors": {0: "batch"}},
                                  opset_version=OPSET, dynamo=False)
        except Exception as err:  # noqa: BLE001 - the exporter's own errors, as one line
            fp32.unlink(missing_ok=True)
            raise InputError(f"cannot export this model to ONNX: {_first_line(err)}") from None
        try:
            quantization = "none"
            if mode == "dynamic":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8, op_types_to_quantize=list(int8_ops))
                fingerprint += "-int8"
                quantization = f"int8-dynamic:{','.join(int8_ops)}"
            elif mode == "static" and calibration is not None:
                result = quantize_static_int8(fp32, tmp, calibration, min_cosine)
                fingerprint += "-int8s-" + hashlib.sha256(Path(tmp).read_bytes()).hexdigest()[:12]
                quantization = result.describe()
                log.info("static int8: %s", quantization)
            proto = onnx.load(str(tmp))
            meta = {"panoplace_config": json.dumps(PipelineConfig(panorama, model.config).to_dict()),
                    "panoplace_fingerprint": fingerprint,
                    "panoplace_quantization": quantization,
                    "panoplace_output_shape": json.dumps(list(expected.shape[1:]))}
            for key, value in meta.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.save(proto, str(tmp))
        finally:
            if quantized:
                fp32.unlink(missing_ok=True)
    log.info("exported %s (%s) to %s", model.config.aggregator, "fp32" if mode == "none" else f"int8 {mode}", out)
    return out


class OnnxPlaceModel:
    """An exported place model run by ONNX Runtime on the CPU: a
    :class:`~panoplace.runner.CropModel` (``config``, ``preprocess``, ``descriptor_dim``, call)
    with its own ``fingerprint``, for :func:`panoplace.extract.extract` and the image runner.

    Attributes:
        config: the :class:`ModelConfig` of the exported model.
        panorama: the :class:`PanoramaConfig` it was exported for.
        fingerprint: the weights fingerprint (``-int8`` / ``-int8s-<hash>`` appended for a
            quantised file, see the module docstring).

    Shape:
        - Input: ``(B, K, H, W, 3)`` uint8 crops (:meth:`preprocess` leaves them as they are:
          the graph normalises).
        - Output: ``(B, D)`` or ``(B, K, D)`` float32.
    """

    def __init__(self, path: PathLike, threads: Optional[int] = None) -> None:
        _, ort = require_onnx()
        path = Path(path)
        if not path.is_file():
            raise InputError(f"ONNX model {path} does not exist")
        opts = ort.SessionOptions()
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - a damaged or foreign file
            raise InputError(f"cannot load ONNX model {path}: {_first_line(err)}") from None
        meta: Dict[str, str] = self.session.get_modelmeta().custom_metadata_map
        if "panoplace_config" not in meta:
            raise InputError(f"{path} was not exported by `panoplace export` (no panoplace metadata)")
        pipeline = PipelineConfig.from_dict(json.loads(meta["panoplace_config"]))
        self.path = path
        self.config: ModelConfig = pipeline.model
        self.panorama: PanoramaConfig = pipeline.panorama
        self.fingerprint: str = meta["panoplace_fingerprint"]
        self.quantization: str = meta.get("panoplace_quantization", "none")
        self.output_shape = tuple(json.loads(meta["panoplace_output_shape"]))
        self.input_name = self.session.get_inputs()[0].name

    def preprocess(self, crops_uint8: torch.Tensor) -> torch.Tensor:
        """The uint8 crops as they are (normalisation is in the graph).

        Shape: ``(B, K, H, W, 3)`` uint8 -> the same.
        """
        if crops_uint8.dtype != torch.uint8 or crops_uint8.dim() != 5:
            raise InputError(f"the ONNX model takes (B, K, H, W, 3) uint8 crops, got {tuple(crops_uint8.shape)} "
                             f"{crops_uint8.dtype}")
        return crops_uint8

    def descriptor_dim(self, n_crops: int, whiten: bool = True) -> int:
        """D of the exported graph (whatever ``n_crops``: the graph's K is fixed)."""
        return int(self.output_shape[-1])

    def check_panorama(self, panorama: PanoramaConfig) -> None:
        """Raise :class:`InputError` when ``panorama`` gives crops the graph was not exported for."""
        k, size = panorama_crops(panorama), tuple(panorama.crop_size)
        want_k, want_size = panorama_crops(self.panorama), tuple(self.panorama.crop_size)
        if (k, size) != (want_k, want_size):
            raise InputError(f"{self.path} was exported for {want_k} crops of {want_size[0]}x{want_size[1]}, "
                             f"not {k} of {size[0]}x{size[1]}: export it again for this panorama config")

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        """Descriptors of uint8 crops. Shape: ``(B, K, H, W, 3)`` -> ``(B, D)`` / ``(B, K, D)``."""
        x = np.ascontiguousarray(crops.cpu().numpy())
        (out,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(out)

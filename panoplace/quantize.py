"""Static (calibrated) int8 quantisation of an exported place model with ONNX Runtime.

:func:`quantize_static_int8` turns the float ONNX file of :func:`panoplace.export.export_onnx`
into an int8 one that ONNX Runtime runs with integer convolutions/matrix products
(``QLinearConv``, ``QLinearMatMul``): weights int8 per output channel, activations uint8 with
ranges measured on calibration crops (MinMax), in the QDQ format (the recommended one for the
CPU; ONNX Runtime fuses each DequantizeLinear -> op -> QuantizeLinear into the integer op).

What it does, in order:

1. ONNX Runtime's pre-processing (``quant_pre_process``: shape inference, constant folding), then
   every constant zero ``Pad`` folded into the ``Conv`` after it (:func:`fold_pads`: the
   "SAME"-padded stride-2 convolutions of EfficientNet would otherwise run a float ``Pad``
   between two integer ops);
2. only the backbone is quantised: the nodes of the backbone's ``body`` children (see
   :mod:`panoplace.models.backbones`), found by the exporter's node scopes. The aggregator,
   crop fusion, normalisations and whitening stay float: they cost little and NetVLAD's
   residuals (a difference of two large sums) and the L2 normalisations do not survive 8 bits;
3. the first backbone stages are where 8-bit activations lose most (EfficientNet-Lite0: the
   stem and the first two blocks, each alone costs 0.01-0.05 of descriptor cosine on the
   corridor; blocks 2-7 together about 0.005). So the stages are tried in order: first all
   quantised, then the first stage kept float, then the first two, ... and the first variant
   whose descriptors reach ``min_cosine`` (minimum over held-out calibration crops, against
   the float graph) is kept. A model where no variant reaches it raises one
   :class:`~panoplace.errors.InputError` line.

``benchmarks/bench_onnx.py`` has the measurements and says how the defaults were chosen.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from panoplace.config import PanoramaConfig
from panoplace.errors import InputError
from panoplace.runner import ImageRunner, list_images

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
CALIBRATION_COUNT = 64  # images; bench_onnx.py
MIN_COSINE = 0.99  # the int8 target, as the floor on held-out calibration crops
CHECK_EVERY = 4  # every 4th calibration image is held out to check the cosine
_BODY_SCOPE = re.compile(r"^/model/(?:backbone/)?body/([^/]+)/")


@dataclass
class StaticInt8Result:
    """What :func:`quantize_static_int8` chose and measured.

    float_stages: backbone ``body`` children left in float (the first ones);
    quantized_stages: the other backbone children (int8);
    cosine_min, cosine_median: cosine of the int8 descriptors to the float graph's on the
    held-out calibration crops; n_calibration, n_check: crops used to calibrate / to check.
    """

    float_stages: List[str]
    quantized_stages: List[str]
    cosine_min: float
    cosine_median: float
    n_calibration: int
    n_check: int
    tried: List[Tuple[int, float]] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the model's metadata and the log."""
        kept = ",".join(self.float_stages) or "none"
        return (f"int8-static:qdq,per-channel,minmax;float-stages={kept};"
                f"check-cosine-min={self.cosine_min:.4f};calibration={self.n_calibration}")


def calibration_crops(source: PathLike, panorama: PanoramaConfig, count: int = CALIBRATION_COUNT,
                      progress: bool = False) -> np.ndarray:
    """uint8 crops of up to ``count`` images of ``source`` (spread evenly over it), made as
    ``extract`` makes them (decoding, panorama projection, crops).

    Args:
        source: a folder, a ``.txt`` list, a dataset CSV or one image
            (:func:`panoplace.runner.list_images`).
        panorama: the panorama config the model is exported for.
        count: images to use (all when the source has fewer).

    Returns:
        ``(N, K, H, W, 3)`` uint8 crops. Unreadable images are skipped with a warning.

    Raises:
        InputError: no such source, no images in it, none readable, or ``count`` < 1.
    """
    if int(count) < 1:
        raise InputError(f"the calibration image count must be >= 1, got {count}")
    try:
        root, paths = list_images(source)
    except InputError as err:
        raise InputError(f"calibration images: {err}") from None
    pick = np.unique(np.linspace(0, len(paths) - 1, min(int(count), len(paths))).round().astype(int))
    runner = ImageRunner(root, [paths[i] for i in pick], panorama, batch_size=8, device="cpu", on_error="skip",
                         num_workers=0, progress=progress, desc="calibration images")
    parts = [b.outputs for b in runner.batches(lambda device: lambda crops: crops.cpu().numpy())
             if b.outputs is not None]
    if not parts:
        raise InputError(f"none of the calibration images in {source} could be read")
    return np.ascontiguousarray(np.concatenate(parts))


def fold_pads(model: Any) -> int:
    """Fold every constant zero ``Pad`` of the spatial axes into the ``Conv`` nodes it feeds
    (ONNX ``Conv`` takes asymmetric pads), in place; returns how many were folded.

    ``model``: an ``onnx.ModelProto`` whose pads are initializers (after constant folding).
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: Dict[str, List[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    folded = []
    for node in graph.node:
        if node.op_type != "Pad" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        if next((a.s for a in node.attribute if a.name == "mode"), b"constant") != b"constant":
            continue
        value = node.input[2] if len(node.input) > 2 else ""
        if value and (value not in inits or numpy_helper.to_array(inits[value]).any()):
            continue
        if len(node.input) > 3 and node.input[3]:  # an axes input
            continue
        pads = [int(p) for p in numpy_helper.to_array(inits[node.input[1]]).tolist()]
        if len(pads) != 8 or any(pads[i] for i in (0, 1, 4, 5)) or min(pads) < 0:
            continue
        users = consumers.get(node.output[0], [])
        if (node.output[0] in outputs or not users
                or any(u.op_type != "Conv" or list(u.input).index(node.output[0]) != 0 for u in users)
                or any(a.name == "auto_pad" and a.s not in (b"", b"NOTSET") for u in users for a in u.attribute)):
            continue
        for user in users:
            old = next((list(a.ints) for a in user.attribute if a.name == "pads"), [0, 0, 0, 0])
            new = [old[0] + pads[2], old[1] + pads[3], old[2] + pads[6], old[3] + pads[7]]
            kept = [a for a in user.attribute if a.name != "pads"]
            del user.attribute[:]
            user.attribute.extend([*kept, helper.make_attribute("pads", new)])
            user.input[0] = node.input[0]
        folded.append(node)
    for node in folded:
        graph.node.remove(node)
    return len(folded)


def backbone_stages(model: Any) -> List[Tuple[str, List[str]]]:
    """The backbone ``body`` children of an exported graph in forward order, each with its
    node names: ``[(child, [node, ...]), ...]`` (from the exporter's node scopes
    ``/model/[backbone/]body/<child>/...``)."""
    stages: Dict[str, List[str]] = {}
    for node in model.graph.node:
        match = _BODY_SCOPE.match(node.name)
        if match:
            stages.setdefault(match.group(1), []).append(node.name)
    return list(stages.items())


class _CropReader:
    """An ONNX Runtime calibration data reader over uint8 crops (``get_next`` protocol)."""

    def __init__(self, input_name: str, crops: np.ndarray, batch_size: int = 8) -> None:
        self.input_name = input_name
        self.crops = crops
        self.batch_size = batch_size
        self.pos = 0

    def get_next(self) -> Optional[Dict[str, np.ndarray]]:
        if self.pos >= len(self.crops):
            return None
        batch = self.crops[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return {self.input_name: batch}


def _run(session: Any, crops: np.ndarray, batch_size: int = 8) -> np.ndarray:
    name = session.get_inputs()[0].name
    out = [session.run(None, {name: crops[i:i + batch_size]})[0] for i in range(0, len(crops), batch_size)]
    return np.concatenate(out).reshape(len(crops), -1)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(norms, 1e-12)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def quantize_static_int8(fp32: PathLike, out: PathLike, crops: np.ndarray, min_cosine: float = MIN_COSINE
                         ) -> StaticInt8Result:
    """Write a static int8 version of the float ONNX model ``fp32`` to ``out`` (see the module
    docstring). ``out`` is written directly: the caller makes the write atomic.

    Args:
        fp32: the float model of :func:`panoplace.export.export_onnx`.
        out: the int8 file to write.
        crops: ``(N, K, H, W, 3)`` uint8 calibration crops (:func:`calibration_crops`); every
            :data:`CHECK_EVERY`-th one is held out to check the cosine (all are used when N < 4).
        min_cosine: the least cosine to the float model's descriptors, on every held-out crop.

    Returns:
        the :class:`StaticInt8Result`.

    Raises:
        InputError: the [onnx] extra is missing, the graph has no backbone stage to quantise,
            ONNX Runtime cannot quantise it, or no variant reaches ``min_cosine``.
    """
    try:
        import onnx
        import onnxruntime as ort
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise InputError("int8 quantisation needs the [onnx] extra: pip install 'panoplace[onnx]'") from None
    fp32, out = Path(fp32), Path(out)
    if crops.dtype != np.uint8 or crops.ndim != 5 or len(crops) == 0:
        raise InputError(f"calibration crops must be (N, K, H, W, 3) uint8 with N >= 1, got {crops.shape} {crops.dtype}")
    held = np.arange(len(crops)) % CHECK_EVERY == CHECK_EVERY - 1
    calib, check = (crops[~held], crops[held]) if held.any() else (crops, crops)
    prepared = out.with_name(out.name + ".prep.onnx")
    trial = out.with_name(out.name + ".trial.onnx")
    try:
        try:
            quant_pre_process(str(fp32), str(prepared))
            proto = onnx.load(str(prepared))
            n_folded = fold_pads(proto)
            onnx.save(proto, str(prepared))
        except Exception as err:  # noqa: BLE001 - ONNX Runtime's own errors, as one line
            raise InputError(f"cannot quantise this model: ONNX Runtime's pre-processing failed: {_first_line(err)}") from None
        stages = backbone_stages(proto)
        if not stages:
            raise InputError("cannot quantise this model statically: the exported graph has no backbone stages "
                             "(/model/backbone/body/...) to quantise")
        log.info("int8: %d backbone stages, %d pads folded, %d calibration + %d check crops",
                 len(stages), n_folded, len(calib), len(check))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        float_session = ort.InferenceSession(str(prepared), opts, providers=["CPUExecutionProvider"])
        input_name = float_session.get_inputs()[0].name
        want = _run(float_session, check)
        tried: List[Tuple[int, float]] = []
        for n_float in range(len(stages)):
            nodes = [name for _, names in stages[n_float:] for name in names]
            try:
                quantize_static(str(prepared), str(trial), _CropReader(input_name, calib),
                                quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                                nodes_to_quantize=nodes)
                session = ort.InferenceSession(str(trial), opts, providers=["CPUExecutionProvider"])
                cos = _cosines(_run(session, check), want)
            except Exception as err:  # noqa: BLE001 - ONNX Runtime's own errors, as one line
                raise InputError(f"cannot quantise this model: {_first_line(err)}") from None
            tried.append((n_float, float(cos.min())))
            log.info("int8 with the first %d backbone stages float: cosine min %.4f median %.4f",
                     n_float, cos.min(), np.median(cos))
            if float(cos.min()) >= min_cosine:
                trial.replace(out)
                return StaticInt8Result([s for s, _ in stages[:n_float]], [s for s, _ in stages[n_float:]],
                                        float(cos.min()), float(np.median(cos)), len(calib), len(check), tried)
        best = max(tried, key=lambda t: t[1])
        raise InputError(f"cannot quantise this model to int8 keeping cosine >= {min_cosine} on the calibration "
                         f"images (best {best[1]:.4f}, with the first {best[0]} backbone stages float); "
                         "export it in float, or lower --min-cosine")
    finally:
        prepared.unlink(missing_ok=True)
        trial.unlink(missing_ok=True)


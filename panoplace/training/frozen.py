"""Features of the frozen part of the backbone, computed once per image and kept in memory.

When only the last ``n_trainable`` units of the backbone train, the output of the frozen units
before them never changes during training (their weights are fixed and their BatchNorm layers
stay in eval mode, see :class:`~panoplace.models.backbones.Backbone`). Decoding, cropping and
running the frozen part again for every tuple, cache refresh and validation is then wasted
work: :class:`FrozenFeatures` computes it once per image file (keyed by absolute path) and the
trainer runs only the trainable tail, attention, aggregation and crop fusion. On a CPU with
one or two trainable units that is most of the cost of a training step.

The tail reproduces :meth:`PlaceModel.forward <panoplace.models.build.PlaceModel.forward>` after
the backbone (attention, ``aggregator.raw``, crop fusion; training models have no whitening);
``tests/training/test_trainer.py`` checks that both give the same descriptors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from panoplace.config import PanoramaConfig
from panoplace.crop_fusion import fuse_crops
from panoplace.errors import InputError
from panoplace.models.backbones import Backbone
from panoplace.models.build import PlaceModel, weights_fingerprint
from panoplace.models.fusion import fuse
from panoplace.panorama.project import PanoramaProjector
from panoplace.runner import BatchStep, ImageRunner

log = logging.getLogger(__name__)


def frozen_prefix_length(backbone: Backbone) -> int:
    """Number of leading ``backbone.body`` children that are frozen (all of them when
    ``n_trainable`` is 0)."""
    names = list(backbone.body._modules)
    n_frozen_units = len(backbone.units) - backbone.n_trainable
    trainable = [names.index(c) for unit in backbone.units[n_frozen_units:] for c in unit]
    return min(trainable) if trainable else len(names)


class FrozenFeatures:
    """Frozen-prefix features per image and the trainable tail of the model.

    Args:
        model: the :class:`~panoplace.models.build.PlaceModel` being trained (no whitening).
        panorama, n_crops: how image files become crops.
        device: where the model runs; features are kept on the CPU.
        batch_size, num_workers: for computing missing features (through the image runner,
            :class:`~panoplace.runner.ImageRunner`; an unreadable image raises
            :class:`~panoplace.errors.ImageReadError`).
        store: a dict to keep the features in, shared between models (e.g. runs from the same
            initial model); entries are keyed by a fingerprint of the frozen weights, the
            panorama config and the image path, so models with other frozen units never mix.

    Shape:
        - :meth:`features`: ``n`` paths -> ``(n, K, C, h, w)`` float32.
        - :meth:`descriptors`: ``(U, K, C, h, w)`` -> ``(U, D)`` L2-normalised (per-crop models:
          summed over the crops and normalised).
    """

    def __init__(self, model: PlaceModel, panorama: PanoramaConfig, n_crops: int, device: torch.device,
                 batch_size: int = 16, num_workers: int = 1,
                 store: Optional[Dict[str, torch.Tensor]] = None) -> None:
        if model.whitening is not None:
            raise InputError("frozen features are for training, and a model being trained has no whitening")
        self.model = model
        self.panorama = panorama
        self.n_crops = int(n_crops)
        self.device = device
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.projector = PanoramaProjector(panorama)
        self.split = frozen_prefix_length(model.backbone)
        body = model.backbone.body
        self.prefix = body[: self.split]
        self.tail = body[self.split:]
        self._store: Dict[str, torch.Tensor] = {} if store is None else store
        h = hashlib.sha256(weights_fingerprint(self.prefix).encode())
        h.update(json.dumps(panorama.to_dict(), sort_keys=True).encode())
        self._prefix_id = h.hexdigest()[:16]

    def __len__(self) -> int:
        """Images whose features are held (for this model's frozen units)."""
        return sum(1 for k in self._store if k.startswith(self._prefix_id))

    def bytes_per_image(self) -> int:
        """Memory one image's frozen features take (float32)."""
        h, w = self.panorama.crop_size
        with torch.no_grad():  # the frozen units are always in eval mode (see Backbone.train)
            out = self.prefix(torch.zeros(1, 3, h, w, device=self.device))
        return int(out.numel()) * 4 * self.n_crops

    @staticmethod
    def image_key(root: Path, path: str) -> str:
        """The identity of an image file: its normalised absolute path."""
        return os.path.normpath(str((Path(root) / path).resolve()))

    def key(self, root: Path, path: str) -> str:
        return f"{self._prefix_id}:{self.image_key(root, path)}"

    def _step(self, device: torch.device) -> BatchStep:
        """Per batch: uint8 crops ``(B, K, h, w, 3)`` -> frozen features ``(B, K, C, h, w)`` float32."""
        def step(crops: torch.Tensor) -> np.ndarray:
            x = self.model.preprocess(crops)  # (B, K, 3, H, W)
            f = self.prefix(x.flatten(0, 1)).float().cpu()  # (B*K, C, h, w)
            return f.reshape(x.shape[0], x.shape[1], *f.shape[1:]).numpy()

        return step

    def _compute(self, root: Path, paths: List[str]) -> None:
        runner = ImageRunner(root, paths, self.projector, batch_size=self.batch_size, device=self.device,
                             num_workers=self.num_workers, progress=False, desc="frozen features")
        for batch in runner.batches(self._step):
            if batch.outputs is None:
                continue
            for j, i in enumerate(batch.indices.tolist()):
                self._store[self.key(root, paths[i])] = torch.from_numpy(batch.outputs[j])

    def features(self, root: Path, paths: Sequence[str]) -> torch.Tensor:
        """Frozen features of ``root/paths``, computing those not seen yet.

        Shape: output ``(len(paths), K, C, h, w)``.
        """
        keys = [self.key(root, p) for p in paths]
        missing = [p for p, k in zip(paths, keys) if k not in self._store]
        if missing:
            self._compute(Path(root), list(dict.fromkeys(missing)))
        return torch.stack([self._store[k] for k in keys])

    def descriptors(self, feats: torch.Tensor) -> torch.Tensor:
        """The trainable tail + attention + aggregation + crop fusion (gradients as the caller's
        context decides).

        Shape: ``(U, K, C, h, w)`` -> ``(U, D)``.
        """
        if feats.dim() != 5:
            raise InputError(f"frozen features must be (U, K, C, h, w), got {tuple(feats.shape)}")
        u, k = feats.shape[:2]
        m = self.model
        out = self.tail(feats.to(self.device, non_blocking=True).flatten(0, 1))
        x, token = m.backbone.finish(out, self.panorama.crop_size)  # (U*K, C', h', w'); ViT: + class token
        raw = m.aggregate(x, token)
        desc = fuse(raw.reshape(u, k, *raw.shape[1:]), m.aggregator, m.config.fusion)
        return fuse_crops(desc)

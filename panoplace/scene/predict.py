"""Scene categories and place descriptors of image files with one unified-model pass.

Per image (in the image runner, :mod:`panoplace.runner`): decode -> panorama projection -> K
crops. Per batch: the unified model's shared base runs once on all ``B*K``
crops, the scene branch gives the crops' softmax probabilities (averaged over the K crops of
an image) and the place branch the descriptor, as ``panoplace extract`` computes it.

Outputs (each written atomically):

- a scene CSV (:func:`write_scene_csv`), long format, ``top`` rows per image::

      image,rank,category,probability
      000001.jpg,1,plaza,0.912345
      000001.jpg,2,street,0.051234
      ...

  ``rank`` 1 = most probable; probabilities are the crop-averaged softmax, so the ``top`` of
  an image sum to at most 1 (exactly 1 when ``top`` covers every category);
- the place descriptors as a descriptor store (:mod:`panoplace.store`, the format of
  ``panoplace extract``; its config is the place branch's and its fingerprint that of
  :meth:`ScenePlaceModel.place_model`, so it matches stores of the same place model).

Resumable: finished batches go to ``<out>.part`` (or ``<csv>.part`` without a store) as one
row per image holding the descriptor and the probabilities; a run started again with the
same arguments skips them.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from panoplace import topk
from panoplace.atomic import write_text_atomic
from panoplace.config import PanoramaConfig, PipelineConfig
from panoplace.errors import CheckpointError, InputError
from panoplace.models.build import weights_fingerprint
from panoplace.models.scene import ScenePlaceModel
from panoplace.runner import BadImage, ImageRunner, PartialSpec, RunResult, model_step
from panoplace.store import DescriptorSet, save_descriptors
from panoplace.textfiles import read_text

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
CSV_COLUMNS = ("image", "rank", "category", "probability")
DEFAULT_TOP = 10


@dataclass
class ScenePredictions:
    """Scene probabilities and place descriptors of N images.

    ids: N image ids (paths relative to the root). probs: ``(N, C)`` float32 crop-averaged
    probabilities over ``categories``. descriptors: the place descriptors (a DescriptorSet with
    the same ids). skipped: ``(path, reason)`` of images left out. features: ``(N, K, C_scene)``
    pooled scene-branch features of every crop when asked for (``return_features``), else None.
    """

    ids: List[str]
    probs: np.ndarray
    categories: List[str]
    category_set: str
    descriptors: DescriptorSet
    skipped: List[BadImage] = field(default_factory=list)
    seconds: float = 0.0
    features: Optional[np.ndarray] = None

    def top(self, k: int = DEFAULT_TOP) -> Tuple[np.ndarray, np.ndarray]:
        """Top-``k`` categories per image: ``(indices (N, k) int64, probabilities (N, k) float32)``."""
        return top_k(self.probs, k)

    def predicted(self) -> List[str]:
        """The most probable category of each image."""
        return [self.categories[i] for i in self.probs.argmax(axis=1)] if len(self.ids) else []


def top_k(probs: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable categories per row, most probable first (ties by lower index).

    Shape: probs ``(N, C)`` -> ``((N, min(k, C)) int64, (N, min(k, C)) float32)``.
    """
    p = np.asarray(probs, dtype=np.float32)
    if p.ndim != 2:
        raise InputError(f"probabilities must be (N, C), got {p.shape}")
    if int(k) < 1:
        raise InputError(f"top must be >= 1, got {k}")
    idx = topk.top_k(p, int(k), largest=True)
    return idx, np.take_along_axis(p, idx, axis=1)


def write_scene_csv(path: PathLike, ids: Sequence[str], probs: np.ndarray, categories: Sequence[str],
                    top: int = DEFAULT_TOP) -> Path:
    """Write the top-``top`` categories of every image (long format, see the module docstring).

    Shape: probs ``(N, C)`` with ``N = len(ids)``, ``C = len(categories)``.
    """
    p = np.asarray(probs, dtype=np.float32)
    if p.shape != (len(ids), len(categories)):
        raise InputError(f"probabilities {p.shape} do not match {len(ids)} images x {len(categories)} categories")
    idx, val = top_k(p, top) if len(ids) else (np.zeros((0, 0), np.int64), np.zeros((0, 0), np.float32))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for i, image in enumerate(ids):
        for r in range(idx.shape[1]):
            w.writerow((image, r + 1, categories[idx[i, r]], f"{val[i, r]:.6f}"))
    return write_text_atomic(path, buf.getvalue())


def read_scene_csv(path: PathLike) -> Dict[str, List[Tuple[str, float]]]:
    """``{image: [(category, probability), ...] in rank order}`` from a scene CSV.

    Raises:
        InputError: a missing file or columns other than ``image,rank,category,probability``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"scene CSV {p} does not exist")
    reader = csv.DictReader(io.StringIO(read_text(p, "scene CSV"), newline=""))
    try:
        if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
            raise InputError(f"{p} is not a scene CSV (columns {reader.fieldnames}, expected {list(CSV_COLUMNS)})")
        parsed = [_scene_row(r, p, line) for line, r in enumerate(reader, start=2)]
    except csv.Error as exc:
        raise InputError(f"{p} is not a readable CSV: {exc}") from None
    rows = sorted(parsed, key=lambda t: (t[0], t[1]))
    out: Dict[str, List[Tuple[str, float]]] = {}
    for image, _, cat, prob in rows:
        out.setdefault(image, []).append((cat, prob))
    return out


def _scene_row(row: Dict[str, Any], path: Path, line: int) -> Tuple[str, int, str, float]:
    """One scene CSV row, checked: rank an integer >= 1, probability a number in [0, 1]."""
    try:
        rank = int(row["rank"])
        prob = float(row["probability"])
    except (TypeError, ValueError):
        raise InputError(f"{path} line {line}: rank and probability must be numbers, got "
                         f"{row.get('rank')!r}, {row.get('probability')!r}") from None
    if rank < 1 or not 0.0 <= prob <= 1.0:  # NaN fails the range too
        raise InputError(f"{path} line {line}: rank must be >= 1 and probability in [0, 1], got {rank}, {prob}")
    return str(row["image"]), rank, str(row["category"]), prob


def scene_probs_from_csv(path: PathLike, ids: Sequence[str],
                         categories: Optional[Sequence[str]] = None) -> Tuple[np.ndarray, List[str]]:
    """Scene probabilities of ``ids`` read back from a scene CSV (:func:`write_scene_csv`).

    The CSV holds the top categories of each image only; the others count as probability 0.
    ``categories`` fixes the column order (categories not in it are dropped); by default it is
    every category the CSV names, sorted.

    Shape: -> ``((len(ids), C) float32, C category names)``.

    Raises:
        InputError: an id the CSV does not list (the first few are named).
    """
    table = read_scene_csv(path)
    missing = [i for i in ids if i not in table]
    if missing:
        raise InputError(f"scene CSV {path} has no rows for {len(missing)} of {len(ids)} images "
                         f"(first: {', '.join(missing[:3])}); run `panoplace scene predict` on the same images")
    cats = list(categories) if categories is not None else sorted({c for rows in table.values() for c, _ in rows})
    col = {c: j for j, c in enumerate(cats)}
    probs = np.zeros((len(ids), len(cats)), dtype=np.float32)
    for i, image in enumerate(ids):
        for cat, prob in table[image]:
            if cat in col:
                probs[i, col[cat]] = prob
    return probs, cats


def predict_images(
    root: PathLike,
    paths: Sequence[str],
    model: ScenePlaceModel,
    panorama: PanoramaConfig,
    csv_out: Optional[PathLike] = None,
    store_out: Optional[PathLike] = None,
    top: int = DEFAULT_TOP,
    batch_size: int = 8,
    num_workers: Optional[int] = None,
    device: str = "auto",
    on_error: str = "stop",
    progress: bool = True,
    return_features: bool = False,
    overwrite: bool = True,
) -> ScenePredictions:
    """Scene probabilities and place descriptors of ``root/paths`` (see the module docstring).

    Args:
        model: a :class:`panoplace.models.scene.ScenePlaceModel`.
        panorama: how files become crops (an annular geometry is calibrated here when missing).
        csv_out: scene CSV to write; store_out: descriptor store to write.
        on_error: ``stop`` (raise :class:`ImageReadError` naming the first bad file) or ``skip``.
        return_features: also return the pooled scene features of every crop (e.g. to train a head
            on them, as ``panoplace demo`` does: the place descriptors and the head's training
            features come from the same pass).
        overwrite: a partial run made with other options is discarded (True) or refused (False).

    Returns:
        :class:`ScenePredictions` of the images that were read.
    """
    root, paths = Path(root), list(paths)
    if not paths:
        raise InputError("no images to describe")
    runner = ImageRunner(root, paths, panorama, batch_size=batch_size, device=device, on_error=on_error,
                         num_workers=num_workers, progress=progress, desc="scene")
    panorama = runner.panorama
    n_crops = runner.n_crops
    per_crop = model.config.place.fusion == "per-crop"
    desc_shape = (n_crops, model.descriptor_dim(1)) if per_crop else (model.descriptor_dim(n_crops),)
    d_flat, n_cls = int(np.prod(desc_shape)), len(model.categories)
    f_shape = (n_crops, model.scene_head.in_channels) if return_features else (0,)
    f_flat = int(np.prod(f_shape))
    config = PipelineConfig(panorama=panorama, model=model.config.place).to_dict()
    fingerprint = weights_fingerprint(model.place_model())

    partial: Optional[PartialSpec] = None
    anchor = store_out if store_out is not None else csv_out
    if anchor is not None:
        part_config = {"pipeline": config, "scene": model.config.to_dict(), "categories": model.categories,
                       "features": list(f_shape)}
        partial = PartialSpec.beside(anchor, part_config,
                                     f"{fingerprint}-{weights_fingerprint(model.scene_head)}",
                                     b"\1" + "\0".join(model.categories).encode(),
                                     on_other="restart" if overwrite else "refuse")

    def rows(m: Any, x: torch.Tensor) -> torch.Tensor:
        out = m(x)
        parts = [out.descriptor.reshape(x.shape[0], -1), out.probs]
        if return_features:
            parts.append(out.features.reshape(x.shape[0], -1))
        return torch.cat(parts, dim=1)

    made: List[ScenePredictions] = []

    def write(res: RunResult) -> None:
        made.append(_predictions(res, paths, desc_shape, n_cls, f_shape if return_features else None, model,
                                 config, fingerprint))
        if store_out is not None:
            save_descriptors(made[0].descriptors, store_out)
            log.info("wrote %d place descriptors of dimension %s to %s", len(made[0].ids), desc_shape, store_out)
        if csv_out is not None:
            write_scene_csv(csv_out, made[0].ids, made[0].probs, model.categories, top)
            log.info("wrote the top-%d scene categories of %d images to %s", min(top, n_cls), len(made[0].ids),
                     csv_out)

    res = runner.run(model_step(model, rows), (d_flat + n_cls + f_flat,), partial, write)
    made[0].seconds = res.seconds
    return made[0]


def check_finite_outputs(values: np.ndarray, ids: Sequence[str], what: str) -> None:
    """Refuse model outputs holding NaN or inf (a damaged or diverged model): they would be
    written as if they were probabilities or descriptors.

    Shape: ``values`` ``(N, ...)``, one row per id.

    Raises:
        CheckpointError: naming how many images and the first ones.
    """
    flat = values.reshape(len(ids), -1)
    bad = ~np.isfinite(flat).all(axis=1)
    if bad.any():
        first = ", ".join(ids[i] for i in np.flatnonzero(bad)[:3])
        raise CheckpointError(f"the model gave NaN/inf {what} for {int(bad.sum())} of {len(ids)} images "
                              f"(first: {first}); its weights are probably damaged (NaN/inf in the checkpoint)")


def _predictions(res: RunResult, paths: Sequence[str], desc_shape: Tuple[int, ...], n_cls: int,
                 f_shape: Optional[Tuple[int, ...]], model: ScenePlaceModel,
                 config: Dict[str, Any], fingerprint: str) -> ScenePredictions:
    """Split the runner's rows (descriptor | probabilities | features) of the images that were read."""
    keep = res.kept()
    d_flat = int(np.prod(desc_shape))
    all_rows = res.rows
    ids = [paths[i] for i in keep]
    desc = all_rows[keep, :d_flat].reshape(len(keep), *desc_shape)
    probs = np.ascontiguousarray(all_rows[keep, d_flat:d_flat + n_cls], dtype=np.float32)
    feats = (np.ascontiguousarray(all_rows[keep, d_flat + n_cls:], dtype=np.float32).reshape(len(keep), *f_shape)
             if f_shape is not None else None)
    check_finite_outputs(probs, ids, "scene probabilities")
    check_finite_outputs(desc.reshape(len(keep), -1), ids, "place descriptors")
    descriptors = DescriptorSet(desc, ids, config, fingerprint)
    return ScenePredictions(ids, probs, list(model.categories), model.category_set, descriptors, res.bad,
                            res.seconds, feats)

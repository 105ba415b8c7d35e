"""The offline default: a scene head trained on the procedural world's scene labels.

Every frame the procedural world (:mod:`panoplace.synth`) writes carries a ``scene`` label
(:data:`WORLD_CATEGORIES`: street, park, plaza, waterfront, parking). With a frozen backbone
(EfficientNet-Lite0, ImageNet weights, shipped offline) the head is a small classifier on pooled
features, trained on one drive (the map) and applied to the others.

- :func:`world_scene_model`: a unified model around a place model, the scene branch sharing the
  place model's trunk (one pass for both);
- :func:`train_world_scene_head` / :func:`predict_scenes` / :func:`scene_accuracy`: on pooled
  features ``(N, C)`` or per-crop ``(N, K, C)`` (for example the scene features of
  :func:`panoplace.scene.compute_scene_features`, or those :func:`panoplace.scene.predict_images`
  returns with the place descriptors);
- :func:`scene_localisation` : top-k retrieval by cosine similarity and Recall@1 with and
  without scene re-ranking (:func:`panoplace.matching.scene_rerank.rerank_by_scene`);
- :func:`demo_scene_block`: what ``panoplace demo`` adds to its summary and table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import numpy as np
import torch

from panoplace.crop_fusion import fuse_crops, l2_normalise
from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import DatasetError, InputError
from panoplace.evaluation.metrics import recall_at_n
from panoplace.matching.scene_rerank import rerank_by_scene
from panoplace.models.build import PlaceModel
from panoplace.models.scene import PROCEDURAL_WORLD, SceneHead, ScenePlaceModel, from_place_model
from panoplace.scene.categories import describe_categories
from panoplace.scene.train import HeadFit, _as_crops, fit_scene_head, head_probabilities
from panoplace.topk import top_k

log = logging.getLogger(__name__)

WORLD_CATEGORIES: Tuple[str, ...] = ("street", "park", "plaza", "waterfront", "parking")  # = synth.world.SCENES
# The default scene branch and head on the world's labels (benchmarks/bench_scene.py; measured on
# the demo world and the benchmark's, 3 seeds each, mean accuracy on dusk/night/fog/day2 drives):
# pooled features of the whole EfficientNet-Lite0 trunk ("head", 1280) generalise from the day
# drive to other conditions far better than those of the place cut (block 7: 0.87 and 0.58 with
# an MLP), and a small MLP with dropout and few epochs is the most even across both worlds
# (0.84 / 0.81; linear 0.70 / 0.82; MLP 256: 0.86 / 0.78).
WORLD_SCENE_CUT = "head"
WORLD_HEAD_HIDDEN = 64
WORLD_HEAD_DROPOUT = 0.2
WORLD_HEAD_EPOCHS = 15


def scene_labels(imageset: Any, categories: Sequence[str] = WORLD_CATEGORIES) -> np.ndarray:
    """Category index of every frame of an :class:`~panoplace.data.ImageSet` from its ``scene`` tags.

    Raises:
        DatasetError: the set has no scene tags, or a tag outside ``categories``.

    Shape: Output ``(N,)`` int64.
    """
    tags = getattr(imageset, "scene", None)
    if tags is None or any(not t for t in tags):
        raise DatasetError(f"image set {getattr(imageset, 'name', '?')!r} has no scene label for every frame")
    cats = list(categories)
    unknown = sorted(set(tags) - set(cats))
    if unknown:
        raise DatasetError(f"image set {getattr(imageset, 'name', '?')!r} has scene label(s) {unknown} outside {cats}")
    return np.asarray([cats.index(t) for t in tags], dtype=np.int64)


@dataclass
class WorldSceneHead:
    """A trained scene head with its categories and how it was fitted."""

    head: SceneHead
    categories: List[str]
    category_set: str
    fit: HeadFit

    @property
    def label(self) -> str:
        return describe_categories(self.category_set, len(self.categories))


def world_scene_model(place: PlaceModel, scene_cut: Any = WORLD_SCENE_CUT) -> ScenePlaceModel:
    """A unified model around a place model: the shared base is the place model's trunk (split =
    place cut), the scene branch runs on to ``scene_cut`` (the place cut itself = pooling + head
    only). One pass gives both the place descriptors and the head's features
    (:func:`panoplace.scene.predict_images` with ``return_features=True``). The head is untrained.
    """
    return from_place_model(place, list(WORLD_CATEGORIES), PROCEDURAL_WORLD, scene_cut=scene_cut)


def train_world_scene_head(train_sets: Sequence[Any], features: Sequence[np.ndarray],
                           hidden: int = WORLD_HEAD_HIDDEN, dropout: float = WORLD_HEAD_DROPOUT,
                           epochs: int = WORLD_HEAD_EPOCHS, lr: float = 3e-3, weight_decay: float = 1e-4,
                           seed: int = 0, categories: Sequence[str] = WORLD_CATEGORIES) -> WorldSceneHead:
    """Train a scene head on the world's scene labels of ``train_sets``.

    Args:
        train_sets: image sets with ``scene`` tags (e.g. the map drive).
        features: one array per set, ``(N_i, C)`` or ``(N_i, K, C)``, row i = frame i.
        hidden: 0 = linear head, > 0 = MLP hidden width; dropout: on the head's input while training
            (defaults: see :data:`WORLD_HEAD_HIDDEN`).

    Raises:
        DatasetError: missing or unknown scene tags; InputError: features that do not match.
    """
    if len(train_sets) == 0 or len(train_sets) != len(features):
        raise InputError(f"{len(train_sets)} training sets for {len(features)} feature arrays")
    xs, ys = [], []
    for s, f in zip(train_sets, features):
        x = _as_crops(f, f"features of {getattr(s, 'name', 'a set')}")
        y = scene_labels(s, categories)
        if len(x) != len(y):
            raise InputError(f"{len(x)} feature rows for the {len(y)} frames of {getattr(s, 'name', 'a set')}")
        xs.append(x)
        ys.append(y)
    ks = {x.shape[1] for x in xs}
    if len(ks) != 1:
        raise InputError(f"feature arrays with different crop counts {sorted(ks)}")
    x, y = np.concatenate(xs), np.concatenate(ys)
    torch.manual_seed(seed)
    head = SceneHead(x.shape[2], len(categories), hidden, dropout)
    fit = fit_scene_head(head, x, y, epochs=epochs, lr=lr, weight_decay=weight_decay, seed=seed)
    log.info("scene head (%s) trained on %d frames: %s", PROCEDURAL_WORLD, len(y),
             ", ".join(f"{c} {n}" for c, n in zip(categories, np.bincount(y, minlength=len(categories)))))
    return WorldSceneHead(head, list(categories), PROCEDURAL_WORLD, fit)


def predict_scenes(head: Union[WorldSceneHead, SceneHead], features: np.ndarray) -> np.ndarray:
    """Scene probabilities (crop-averaged softmax) of features.

    Shape: ``(N, C)`` or ``(N, K, C)`` -> ``(N, n_categories)`` float32.
    """
    return head_probabilities(head.head if isinstance(head, WorldSceneHead) else head, features)


def scene_accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """Fraction of rows whose most probable category is the label."""
    p = np.asarray(probs)
    y = np.asarray(labels).reshape(-1)
    if p.ndim != 2 or len(p) != len(y) or len(y) == 0:
        raise InputError(f"probabilities {p.shape} do not match {len(y)} labels")
    return float((p.argmax(axis=1) == y).mean())


def top_k_matches(query: np.ndarray, database: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cosine-similarity top-``k`` of every query (descriptors L2-normalised here; per-crop
    descriptors are summed over crops first).

    Shape: query ``(Q, D)`` / ``(Q, K, D)``, database ``(N, D)`` / ``(N, K, D)`` ->
    ``(scores (Q, k) float32, candidates (Q, k) int64)``.
    """
    def flat(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        return fuse_crops(a) if a.ndim == 3 else l2_normalise(a)

    q, d = flat(query), flat(database)
    if q.shape[1] != d.shape[1]:
        raise InputError(f"query descriptors of dimension {q.shape[1]}, database {d.shape[1]}")
    k = min(int(k), len(d))
    sims = q @ d.T
    cand = top_k(sims, k, largest=True)
    return np.take_along_axis(sims, cand, axis=1).astype(np.float32), cand.astype(np.int64)


def scene_localisation(query: np.ndarray, database: np.ndarray, q_probs: np.ndarray, db_probs: np.ndarray,
                       ground_truth: Any, weights: Sequence[float] = (0.1,), k: int = 10,
                       kind: str = "bhattacharyya") -> Dict[str, float]:
    """Recall@1 of cosine retrieval without and with scene re-ranking of the top ``k``.

    Returns:
        ``{"plain": R@1, "rerank w=0.1": R@1, ...}``.
    """
    scores, cand = top_k_matches(query, database, k)
    out = {"plain": recall_at_n(cand, ground_truth, ns=(1,))[1]}
    for w in weights:
        _, c2 = rerank_by_scene(scores, q_probs, db_probs, cand, weight=float(w), kind=kind)
        out[f"rerank w={w:g}"] = recall_at_n(c2, ground_truth, ns=(1,))[1]
    return out


@dataclass
class DemoScene:
    """The demo's scene results: ``summary`` (JSON-ready) and ``table`` (lines for the terminal)."""

    summary: Dict[str, Any] = field(default_factory=dict)
    table: str = ""


def demo_scene_block(sets: Mapping[str, Any], map_name: str, query_names: Sequence[str],
                     features: Mapping[str, np.ndarray], place: Mapping[str, np.ndarray], radius: float,
                     feature_name: str = "pooled trunk features", place_name: str = "NetVLAD", weight: float = 0.1,
                     k: int = 10, seed: int = 0) -> DemoScene:
    """Train the world scene head on the map drive, predict the query drives, and localise with and
    without scene re-ranking.

    Args:
        sets: image sets by drive name (with ``scene`` tags and positions).
        features: pooled features by drive, ``(N, C)`` or per crop ``(N, K, C)``, rows = frames.
        place: place descriptors by drive (``place_name``, e.g. NetVLAD) for the re-ranking comparison.
        radius: ground-truth radius in metres.
    """
    head = train_world_scene_head([sets[map_name]], [features[map_name]], seed=seed)
    db_probs = predict_scenes(head, features[map_name])
    db = sets[map_name]
    acc: Dict[str, float] = {}
    r1: Dict[str, Dict[str, float]] = {}
    frames: Dict[str, Dict[str, List[Any]]] = {}
    for name in query_names:
        q = sets[name]
        probs = predict_scenes(head, features[name])
        pair = f"{map_name}->{name}"
        acc[pair] = scene_accuracy(probs, scene_labels(q, head.categories))
        gt = GroundTruth.from_positions(db.xy, q.xy, radius=radius)
        loc = scene_localisation(place[name], place[map_name], probs, db_probs, gt, weights=(weight,), k=k)
        r1[pair] = {"without scene": loc["plain"], f"scene re-rank (w={weight:g})": loc[f"rerank w={weight:g}"]}
        frames[name] = {"image": list(q.paths), "predicted": [head.categories[i] for i in probs.argmax(axis=1)],
                        "probability": [round(float(p), 4) for p in probs.max(axis=1)], "true": list(q.scene)}
    summary = {"categories": head.label, "category_list": head.categories,
               "head": f"{'MLP' if head.head.hidden is not None else 'linear'} head on the {feature_name}, "
                       f"trained on the '{map_name}' drive's scene labels",
               "accuracy": acc, "recall@1": r1, "frames": frames}
    accs = "  ".join(f"{p.split('->')[1]} {a:.2f}" for p, a in acc.items())
    rr = "  ".join(f"{p.split('->')[1]} {v['without scene']:.2f}->{v[f'scene re-rank (w={weight:g})']:.2f}"
                   for p, v in r1.items())
    table = (f"scene (categories: {head.label}; head on the map drive's {feature_name}): accuracy  {accs}\n"
             f"{place_name} R@1 without -> with scene re-ranking (w={weight:g}, top {k}):  {rr}")
    return DemoScene(summary, table)

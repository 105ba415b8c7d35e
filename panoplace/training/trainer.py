"""NetVLAD-style weakly supervised training of a :class:`~panoplace.models.build.PlaceModel`.

One epoch (as pytorch-NetVlad's ``train``, with panoramas):

1. the trainable queries (a positive within ``pos_radius``, see
   :class:`~panoplace.training.mining.TripletMiner`) are shuffled with a generator seeded by
   ``(seed, epoch)``, so an epoch is the same whether or not the run was resumed before it;
2. every ``cache_refresh`` queries, the database descriptors are recomputed with the current
   model (eval mode, :func:`panoplace.extract.extract`) into a
   :class:`~panoplace.training.mining.DescriptorCache` (memory or HDF5), the descriptors of
   those queries too, and tuples (query, best positive, up to ``n_neg`` hard negatives) are
   mined;
3. batches of ``batch_size`` tuples: the distinct images of the batch are decoded and cropped
   in DataLoader workers (:class:`panoplace.runner.CropDataset`), all their ``B*K`` crops go
   through the model at once and through the crop fusion (so the gradient reaches every crop),
   and the :func:`~panoplace.training.loss.triplet_ranking_loss` is back-propagated.

After each epoch the validation Recall@N is computed; ``latest.pt`` (with the optimizer,
scheduler, hard-negative cache and history, for ``resume``) and, when the validation recall
improved, ``best.pt`` are written with :func:`~panoplace.models.checkpoint.save_checkpoint`, so
both load in ``panoplace extract`` as they are. Training stops early after ``patience``
epochs without improvement. Per-step and per-epoch scalars go to ``steps.csv`` and
``epochs.csv`` (and to TensorBoard under ``tb/`` when the ``tensorboard`` package is
installed).

Frozen / trainable parts: the backbone's last ``n_trainable`` units, the aggregator
(NetVLAD centroids and assignment, GeM ``p``) and a learned attention head train; the
attention head at ``attention_lr_mult`` times the learning rate. BatchNorm layers keep their
running statistics (``train_bn=False``) unless asked, so the cached descriptors and the
training forward pass agree and small batches do not disturb the pretrained statistics.
Per-crop models train on their summed, L2-normalised crop descriptors (the ``add`` view).

Frozen-feature cache (``frozen_cache``): the output of the frozen backbone units is computed
once per image and kept in memory (:class:`~panoplace.training.frozen.FrozenFeatures`), so the
cache refreshes, training steps and validations run only the trainable tail; without it (or
when the features would not fit in memory) every image is decoded and run through the whole
model each time.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from panoplace.config import PanoramaConfig
from panoplace.crop_fusion import fuse_crops
from panoplace.errors import CheckpointError, ImageReadError, InputError
from panoplace.extract import extract
from panoplace.data.frames import ImageSet
from panoplace.data.groundtruth import GroundTruth
from panoplace.evaluation.metrics import recall_at_n
from panoplace.models.attention import CamAttention, build_attention, check_remain
from panoplace.models.build import PlaceModel
from panoplace.models.checkpoint import place_model_from, read_checkpoint, save_checkpoint
from panoplace.panorama.project import PanoramaProjector
from panoplace.runner import CropDataset, resolve_device
from panoplace.training.frozen import FrozenFeatures
from panoplace.training.loss import LOSSES, MultiSimilarityParams, multi_similarity_loss, triplet_ranking_loss
from panoplace.training.mining import CACHE_KINDS, DescriptorCache, TripletMiner, Triplets, make_cache
from panoplace.topk import top_k
from panoplace.training.splits import PlaceSplit

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
OPTIMIZERS = ("sgd", "adam")
FROZEN_CACHE = ("auto", "on", "off")
LATEST = "latest.pt"
BEST = "best.pt"
STEP_COLUMNS = ("epoch", "step", "loss", "tuples", "triplets", "lr")


@dataclass
class TrainConfig:
    """Training hyper-parameters (defaults after pytorch-NetVlad / the NetVLAD paper).

    epochs: maximum number of epochs. batch_size: tuples (query, positive, negatives) per step.
    optimizer: ``sgd`` (momentum, weight decay) or ``adam``. lr: base learning rate.
    lr_step, lr_gamma: the learning rate is multiplied by ``lr_gamma`` every ``lr_step`` epochs
        (0 = constant).
    margin: triplet margin (squared distances). pos_radius, neg_radius: metres.
    loss: ``triplet`` (NetVLAD's ranking loss) or ``multi-similarity`` (with its pair mining;
        ``ms_alpha``, ``ms_beta``, ``ms_base``, ``ms_epsilon``, see :mod:`panoplace.training.loss`).
    n_neg_sample: random negatives per query and mining round. n_neg: hard negatives per tuple.
    cache_refresh: queries between two refreshes of the mining cache.
    cache: ``auto``, ``memory`` or ``hdf5`` (the file lives in the output folder while training).
    queries_per_epoch: cap on the queries of an epoch (None = all trainable queries).
    n_trainable: trainable tail units of the backbone (None = as the model was built).
    attention_lr_mult: learning-rate factor of the attention head.
    train_bn: update BatchNorm running statistics of the trainable units.
    val_radius: metres for validation ground truth. recall_ns: the N of the validation Recall@N;
        the best checkpoint has the highest Recall@N for the first N (ties: the next N).
    validate_first: validate the initial model as epoch 0 (so ``best`` never is worse).
    patience: stop after that many epochs without a better validation recall (0 = never).
    seed: seeds shuffling, negative sampling and torch.
    batch_size_describe: images per batch when computing descriptors for the cache and validation.
    frozen_cache: keep the output of the frozen backbone units per image in memory and run only
        the trainable tail (:mod:`panoplace.training.frozen`): ``on``, ``off`` or ``auto`` (on when
        the features of all training and validation images fit in ``frozen_cache_limit`` bytes).
    num_workers: DataLoader decoding workers. device: ``auto``, ``cpu`` or ``cuda``.
    """

    epochs: int = 30
    batch_size: int = 4
    optimizer: str = "sgd"
    lr: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 1e-3
    lr_step: int = 5
    lr_gamma: float = 0.5
    margin: float = 0.1
    loss: str = "triplet"
    ms_alpha: float = 1.0
    ms_beta: float = 50.0
    ms_base: float = 0.0
    ms_epsilon: float = 0.1
    pos_radius: float = 10.0
    neg_radius: float = 25.0
    n_neg_sample: int = 1000
    n_neg: int = 10
    cache_refresh: int = 1000
    cache: str = "auto"
    queries_per_epoch: Optional[int] = None
    n_trainable: Optional[int] = None
    attention_lr_mult: float = 10.0
    train_bn: bool = False
    val_radius: float = 25.0
    recall_ns: Tuple[int, ...] = (1, 5, 10, 20)
    validate_first: bool = True
    patience: int = 10
    seed: int = 0
    batch_size_describe: int = 16
    frozen_cache: str = "auto"
    frozen_cache_limit: int = 2 << 30
    num_workers: int = 1
    device: str = "auto"

    def __post_init__(self) -> None:
        self.recall_ns = tuple(int(n) for n in self.recall_ns)
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"unknown optimizer {self.optimizer!r}; choose one of {list(OPTIMIZERS)}")
        if self.frozen_cache not in FROZEN_CACHE:
            raise InputError(f"unknown frozen_cache {self.frozen_cache!r}; choose one of {list(FROZEN_CACHE)}")
        if self.loss not in LOSSES:
            raise InputError(f"unknown loss {self.loss!r}; choose one of {list(LOSSES)}")
        self.ms_params()  # checks the multi-similarity parameters
        if self.cache not in CACHE_KINDS:
            raise InputError(f"unknown cache {self.cache!r}; choose one of {list(CACHE_KINDS)}")
        for name in ("epochs", "batch_size", "n_neg", "n_neg_sample", "cache_refresh", "batch_size_describe"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr_step", "patience", "num_workers"):
            if int(getattr(self, name)) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (self.lr > 0 and self.attention_lr_mult > 0 and self.lr_gamma > 0):
            raise InputError("lr, lr_gamma and attention_lr_mult must be > 0")
        if not self.recall_ns or min(self.recall_ns) < 1:
            raise InputError(f"recall_ns must be positive integers, got {self.recall_ns}")
        if self.queries_per_epoch is not None and self.queries_per_epoch < 1:
            raise InputError(f"queries_per_epoch must be >= 1, got {self.queries_per_epoch}")

    def ms_params(self) -> MultiSimilarityParams:
        """The multi-similarity loss parameters."""
        return MultiSimilarityParams(self.ms_alpha, self.ms_beta, self.ms_base, self.ms_epsilon)

    def tuple_loss(self, query: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
                   mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The configured loss of tuples (see :mod:`panoplace.training.loss`).

        Shape: query, positive ``(B, D)``; negatives ``(B, M, D)``; mask ``(B, M)`` -> scalar.
        """
        if self.loss == "multi-similarity":
            return multi_similarity_loss(query, positive, negatives, self.ms_params(), mask, reduction)
        return triplet_ranking_loss(query, positive, negatives, self.margin, mask, reduction)

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["recall_ns"] = list(self.recall_ns)
        return d

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise InputError(f"unknown training option(s) {unknown}; valid: {sorted(names)}")
        return cls(**data)


@dataclass
class EpochRecord:
    """What one epoch did. Epoch 0 is the validation of the initial model (no training)."""

    epoch: int
    loss: float = float("nan")
    tuples: int = 0
    triplets: int = 0
    solved: int = 0
    lr: float = float("nan")
    recall: Dict[int, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    cache_seconds: float = 0.0
    val_seconds: float = 0.0

    @property
    def triplets_per_second(self) -> float:
        return self.triplets / self.train_seconds if self.train_seconds > 0 else float("nan")

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["recall"] = {int(k): float(v) for k, v in self.recall.items()}
        return d

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "EpochRecord":
        d = dict(d)
        d["recall"] = {int(k): float(v) for k, v in d.get("recall", {}).items()}
        return cls(**d)


@dataclass
class TrainResult:
    """The outcome of :meth:`Trainer.fit`."""

    out_dir: Path
    history: List[EpochRecord]
    best_epoch: int
    best_recall: Dict[int, float]
    stopped_early: bool

    @property
    def latest(self) -> Path:
        return self.out_dir / LATEST

    @property
    def best(self) -> Path:
        return self.out_dir / BEST


# --------------------------------------------------------------------------------------------
# model preparation
# --------------------------------------------------------------------------------------------

def prepare_model(model: PlaceModel, n_trainable: Optional[int] = None, attention: Optional[str] = None,
                  remain: Optional[float] = None, cam_classifier: Optional[nn.Linear] = None,
                  seed: int = 0) -> PlaceModel:
    """Set up a :class:`PlaceModel` for training: the trainable tail and, optionally, an
    attention module added before aggregation (``learned`` or ``cam``); ``model.config`` is
    updated so that checkpoints rebuild the same model.

    Raises:
        InputError: a whitened model (train first, then fit PCA-whitening), a model that already
            has another attention, or a ``cam`` attention without a classifier.
    """
    if model.whitening is not None:
        raise InputError("the model already has a PCA-whitening layer: train the un-whitened model and fit "
                         "the whitening afterwards (`panoplace pca`)")
    cfg = model.config
    if n_trainable is not None and n_trainable != model.backbone.n_trainable:
        model.backbone.set_trainable(int(n_trainable))
        cfg = dataclasses.replace(cfg, n_trainable=int(n_trainable))
    if remain is not None and attention is None and model.attention is not None:
        model.attention.remain = check_remain(remain)
        cfg = dataclasses.replace(cfg, attention_remain=model.attention.remain)
    if attention is not None:
        if model.attention is not None and cfg.attention != attention:
            raise InputError(f"the model already has {cfg.attention!r} attention; cannot switch to {attention!r}")
        r = cfg.attention_remain if remain is None else float(remain)
        if model.attention is None:
            torch.manual_seed(seed)
            device = next(model.parameters()).device
            built = build_attention(attention, model.backbone.out_channels, r)
            model.attention = built.to(device) if built is not None else None
        else:
            model.attention.remain = r
        cfg = dataclasses.replace(cfg, attention=attention, attention_remain=r if model.attention is None
                                  else model.attention.remain)
    if cfg.attention == "cam":
        cam = model.attention
        if not isinstance(cam, CamAttention):
            raise InputError("the model's config names 'cam' attention but the model has no CAM attention module")
        if cam_classifier is not None:
            cam.set_classifier(cam_classifier)
        if not cam.fitted:
            raise InputError("attention 'cam' needs a scene classifier over the local features "
                             "(e.g. --cam-classifier with a Places365 checkpoint)")
    model.config = cfg
    return model




def describe(model: PlaceModel, imageset_root: Path, paths: Sequence[str], panorama: PanoramaConfig,
             batch_size: int = 16, num_workers: int = 1, device: str = "auto") -> np.ndarray:
    """Descriptors of images with ``model`` (eval mode, no gradients), per-crop ones fused.

    Shape:
        Output: ``(len(paths), D)`` float32.
    """
    res = extract(imageset_root, paths, model, panorama, out=None, batch_size=batch_size,
                  num_workers=num_workers, device=device, on_error="stop", progress=False)
    return res.descriptors.fused()


def recall_of(query: np.ndarray, database: np.ndarray, ground_truth: Any,
              ns: Sequence[int] = (1, 5, 10, 20), chunk: int = 1024) -> Dict[int, float]:
    """Recall@N of nearest-neighbour retrieval by inner product (L2-normalised descriptors).

    Shape:
        query: ``(Q, D)``; database: ``(N, D)``; ground_truth a
        :class:`~panoplace.data.groundtruth.GroundTruth` for Q against N.
    """
    q = torch.from_numpy(np.ascontiguousarray(query, dtype=np.float32))
    d = torch.from_numpy(np.ascontiguousarray(database, dtype=np.float32))
    k = min(max(ns), d.shape[0])
    cands = [top_k((q[s:s + chunk] @ d.T).numpy(), k, largest=True) for s in range(0, q.shape[0], chunk)]
    return recall_at_n(np.concatenate(cands) if cands else np.zeros((0, k), np.int64), ground_truth, ns)


# --------------------------------------------------------------------------------------------
# batches of tuples
# --------------------------------------------------------------------------------------------

def tuple_batch(triplets: Triplets, b: int, batch_size: int, n_db: int
                ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The distinct images of batch ``b`` of ``triplets`` and the tuples as rows into them.

    Image keys: database image ``j`` -> ``j``, query ``i`` -> ``n_db + i``.

    Returns:
        ``keys`` ``(U,)`` sorted distinct image keys; ``q`` ``(B,)``, ``p`` ``(B,)`` and ``n``
        ``(B, M)`` int64 rows into ``keys`` (``-1`` = padding).
    """
    sl = slice(b * batch_size, (b + 1) * batch_size)
    q = triplets.query[sl] + n_db
    p = triplets.positive[sl]
    n = triplets.negatives[sl]
    keys, inverse = np.unique(np.concatenate([q, p, n[n >= 0]]), return_inverse=True)
    rows_n = np.full(n.shape, -1, dtype=np.int64)
    rows_n[n >= 0] = inverse[2 * len(q):]
    return keys, inverse[:len(q)].astype(np.int64), inverse[len(q):2 * len(q)].astype(np.int64), rows_n


class TupleBatches(Dataset):
    """Batch ``b`` of mined tuples as the crops of its distinct images (decoded in workers).

    Item ``b`` -> ``(crops, q, p, n)``: crops ``(U, K, h, w, 3)`` uint8 of the U distinct images;
    ``q`` ``(B,)``, ``p`` ``(B,)`` and ``n`` ``(B, M)`` int64 rows into those U images
    (``-1`` = padding), see :func:`tuple_batch`.
    """

    def __init__(self, triplets: Triplets, batch_size: int, database: CropDataset, queries: CropDataset) -> None:
        self.t = triplets
        self.batch_size = int(batch_size)
        self.database = database
        self.queries = queries
        self.n_db = len(database)

    def __len__(self) -> int:
        return math.ceil(len(self.t) / self.batch_size)

    def _load(self, key: int) -> torch.Tensor:
        ds, i = (self.database, key) if key < self.n_db else (self.queries, key - self.n_db)
        crops, _, bad = ds[i]
        if bad is not None:
            raise ImageReadError(bad.path, bad.reason)
        return crops

    def __getitem__(self, b: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        keys, q, p, n = tuple_batch(self.t, b, self.batch_size, self.n_db)
        crops = torch.stack([self._load(int(k)) for k in keys])
        return crops, torch.from_numpy(q), torch.from_numpy(p), torch.from_numpy(n)


# --------------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------------

class _ScalarLog:
    """``steps.csv`` / ``epochs.csv`` (and TensorBoard when installed)."""

    def __init__(self, out_dir: Path, recall_ns: Sequence[int]) -> None:
        self.steps = out_dir / "steps.csv"
        self.epochs = out_dir / "epochs.csv"
        self.epoch_columns = (["epoch", "loss", "tuples", "triplets", "solved", "lr"]
                              + [f"recall@{n}" for n in recall_ns]
                              + ["train_seconds", "cache_seconds", "val_seconds", "triplets_per_second"])
        self.tb = None
        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tb"))

    def truncate(self, last_epoch: int) -> None:
        """Drop rows of epochs after ``last_epoch`` (left by a run killed mid-epoch)."""
        for path in (self.steps, self.epochs):
            if not path.exists():
                continue
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            if not rows:
                continue
            kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= last_epoch]
            with open(path, "w", newline="") as f:
                csv.writer(f).writerows(kept)

    @staticmethod
    def _append(path: Path, columns: Sequence[str], row: Sequence[Any]) -> None:
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(columns)
            w.writerow(row)

    def step(self, epoch: int, step: int, loss: float, tuples: int, triplets: int, lr: float) -> None:
        self._append(self.steps, STEP_COLUMNS, [epoch, step, f"{loss:.6g}", tuples, triplets, f"{lr:.6g}"])
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss, step)
            self.tb.add_scalar("train/lr", lr, step)

    def epoch(self, rec: EpochRecord, ns: Sequence[int]) -> None:
        row = ([rec.epoch, f"{rec.loss:.6g}", rec.tuples, rec.triplets, rec.solved, f"{rec.lr:.6g}"]
               + [f"{rec.recall.get(n, float('nan')):.6g}" for n in ns]
               + [f"{rec.train_seconds:.3f}", f"{rec.cache_seconds:.3f}", f"{rec.val_seconds:.3f}",
                  f"{rec.triplets_per_second:.4g}"])
        self._append(self.epochs, self.epoch_columns, row)
        if self.tb is not None:
            for n, r in rec.recall.items():
                self.tb.add_scalar(f"val/recall@{n}", r, rec.epoch)
            if rec.tuples:
                self.tb.add_scalar("train/epoch_loss", rec.loss, rec.epoch)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Trainer:
    """Trains a place model with triplet ranking (see the module docstring).

    Args:
        model: a :class:`~panoplace.models.build.PlaceModel` (e.g. from ``panoplace cluster``),
            prepared with :func:`prepare_model`; it is trained in place.
        panorama: how the image files become crops (saved into the checkpoints).
        train: the training split; val: the validation split (None = no validation, no ``best``).
        out_dir: where ``latest.pt``, ``best.pt`` and the CSV logs go.
        config: :class:`TrainConfig`.
        progress: show a tqdm bar with the running loss.
        frozen_store: a dict to keep frozen-backbone features in, to share them with other runs
            (see :class:`~panoplace.training.frozen.FrozenFeatures`).
    """

    def __init__(self, model: PlaceModel, panorama: PanoramaConfig, train: PlaceSplit,
                 val: Optional[PlaceSplit], out_dir: PathLike, config: Optional[TrainConfig] = None,
                 progress: bool = True, frozen_store: Optional[Dict[str, torch.Tensor]] = None) -> None:
        self.config = cfg = config or TrainConfig()
        self._frozen_store = frozen_store
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.model = prepare_model(model, n_trainable=cfg.n_trainable).to(self.device)
        self.projector = PanoramaProjector.calibrated(panorama, train.database.root, train.database.paths)
        self.panorama = self.projector.config
        self.n_crops = self.projector.n_crops
        self.train_split, self.val_split = train, val
        self.miner = TripletMiner(train.database.require_positions("training"),
                                  train.queries.require_positions("training"), cfg.pos_radius, cfg.neg_radius,
                                  cfg.n_neg_sample, cfg.n_neg, cfg.margin, same_frame=train.same_frame())
        if len(self.miner.trainable) == 0:
            raise InputError(f"no training query has a database image within {cfg.pos_radius:g} m and one "
                             f"beyond {cfg.neg_radius:g} m: check that queries and database share a route and "
                             "a coordinate frame")
        self.frozen = self._make_frozen()
        self.optimizer = self._make_optimizer()
        self.scheduler = (torch.optim.lr_scheduler.StepLR(self.optimizer, cfg.lr_step, cfg.lr_gamma)
                          if cfg.lr_step > 0 else torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda e: 1.0))
        self.epoch = 0  # last finished epoch
        self.step = 0
        self.history: List[EpochRecord] = []
        self.best_score: Optional[Tuple[float, ...]] = None
        self.best_epoch = -1
        self.bad_epochs = 0
        self._val_gt: Optional[GroundTruth] = None
        self._resumed = False
        self.log = _ScalarLog(self.out_dir, cfg.recall_ns)

    # ---------------------------------------------------------------- set-up
    def _make_frozen(self) -> Optional[FrozenFeatures]:
        cfg = self.config
        if cfg.frozen_cache == "off":
            return None
        frozen = FrozenFeatures(self.model, self.panorama, self.n_crops, self.device, cfg.batch_size_describe,
                                cfg.num_workers, store=self._frozen_store)
        sets = [self.train_split.database, self.train_split.queries]
        if self.val_split is not None:
            sets += [self.val_split.database, self.val_split.queries]
        n_images = len({FrozenFeatures.image_key(s.root, p) for s in sets for p in s.paths})
        need = n_images * frozen.bytes_per_image()
        if cfg.frozen_cache == "auto" and need > cfg.frozen_cache_limit:
            log.info("frozen-feature cache off: %d images would take %.1f GiB (limit %.1f GiB)", n_images,
                     need / 2**30, cfg.frozen_cache_limit / 2**30)
            return None
        log.info("frozen-feature cache: backbone units before %r run once per image (%d images, %.0f MiB)",
                 list(self.model.backbone.body._modules)[frozen.split] if frozen.split < len(self.model.backbone.body)
                 else "the aggregator", n_images, need / 2**20)
        return frozen

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        base = [p for n, p in self.model.named_parameters() if p.requires_grad and not n.startswith("attention.")]
        attn = [p for n, p in self.model.named_parameters() if p.requires_grad and n.startswith("attention.")]
        if not base and not attn:
            raise InputError("nothing to train: the backbone is frozen (n_trainable 0), the aggregator has no "
                             "parameters and there is no learned attention; set n_trainable >= 1")
        groups: List[Dict[str, Any]] = [{"params": base, "lr": cfg.lr}]
        if attn:
            groups.append({"params": attn, "lr": cfg.lr * cfg.attention_lr_mult})
        n_params = sum(p.numel() for g in groups for p in g["params"])
        log.info("training %d parameters in %d tensors%s", n_params, sum(len(g["params"]) for g in groups),
                 f" (attention head at {cfg.attention_lr_mult:g}x the learning rate)" if attn else "")
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)

    @classmethod
    def resume(cls, out_dir: PathLike, train: PlaceSplit, val: Optional[PlaceSplit],
               config: Optional[TrainConfig] = None, overrides: Optional[Dict[str, Any]] = None,
               progress: bool = True) -> "Trainer":
        """Continue from ``out_dir/latest.pt``: model, optimizer, scheduler, hard negatives,
        history, best score and early-stopping count as they were after its epoch.

        Args:
            config: training options; None = those saved in the checkpoint (pass a config to,
                e.g., train for more epochs or with more patience; the optimizer kind and the
                schedule must stay the same: the learning rates continue from the checkpoint).
            overrides: instead of ``config``, options that replace the saved ones.

        Raises:
            CheckpointError: no ``latest.pt`` or one without training state.
            InputError: other training data than the checkpoint was trained on, or another
                number of trainable units.
        """
        path = Path(out_dir) / LATEST
        if not path.is_file():
            raise CheckpointError(f"nothing to resume: {path} does not exist")
        ckpt = read_checkpoint(path)  # read once: the training state and the model
        extra = ckpt.extra
        if "optimizer" not in extra or "train_config" not in extra:
            raise CheckpointError(f"{path} holds no training state (optimizer, epoch) to resume from")
        model, panorama = place_model_from(ckpt)
        cfg = config or TrainConfig.from_dict({**extra["train_config"], **(overrides or {})})
        if cfg.n_trainable is not None and cfg.n_trainable != model.backbone.n_trainable:
            raise InputError(f"{path} trains {model.backbone.n_trainable} backbone units; resuming cannot change "
                             f"that to {cfg.n_trainable} (start a new run from {path} instead)")
        if extra.get("split") != train.fingerprint():
            raise InputError(f"{path} was trained on other images than the training split given; resume "
                             "with the same training data")
        trainer = cls(model, panorama or PanoramaConfig(), train, val, out_dir, cfg, progress=progress)
        trainer.optimizer.load_state_dict(extra["optimizer"])
        trainer.scheduler.load_state_dict(extra["scheduler"])
        trainer.epoch = int(extra["epoch"])
        trainer.step = int(extra.get("step", 0))
        trainer.history = [EpochRecord.from_dict(r) for r in extra.get("history", [])]
        best = extra.get("best_score")
        trainer.best_score = tuple(float(x) for x in best) if best is not None else None
        trainer.best_epoch = int(extra.get("best_epoch", -1))
        trainer.bad_epochs = int(extra.get("bad_epochs", 0))
        hn = extra.get("hard_negatives")
        if isinstance(hn, torch.Tensor) and tuple(hn.shape) == trainer.miner.hard_negatives.shape:
            trainer.miner.hard_negatives = hn.numpy().astype(np.int64).copy()
        trainer._resumed = True
        trainer.log.truncate(trainer.epoch)
        log.info("resumed from %s after epoch %d (best epoch %d)", path, trainer.epoch, trainer.best_epoch)
        return trainer

    # ---------------------------------------------------------------- pieces
    def _set_train_mode(self) -> None:
        self.model.train()
        if not self.config.train_bn:
            for m in self.model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def _describe(self, imageset: ImageSet, index: Optional[np.ndarray] = None) -> np.ndarray:
        """Descriptors ``(n, D)`` of the images of ``imageset`` (at ``index``), eval mode."""
        paths = imageset.paths if index is None else [imageset.paths[i] for i in index]
        cfg = self.config
        if self.frozen is None:
            return describe(self.model, imageset.root, paths, self.panorama, batch_size=cfg.batch_size_describe,
                            num_workers=cfg.num_workers, device=str(self.device))
        self.model.eval()
        out = []
        with torch.no_grad():
            for s in range(0, len(paths), cfg.batch_size_describe):
                feats = self.frozen.features(imageset.root, paths[s:s + cfg.batch_size_describe])
                out.append(self.frozen.descriptors(feats).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.model.descriptor_dim(self.n_crops)), np.float32)

    def _batches(self, triplets: Triplets) -> Iterator[Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches of tuples: ``(images, q, p, n)`` where images are uint8 crops ``(U, K, h, w, 3)``
        or, with the frozen cache, frozen features ``(U, K, C, h, w)``."""
        db, qs = self.train_split.database, self.train_split.queries
        if self.frozen is None:
            ds = TupleBatches(triplets, self.config.batch_size, CropDataset(db.root, db.paths, self.projector),
                              CropDataset(qs.root, qs.paths, self.projector))
            yield from DataLoader(ds, batch_size=None, shuffle=False, num_workers=self.config.num_workers,
                                  pin_memory=self.device.type == "cuda")
            return
        n_db = len(db)
        for b in range(math.ceil(len(triplets) / self.config.batch_size)):
            keys, q, p, n = tuple_batch(triplets, b, self.config.batch_size, n_db)
            db_keys, q_keys = keys[keys < n_db], keys[keys >= n_db] - n_db
            feats = torch.cat([self.frozen.features(db.root, [db.paths[i] for i in db_keys]),
                               self.frozen.features(qs.root, [qs.paths[i] for i in q_keys])])
            yield feats, torch.from_numpy(q), torch.from_numpy(p), torch.from_numpy(n)

    def _batch_descriptors(self, images: torch.Tensor) -> torch.Tensor:
        """``(U, D)`` descriptors of a batch from :meth:`_batches` (gradients as the context decides)."""
        if self.frozen is not None:
            return self.frozen.descriptors(images)
        return fuse_crops(self.model(self.model.preprocess(images.to(self.device, non_blocking=True))))

    def validate(self) -> Dict[int, float]:
        """Validation Recall@N of the current model (empty without a validation split)."""
        if self.val_split is None:
            return {}
        if self._val_gt is None:
            gt = GroundTruth.from_positions(self.val_split.database.require_positions("validation"),
                                            self.val_split.queries.require_positions("validation"),
                                            self.config.val_radius)
            has = gt.n_positives > 0
            if not has.any():
                raise InputError(f"no validation query has a database image within {self.config.val_radius:g} m")
            self._val_gt = GroundTruth(gt.positives, has, gt.n_database)
        db = self._describe(self.val_split.database)
        q = self._describe(self.val_split.queries)
        return recall_of(q, db, self._val_gt, self.config.recall_ns)

    def _score(self, recall: Dict[int, float]) -> Tuple[float, ...]:
        return tuple(recall.get(n, float("nan")) for n in self.config.recall_ns)

    def _fill_cache(self, cache: Optional[DescriptorCache]) -> DescriptorCache:
        db = self.train_split.database
        desc = self._describe(db)
        if cache is None:
            cache = make_cache(self.config.cache, len(db), desc.shape[1], self.out_dir)
        cache.write(0, desc)
        return cache

    def train_tuples(self, triplets: Triplets, rec: Optional[EpochRecord] = None, bar: Any = None) -> EpochRecord:
        """Optimizer steps over ``triplets``, ``batch_size`` tuples at a time.

        Adds to ``rec`` (a new record for epoch ``self.epoch + 1`` when None) the tuples,
        triplets, the running mean loss and the seconds spent, and returns it.
        """
        cfg = self.config
        rec = rec if rec is not None else EpochRecord(epoch=self.epoch + 1,
                                                      lr=float(self.optimizer.param_groups[0]["lr"]))
        t0 = time.perf_counter()
        self._set_train_mode()
        for images, rq, rp, rn in self._batches(triplets):
            desc = self._batch_descriptors(images)  # (U, D)
            rq, rp, rn = rq.to(self.device), rp.to(self.device), rn.to(self.device)
            mask = rn >= 0
            loss = cfg.tuple_loss(desc[rq], desc[rp], desc[rn.clamp(min=0)], mask)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            value = float(loss.detach())
            n_trip = int(mask.sum())
            total = (rec.loss * rec.tuples if rec.tuples else 0.0) + value * len(rq)
            rec.tuples += len(rq)
            rec.triplets += n_trip
            rec.loss = total / rec.tuples
            self.log.step(rec.epoch, self.step, value, len(rq), n_trip, self.optimizer.param_groups[0]["lr"])
            if bar is not None:
                bar.set_postfix(loss=f"{rec.loss:.4f}", refresh=False)
        rec.train_seconds += time.perf_counter() - t0
        return rec

    def mine(self, queries: Optional[np.ndarray] = None, seed: int = 0) -> Triplets:
        """Mine tuples for ``queries`` (default: all trainable ones) with the current model.

        Uses a generator seeded by ``seed`` and updates the miner's hard-negative memory.
        """
        rows = self.miner.trainable if queries is None else np.asarray(queries, dtype=np.int64)
        cache = self._fill_cache(None)
        try:
            return self.miner.mine(rows, self._describe(self.train_split.queries, rows), cache,
                                   np.random.default_rng(seed))
        finally:
            cache.close()

    @torch.no_grad()
    def tuple_loss(self, triplets: Triplets) -> float:
        """Mean loss (the configured one) of fixed ``triplets`` under the current model (eval mode).

        The loss per tuple is summed over its negatives; the mean is over the tuples.
        """
        if len(triplets) == 0:
            raise InputError("no tuples to compute a loss on")
        self.model.eval()
        total = 0.0
        for images, rq, rp, rn in self._batches(triplets):
            desc = self._batch_descriptors(images)
            rq, rp, rn = rq.to(self.device), rp.to(self.device), rn.to(self.device)
            total += float(self.config.tuple_loss(desc[rq], desc[rp], desc[rn.clamp(min=0)], rn >= 0,
                                                  reduction="sum"))
        return total / len(triplets)

    def train_epoch(self, epoch: int) -> EpochRecord:
        """One epoch of mining and training (no validation)."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        order = rng.permutation(self.miner.trainable)
        if cfg.queries_per_epoch is not None:
            order = order[:cfg.queries_per_epoch]
        rec = EpochRecord(epoch=epoch, lr=float(self.optimizer.param_groups[0]["lr"]))
        cache: Optional[DescriptorCache] = None
        bar = tqdm(total=len(order), unit="query", desc=f"epoch {epoch}", disable=not self.progress,
                   dynamic_ncols=True)
        try:
            for s in range(0, len(order), cfg.cache_refresh):
                rows = order[s:s + cfg.cache_refresh]
                t0 = time.perf_counter()
                cache = self._fill_cache(cache)
                qdesc = self._describe(self.train_split.queries, rows)
                triplets = self.miner.mine(rows, qdesc, cache, rng)
                rec.solved += triplets.solved
                rec.cache_seconds += time.perf_counter() - t0
                if len(triplets):
                    self.train_tuples(triplets, rec, bar)
                bar.update(len(rows))
        finally:
            bar.close()
            if cache is not None:
                cache.close()
        self.scheduler.step()
        log.info("epoch %d: loss %.4f over %d tuples (%d triplets, %d queries already solved), %.1f triplets/s",
                 epoch, rec.loss, rec.tuples, rec.triplets, rec.solved, rec.triplets_per_second)
        return rec

    def _extra(self, rec: EpochRecord) -> Dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "train_config": self.config.to_dict(),
            "split": self.train_split.fingerprint(),
            "history": [r.to_dict() for r in self.history],
            "best_score": list(self.best_score) if self.best_score is not None else None,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "hard_negatives": torch.from_numpy(self.miner.hard_negatives.copy()),
            "recall": {int(k): float(v) for k, v in rec.recall.items()},
        }

    def _finish_epoch(self, rec: EpochRecord) -> None:
        t0 = time.perf_counter()
        rec.recall = self.validate()
        rec.val_seconds = time.perf_counter() - t0
        self.epoch = rec.epoch
        self.history.append(rec)
        improved = False
        if rec.recall:
            score = self._score(rec.recall)
            improved = self.best_score is None or score > self.best_score
            if improved:
                self.best_score, self.best_epoch, self.bad_epochs = score, rec.epoch, 0
            elif rec.epoch > 0:
                self.bad_epochs += 1
            log.info("epoch %d validation: %s%s", rec.epoch,
                     ", ".join(f"R@{n} {r:.3f}" for n, r in rec.recall.items()), " (best)" if improved else "")
        self.log.epoch(rec, self.config.recall_ns)
        extra = self._extra(rec)
        if improved:
            save_checkpoint(self.model, self.out_dir / BEST, panorama=self.panorama,
                            extra={k: extra[k] for k in ("epoch", "recall", "train_config", "split")})
        save_checkpoint(self.model, self.out_dir / LATEST, panorama=self.panorama, extra=extra)

    def fit(self) -> TrainResult:
        """Train until ``epochs`` or early stopping; returns the history and the best epoch."""
        cfg = self.config
        stopped = False
        try:
            if not self._resumed and cfg.validate_first and self.val_split is not None:
                self._finish_epoch(EpochRecord(epoch=0))
            while self.epoch < cfg.epochs:
                if cfg.patience and self.val_split is not None and self.bad_epochs >= cfg.patience:
                    stopped = True
                    log.info("early stop: no better validation recall for %d epochs (best: epoch %d)",
                             self.bad_epochs, self.best_epoch)
                    break
                self._finish_epoch(self.train_epoch(self.epoch + 1))
        finally:
            self.log.close()
        best = next((r.recall for r in self.history if r.epoch == self.best_epoch), {})
        return TrainResult(self.out_dir, list(self.history), self.best_epoch, best, stopped)


#: What a new (not resumed) run removes from its folder first: the files of an earlier run that it
#: would otherwise append to (the logs) or leave beside its own (checkpoints a resume would pick up).
FRESH_RUN_REMOVES = ("latest.pt", "best.pt", "epochs.csv", "steps.csv")


def train(model: PlaceModel, panorama: PanoramaConfig, train_split: PlaceSplit, val_split: Optional[PlaceSplit],
          out_dir: PathLike, config: Optional[TrainConfig] = None, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """Train ``model`` (or, with ``resume``, the model of ``out_dir/latest.pt``); see :class:`Trainer`."""
    if resume:
        trainer = Trainer.resume(out_dir, train_split, val_split, config, progress=progress)
    else:
        for name in FRESH_RUN_REMOVES:  # a new run: nothing of an earlier one in this folder is kept
            (Path(out_dir) / name).unlink(missing_ok=True)
        trainer = Trainer(model, panorama, train_split, val_split, out_dir, config, progress=progress)
    return trainer.fit()

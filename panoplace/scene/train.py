"""Fine-tuning the scene head on labelled images (the base and the trunk stay frozen).

Labelled images come from

- an ImageFolder-style folder, ``DATA_DIR/<category>/*.jpg`` (images anywhere below each
  category folder; the categories are the sub-folder names, sorted); when ``DATA_DIR`` holds
  ``train/`` and ``val/`` folders of that layout, they are the training and validation sets;
- a dataset CSV in panoplace's format with a ``scene`` column (e.g. a drive of the procedural
  world, ``frames.csv``): the categories are :data:`panoplace.synth.world.SCENES` when every
  label is one of them (the ``procedural-world`` set), else the sorted labels.

Since everything before the head is frozen, the pooled scene features of every crop are
computed once (:func:`compute_scene_features`, one network pass over the images) and the head
trains on them (:func:`fit_scene_head`): every crop is a training sample with its image's
label; an image's prediction is the softmax averaged over its crops, as at inference. The
features are standardised while training; the standardisation is folded into the head's first
layer afterwards, so the saved head reads raw pooled features.

:func:`train_scene` ties it together: features, training with the validation accuracy of every
epoch (the epoch with the best one is kept), a confusion matrix image, a CSV log and a scene
checkpoint carrying the category list.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from matplotlib.figure import Figure

from panoplace.atomic import write_text_atomic
from panoplace.config import PanoramaConfig
from panoplace.data import load_csv
from panoplace.errors import DatasetError, InputError
from panoplace.evaluation.plots import save_figure
from panoplace.models.checkpoint import save_scene_checkpoint
from panoplace.models.scene import PROCEDURAL_WORLD, SceneHead, ScenePlaceModel
from panoplace.panorama.imagefiles import is_image_file
from panoplace.runner import ImageRunner, model_step
from panoplace.synth.layout import SCENES

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
LOG_COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


# --------------------------------------------------------------------------------------------
# Labelled images
# --------------------------------------------------------------------------------------------

@dataclass
class LabelledImages:
    """Images with a category each.

    root: folder the ``paths`` are relative to. labels: ``(N,)`` int64 indices into ``categories``.
    """

    root: Path
    paths: List[str]
    labels: np.ndarray
    categories: List[str]
    name: str = ""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        if len(self.paths) != len(self.labels):
            raise DatasetError(f"{len(self.paths)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, index: Sequence[int]) -> "LabelledImages":
        idx = np.asarray(index, dtype=np.int64)
        return LabelledImages(self.root, [self.paths[i] for i in idx], self.labels[idx], self.categories, self.name)

    def counts(self) -> np.ndarray:
        """Images per category, ``(C,)``."""
        return np.bincount(self.labels, minlength=len(self.categories))


def image_folder(folder: PathLike, categories: Optional[Sequence[str]] = None) -> LabelledImages:
    """An ImageFolder-style set: ``folder/<category>/**/<image>``.

    Args:
        categories: the category order to use (e.g. the training set's, for a validation set);
            a folder named otherwise is refused. Default: the sorted folder names.

    Raises:
        DatasetError: no category folders with images, or a folder outside ``categories``.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"{root} is not a folder of category folders (DATA_DIR/<category>/*.jpg)")
    found: Dict[str, List[str]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f.relative_to(root).as_posix() for f in sub.rglob("*")
                       if f.is_file() and is_image_file(f))
        if files:
            found[sub.name] = files
    if len(found) < 2:
        raise DatasetError(f"{root} needs at least 2 category folders with images (DATA_DIR/<category>/*.jpg), "
                           f"found {len(found)}")
    cats = list(categories) if categories is not None else sorted(found)
    unknown = sorted(set(found) - set(cats))
    if unknown:
        raise DatasetError(f"{root} has category folder(s) {unknown} that the training set does not have")
    paths = [p for c in cats for p in found.get(c, [])]
    labels = [i for i, c in enumerate(cats) for _ in found.get(c, [])]
    return LabelledImages(root, paths, np.asarray(labels), cats, root.name)


def labelled_csv(path: PathLike, categories: Optional[Sequence[str]] = None) -> LabelledImages:
    """Images of a panoplace dataset CSV labelled by its ``scene`` column.

    Raises:
        DatasetError: no ``scene`` column, empty labels, or a label outside ``categories``.
    """
    s = load_csv(path)
    if s.scene is None or any(not lab for lab in s.scene):
        raise DatasetError(f"{path} has no scene label for every image (a 'scene' column is needed)")
    if categories is None:
        labels = set(s.scene)
        categories = list(SCENES) if labels <= set(SCENES) else sorted(labels)
    cats = list(categories)
    unknown = sorted(set(s.scene) - set(cats))
    if unknown:
        raise DatasetError(f"{path} has scene label(s) {unknown} outside the categories {cats}")
    return LabelledImages(s.root, list(s.paths), np.asarray([cats.index(lab) for lab in s.scene]), cats, s.name)


def load_labelled(source: PathLike, categories: Optional[Sequence[str]] = None) -> LabelledImages:
    """:func:`labelled_csv` for a ``.csv`` file, else :func:`image_folder`."""
    p = Path(source)
    if not p.exists():
        raise InputError(f"no such file or folder: {p}")
    return labelled_csv(p, categories) if p.suffix.lower() == ".csv" else image_folder(p, categories)


def split_labelled(data: LabelledImages, val_fraction: float, seed: int = 0
                   ) -> Tuple[LabelledImages, LabelledImages]:
    """Stratified random split: about ``val_fraction`` of each category for validation (at least
    one image of every category that has two or more).

    Raises:
        InputError: ``val_fraction`` outside ``(0, 1)``.
    """
    if not 0.0 < float(val_fraction) < 1.0:
        raise InputError(f"val_fraction must be in (0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in range(len(data.categories)):
        idx = rng.permutation(np.flatnonzero(data.labels == c))
        n_val = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, int(round(val_fraction * len(idx)))))
        val += idx[:n_val].tolist()
        train += idx[n_val:].tolist()
    return data.subset(sorted(train)), data.subset(sorted(val))


# --------------------------------------------------------------------------------------------
# Features and the head
# --------------------------------------------------------------------------------------------

def compute_scene_features(model: ScenePlaceModel, root: PathLike, paths: Sequence[str],
                           panorama: PanoramaConfig, batch_size: int = 8, num_workers: Optional[int] = None,
                           device: str = "auto", progress: bool = True) -> np.ndarray:
    """Pooled scene-branch features of every crop (one pass; the place branch is skipped).

    Raises:
        ImageReadError: an image that cannot be read.

    Shape:
        Output: ``(N, K, C_scene)`` float32.
    """
    paths = list(paths)
    if not paths:
        raise InputError("no images to compute scene features of")
    runner = ImageRunner(root, paths, panorama, batch_size=batch_size, device=device, num_workers=num_workers,
                         progress=progress, desc="scene features")
    shape = (runner.n_crops, model.scene_head.in_channels)
    res = runner.run(model_step(model, lambda m, x: m.scene_features(x)), shape)
    return res.rows


def _as_crops(x: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3 or not np.isfinite(a).all():
        raise InputError(f"{what} must be finite (N, C) or (N, K, C) features, got shape {a.shape}")
    return a


def head_probabilities(head: SceneHead, features: np.ndarray, batch: int = 4096) -> np.ndarray:
    """Crop-averaged softmax of ``head`` on pooled features (eval mode, no gradients).

    Shape: ``(N, C_in)`` or ``(N, K, C_in)`` -> ``(N, n_classes)`` float32.
    """
    x = _as_crops(features, "features")
    n, k, c = x.shape
    was = head.training
    head.eval()
    p = next(head.parameters())
    out = []
    with torch.no_grad():
        flat = torch.from_numpy(x.reshape(n * k, c))
        for i in range(0, n * k, batch):
            out.append(torch.softmax(head.classify(flat[i:i + batch].to(p.device, p.dtype)), dim=1).float().cpu())
    head.train(was)
    probs = torch.cat(out).numpy().reshape(n, k, -1).mean(axis=1) if n else np.zeros((0, head.n_classes), np.float32)
    return probs.astype(np.float32)


@dataclass
class HeadFit:
    """What :func:`fit_scene_head` did: one dict per epoch (:data:`LOG_COLUMNS`), the epoch kept
    (1-based), and its validation accuracy (None without validation data)."""

    history: List[Dict[str, Optional[float]]] = field(default_factory=list)
    best_epoch: int = 0
    val_accuracy: Optional[float] = None


def _fold_standardisation(head: SceneHead, mean: torch.Tensor, std: torch.Tensor) -> None:
    """Make ``head`` read raw features: ``W (x - m) / s + b`` = ``(W / s) x + (b - W (m / s))``."""
    first = head.hidden if head.hidden is not None else head.fc
    with torch.no_grad():
        w = first.weight / std
        first.bias.sub_(first.weight @ (mean / std))
        first.weight.copy_(w)


def fit_scene_head(head: SceneHead, train_x: np.ndarray, train_y: np.ndarray,
                   val_x: Optional[np.ndarray] = None, val_y: Optional[np.ndarray] = None, epochs: int = 30,
                   lr: float = 3e-3, weight_decay: float = 1e-4, batch_size: int = 128, seed: int = 0) -> HeadFit:
    """Train ``head`` (in place) on pooled features; every crop is a sample with its image's label.

    The validation accuracy (crop-averaged probabilities, per image) is computed after every
    epoch; the epoch with the best one (ties: lower validation loss) is kept. Without validation
    data the last epoch is kept. Categories without a training sample get a zero weight row and
    a bias 30 below the lowest, so the head does not predict them.

    Shape:
        train_x: ``(N, C_in)`` or ``(N, K, C_in)``; train_y: ``(N,)`` int; same for val_x / val_y.
    """
    x = _as_crops(train_x, "training features")
    y = np.asarray(train_y, dtype=np.int64).reshape(-1)
    n, k, c = x.shape
    if len(y) != n or n == 0:
        raise InputError(f"{n} training feature rows for {len(y)} labels")
    if c != head.in_channels:
        raise InputError(f"features have {c} channels, the scene head reads {head.in_channels}")
    if y.min() < 0 or y.max() >= head.n_classes:
        raise InputError(f"labels must be in [0, {head.n_classes}), got {y.min()}..{y.max()}")
    if int(epochs) < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    val: Optional[Tuple[np.ndarray, np.ndarray]] = None  # (features (V, K, C), labels (V,))
    if val_x is not None and val_y is not None and len(val_y) > 0:
        vx = _as_crops(val_x, "validation features")
        vy = np.asarray(val_y, dtype=np.int64).reshape(-1)
        if len(vy) != len(vx) or vx.shape[2] != c:
            raise InputError(f"validation features {vx.shape} do not match {len(vy)} labels of {c}-channel features")
        val = (vx, vy)
    p0 = next(head.parameters())
    dev, dtype = p0.device, p0.dtype
    xs = torch.from_numpy(x.reshape(n * k, c)).to(dev, dtype)
    ys = torch.from_numpy(np.repeat(y, k)).to(dev)
    mean = xs.mean(dim=0)
    std = xs.std(dim=0, unbiased=False).clamp_min(1e-6)
    gen = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    for m in head.modules():  # a fresh start, reproducible from the seed
        if isinstance(m, torch.nn.Linear):
            m.reset_parameters()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    fit = HeadFit()
    best_key: Optional[Tuple[float, float]] = None
    best_state: Optional[Dict[str, torch.Tensor]] = None
    for epoch in range(1, int(epochs) + 1):
        head.train()
        order = torch.randperm(len(xs), generator=gen).to(dev)
        total, correct = 0.0, 0
        for i in range(0, len(xs), batch_size):
            b = order[i:i + batch_size]
            logits = head.classify((xs[b] - mean) / std)
            loss = F.cross_entropy(logits, ys[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(b)
            correct += int((logits.argmax(dim=1) == ys[b]).sum())
        row: Dict[str, Optional[float]] = {"epoch": epoch, "train_loss": total / len(xs),
                                           "train_accuracy": correct / len(xs), "val_loss": None,
                                           "val_accuracy": None}
        if val is not None:
            vx, vy = val
            head.eval()
            with torch.no_grad():
                v = torch.from_numpy(vx.reshape(-1, c)).to(dev, dtype)
                pv = torch.softmax(head.classify((v - mean) / std), dim=1).reshape(len(vx), vx.shape[1], -1).mean(1)
                tv = torch.from_numpy(vy).to(dev)
                val_loss = float(F.nll_loss(torch.log(pv.clamp_min(1e-12)), tv))
                val_accuracy = float((pv.argmax(dim=1) == tv).float().mean())
            row["val_loss"], row["val_accuracy"] = val_loss, val_accuracy
            key = (val_accuracy, -val_loss)
            if best_key is None or key > best_key:
                best_key, fit.best_epoch, fit.val_accuracy = key, epoch, val_accuracy
                best_state = copy.deepcopy(head.state_dict())
        log.info("scene head epoch %d/%d: loss %.4f, train accuracy %.3f%s", epoch, epochs, row["train_loss"],
                 row["train_accuracy"],
                 f", validation accuracy {row['val_accuracy']:.3f}" if row["val_accuracy"] is not None else "")
        fit.history.append(row)
    if best_state is not None:
        head.load_state_dict(best_state)
    else:
        fit.best_epoch = int(epochs)
    _fold_standardisation(head, mean, std)
    absent = np.setdiff1d(np.arange(head.n_classes), y)
    if absent.size:  # never seen in training: never predicted (probability ~exp(-30) of the best)
        with torch.no_grad():
            rows = torch.from_numpy(absent).to(dev)
            head.fc.weight[rows] = 0.0
            head.fc.bias[rows] = float(head.fc.bias.min()) - 30.0
        log.info("%d categories have no training image; the head never predicts them", absent.size)
    head.eval()
    return fit


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts, row = true category, column = predicted."""
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise InputError(f"{len(t)} true labels for {len(p)} predictions")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def plot_confusion(cm: np.ndarray, categories: Sequence[str], path: PathLike, title: str = "Confusion matrix") -> Path:
    """A confusion-matrix PNG (rows normalised for the colours, counts written in the cells when
    there are at most 30 categories), written atomically (matplotlib Agg)."""
    cm = np.asarray(cm)
    n = len(categories)
    if cm.shape != (n, n):
        raise InputError(f"confusion matrix {cm.shape} does not match {n} categories")
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    size = min(4.0 + 0.45 * n, 30.0)
    fig = Figure(figsize=(size, size * 0.9))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true category")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(categories, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(categories, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    acc = np.trace(cm) / max(cm.sum(), 1)
    ax.set_title(f"{title} (accuracy {acc:.3f}, {int(cm.sum())} images)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                            color="white" if frac[i, j] > 0.5 else "black")
    fig.tight_layout()
    return save_figure(fig, path)


# --------------------------------------------------------------------------------------------
# The whole job
# --------------------------------------------------------------------------------------------

@dataclass
class SceneTrainResult:
    """What :func:`train_scene` wrote and measured."""

    model: ScenePlaceModel
    checkpoint: Path
    categories: List[str]
    category_set: str
    fit: HeadFit
    confusion: np.ndarray
    confusion_png: Path
    log_csv: Path
    n_train: int
    n_val: int


def _write_log(path: Path, history: Sequence[Dict[str, Optional[float]]]) -> Path:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LOG_COLUMNS)
    for row in history:
        w.writerow(["" if row[c] is None else (row[c] if c == "epoch" else f"{row[c]:.6f}") for c in LOG_COLUMNS])
    return write_text_atomic(path, buf.getvalue())


def train_scene(
    source: PathLike,
    model: ScenePlaceModel,
    panorama: PanoramaConfig,
    out: PathLike,
    val_source: Optional[PathLike] = None,
    val_fraction: float = 0.2,
    category_set: Optional[str] = None,
    hidden: int = 0,
    dropout: float = 0.0,
    epochs: int = 30,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    confusion_png: Optional[PathLike] = None,
    log_csv: Optional[PathLike] = None,
    batch_size: int = 8,
    num_workers: Optional[int] = None,
    device: str = "auto",
    progress: bool = True,
) -> SceneTrainResult:
    """Train a new scene head of ``model`` on labelled images and save the unified model.

    Args:
        source: an ImageFolder-style folder or a dataset CSV with a ``scene`` column (see the
            module docstring); ``DATA_DIR/train`` + ``DATA_DIR/val`` are used when both exist.
        model: the unified model whose base, tails and place branch are kept.
        out: the scene checkpoint to write.
        val_source: validation images (same layout); default: ``val_fraction`` of ``source``.
        category_set: the name written with the categories (default: ``procedural-world`` for
            the world's scene labels, else the data folder's name).
        confusion_png, log_csv: default ``<out stem>_confusion.png`` / ``<out stem>_log.csv``.

    Returns:
        :class:`SceneTrainResult`; the model holds the new head and categories.
    """
    src = Path(source)
    if val_source is None and src.is_dir() and (src / "train").is_dir() and (src / "val").is_dir():
        src, val_source = src / "train", src / "val"
    data = load_labelled(src)
    if val_source is not None:
        train, val = data, load_labelled(val_source, data.categories)
    else:
        train, val = split_labelled(data, val_fraction, seed)
    cats = data.categories
    if category_set is None:
        category_set = PROCEDURAL_WORLD if cats == list(SCENES) and src.suffix.lower() == ".csv" else (
            Path(source).stem if Path(source).suffix.lower() == ".csv" else Path(source).name)
    counts = train.counts()
    log.info("scene training: %d categories (%s), %d training and %d validation images", len(cats),
             ", ".join(f"{c} {n}" for c, n in zip(cats, counts)), len(train), len(val))
    if (counts > 0).sum() < 2:
        raise DatasetError(f"{source}: the training images cover fewer than 2 categories")
    def features(images: LabelledImages) -> np.ndarray:
        return compute_scene_features(model, images.root, images.paths, panorama, batch_size=batch_size,
                                      num_workers=num_workers, device=device, progress=progress)

    train_x = features(train)
    val_x = features(val) if len(val) else None
    head = SceneHead(train_x.shape[2], len(cats), hidden, dropout).to(next(model.parameters()).device)
    fit = fit_scene_head(head, train_x, train.labels, val_x, val.labels if len(val) else None, epochs=epochs,
                         lr=lr, weight_decay=weight_decay, seed=seed)
    model.set_head(head, cats, category_set)
    eval_x, eval_y, what = (val_x, val.labels, "validation") if val_x is not None else (train_x, train.labels,
                                                                                          "training")
    pred = head_probabilities(head, eval_x).argmax(axis=1)
    cm = confusion_matrix(eval_y, pred, len(cats))
    out = Path(out)
    stem = out.with_suffix("")
    png = plot_confusion(cm, cats, Path(confusion_png) if confusion_png else Path(f"{stem}_confusion.png"),
                         title=f"Scene head, {what} images")
    log_path = _write_log(Path(log_csv) if log_csv else Path(f"{stem}_log.csv"), fit.history)
    extra = {"training": {"source": str(source), "val_source": str(val_source) if val_source else None,
                          "n_train": len(train), "n_val": len(val), "best_epoch": fit.best_epoch,
                          "val_accuracy": fit.val_accuracy, "epochs": int(epochs), "lr": lr, "seed": seed}}
    save_scene_checkpoint(model, out, panorama, extra=extra)
    return SceneTrainResult(model, out, cats, category_set, fit, cm, png, log_path, len(train), len(val))

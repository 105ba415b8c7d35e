"""``panoplace scene``: scene categories + place descriptors of images, and training the scene head.

- ``panoplace scene predict SOURCE --csv scenes.csv [--out places.h5]``: one unified-model pass
  per image gives the top-10 scene categories (CSV: ``image,rank,category,probability``) and the
  place descriptor (the store of ``panoplace extract``).
- ``panoplace scene train DATA --out scene.pt``: a new scene head on a frozen base, trained on
  ``DATA/<category>/*.jpg`` (or a dataset CSV with a ``scene`` column).
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from pathlib import Path

from panoplace.cli.argtypes import (
    device,
    existing_file,
    existing_path,
    float_between,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    refuse_unless,
    seed,
    weights,
)
from panoplace.cli.common import add_overwrite_arg, add_panorama_args, add_preset_arg, panorama_overrides
from panoplace.config import ModelConfig
from panoplace.outputs import Output, claim
from panoplace.scene import describe_categories
from panoplace.steps import scene_predict, scene_train

log = logging.getLogger(__name__)

DEFAULT_VAL_FRACTION = 0.2


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("running")
    g.add_argument("--batch-size", type=positive_int, default=8, help="images per batch (default 8)")
    g.add_argument("--workers", type=non_negative_int, default=None,
                   help="DataLoader decoding workers (default: none on 1-2 cores, else up to 4)")
    g.add_argument("--device", default="auto", type=device, help="auto (GPU when present), cpu or cuda")
    g.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scene",
        help="scene categories and place descriptors of images; train a scene head",
        description="The unified scene + place network: one shared base feeds a scene branch "
                    "(Places365 or your own categories) and a place branch (NetVLAD/GeM). "
                    "`scene predict` describes images, `scene train` trains a scene head.",
        epilog="examples: panoplace scene predict runs/world/dusk/frames.csv --checkpoint runs/scene.pt "
               "--csv runs/dusk_scenes.csv --out runs/dusk_scene.h5 | panoplace scene train "
               "runs/world/day/frames.csv --projection equirect --crops 4 --out runs/scene.pt",
    )
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    actions = p.add_subparsers(dest="scene_action", metavar="ACTION")

    pr = actions.add_parser(
        "predict",
        help="top-k scene categories (CSV) and place descriptors (HDF5) of images",
        description="Run the unified model once per image: the scene probabilities (softmax of each "
                    "crop, averaged over the crops of a panorama) give the top categories, written as "
                    "CSV rows image,rank,category,probability (rank 1 = most probable); the place "
                    "branch gives the descriptor, written to a store like `panoplace extract`'s. "
                    "The model is a scene checkpoint (--checkpoint) or the official Places365 files "
                    "(--places365 FILE --categories FILE; looked for in the torch hub cache when not "
                    "given). A killed run started again with the same arguments resumes.",
        epilog="example: panoplace scene predict photos/ --places365 wideresnet18_places365.pth.tar "
               "--categories categories_places365.txt --csv scenes.csv --out places.h5",
    )
    pr.add_argument("source", type=existing_path("image source"), help="a folder of images, a .txt list of image paths, or a dataset CSV")
    pr.add_argument("--csv", required=True, help="scene CSV to write (image,rank,category,probability)")
    pr.add_argument("--out", "-o", default=None, help="place descriptor store to write (.h5); optional")
    pr.add_argument("--top", type=positive_int, default=10, help="categories per image in the CSV (default 10)")
    g = pr.add_argument_group("model")
    g.add_argument("--checkpoint", metavar="FILE", default=None,
                   help="scene checkpoint from `panoplace scene train` (config, categories and weights inside)")
    g.add_argument("--places365", metavar="FILE", default=None,
                   type=existing_file("Places365 checkpoint", "{what} {path} does not exist"),
                   help="official Places365 checkpoint (resnet18_places365.pth.tar or wideresnet18_places365.pth.tar)")
    g.add_argument("--categories", metavar="FILE", default=None, type=existing_file("category list"),
                   help="categories_places365.txt (default: the file of that name beside --places365)")
    g.add_argument("--arch", default=None, choices=("resnet18_places365", "wideresnet18_places365", "resnet50_places365"),
                   help="Places365 architecture when the file name does not say it")
    g.add_argument("--place-checkpoint", metavar="FILE", default=None, type=existing_file("place checkpoint"),
                   help="place model built on the same Places365 weights (e.g. `panoplace cluster --backbone "
                        "resnet18_places365 --weights FILE`); default: GeM over layer4")
    g.add_argument("--aggregator", choices=("gem", "avg", "max"), default=None,
                   help="place branch without --place-checkpoint (default gem)")
    g.add_argument("--split", default=None, help="trunk layer where the shared base ends (default: the place cut)")
    pr.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                    help="on an unreadable image: stop (default) or skip it and list it at the end")
    add_overwrite_arg(pr, "the --csv and --out of an earlier run, and start over from a partial run made with "
                          "other options")
    add_panorama_args(pr)
    _add_run_args(pr)
    pr.set_defaults(func=run_predict)

    tr = actions.add_parser(
        "train",
        help="train a scene head (base frozen) on labelled images; writes a scene checkpoint",
        description="Train a new scene head on a frozen base: the pooled scene features of every crop "
                    "are computed once, the head (linear, or an MLP with --hidden) trains on them with "
                    "the validation accuracy of every epoch; the best epoch is kept. DATA is a folder "
                    "DATA/<category>/*.jpg (DATA/train and DATA/val when both exist) or a dataset CSV "
                    "with a scene column (a procedural-world drive). Writes the scene checkpoint "
                    "(config, category list, weights), a confusion-matrix PNG and a CSV log.",
        epilog="example: panoplace scene train my_places/ --out runs/scene.pt --epochs 30",
    )
    tr.add_argument("data", type=existing_path("training data"), help="ImageFolder-style folder DATA/<category>/*.jpg, or a dataset CSV with a scene column")
    tr.add_argument("--out", "-o", required=True, help="scene checkpoint to write (.pt)")
    tr.add_argument("--val", default=None, type=existing_path("validation data"), help="validation images (same layout); default: --val-fraction of DATA")
    tr.add_argument("--val-fraction", type=float_between(0.0, 1.0, lo_open=True, hi_open=True), default=None,
                    help=f"without --val: share of each category held out (default {DEFAULT_VAL_FRACTION:g})")
    tr.add_argument("--category-set", default=None,
                    help="name of the category set written with the model (default: procedural-world for "
                         "the world's scene labels, else the folder name)")
    tr.add_argument("--confusion", default=None, help="confusion-matrix PNG (default <out>_confusion.png)")
    tr.add_argument("--log", default=None, help="per-epoch CSV log (default <out>_log.csv)")
    g = tr.add_argument_group("model (the frozen base)")
    g.add_argument("--checkpoint", metavar="FILE", default=None, type=existing_file("checkpoint"),
                   help="a scene checkpoint (its head is replaced) or a place checkpoint (its place branch is kept)")
    g.add_argument("--places365", metavar="FILE", default=None, type=existing_file("Places365 checkpoint"),
                   help="official Places365 checkpoint as the base")
    g.add_argument("--arch", default=None, choices=("resnet18_places365", "wideresnet18_places365", "resnet50_places365"),
                   help="Places365 architecture when the file name does not say it")
    g.add_argument("--backbone", default=None,
                   help=f"backbone without --checkpoint/--places365 (default: the preset's, else {ModelConfig().backbone})")
    g.add_argument("--weights", default=None, type=weights, help="its weights: imagenet (offline for efficientnet_lite0), "
                                                   "none, or a file (default: the preset's, else imagenet)")
    g.add_argument("--split", default=None, help="trunk layer where the shared base ends (default: the place cut)")
    g.add_argument("--scene-cut", default=None, help="trunk layer the scene head pools (default: the whole trunk)")
    add_preset_arg(g, "a new base without --checkpoint/--places365 (its backbone, weights and panorama)")
    g = tr.add_argument_group("training")
    g.add_argument("--hidden", type=non_negative_int, default=0, help="hidden units of an MLP head (default 0 = linear)")
    g.add_argument("--dropout", type=float_between(0.0, 1.0, hi_open=True), default=0.0, help="dropout on the head's input (default 0)")
    g.add_argument("--epochs", type=positive_int, default=30, help="epochs (default 30)")
    g.add_argument("--lr", type=positive_float, default=3e-3, help="AdamW learning rate (default 3e-3)")
    g.add_argument("--weight-decay", type=non_negative_float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    g.add_argument("--seed", type=seed, default=0, help="random seed (split, initialisation, order)")
    add_overwrite_arg(tr, "the checkpoint, confusion matrix and log of an earlier run")
    add_panorama_args(tr)
    _add_run_args(tr)
    tr.set_defaults(func=run_train)


def run_predict(args: argparse.Namespace) -> int:
    outs = [Output(args.csv, "--csv"), Output(args.out, "--out") if args.out else None]
    inputs = [args.source, args.checkpoint, args.places365, args.categories, args.place_checkpoint, args.calibration]
    with claim(outs, inputs, overwrite=args.overwrite):
        return _run_predict(args)


def _run_predict(args: argparse.Namespace) -> int:
    res = scene_predict(args.source, args.csv, args.out, checkpoint=args.checkpoint, places365=args.places365,
                        categories=args.categories, arch=args.arch, place_checkpoint=args.place_checkpoint,
                        aggregator=args.aggregator, split=args.split, panorama_overrides=panorama_overrides(args),
                        top=args.top, batch_size=args.batch_size, num_workers=args.workers, device=args.device,
                        on_error=args.on_error, progress=not args.no_progress, overwrite=args.overwrite)
    counts = Counter(res.predicted()).most_common(5)
    print(f"categories: {describe_categories(res.category_set, len(res.categories))}")
    print(f"{len(res.ids)} images ({len(res.ids) / max(res.seconds, 1e-9):.1f} images/s) -> {args.csv}"
          + (f", {args.out}" if args.out else ""))
    print("most frequent top-1: " + ", ".join(f"{c} {n}" for c, n in counts))
    if res.skipped:
        log.warning("%d image(s) skipped:", len(res.skipped))
        for path, reason in res.skipped:
            log.warning("  %s: %s", path, reason)
    return 0


def run_train(args: argparse.Namespace) -> int:
    refuse_unless(args.val is None, args, ["val_fraction"], "without --val (it holds out part of DATA)")
    refuse_unless(args.checkpoint is None and args.places365 is None, args, ["backbone", "weights"],
                  "to a new base (without --checkpoint/--places365, which fix the backbone and its weights)")
    refuse_unless(args.places365 is not None, args, ["arch"], "with --places365")
    stem = Path(args.out).with_suffix("")
    outs = [Output(args.out, "--out"), Output(Path(args.confusion or f"{stem}_confusion.png"), "--confusion"),
            Output(Path(args.log or f"{stem}_log.csv"), "--log")]
    inputs = [args.data, args.val, args.checkpoint, args.places365, args.weights, args.calibration]
    with claim(outs, inputs, overwrite=args.overwrite):
        return _run_train(args)


def _run_train(args: argparse.Namespace) -> int:
    res = scene_train(args.data, args.out, val=args.val,
                      val_fraction=DEFAULT_VAL_FRACTION if args.val_fraction is None else args.val_fraction,
                      category_set=args.category_set, checkpoint=args.checkpoint, places365=args.places365,
                      arch=args.arch, preset=args.preset, backbone=args.backbone, weights=args.weights,
                      split=args.split, scene_cut=args.scene_cut, panorama_overrides=panorama_overrides(args),
                      hidden=args.hidden, dropout=args.dropout, epochs=args.epochs, lr=args.lr,
                      weight_decay=args.weight_decay, seed=args.seed, confusion=args.confusion, log=args.log,
                      batch_size=args.batch_size, num_workers=args.workers, device=args.device,
                      progress=not args.no_progress)
    print(f"categories: {describe_categories(res.category_set, len(res.categories))}")
    print(f"{res.n_train} training / {res.n_val} validation images; best epoch {res.fit.best_epoch}"
          + (f", validation accuracy {res.fit.val_accuracy:.3f}" if res.fit.val_accuracy is not None else ""))
    print(f"checkpoint: {res.checkpoint}   confusion matrix: {res.confusion_png}   log: {res.log_csv}")
    return 0

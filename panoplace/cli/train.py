"""``panoplace train``: weakly supervised triplet training of a place model from positions."""

from __future__ import annotations

import argparse
import logging
from typing import Any, Dict

from panoplace.cli.argtypes import (
    device,
    existing_file,
    float_between,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    refuse_unless,
    seed,
)
from panoplace.cli.common import (add_model_args, add_overwrite_arg, add_panorama_args, add_preset_arg, model_overrides,
                                  panorama_overrides, spec_paths)
from panoplace.errors import InputError
from panoplace.outputs import Output, claim
from panoplace.steps import train
from panoplace.training.loss import LOSSES
from panoplace.training.mining import CACHE_KINDS
from panoplace.training.trainer import OPTIMIZERS, TrainConfig

log = logging.getLogger(__name__)

DEFAULT_VAL_GAP = 25.0

# argparse dest -> TrainConfig field, for the options that map one to one.
_CONFIG_OPTIONS = {
    "epochs": "epochs", "batch_size": "batch_size", "optimizer": "optimizer", "lr": "lr",
    "momentum": "momentum", "weight_decay": "weight_decay", "lr_step": "lr_step", "lr_gamma": "lr_gamma",
    "margin": "margin", "loss": "loss", "pos_radius": "pos_radius", "neg_radius": "neg_radius", "neg_sample": "n_neg_sample",
    "negatives": "n_neg", "cache_refresh": "cache_refresh", "cache": "cache",
    "queries_per_epoch": "queries_per_epoch", "n_trainable": "n_trainable",
    "attention_lr_mult": "attention_lr_mult", "train_bn": "train_bn", "val_radius": "val_radius",
    "recall": "recall_ns", "patience": "patience", "frozen_cache": "frozen_cache", "seed": "seed", "workers": "num_workers", "device": "device",
}


def register(sub: argparse._SubParsersAction) -> None:
    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train a place model with the weakly supervised triplet ranking loss (positions only)",
        description="Fine-tune a place model (e.g. the NetVLAD checkpoint of `panoplace cluster`) on "
                    "traverses with positions: for each query the best database image within --pos-radius "
                    "is the positive, hard negatives beyond --neg-radius are mined from a descriptor cache, "
                    "and the triplet ranking loss is minimised. Training and validation are split by "
                    "traverse (--val-db/--val-queries) or by area (--val-area), never by random frame. "
                    "Writes OUT/latest.pt and OUT/best.pt (checkpoints `panoplace extract` loads as they "
                    "are), OUT/epochs.csv and OUT/steps.csv.",
        epilog="example: panoplace train --train-db runs/world/day/frames.csv --train-queries "
               "runs/world/dusk/frames.csv --val-db runs/world/day/frames.csv --val-queries "
               "runs/world/rain/frames.csv --checkpoint runs/model.pt --n-trainable 1 --out runs/train",
    )
    g = p.add_argument_group("data (dataset specs: CSV, PAL or @UTM folders, .mat, pair:DB,QUERY)")
    g.add_argument("--train-db", nargs="+", required=True, metavar="SPEC",
                   help="database traverse(s) of the training split (several are joined)")
    g.add_argument("--train-queries", nargs="+", default=[], metavar="SPEC",
                   help="query traverse(s) of the training split; may be left out when --train-db is one "
                        "spec that holds queries too (.mat, @UTM database/+queries/)")
    g.add_argument("--val-db", nargs="+", default=[], metavar="SPEC", help="database traverse(s) for validation")
    g.add_argument("--val-queries", nargs="+", default=[], metavar="SPEC", help="query traverse(s) for validation")
    g.add_argument("--val-area", type=float_between(0.0, 1.0, lo_open=True, hi_open=True), default=None, metavar="FRACTION",
                   help="instead of --val-db/--val-queries: train on the first FRACTION of the route along "
                        "its main axis and validate on the rest")
    g.add_argument("--val-gap", type=non_negative_float, default=None, metavar="M",
                   help=f"--val-area: metres left out between the training and validation areas (default {DEFAULT_VAL_GAP:g})")
    p.add_argument("--out", "-o", required=True, help="output folder (checkpoints and logs)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/latest.pt (model, panorama, optimizer, schedule, hard negatives); "
                        "training options given now override the saved ones")
    add_overwrite_arg(p, "the training in --out (a new run: its checkpoints and logs are removed first)")
    add_model_args(p)
    add_preset_arg(p, "a model built without --checkpoint (GeM/avg/max; NetVLAD starts from `panoplace cluster`)")
    add_panorama_args(p)

    t = p.add_argument_group("training")
    t.add_argument("--n-trainable", type=non_negative_int, default=None,
                   help="trainable tail units of the backbone, the rest frozen (default: as the checkpoint)")
    t.add_argument("--attention", choices=("learned", "cam"), default=None,
                   help="add spatial attention before aggregation: a learned head, or the class activation "
                        "map of --cam-classifier")
    t.add_argument("--remain", type=float_between(0.0, 1.0, lo_open=True), default=None,
                   help="fraction of local features the attention keeps (default 0.5; 1 = weight only)")
    t.add_argument("--cam-classifier", metavar="FILE", default=None, type=existing_file("CAM classifier file"),
                   help="linear scene classifier over the local features for --attention cam (a state dict "
                        "with weight/bias or fc.weight/fc.bias, e.g. a Places365 checkpoint)")
    t.add_argument("--epochs", type=positive_int, default=None, help=f"maximum epochs (default {d.epochs})")
    t.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"tuples (query, positive, negatives) per step (default {d.batch_size})")
    t.add_argument("--optimizer", choices=OPTIMIZERS, default=None, help=f"default {d.optimizer}")
    t.add_argument("--lr", type=positive_float, default=None, help=f"learning rate (default {d.lr:g})")
    t.add_argument("--momentum", type=float_between(0.0, 1.0, hi_open=True), default=None, help=f"SGD momentum (default {d.momentum})")
    t.add_argument("--weight-decay", type=non_negative_float, default=None, help=f"default {d.weight_decay:g}")
    t.add_argument("--lr-step", type=non_negative_int, default=None,
                   help=f"epochs between learning-rate steps, 0 = constant (default {d.lr_step})")
    t.add_argument("--lr-gamma", type=positive_float, default=None, help=f"learning-rate factor per step (default {d.lr_gamma})")
    t.add_argument("--attention-lr-mult", type=positive_float, default=None,
                   help=f"learning-rate factor of the attention head (default {d.attention_lr_mult:g})")
    t.add_argument("--train-bn", action="store_const", const=True, default=None,
                   help="update BatchNorm statistics of the trainable units (default: keep them)")
    m = p.add_argument_group("mining and loss")
    m.add_argument("--margin", type=non_negative_float, default=None, help=f"triplet margin, squared distances (default {d.margin})")
    m.add_argument("--loss", choices=LOSSES, default=None,
                   help="triplet (NetVLAD's ranking loss) or multi-similarity (MixVPR/BoQ/SALAD's; alpha 1, "
                        f"beta 50, base 0, epsilon 0.1) (default {d.loss})")
    m.add_argument("--pos-radius", type=positive_float, default=None, help=f"metres for positives (default {d.pos_radius:g})")
    m.add_argument("--neg-radius", type=positive_float, default=None, help=f"metres beyond which negatives lie (default {d.neg_radius:g})")
    m.add_argument("--neg-sample", type=positive_int, default=None,
                   help=f"random negatives per query and round (default {d.n_neg_sample})")
    m.add_argument("--negatives", type=positive_int, default=None, help=f"hard negatives per tuple (default {d.n_neg})")
    m.add_argument("--cache-refresh", type=positive_int, default=None,
                   help=f"queries between refreshes of the descriptor cache (default {d.cache_refresh})")
    m.add_argument("--cache", choices=CACHE_KINDS, default=None,
                   help="descriptor cache in memory or in an HDF5 file in OUT (default auto: memory up to 2 GiB)")
    m.add_argument("--frozen-cache", choices=("auto", "on", "off"), default=None,
                   help="compute the frozen backbone units once per image and keep their output in memory "
                        "(default auto: when it fits in 2 GiB)")
    m.add_argument("--queries-per-epoch", type=positive_int, default=None, help="cap on the queries of an epoch")
    v = p.add_argument_group("validation and run")
    v.add_argument("--val-radius", type=positive_float, default=None,
                   help=f"metres for validation ground truth (default {d.val_radius:g})")
    v.add_argument("--recall", type=positive_int, nargs="+", default=None, metavar="N",
                   help="validation Recall@N; the first N picks the best checkpoint (default 1 5 10 20)")
    v.add_argument("--patience", type=non_negative_int, default=None,
                   help=f"stop after that many epochs without a better validation recall, 0 = never (default {d.patience})")
    v.add_argument("--seed", type=seed, default=None, help=f"random seed (default {d.seed})")
    v.add_argument("--workers", type=non_negative_int, default=None, help=f"DataLoader decoding workers (default {d.num_workers})")
    v.add_argument("--device", default=None, type=device, help="auto (GPU when present), cpu or cuda")
    v.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def _given_options(args: argparse.Namespace) -> Dict[str, Any]:
    return {field: getattr(args, dest) for dest, field in _CONFIG_OPTIONS.items() if getattr(args, dest) is not None}


def check_options(args: argparse.Namespace) -> None:
    """Refuse training options that would change nothing (they apply to another mode)."""
    refuse_unless(args.val_area is not None, args, ["val_gap"], "with --val-area")
    refuse_unless(args.attention == "cam", args, ["cam_classifier"], "with --attention cam")
    if args.optimizer is not None or not args.resume:  # with --resume the saved optimizer applies
        optimizer = TrainConfig.optimizer if args.optimizer is None else args.optimizer
        refuse_unless(optimizer == "sgd", args, ["momentum"], "to --optimizer sgd")
    if args.lr_step == 0:
        refuse_unless(False, args, ["lr_gamma"], "when the learning rate steps (--lr-step > 0)")
    if args.pos_radius is not None and args.neg_radius is not None and args.neg_radius < args.pos_radius:
        raise InputError(f"--neg-radius ({args.neg_radius:g} m) must not be smaller than --pos-radius "
                         f"({args.pos_radius:g} m)")


def run(args: argparse.Namespace) -> int:
    check_options(args)
    if args.resume and args.overwrite:
        raise InputError("--resume continues the training in --out and --overwrite starts a new one: give one")
    out = Output(args.out, "--out", folder=True, existing="resume" if args.resume else "refuse",
                 hint="pass --resume to continue it, or --overwrite to start a new training there")
    inputs = [args.checkpoint, args.cam_classifier, args.calibration,
              *spec_paths(args.train_db, args.train_queries, args.val_db, args.val_queries)]
    with claim([out], inputs, overwrite=args.overwrite):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    result = train(args.train_db, args.out, train_queries=args.train_queries, val_db=args.val_db,
                   val_queries=args.val_queries, val_area=args.val_area,
                   val_gap=DEFAULT_VAL_GAP if args.val_gap is None else args.val_gap,
                   checkpoint=args.checkpoint, preset=args.preset, panorama_overrides=panorama_overrides(args),
                   model_overrides=model_overrides(args), attention=args.attention, remain=args.remain,
                   cam_classifier=args.cam_classifier, resume=args.resume, options=_given_options(args),
                   progress=not args.no_progress)
    best = ", ".join(f"R@{n} {r:.3f}" for n, r in result.best_recall.items())
    log.info("best epoch %d (%s) -> %s; latest -> %s%s", result.best_epoch, best, result.best, result.latest,
             " (stopped early)" if result.stopped_early else "")
    return 0

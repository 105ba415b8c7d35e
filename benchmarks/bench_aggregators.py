"""Aggregators compared with the same backbone and training budget: NetVLAD, GeM+FC
(CosPlace/EigenPlaces), MixVPR, BoQ, SALAD; triplet vs multi-similarity loss.

Protocol (the procedural world and splits of ``bench_training.py``):

- backbone: EfficientNet-Lite0 (ImageNet weights, offline), cut 10 (112 channels, stride 16),
  last unit trainable; 4 crops of 96x96 per equirect panorama (6x6 local features per crop),
  ``add`` fusion (each aggregator's panorama-level descriptor, see
  ``panoplace.models.aggregators``);
- heads sized for this CPU budget (the published sizes are far larger): NetVLAD K=32 (k-means
  init, ``panoplace cluster``); gem_fc 512-D; mixvpr 128 channels x 4 rows (6x6 grid) = 512-D;
  boq d=128, 16 queries, 2 layers, row_dim 8 = 1024-D; salad 16 clusters x 32 + 64 token =
  576-D (36 locations per crop > 16 clusters). The new heads start from their own random
  initialisation;
- training: ``panoplace train`` defaults of the benchmark (SGD lr 0.01, step 2 x0.5, batch 4,
  5 hard negatives, 3 epochs, frozen-feature cache), day map, dusk + night queries of area A,
  model selection on night-fog of area A; the same budget for every aggregator;
- evaluation: Recall@1/5 (positives within 10 m) of the held-out area B, day map -> dusk, fog,
  night, night-fog, dusk-fog, mean over the five; and the real corridor set
  (``../shared/data/corridor``, plain 224x224 images, VPR-Bench ground truth) with the same
  trained models, no fine-tuning on it (nothing was chosen on the corridor);
- images/s: ``panoplace extract`` over the corridor's 222 images (eager torch, batches of 8).

Run: .venv/bin/python benchmarks/bench_aggregators.py [--work /tmp/panoplace_bench_training]
(shares the rendered world with bench_training.py).

Measured 2026-12-01 00:27-01:22, ``--epochs 2``, on this machine's 2 cores shared with ~8 other
jobs (load average ~20 throughout). Only the first run finished before the session's deadline
(the frozen features of all six drives took 8-12 minutes, each epoch ~10 minutes of mining and
training under that load); the rows of the other aggregators and of the multi-similarity loss
were NOT measured, so this table does not yet compare them with NetVLAD:

    aggregator  loss     D     ->dusk  ->fog  ->night  ->night-fog  ->dusk-fog  mean R@1  mean R@5  corridor R@1  corridor R@5  images/s
    netvlad     triplet  3584  0.856   0.907  0.641    0.504        0.898       0.761     0.952     0.793         0.946         5.5

(validation R@1 on area A night-fog: 0.442 untrained -> 0.689 after 2 epochs. The corridor
R@1 0.793 of this world-trained model is below the corridor-clustered NetVLAD's 0.919 of
``bench_onnx.py``/``bench_corridor.py``: trained on synthetic panoramas at cut 10, not fitted to
the corridor.) Run it on an idle machine, or with ``--aggregators gem_fc mixvpr boq salad``, to
fill in the comparison.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_training import (  # noqa: E402
    CONDITIONS,
    MAP,
    RADIUS,
    TRAIN_QUERIES,
    VAL_QUERIES,
    descriptors,
    render,
    split_areas,
    table,
)

from panoplace.cluster import cluster_images  # noqa: E402
from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig  # noqa: E402
from panoplace.data import GroundTruth, load_dataset  # noqa: E402
from panoplace.evaluation.pipeline import evaluate_descriptors  # noqa: E402
from panoplace.extract import extract  # noqa: E402
from panoplace.models.build import build_model  # noqa: E402
from panoplace.models.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from panoplace.training import PlaceSplit, TrainConfig, Trainer, concat_image_sets, prepare_model, recall_of  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HEADS: Dict[str, Dict[str, Any]] = {
    "gem_fc": {"fc_dim": 512},
    "mixvpr": {"out_channels": 128, "out_rows": 4, "in_h": 6, "in_w": 6},
    "boq": {"proj_channels": 128, "num_queries": 16, "num_layers": 2, "row_dim": 8},
    "salad": {"num_clusters": 16, "cluster_dim": 32, "token_dim": 64, "hidden": 256},
}


def train(initial: Path, areas: Any, out: Path, cfg: TrainConfig, store: Dict[str, torch.Tensor]) -> Any:
    model, panorama = load_checkpoint(initial)
    prepare_model(model, n_trainable=cfg.n_trainable, seed=cfg.seed)
    a = areas["A"]
    split = PlaceSplit(a[MAP], concat_image_sets([a[n] for n in TRAIN_QUERIES]))
    val = PlaceSplit(a[MAP], concat_image_sets([a[n] for n in VAL_QUERIES]))
    t0 = time.perf_counter()
    result = Trainer(model, panorama, split, val, out, cfg, progress=False, frozen_store=store).fit()
    best, _ = load_checkpoint(result.best)
    return best, result, time.perf_counter() - t0


def world_recalls(desc: Dict[str, np.ndarray], sets: Any) -> Dict[str, Dict[int, float]]:
    out = {}
    for q in CONDITIONS[1:]:
        gt = GroundTruth.from_positions(sets[MAP].xy, sets[q].xy, RADIUS)
        out[q] = recall_of(desc[q], desc[MAP], gt, ns=(1, 5))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/panoplace_bench_training")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "corridor"))
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--aggregators", nargs="+", default=["netvlad", *HEADS])
    p.add_argument("--losses", nargs="+", default=["triplet", "multi-similarity"])
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    load0 = os.getloadavg()
    t_start = time.perf_counter()
    work = Path(args.work)
    sets = render(work, 512, 256, 0)
    areas = split_areas(sets, 0.6, 25.0)
    panorama = PanoramaConfig(projection="equirect", elevation=(40.0, -25.0), pano_width=4 * 96, pano_height=96,
                              n_crops=4, crop_size=(96, 96))
    base = dict(backbone="efficientnet_lite0", cut=10, n_trainable=1)
    initial: Dict[str, Path] = {}
    m = areas["A"][MAP]
    for agg in args.aggregators:
        path = work / f"aggbench_init_{agg}.pt"
        torch.manual_seed(0)
        if agg == "netvlad":
            cluster_images(m.root, m.paths, PipelineConfig(panorama, ModelConfig(**base, num_clusters=32)), out=path,
                           n_images=len(m), per_image=100, seed=0, num_workers=args.workers, device="cpu",
                           progress=False)
        else:
            save_checkpoint(build_model(ModelConfig(**base, aggregator=agg, aggregator_params=HEADS[agg])), path,
                            panorama=panorama)
        initial[agg] = path
    corridor = load_dataset(args.data) if Path(args.data).is_dir() else None
    store: Dict[str, torch.Tensor] = {}
    rows: List[List[str]] = []
    run_rows: List[List[str]] = []
    for loss in args.losses:  # every aggregator with the first loss before any with the next
        for agg in args.aggregators:
            cfg = TrainConfig(epochs=args.epochs, batch_size=4, optimizer="sgd", lr=1e-2, lr_step=2, lr_gamma=0.5,
                              n_neg=5, n_neg_sample=1000, cache_refresh=1000, n_trainable=1, recall_ns=(1, 5),
                              patience=0, val_radius=RADIUS, num_workers=args.workers, device="cpu", seed=0, loss=loss)
            model, result, seconds = train(initial[agg], areas, work / f"aggbench_{agg}_{loss}", cfg, store)
            rec = world_recalls(descriptors(model, areas["B"], panorama, store, args.workers), areas["B"])
            r1 = [rec[q][1] for q in CONDITIONS[1:]]
            r5 = [rec[q][5] for q in CONDITIONS[1:]]
            corr = ["-", "-", "-"]
            if corridor is not None:
                plain = PanoramaConfig()
                kw = dict(num_workers=0, progress=False, batch_size=8)
                t = time.perf_counter()
                dq = extract(corridor.queries.root, corridor.queries.paths, model, plain, **kw).descriptors.descriptors
                ddb = extract(corridor.database.root, corridor.database.paths, model, plain, **kw).descriptors.descriptors
                ips = (len(dq) + len(ddb)) / (time.perf_counter() - t)
                cr = evaluate_descriptors(dq, ddb, corridor.ground_truth).recall
                corr = [f"{cr[1]:.3f}", f"{cr[5]:.3f}", f"{ips:.1f}"]
            rows.append([agg, loss, str(model.descriptor_dim(4))] + [f"{v:.3f}" for v in r1]
                        + [f"{np.mean(r1):.3f}", f"{np.mean(r5):.3f}"] + corr)
            eps = [r for r in result.history if r.epoch > 0]
            run_rows.append([agg, loss, f"{result.history[0].recall[1]:.3f} -> {max(r.recall[1] for r in eps):.3f}",
                             result.best_epoch, f"{seconds:.0f}"])
            print(" | ".join(rows[-1]), flush=True)
    print()
    print(table(f"Held-out area B Recall@1 per drive (day map), mean R@1 / R@5 over the five drives; corridor "
                f"R@1 / R@5 and eager images/s (plain 224x224, the same trained model); EfficientNet-Lite0 cut 10, "
                f"{args.epochs} epochs each",
                ["aggregator", "loss", "D"] + [f"->{q}" for q in CONDITIONS[1:]]
                + ["mean R@1", "mean R@5", "corridor R@1", "corridor R@5", "images/s"], rows))
    print()
    print(table("Training runs (validation = night-fog of area A)",
                ["aggregator", "loss", "val R@1 (epoch 0 -> best)", "best epoch", "seconds"], run_rows))
    load1 = os.getloadavg()
    print(f"\nload average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end ({os.cpu_count()} cores); "
          f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

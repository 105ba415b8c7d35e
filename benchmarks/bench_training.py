"""Training evidence on the procedural world: cross-condition Recall@1 before and after
weakly supervised triplet training, with and without attention, with PCA-whitening, and the
training throughput and peak memory on this machine.

Protocol (nothing of the test area or the test-only conditions is seen in training or model
selection):

- the town of ``panoplace synth`` (seed 0, 500 m square), one lap of its route (~1.7 km, a
  frame every 5 m), driven under ``day`` (the map), ``dusk`` and ``night`` (training queries),
  ``fog`` (validation queries) and ``night-fog``, ``dusk-fog`` (test-only conditions);
- the route is cut by area along its main axis: area A (the first 60 %) trains and validates,
  area B (beyond a 25 m gap) tests; the split is by area and traverse, never by frame;
- untrained = NetVLAD initialised by k-means on the map's local features (``panoplace
  cluster``, EfficientNet-Lite0 ImageNet backbone); trained = the same model after triplet
  training of the last backbone unit(s) and NetVLAD (``panoplace train``), best validation
  epoch; attention = the same training with a learned attention head keeping the top half of
  the local features (``remain`` 0.5, the default) or weighting all of them (``remain`` 1);
- Recall@1 against the day map of the same area, positives within 10 m (two frames);
- PCA-whitening is fitted on the area-A descriptors of the trained model (all traversals) and
  evaluated in area B at 4096/512/128/64 dimensions, as far as the descriptor length and the
  number of fit descriptors allow.

Run: .venv/bin/python benchmarks/bench_training.py [--work /tmp/panoplace_bench_training]
(the rendered world is kept in the work folder and reused). The runs are deterministic (same
recalls on every run); times depend on the machine: 3 minutes from scratch on 2 idle cores
(50 s of it rendering the world), 5-8 minutes while other jobs share the cores.

Measured (2 cores; defaults: 4 crops of 96x96, EfficientNet-Lite0 cut 10 with
1 trainable unit + NetVLAD K=32, SGD lr 0.01, 3 epochs, 5 hard negatives):

Recall@1 in the held-out area B (Q ~ 118 per drive):

=================  =====  ==========  =======  ===============  ===============
day -> queries     role   untrained   trained  + attention 0.5  + attention 1.0
=================  =====  ==========  =======  ===============  ===============
dusk               train  0.754       0.873    0.712            0.907
fog                test   0.847       0.907    0.873            0.915
night              train  0.530       0.769    0.436            0.684
night-fog          val    0.393       0.513    0.376            0.538
dusk-fog           test   0.847       0.932    0.754            0.941
mean                      0.674       0.799    0.630            0.797
=================  =====  ==========  =======  ===============  ===============

Re-run 2026-11-24 after the Lite blocks' stride-2 padding change (the frozen layers now compute
the same values with other float rounding, enough to move 3-epoch runs): trained 0.873 / 0.907
/ 0.778 / 0.521 / 0.932, mean 0.802; attention 0.5: 0.771 / 0.890 / 0.521 / 0.479 / 0.822, mean
0.697; attention 1.0: 0.890 / 0.915 / 0.675 / 0.556 / 0.890, mean 0.785; untrained unchanged.
Throughput in that run: 43.8 triplets/s full, 219 with the frozen-feature cache; 174 s in all.

(training area A: night 0.576 -> 0.985, night-fog 0.442 -> 0.859.) Training beats the untrained
model on every held-out drive; the attention head that keeps only the top half of the local
features starts from a random selection (validation R@1 0.44 -> 0.34 before training) and does
not recover in 3 epochs; weighting all features (remain 1) matches plain training.

PCA-whitening fitted on the 1,226 area-A descriptors (all drives), mean Recall@1 in area B:
trained 0.799 (3584-D, none) / 0.705 (512) / 0.589 (128) / 0.532 (64); untrained 0.674 /
0.606 / 0.484 / 0.375. With ~1k fit descriptors for 3584 dimensions whitening amplifies
directions that do not carry over to the held-out area; it lowers recall at every size here.

Throughput on 2 idle cores (32 tuples after warm-up, 82 triplets): full pipeline (JPEG decode
+ crops in a worker, whole backbone forward, tail backward) 47 triplets/s = 18 tuples/s = 280
crops/s; with the frozen-feature cache (tail only) 232 triplets/s = 91 tuples/s. Peak memory
(ru_maxrss): 1.5 GiB for the benchmark process (world, descriptors of every drive, feature
cache), 0.9 GiB for the largest DataLoader worker.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from panoplace.config import ModelConfig, PanoramaConfig, PipelineConfig
from panoplace.data import GroundTruth, ImageSet, load_csv
from panoplace.training import (
    PlaceSplit,
    TrainConfig,
    Trainer,
    concat_image_sets,
    fit_pca_whitening,
    prepare_model,
    recall_of,
    whiten,
)
from panoplace.extract import count_crops
from panoplace.training.frozen import FrozenFeatures
from panoplace.training.trainer import tuple_batch

MAP = "day"
TRAIN_QUERIES = ("dusk", "night")
VAL_QUERIES = ("night-fog",)  # the hardest condition: fog is solved from the start, useless for selection
TEST_ONLY = ("fog", "dusk-fog")
# render order (default_traversals seeds each drive by its position in this list)
CONDITIONS = (MAP, "dusk", "fog", "night", "night-fog", "dusk-fog")
RADIUS = 10.0
WORLD = dict(size_m=500.0, route_length_m=1600.0)  # one lap ~1.7 km, 339 frames at 5 m


def render(work: Path, width: int, height: int, seed: int) -> Dict[str, ImageSet]:
    """One lap per traversal (resumes: frames on disk are kept)."""
    from panoplace.synth import WorldConfig, build_world, default_traversals, render_world

    world = build_world(WorldConfig(seed=seed, **WORLD))
    traversals = default_traversals(n_frames=None, conditions=list(CONDITIONS), spacing_m=5.0, seed=seed)
    folder = work / f"world_seed{seed}_{width}px_{int(WORLD['size_m'])}m_{'_'.join(CONDITIONS)}"
    csvs = render_world(world, traversals, folder, width=width, height=height, progress=False)
    return {name: load_csv(path) for name, path in csvs.items()}


def split_areas(sets: Dict[str, ImageSet], fraction: float, gap: float) -> Dict[str, Dict[str, ImageSet]]:
    """``{"A": {name: subset}, "B": {...}}``: positions projected on the main axis of the map;
    A below the ``fraction`` quantile, B beyond it plus ``gap`` metres."""
    xy = sets[MAP].xy
    _, _, vt = np.linalg.svd(xy - xy.mean(axis=0), full_matrices=False)
    axis = vt[0]
    t = float(np.quantile(xy @ axis, fraction))
    return {"A": {n: s.subset(s.xy @ axis < t) for n, s in sets.items()},
            "B": {n: s.subset(s.xy @ axis >= t + gap) for n, s in sets.items()}}


def descriptors(model: torch.nn.Module, sets: Dict[str, ImageSet], panorama: PanoramaConfig,
                store: Dict[str, torch.Tensor], workers: int) -> Dict[str, np.ndarray]:
    """Descriptors of every set; the frozen backbone units run once per image for all models
    (``store`` is shared, see :class:`panoplace.training.frozen.FrozenFeatures`)."""
    ff = FrozenFeatures(model, panorama, count_crops(panorama), torch.device("cpu"), 32, workers, store=store)
    model.eval()
    out = {}
    with torch.no_grad():
        for n, s in sets.items():
            out[n] = np.concatenate([ff.descriptors(ff.features(s.root, s.paths[i:i + 64])).numpy()
                                     for i in range(0, len(s), 64)])
    return out


def recall1(desc: Dict[str, np.ndarray], sets: Dict[str, ImageSet], query: str,
            transform=None) -> float:
    gt = GroundTruth.from_positions(sets[MAP].xy, sets[query].xy, RADIUS)
    q, db = desc[query], desc[MAP]
    if transform is not None:
        q, db = transform(q), transform(db)
    return recall_of(q, db, gt, ns=(1,))[1]


def train_run(clustered: Path, areas, out: Path, cfg: TrainConfig, attention: Optional[str],
              remain: Optional[float], store: Dict[str, torch.Tensor]):
    from panoplace.models.checkpoint import load_checkpoint

    model, panorama = load_checkpoint(clustered)
    prepare_model(model, n_trainable=cfg.n_trainable, attention=attention, remain=remain, seed=cfg.seed)
    a = areas["A"]
    train = PlaceSplit(a[MAP], concat_image_sets([a[n] for n in TRAIN_QUERIES]))
    val = PlaceSplit(a[MAP], concat_image_sets([a[n] for n in VAL_QUERIES]))
    trainer = Trainer(model, panorama, train, val, out, cfg, progress=False, frozen_store=store)
    t0 = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - t0
    best, _ = load_checkpoint(result.best)
    return best, result, seconds


def throughput(clustered: Path, areas, cfg: TrainConfig, out: Path, store: Dict[str, torch.Tensor],
               frozen_cache: str, n_tuples: int = 32) -> List[str]:
    """Time ``n_tuples`` training tuples (after 4 warm-up tuples) with or without the frozen-feature
    cache: full pipeline = decode + crops in a DataLoader worker + the whole backbone forward, the
    trainable tail backward; cached = the trainable tail only."""
    import dataclasses

    from panoplace.models.checkpoint import load_checkpoint
    from panoplace.training import Triplets

    model, panorama = load_checkpoint(clustered)
    prepare_model(model, n_trainable=cfg.n_trainable)
    a = areas["A"]
    split = PlaceSplit(a[MAP], concat_image_sets([a[n] for n in TRAIN_QUERIES]))
    trainer = Trainer(model, panorama, split, None, out, dataclasses.replace(cfg, frozen_cache=frozen_cache),
                      progress=False, frozen_store=store)
    mined = trainer.mine(queries=trainer.miner.trainable[: 3 * (n_tuples + 4)], seed=0)
    part = lambda sl: Triplets(mined.query[sl], mined.positive[sl], mined.negatives[sl])  # noqa: E731
    trainer.train_tuples(part(slice(0, 4)))  # warm-up (worker start, allocator)
    timed = part(slice(4, 4 + n_tuples))
    cpu0 = time.process_time()
    rec = trainer.train_tuples(timed)
    cpu = time.process_time() - cpu0
    n_batches = -(-len(timed) // cfg.batch_size)
    images = sum(len(tuple_batch(timed, b, cfg.batch_size, len(split.database))[0]) for b in range(n_batches))
    label = "full pipeline (decode + whole backbone)" if frozen_cache == "off" else "frozen-feature cache (tail only)"
    return [label, rec.tuples, rec.triplets, images, f"{rec.train_seconds:.1f}",
            f"{rec.triplets / rec.train_seconds:.1f}", f"{rec.tuples / rec.train_seconds:.2f}",
            f"{images * count_crops(panorama) / rec.train_seconds:.0f}", f"{cpu / rec.train_seconds:.2f}"]


def table(title: str, header: Sequence[str], rows: List[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    return "\n".join([title, line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--work", default="/tmp/panoplace_bench_training", help="work folder (world, checkpoints)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--width", type=int, default=512, help="rendered equirect width")
    p.add_argument("--crops", type=int, default=4)
    p.add_argument("--crop-size", type=int, default=96)
    p.add_argument("--clusters", type=int, default=32)
    p.add_argument("--cut", type=int, default=10, help="EfficientNet-Lite0 block the local features come from")
    p.add_argument("--n-trainable", type=int, default=1)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--queries-per-epoch", type=int, default=None)
    p.add_argument("--negatives", type=int, default=5)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--no-attention", action="store_true", help="skip the attention run")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    work = Path(args.work)
    t_start = time.perf_counter()
    load_start = os.getloadavg()[0]
    timings: Dict[str, float] = {}

    t = time.perf_counter()
    sets = render(work, args.width, args.width // 2, args.seed)
    areas = split_areas(sets, 0.6, 25.0)
    timings["render (or reuse) the world"] = time.perf_counter() - t

    from panoplace.cluster import cluster_images

    t = time.perf_counter()
    panorama = PanoramaConfig(projection="equirect", elevation=(40.0, -25.0), pano_width=args.crops * args.crop_size,
                              pano_height=args.crop_size, n_crops=args.crops,
                              crop_size=(args.crop_size, args.crop_size))
    model_cfg = ModelConfig(backbone="efficientnet_lite0", cut=args.cut, num_clusters=args.clusters,
                            n_trainable=args.n_trainable)
    clustered = work / f"clustered_c{args.cut}_k{args.clusters}_{args.crops}x{args.crop_size}.pt"
    m = areas["A"][MAP]
    torch.manual_seed(args.seed)
    untrained = cluster_images(m.root, m.paths, PipelineConfig(panorama=panorama, model=model_cfg), out=clustered,
                               n_images=len(m), per_image=100, seed=args.seed, num_workers=args.workers,
                               device="cpu", progress=False)
    timings["cluster (NetVLAD init)"] = time.perf_counter() - t

    cfg = TrainConfig(epochs=args.epochs, batch_size=4, optimizer="sgd", lr=args.lr, lr_step=2, lr_gamma=0.5,
                      n_neg=args.negatives, n_neg_sample=1000, queries_per_epoch=args.queries_per_epoch,
                      cache_refresh=1000, n_trainable=args.n_trainable, recall_ns=(1, 5), patience=0, val_radius=RADIUS,
                      num_workers=args.workers, device="cpu", seed=args.seed)
    models = {"untrained": untrained}
    store: Dict[str, torch.Tensor] = {}  # frozen-backbone features, shared by all runs
    runs = {}
    variants = [("trained", None, None), ("+ attention 0.5", "learned", 0.5), ("+ attention 1.0", "learned", 1.0)]
    for name, attention, remain in variants:
        if attention and args.no_attention:
            continue
        t = time.perf_counter()
        folder = work / name.replace("+ ", "").replace(" ", "_")
        models[name], runs[name], _ = train_run(clustered, areas, folder, cfg, attention, remain, store)
        timings[f"train: {name}"] = time.perf_counter() - t

    t = time.perf_counter()
    desc = {(name, area): descriptors(model, areas[area], panorama, store, args.workers)
            for name, model in models.items() for area in ("A", "B")}
    timings["describe all traversals"] = time.perf_counter() - t

    names = list(models)
    rows = []
    for area, label in (("B", "held-out area B"), ("A", "training area A")):
        for q in CONDITIONS[1:]:
            role = ("train" if q in TRAIN_QUERIES else "val" if q in VAL_QUERIES else "test only")
            rows.append([label, f"{MAP} -> {q}", role, len(areas[area][q])]
                        + [f"{recall1(desc[(n, area)], areas[area], q):.3f}" for n in names])
    for area, label in (("B", "held-out area B"),):
        means = [np.mean([float(r[4 + i]) for r in rows if r[0] == label]) for i in range(len(names))]
        rows.append([label, "mean", "", ""] + [f"{v:.3f}" for v in means])
    print()
    print(table(f"Recall@1 (positives within {RADIUS:g} m) against the day map of the same area; trained = "
                "best validation epoch, '+ attention R' = trained with a learned attention head keeping the "
                "top R of the local features", ["area", "map -> queries", "queries were", "Q"] + names, rows))

    # PCA-whitening of the trained model's descriptors: fit on area A (all traversals), test on B
    pca_rows = []
    for name in names:
        fit = np.concatenate([desc[(name, "A")][n] for n in CONDITIONS])
        d_full = fit.shape[1]
        dims = [d for d in (4096, 512, 128, 64) if d < min(d_full, len(fit) - 1)]
        mean, comps = fit_pca_whitening(fit, dims[0])
        for dim in [None, *dims]:
            tf = None if dim is None else (lambda x, d=dim: whiten(x, mean, comps, d))
            r = [recall1(desc[(name, "B")], areas["B"], q, tf) for q in CONDITIONS[1:]]
            pca_rows.append([name, f"{d_full} (none)" if dim is None else str(dim)]
                            + [f"{v:.3f}" for v in r] + [f"{np.mean(r):.3f}"])
    print()
    print(table(f"PCA-whitening fitted on area A ({len(fit)} descriptors, all traversals), Recall@1 in area B",
                ["model", "dims"] + [f"{MAP}->{q}" for q in CONDITIONS[1:]] + ["mean"], pca_rows))

    # throughput and memory
    t = time.perf_counter()
    thr_rows = [throughput(clustered, areas, cfg, work / "throughput", store, mode) for mode in ("off", "on")]
    timings["throughput"] = time.perf_counter() - t
    print()
    print(table(f"Training throughput on {os.cpu_count()} CPU cores ({args.crops} crops of {args.crop_size}x"
                f"{args.crop_size}, EfficientNet-Lite0 cut {args.cut} with {args.n_trainable} trainable unit(s) + "
                f"NetVLAD K={args.clusters}; batches of 4 tuples = query + positive + <= {args.negatives} hard "
                "negatives; a triplet = one (query, positive, negative))",
                ["mode", "tuples", "triplets", "images", "seconds", "triplets/s", "tuples/s", "crops/s",
                 "main-process CPU / wall"], thr_rows))
    run_rows = []
    for name, res in runs.items():
        eps = [r for r in res.history if r.epoch > 0]
        run_rows.append([name, len(eps), sum(r.tuples for r in eps), sum(r.triplets for r in eps),
                         sum(r.solved for r in eps), f"{sum(r.train_seconds for r in eps):.0f}",
                         f"{sum(r.cache_seconds for r in eps):.0f}",
                         f"{sum(r.val_seconds for r in res.history):.0f}", res.best_epoch,
                         f"{res.history[0].recall[1]:.3f} -> {max(r.recall[1] for r in eps):.3f}"])
    print()
    print(table("Training runs (frozen-feature cache on; features shared between runs, so the first run also "
                "pays for computing them)",
                ["run", "epochs", "tuples", "triplets", "queries solved", "train s", "cache+mining s",
                 "validation s", "best epoch", "val R@1 (epoch 0 -> best)"], run_rows))
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print()
    print(f"peak memory (ru_maxrss): this process {self_kb / 1024:.0f} MiB, largest DataLoader worker "
          f"{child_kb / 1024:.0f} MiB")
    print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
          + f"; total {time.perf_counter() - t_start:.0f} s")
    load_end = os.getloadavg()[0]
    if max(load_start, load_end) > (os.cpu_count() or 1):
        print(f"note: the machine was shared while this ran (load average {load_start:.1f} at the start, "
              f"{load_end:.1f} at the end, on {os.cpu_count()} cores); times and rates are lower than on an idle machine")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The unified scene + place network on the procedural world: scene accuracy across conditions,
localisation with and without scene re-ranking, and what the scene branch costs.

World: ``WorldConfig(seed)``, the default route driven ``--frames`` times ``--spacing-m`` apart
(20 m: every scene type of the town is on the drive) as a day map and day2/dusk/night/fog
query drives, ``--size`` x ``--size/2`` equirectangular renders; panoramas are the 40..-25 deg
elevation band unwrapped to 1024x256, ``--crops`` crops resized to ``--crop`` pixels square (the
demo's settings).

Model: EfficientNet-Lite0 (ImageNet weights, frozen) with NetVLAD (K=``--clusters``, k-means
on the map drive) at block 7, the default place model; made a unified model with
:func:`panoplace.models.scene.from_place_model`, split at block 7 and scene cut ``head`` (the
whole trunk, 1280 channels). One unified pass per drive gives the NetVLAD descriptors, the pooled
scene features of every crop at ``head`` and (forward hook on the shared base) at block 7, and
the fused GeM descriptor of block 7.

Part 1 -- scene accuracy: heads trained on the day drive's scene labels
(:func:`panoplace.scene.fit_scene_head` with the settings of ``train_world_scene_head``: 15 epochs,
every crop a sample, dropout 0.2 for the MLPs) and applied to the other drives (crop-averaged
softmax, top-1 vs the frame's ``scene`` label), mean over ``--seeds`` head trainings: linear and
MLP heads on block 7 averaged (the scene branch then costs only pooling + head), on the whole
trunk (``head``; the demo's choice: MLP 64), and on the fused GeM descriptor. "majority" always
says the day drive's most frequent scene. A second table trains on the first half of the route
only and tests on the second half of every drive (places never seen in training).

Part 2 -- localisation: Recall@1 of NetVLAD (cosine top-10 against the day map, ground truth
within ``--radius`` m) without and with :func:`panoplace.matching.scene_rerank.rerank_by_scene`
(scene probabilities of the demo's head and of the block-7 MLP, for queries and map),
for a few weights, the ``top1`` filter, and an oracle that uses the true scene labels.

Part 3 -- cost: images/s (``--crops`` crops each, crops in memory, batch ``--batch``, median of
``--rounds`` interleaved rounds) of the place model alone and of the unified model with the scene
cut at block 7 and at ``head``; also for the Places365 layout (ResNet-18, layer4 shared, GeM place
branch, 365-way head; random weights, the speed does not depend on them).

Run: ``.venv/bin/python benchmarks/bench_scene.py`` (70 s on 2 idle cores, 4 minutes on busy ones).

Measured (2 CPU cores, other jobs mostly idle during this run; torch 2 threads):

    world seed 0: 60 frames per drive, 20 m apart, 1024x512 equirect; 4 crops of 224²;
    categories: procedural-world (5); day drive: street 23, park 5, plaza 5, waterfront 16, parking 11

    Scene accuracy, heads trained on the day drive, tested on the other drives (same places,
    other conditions); mean of 3 seeds
    features, head                      day2    dusk   night     fog          mean
    majority (street)                  0.400   0.383   0.383   0.400   0.392
    block 7 avg (80), linear           0.800   0.483   0.411   0.594   0.572 +-0.028
    block 7 avg (80), MLP 64           0.794   0.400   0.383   0.717   0.574 +-0.012
    whole trunk (1280), linear         0.939   0.850   0.628   0.856   0.818 +-0.025
    whole trunk (1280), MLP 64         0.950   0.878   0.567   0.839   0.808 +-0.007
    whole trunk (1280), MLP 256        0.933   0.850   0.539   0.789   0.778 +-0.022
    GeM descriptor (80), MLP 64        0.706   0.394   0.383   0.683   0.542 +-0.012

    Scene accuracy on places never seen: trained on the first half of the day drive, tested on
    the second half of the other drives; mean of 3 seeds
    features, head                      day2    dusk   night     fog          mean
    majority (street)                  0.300   0.300   0.300   0.300   0.300
    block 7 avg (80), linear           0.600   0.333   0.344   0.444   0.431 +-0.031
    block 7 avg (80), MLP 64           0.589   0.322   0.333   0.533   0.444 +-0.008
    whole trunk (1280), linear         0.644   0.478   0.256   0.422   0.450 +-0.012
    whole trunk (1280), MLP 64         0.600   0.544   0.267   0.489   0.475 +-0.007
    whole trunk (1280), MLP 256        0.611   0.567   0.300   0.389   0.467 +-0.000
    GeM descriptor (80), MLP 64        0.578   0.289   0.311   0.544   0.431 +-0.017

    Localisation Recall@1 against the day map (NetVLAD top-10, ground truth within 15 m)
    method                                          day2    dusk   night     fog    mean
    NetVLAD (no scene)                             0.900   0.800   0.150   0.833   0.671
    whole trunk MLP (demo): re-rank w=0.05         0.900   0.817   0.217   0.833   0.692
    whole trunk MLP (demo): re-rank w=0.1          0.900   0.833   0.233   0.817   0.696
    whole trunk MLP (demo): re-rank w=0.2          0.900   0.833   0.217   0.800   0.688
    whole trunk MLP (demo): filter (top-1 agrees)  0.900   0.800   0.250   0.767   0.679
    block 7 MLP: re-rank w=0.05                    0.900   0.767   0.200   0.833   0.675
    block 7 MLP: re-rank w=0.1                     0.900   0.767   0.233   0.833   0.683
    block 7 MLP: re-rank w=0.2                     0.900   0.767   0.167   0.833   0.667
    block 7 MLP: filter (top-1 agrees)             0.783   0.583   0.183   0.700   0.562
    oracle scene labels: re-rank w=0.1             0.917   0.900   0.383   0.867   0.767

    Cost of the scene branch: images/s (4 crops of 224² each, crops in memory, batch 8)
    model                                           images/s  vs place only
    place only (NetVLAD at block 7)                    26.25           1.00
    unified, scene head on block 7                     26.42           1.01
    unified, scene head on the whole trunk             21.13           0.80
    Places365 R18: place only (GeM at layer4)          17.41           1.00
    Places365 R18: unified (+ avgpool + fc 365)        17.39           1.00

    Re-run 2026-11-24 on idle cores after the Lite blocks' stride-2 padding change (the
    accuracy and Recall@1 tables came out identical to the third decimal):
    place only (NetVLAD at block 7)                    38.46           1.00
    unified, scene head on block 7                     36.67           0.95
    unified, scene head on the whole trunk             24.38           0.63
    Places365 R18: place only (GeM at layer4)          20.07           1.00
    Places365 R18: unified (+ avgpool + fc 365)        19.63           0.98

Reading: scene recognition across lighting needs the deep features: the whole trunk keeps 0.81
accuracy from day to the other drives (majority 0.39), the place cut's block-7 features only 0.57
and the fused GeM descriptor 0.54 (illumination moves them). On places never seen in training
every head falls to 0.43-0.48 (majority 0.30): 30 training frames teach the drive, not the scene
types. Scene re-ranking of the NetVLAD top-10 helps a little with the whole-trunk head (mean R@1
0.671 -> 0.696 at w=0.1; most on night, 0.150 -> 0.233) and barely with the block-7 head; filtering
by the top-1 scene hurts with a weak head; correct labels would give 0.767. The scene branch at the
place cut costs 0-5 %; on the whole trunk it costs 20 % of the place model's throughput in the
first run and 37 % in the re-run, where the place model had become 1.5x faster (49 % in a run on
heavily shared cores: 3.98 vs 8.06 images/s). With Places365's layout
(scene head on layer4, where GeM/NetVLAD read too) the scene branch is an average pool and a
365-way linear layer: free.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from panoplace.config import PanoramaConfig, PipelineConfig  # noqa: E402
from panoplace.data import load_csv  # noqa: E402
from panoplace.data.groundtruth import GroundTruth  # noqa: E402
from panoplace.evaluation.metrics import recall_at_n  # noqa: E402
from panoplace.extract import calibrate_panorama  # noqa: E402
from panoplace.matching.scene_rerank import rerank_by_scene  # noqa: E402
from panoplace.models.fusion import fuse  # noqa: E402
from panoplace.models.pooling import GeM  # noqa: E402
from panoplace.models.checkpoint import from_places365  # noqa: E402
from panoplace.models.scene import SceneHead, from_place_model  # noqa: E402
from panoplace.panorama.project import PanoramaProjector  # noqa: E402
from panoplace.runner import CropDataset  # noqa: E402
from panoplace.scene import WORLD_CATEGORIES, fit_scene_head, head_probabilities, scene_labels, top_k_matches  # noqa: E402
from panoplace.steps.resolve import pipeline_config  # noqa: E402
from panoplace.scene.world import WORLD_HEAD_DROPOUT, WORLD_HEAD_EPOCHS, WORLD_HEAD_HIDDEN  # noqa: E402

MAP = "day"
QUERIES = ("day2", "dusk", "night", "fog")


def render(out: Path, frames: int, spacing: float, size: int, seed: int) -> Dict[str, Path]:
    from panoplace.synth import WorldConfig, build_world, default_traversals, render_world

    world = build_world(WorldConfig(seed=seed))
    trav = default_traversals(n_frames=frames, conditions=[MAP, *QUERIES], spacing_m=spacing, seed=seed)
    return render_world(world, trav, out, projections=("equirect",), width=size, height=size // 2, progress=False)


def crops_of(root: Path, paths: Sequence[str], panorama: PanoramaConfig) -> torch.Tensor:
    """All crops of a drive, decoded once: ``(N, K, H, W, 3)`` uint8."""
    ds = CropDataset(root, paths, PanoramaProjector(panorama))
    items = [ds[i] for i in range(len(ds))]
    bad = [b for _, _, b in items if b is not None]
    if bad:
        raise RuntimeError(f"{bad[0].path}: {bad[0].reason}")
    return torch.stack([c for c, _, _ in items])


def unified_pass(model, crops: torch.Tensor, batch: int) -> Dict[str, np.ndarray]:
    """NetVLAD descriptors, pooled block-7 and whole-trunk features per crop, fused GeM of block 7."""
    shared: List[torch.Tensor] = []
    tail: List[torch.Tensor] = []
    h1 = model.base.register_forward_hook(lambda m, i, o: shared.append(o))
    h2 = model.scene_tail.register_forward_hook(lambda m, i, o: tail.append(o))
    gem = GeM(model.base.out_channels)
    out: Dict[str, List[np.ndarray]] = {"netvlad": [], "block7": [], "head": [], "gem": []}
    try:
        with torch.inference_mode():
            for i in range(0, len(crops), batch):
                x = model.preprocess(crops[i:i + batch])
                b, k = x.shape[:2]
                shared.clear()
                tail.clear()
                res = model(x)
                s = shared[0]
                out["netvlad"].append(res.descriptor.numpy())
                out["block7"].append(s.mean(dim=(2, 3)).reshape(b, k, -1).numpy())
                out["head"].append(tail[0].mean(dim=(2, 3)).reshape(b, k, -1).numpy())
                out["gem"].append(fuse(gem.raw(s).reshape(b, k, -1), gem, "add").numpy())
    finally:
        h1.remove()
        h2.remove()
    return {k: np.concatenate(v) for k, v in out.items()}


def train_head(x: np.ndarray, y: np.ndarray, hidden: int = 0, seed: int = 0) -> SceneHead:
    """The world default head (train_world_scene_head's settings); hidden=0: linear, no dropout."""
    torch.manual_seed(seed)
    head = SceneHead(x.shape[-1], len(WORLD_CATEGORIES), hidden, WORLD_HEAD_DROPOUT if hidden else 0.0)
    fit_scene_head(head, x, y, epochs=WORLD_HEAD_EPOCHS, seed=seed)
    return head


H = WORLD_HEAD_HIDDEN
VARIANTS = [("block 7 avg (80), linear", "block7", 0), (f"block 7 avg (80), MLP {H}", "block7", H),
            ("whole trunk (1280), linear", "head", 0), (f"whole trunk (1280), MLP {H}", "head", H),
            ("whole trunk (1280), MLP 256", "head", 256), (f"GeM descriptor (80), MLP {H}", "gem", H)]
DEMO_HEAD = f"whole trunk (1280), MLP {H}"  # what panoplace demo trains (world_scene_model + default head)
CHEAP_HEAD = f"block 7 avg (80), MLP {H}"  # the scene branch at the place cut: pooling + head only


def accuracy_table(title: str, feats: Dict[str, Dict[str, np.ndarray]], labels: Dict[str, np.ndarray],
                   train_rows: np.ndarray, test_rows: np.ndarray, seeds: Sequence[int]) -> Dict[str, SceneHead]:
    """Accuracy per query drive, mean over ``seeds`` (head initialisation and sample order); the last
    column is the mean over drives +- the standard deviation of that mean across seeds."""
    print(f"\n{title}; mean of {len(seeds)} seeds")
    head_line = f"{'features, head':<32}" + "".join(f"{q:>8}" for q in QUERIES) + f"{'mean':>14}"
    print(head_line)
    print("-" * len(head_line))
    y_tr = labels[MAP][train_rows]
    majority = np.bincount(y_tr, minlength=len(WORLD_CATEGORIES)).argmax()
    accs = [float((labels[q][test_rows] == majority).mean()) for q in QUERIES]
    print(f"{'majority (' + WORLD_CATEGORIES[majority] + ')':<32}" + "".join(f"{a:>8.3f}" for a in accs)
          + f"{np.mean(accs):>8.3f}")
    heads = {}
    for name, key, hidden in VARIANTS:
        acc = np.zeros((len(seeds), len(QUERIES)))
        for i, seed in enumerate(seeds):
            head = train_head(feats[MAP][key][train_rows], y_tr, hidden, seed)
            if i == 0:
                heads[name] = head
            for j, q in enumerate(QUERIES):
                p = head_probabilities(head, feats[q][key][test_rows])
                acc[i, j] = float((p.argmax(1) == labels[q][test_rows]).mean())
        per_seed = acc.mean(axis=1)
        print(f"{name:<32}" + "".join(f"{a:>8.3f}" for a in acc.mean(axis=0))
              + f"{per_seed.mean():>8.3f} +-{per_seed.std():.3f}")
    return heads


def localisation_table(feats, sets, probs: Dict[str, Dict[str, np.ndarray]], labels, radius: float,
                       k: int = 10) -> None:
    """Recall@1 without and with scene re-ranking; ``probs``: {head name: {drive: (N, C)}}."""
    onehot = {n: np.eye(len(WORLD_CATEGORIES), dtype=np.float32)[labels[n]] for n in labels}
    per: Dict[str, Dict[str, float]] = {}
    db = sets[MAP]
    for q in QUERIES:
        gt = GroundTruth.from_positions(db.xy, sets[q].xy, radius=radius)
        scores, cand = top_k_matches(feats[q]["netvlad"], feats[MAP]["netvlad"], k)
        r = {"NetVLAD (no scene)": recall_at_n(cand, gt, ns=(1,))[1]}
        for head, p in probs.items():
            for w in (0.05, 0.1, 0.2):
                _, c = rerank_by_scene(scores, p[q], p[MAP], cand, weight=w)
                r[f"{head}: re-rank w={w:g}"] = recall_at_n(c, gt, ns=(1,))[1]
            _, c = rerank_by_scene(scores, p[q], p[MAP], cand, mode="filter", kind="top1")
            r[f"{head}: filter (top-1 agrees)"] = recall_at_n(c, gt, ns=(1,))[1]
        _, c = rerank_by_scene(scores, onehot[q], onehot[MAP], cand, weight=0.1)
        r["oracle scene labels: re-rank w=0.1"] = recall_at_n(c, gt, ns=(1,))[1]
        per[q] = r
    print(f"\nLocalisation Recall@1 against the {MAP} map (NetVLAD top-{k}, ground truth within {radius:g} m; "
          "scene probabilities of the heads named, seed 0, for queries and map)")
    head = f"{'method':<48}" + "".join(f"{q:>8}" for q in QUERIES) + f"{'mean':>8}"
    print(head)
    print("-" * len(head))
    for name in per[QUERIES[0]]:
        vals = [per[q][name] for q in QUERIES]
        print(f"{name:<48}" + "".join(f"{v:>8.3f}" for v in vals) + f"{np.mean(vals):>8.3f}")


def time_models(models: Dict[str, torch.nn.Module], x: torch.Tensor, batch: int, rounds: int) -> Dict[str, float]:
    """images/s of each model on normalised crops ``x`` ``(N, K, 3, H, W)``, interleaved rounds."""
    times: Dict[str, List[float]] = {n: [] for n in models}
    with torch.inference_mode():
        for m in models.values():
            m(x[:batch])  # warm-up
        for _ in range(rounds):
            for name, m in models.items():
                t0 = time.perf_counter()
                for i in range(0, len(x), batch):
                    m(x[i:i + batch])
                times[name].append(time.perf_counter() - t0)
    return {n: len(x) / statistics.median(t) for n, t in times.items()}


def speed_table(place, unified_head, crops: torch.Tensor, args) -> None:
    unified_7 = from_place_model(place, list(WORLD_CATEGORIES), "procedural-world", scene_cut=7)
    x = place.preprocess(crops[: args.speed_images])
    ips = time_models({"place only (NetVLAD at block 7)": place, "unified, scene head on block 7": unified_7,
                       "unified, scene head on the whole trunk": unified_head}, x, args.batch, args.rounds)
    # Places365 layout: ResNet-18, layer4 shared, GeM place branch, 365-way scene head
    with tempfile.TemporaryDirectory() as tmp:
        import torchvision.models as tvm

        net = tvm.resnet18(weights=None, num_classes=365)
        path = Path(tmp) / "resnet18_places365.pth.tar"
        torch.save({"state_dict": {"module." + k: v for k, v in net.state_dict().items()}}, path)
        p365 = from_places365(path, [f"c{i}" for i in range(365)]).eval()
    place365 = p365.place_model().eval()
    x365 = p365.preprocess(crops[: args.speed_images])
    ips.update(time_models({"Places365 R18: place only (GeM at layer4)": place365,
                            "Places365 R18: unified (+ avgpool + fc 365)": p365}, x365, args.batch, args.rounds))
    k = crops.shape[1]
    print(f"\nCost of the scene branch: images/s ({k} crops of {crops.shape[2]}² each, crops in memory, batch "
          f"{args.batch}, {args.speed_images} images, median of {args.rounds} interleaved rounds, torch threads "
          f"{torch.get_num_threads()})")
    print(f"{'model':<46}{'images/s':>10}{'vs place only':>15}")
    base = {"Places365": ips["Places365 R18: place only (GeM at layer4)"],
            "": ips["place only (NetVLAD at block 7)"]}
    for name, v in ips.items():
        ref = base["Places365"] if name.startswith("Places365") else base[""]
        print(f"{name:<46}{v:>10.2f}{v / ref:>15.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--spacing-m", type=float, default=20.0)
    ap.add_argument("--size", type=int, default=1024, help="render width (height = width / 2)")
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--crop", type=int, default=224, help="crop side in pixels")
    ap.add_argument("--seeds", type=int, default=3, help="head trainings per table cell (seeds 0..n-1)")
    ap.add_argument("--clusters", type=int, default=32)
    ap.add_argument("--radius", type=float, default=15.0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--speed-images", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="folder for the rendered world (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(args.seed)

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        csvs = render(work / "world", args.frames, args.spacing_m, args.size, args.seed)
        sets = {n: load_csv(p) for n, p in csvs.items()}
        t_render = time.perf_counter() - t0
        # the equirect preset (the demo's panorama) with the crops asked for
        config = pipeline_config("equirect", model_overrides={"num_clusters": args.clusters},
                                 panorama_overrides={"n_crops": args.crops, "crop_size": (args.crop, args.crop)})
        panorama = config.panorama
        db = sets[MAP]
        panorama = calibrate_panorama(panorama, db.root, db.paths)
        from panoplace.cluster import cluster_images

        place = cluster_images(db.root, db.paths, PipelineConfig(panorama, config.model),
                               n_images=len(db), per_image=100, seed=args.seed, batch_size=args.batch,
                               num_workers=0, progress=False).eval()
        unified = from_place_model(place, list(WORLD_CATEGORIES), "procedural-world", scene_cut="head").eval()
        t1 = time.perf_counter()
        crops = {n: crops_of(s.root, s.paths, panorama) for n, s in sets.items()}
        feats = {n: unified_pass(unified, c, args.batch) for n, c in crops.items()}
        t_features = time.perf_counter() - t1
        labels = {n: scene_labels(s) for n, s in sets.items()}

        counts = np.bincount(labels[MAP], minlength=len(WORLD_CATEGORIES))
        print(f"world seed {args.seed}: {args.frames} frames per drive, {args.spacing_m:g} m apart, {args.size}x"
              f"{args.size // 2} equirect; {args.crops} crops of {args.crop}²; categories: procedural-world "
              f"({len(WORLD_CATEGORIES)}); day drive: " + ", ".join(f"{c} {n}" for c, n in zip(WORLD_CATEGORIES, counts)))
        print(f"render {t_render:.0f} s, clustering + unified pass over {len(sets)} drives {t_features:.0f} s")

        n = args.frames
        all_rows = np.arange(n)
        seeds = tuple(range(args.seeds))
        heads = accuracy_table(f"Scene accuracy, heads trained on the {MAP} drive, tested on the other drives "
                               "(same places, other conditions)", feats, labels, all_rows, all_rows, seeds)
        accuracy_table(f"Scene accuracy on places never seen: trained on the first half of the {MAP} drive, "
                       "tested on the second half of the other drives", feats, labels, all_rows[: n // 2],
                       all_rows[n // 2:], seeds)
        probs = {"whole trunk MLP (demo)": {n: head_probabilities(heads[DEMO_HEAD], f["head"]) for n, f in feats.items()},
                 "block 7 MLP": {n: head_probabilities(heads[CHEAP_HEAD], f["block7"]) for n, f in feats.items()}}
        localisation_table(feats, sets, probs, labels, args.radius)
        speed_table(place, unified, crops[MAP], args)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

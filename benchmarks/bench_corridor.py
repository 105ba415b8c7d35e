"""Single-frame accuracy on the real corridor set (../shared/data/corridor), default pipeline.

The corridor set: 111 places, two passes with a viewpoint shift, 160x120 circular-fisheye
JPEGs (``ref/`` = database, ``query/``), VPR-Bench ground truth. Methods, all with the default
offline backbone (EfficientNet-Lite0, ImageNet weights, default cut) and no training:

- NetVLAD initialised by k-means on the database images (``panoplace cluster``), default K;
- GeM pooling of the same local features;
- raw pixels: 64x48 grey, patch-normalised (8x8), cosine distance.

Images are fed as plain images resized to 224x224, as ``panoplace extract`` does by default.

Run: .venv/bin/python benchmarks/bench_corridor.py [--data ../shared/data/corridor]

Measured 2026-11-24 (2 shared cores, load ~4):

    method                           runs     R@1     R@5    R@10  PR-AUC  sec/run
    raw pixels 64x48 patch-norm         1   0.351   0.622   0.748   0.195      0.2
    GeM (p=3)                           1   0.586   0.874   0.946   0.389     22.3
    NetVLAD K=32, k-means init          3   0.910   0.994   1.000   0.846     28.4

Re-run later the same day on idle cores after the extraction speed-ups: the same recalls and
PR-AUCs to the third decimal, 2.7 s per GeM run and 2.2 s per NetVLAD run (11 s in all).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from panoplace.cluster import cluster_images
from panoplace.data import load_dataset
from panoplace.evaluation.pipeline import evaluate_descriptors
from panoplace.presets import get_preset
from panoplace.steps import extract
from panoplace.steps.resolve import place_model
from panoplace.matching.seqslam_classic import patch_normalise
from panoplace.panorama.project import read_image

REPO = Path(__file__).resolve().parents[1]


def raw_pixels(root: Path, paths: list) -> np.ndarray:
    """(N, 64*48) L2-normalised patch-normalised grey thumbnails."""
    out = []
    for p in paths:
        grey = cv2.cvtColor(cv2.resize(read_image(root / p), (64, 48), interpolation=cv2.INTER_AREA),
                            cv2.COLOR_RGB2GRAY)
        out.append(patch_normalise(grey, 8).ravel())
    d = np.stack(out).astype(np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "corridor"))
    ap.add_argument("--seeds", type=int, default=3, help="k-means seeds to average NetVLAD over")
    args = ap.parse_args()
    if not Path(args.data).is_dir():
        sys.exit(f"no corridor data at {args.data}")
    ds = load_dataset(args.data)
    db, q, gt = ds.database, ds.queries, ds.ground_truth
    plain = get_preset("plain")  # the defaults: plain image, 224x224, EfficientNet-Lite0 + NetVLAD K=32
    panorama = plain.panorama
    rows = []
    t = time.perf_counter()
    r = evaluate_descriptors(raw_pixels(Path(q.root), q.paths), raw_pixels(Path(db.root), db.paths), gt)
    rows.append(("raw pixels 64x48 patch-norm", 1, r.recall, r.pr_auc, time.perf_counter() - t))
    t = time.perf_counter()
    gem, _ = place_model(preset="plain", model_overrides={"aggregator": "gem"})
    kw = dict(num_workers=0, progress=False)
    r = evaluate_descriptors(extract(q, model=gem, panorama=panorama, **kw).descriptors.descriptors,
                             extract(db, model=gem, panorama=panorama, **kw).descriptors.descriptors, gt)
    rows.append(("GeM (p=3)", 1, r.recall, r.pr_auc, time.perf_counter() - t))
    recalls, aucs = [], []
    t = time.perf_counter()
    for seed in range(args.seeds):
        model = cluster_images(db.root, db.paths, get_preset("plain"), n_images=len(db),
                               per_image=200, seed=seed, num_workers=0, progress=False)
        r = evaluate_descriptors(extract(q, model=model, panorama=panorama, **kw).descriptors.descriptors,
                                 extract(db, model=model, panorama=panorama, **kw).descriptors.descriptors, gt)
        recalls.append(r.recall)
        aucs.append(r.pr_auc)
    mean = {n: float(np.mean([rc[n] for rc in recalls])) for n in recalls[0]}
    k = plain.model.num_clusters
    rows.append((f"NetVLAD K={k}, k-means init", args.seeds, mean, float(np.mean(aucs)),
                 (time.perf_counter() - t) / args.seeds))
    print(f"\ncorridor: {len(q)} queries vs {len(db)} database images, VPR-Bench ground truth, "
          f"backbone {plain.model.backbone} (default cut), preset plain (224x224)")
    print(f"{'method':<32}{'runs':>5}{'R@1':>8}{'R@5':>8}{'R@10':>8}{'PR-AUC':>8}{'sec/run':>9}")
    for name, runs, rec, auc, sec in rows:
        print(f"{name:<32}{runs:>5}{rec[1]:>8.3f}{rec[5]:>8.3f}{rec[10]:>8.3f}{auc:>8.3f}{sec:>9.1f}")


if __name__ == "__main__":
    main()

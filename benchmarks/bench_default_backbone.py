"""Choose the offline default model: EfficientNet-Lite0 cut point x NetVLAD cluster count.

Data: ``../shared/data/corridor`` (VPR-Bench copy): ``ref/`` = database, ``query/`` = queries,
``ground_truth_new.npy`` rows ``[query_index, [correct ref indices]]``. The 160x120 fisheye
JPEGs are used as plain images (no unwrapping), resized to ``--size`` (default 224x224,
bilinear) and normalised as the backbone expects.

For each cut (feature maps of all images computed in one pass through the body), NetVLAD is
initialised without training: k-means (faiss, :func:`panoplace.models.clusters.fit_centroids`)
on ``--per-image`` random L2-normalised local features of every *database* image, vladv1
initialisation, then Recall@1/5 of the queries against the database (cosine nearest
neighbour). Recall is averaged over ``--seeds`` (sampling + k-means seeds); GeM (p=3) and
average pooling are listed for reference. The winner is the NetVLAD row with the best mean
R@1 (ties: R@5, then the shorter descriptor); its cut and K are the defaults in
``panoplace.models.backbones.DEFAULT_CUTS`` and ``ModelConfig.num_clusters``.

Run: ``.venv/bin/python benchmarks/bench_default_backbone.py`` (1-2 minutes on 2 busy cores).

Measured with the defaults (2 CPU cores shared with other jobs, load average ~5.5; ± = std over
the 5 seeds; one query = 0.9 %):

    corridor: 111 database, 111 queries, images 224x224, seeds [0, 1, 2, 3, 4], 100 features/image; features 23.2s, total 124.5s
      cut     C    map  aggregator          D       R@1 (%)       R@5 (%)
        4    40  28x28  gem p=3            40    55.0 ± 0.0    88.3 ± 0.0
        4    40  28x28  avg                40    40.5 ± 0.0    81.1 ± 0.0
        4    40  28x28  netvlad K=16      640    87.2 ± 2.0    98.7 ± 0.7
        4    40  28x28  netvlad K=32     1280    87.6 ± 2.9    99.6 ± 0.4
        4    40  28x28  netvlad K=64     2560    88.1 ± 1.3   100.0 ± 0.0
        6    80  14x14  gem p=3            80    57.7 ± 0.0    87.4 ± 0.0
        6    80  14x14  avg                80    61.3 ± 0.0    86.5 ± 0.0
        6    80  14x14  netvlad K=16     1280    89.2 ± 2.1    99.5 ± 0.7
        6    80  14x14  netvlad K=32     2560    91.9 ± 1.1   100.0 ± 0.0
        6    80  14x14  netvlad K=64     5120    92.3 ± 1.5   100.0 ± 0.0
        7    80  14x14  gem p=3            80    58.6 ± 0.0    87.4 ± 0.0
        7    80  14x14  avg                80    58.6 ± 0.0    87.4 ± 0.0
        7    80  14x14  netvlad K=16     1280    89.9 ± 0.7    99.8 ± 0.4
        7    80  14x14  netvlad K=32     2560    92.4 ± 1.5   100.0 ± 0.0
        7    80  14x14  netvlad K=64     5120    91.0 ± 2.5    99.8 ± 0.4
       10   112  14x14  gem p=3           112    62.2 ± 0.0    91.9 ± 0.0
       10   112  14x14  avg               112    69.4 ± 0.0    94.6 ± 0.0
       10   112  14x14  netvlad K=16     1792    87.0 ± 0.9    97.8 ± 0.4
       10   112  14x14  netvlad K=32     3584    88.1 ± 1.5    99.5 ± 0.4
       10   112  14x14  netvlad K=64     7168    89.5 ± 1.5    99.6 ± 0.4
       14   192    7x7  gem p=3           192    60.4 ± 0.0    89.2 ± 0.0
       14   192    7x7  avg               192    64.9 ± 0.0    90.1 ± 0.0
       14   192    7x7  netvlad K=16     3072    84.3 ± 1.9    97.8 ± 0.7
       14   192    7x7  netvlad K=32     6144    88.6 ± 1.2    97.8 ± 0.9
       14   192    7x7  netvlad K=64    12288    88.5 ± 2.1    97.3 ± 0.8
     head  1280    7x7  gem p=3          1280    56.8 ± 0.0    80.2 ± 0.0
     head  1280    7x7  avg              1280    58.6 ± 0.0    81.1 ± 0.0
     head  1280    7x7  netvlad K=16    20480    69.4 ± 2.1    91.2 ± 1.5
     head  1280    7x7  netvlad K=32    40960    68.6 ± 3.3    89.9 ± 2.1
     head  1280    7x7  netvlad K=64    81920    70.5 ± 3.8    90.1 ± 1.9
    winner: cut 7, netvlad K=32 (D=2560): R@1 92.4, R@5 100.0

Decision: cut 7 (the last block of the stride-16, 80-channel stage) with K = 32. Blocks 6-7 beat
the deeper cuts by 2-20 points R@1 and K = 32 is as good as K = 64 there (within one std) at half
the descriptor length. At the images' native size (``--size 120 160``) the ranking is flatter
(block 7 K=16 88.5, block 10 K=32 89.2, block 7 K=32 85.6, all ± 1-3), so the choice is for the
default 224x224 crops. Recall without training on one small indoor route: a sanity-level
choice, not a benchmark of the method.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from panoplace.data.formats import read_npy  # noqa: E402
from panoplace.models.backbones import build_backbone  # noqa: E402
from panoplace.models.clusters import fit_centroids, sample_from_feature_maps  # noqa: E402
from panoplace.models.netvlad import NetVLAD  # noqa: E402
from panoplace.models.pooling import AvgPool, GeM  # noqa: E402


def load_images(folder: Path, size: Tuple[int, int]) -> np.ndarray:
    """All JPEGs of ``folder`` sorted by name, RGB, resized to (H, W). Returns (N, H, W, 3) uint8."""
    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise SystemExit(f"no .jpg images in {folder}")
    out = []
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"cannot read {f}")
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        out.append(cv2.resize(img, (size[1], size[0]), interpolation=cv2.INTER_LINEAR))
    return np.stack(out)


def feature_maps(images: np.ndarray, cuts: Sequence[object], batch: int = 16) -> Dict[object, torch.Tensor]:
    """Feature maps of EfficientNet-Lite0 (ImageNet) at every cut, from one pass per batch."""
    deepest = "head" if "head" in cuts else max(int(c) for c in cuts)
    backbone = build_backbone("efficientnet_lite0", cut=deepest, weights="imagenet").eval()
    names = {("head" if c == "head" else f"block{int(c)}"): c for c in cuts}
    mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std).view(1, 3, 1, 1)
    out: Dict[object, List[torch.Tensor]] = {c: [] for c in cuts}
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).permute(0, 3, 1, 2).float() / 255.0
            x = (x - mean) / std
            for name, module in backbone.body.named_children():
                x = module(x)
                if name in names:
                    out[names[name]].append(x.clone())
    return {c: torch.cat(v) for c, v in out.items()}


def recall_at(db: torch.Tensor, q: torch.Tensor, positives: List[np.ndarray], ns: Sequence[int] = (1, 5)) -> List[float]:
    """Recall@N (%) of L2-normalised queries against L2-normalised database descriptors."""
    top = torch.topk(q @ db.T, max(ns), dim=1).indices.numpy()
    hits = np.array([[np.isin(top[i, :n], positives[i]).any() for n in ns] for i in range(len(q))])
    return list(100.0 * hits.mean(axis=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "corridor",
                    help="corridor folder with ref/, query/ and ground_truth_new.npy")
    ap.add_argument("--size", type=int, nargs=2, default=(224, 224), metavar=("H", "W"),
                    help="resize images to H W (default 224 224)")
    ap.add_argument("--cuts", nargs="+", default=["4", "6", "7", "10", "14", "head"],
                    help="EfficientNet-Lite0 cuts: block indices and/or 'head' (default 4 6 7 10 14 head)")
    ap.add_argument("--clusters", type=int, nargs="+", default=[16, 32, 64], help="NetVLAD K values")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="sampling/k-means seeds (default 0..4)")
    ap.add_argument("--per-image", type=int, default=100, help="local features sampled per database image")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    ap.add_argument("--faiss-threads", type=int, default=1,
                    help="faiss k-means threads (default 1: these k-means problems are small, and on a shared "
                         "machine spinning OpenMP threads make them 30x slower)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.faiss_threads)
    cuts = [c if c == "head" else int(c) for c in args.cuts]

    t0 = time.perf_counter()
    ref = load_images(args.data / "ref", tuple(args.size))
    qry = load_images(args.data / "query", tuple(args.size))
    gt = read_npy(args.data / "ground_truth_new.npy")  # object array, read without unpickling code
    positives = [np.asarray(gt[i][1], dtype=int) for i in range(len(gt))]
    if [int(gt[i][0]) for i in range(len(gt))] != list(range(len(qry))):
        raise SystemExit("ground truth rows are not queries 0..Q-1 in order")
    feats_ref = feature_maps(ref, cuts)
    feats_q = feature_maps(qry, cuts)
    t_feat = time.perf_counter() - t0

    rows = []
    for cut in cuts:
        fr, fq = feats_ref[cut], feats_q[cut]
        c, h, w = fr.shape[1:]
        fmap = f"{h}x{w}"
        for name, agg in (("gem p=3", GeM(c, p=3.0)), ("avg", AvgPool(c))):
            with torch.no_grad():
                r = recall_at(agg(fr), agg(fq), positives)
            rows.append((cut, c, fmap, name, c, r[0], 0.0, r[1], 0.0))
        for k in args.clusters:
            recalls = []
            for seed in args.seeds:
                sample = sample_from_feature_maps(fr, args.per_image, np.random.default_rng(seed))
                vlad = NetVLAD(num_clusters=k, dim=c)
                vlad.init_from_clusters(fit_centroids(sample, k, seed=seed), sample, vladv2=False)
                with torch.no_grad():
                    recalls.append(recall_at(vlad(fr), vlad(fq), positives))
            rec = np.array(recalls)
            rows.append((cut, c, fmap, f"netvlad K={k}", k * c, rec[:, 0].mean(), rec[:, 0].std(),
                         rec[:, 1].mean(), rec[:, 1].std()))

    print(f"corridor: {len(ref)} database, {len(qry)} queries, images {args.size[0]}x{args.size[1]}, "
          f"seeds {args.seeds}, {args.per_image} features/image; features {t_feat:.1f}s, "
          f"total {time.perf_counter() - t0:.1f}s")
    print(f"{'cut':>5} {'C':>5} {'map':>6}  {'aggregator':<14} {'D':>6}  {'R@1 (%)':>12}  {'R@5 (%)':>12}")
    for cut, c, fmap, name, d, r1, s1, r5, s5 in rows:
        print(f"{cut!s:>5} {c:>5} {fmap:>6}  {name:<14} {d:>6}  {r1:6.1f} ±{s1:4.1f}  {r5:6.1f} ±{s5:4.1f}")
    vlad_rows = [r for r in rows if r[3].startswith("netvlad")]
    best = max(vlad_rows, key=lambda r: (round(r[5], 6), round(r[7], 6), -r[4]))
    print(f"winner: cut {best[0]}, {best[3]} (D={best[4]}): R@1 {best[5]:.1f}, R@5 {best[7]:.1f}")


if __name__ == "__main__":
    main()

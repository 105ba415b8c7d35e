"""Full extraction pipeline versus the backbone alone, same crops, same run.

Full pipeline = JPEG decode + annular ring -> K crops (one remap) + normalisation + backbone +
NetVLAD + add-fusion + the store, as ``panoplace extract`` runs it. Backbone alone = the same
crops, decoded and normalised beforehand, through the backbone only. The ratio (full /
backbone-only panoramas per second) says how much the pipeline around the network costs;
target >= 0.90 on a 2-core machine. Each decoding mode is timed: in the main process with the
prefetch thread (the default on 1-2 cores), without it, and in a worker process.

Two image sets of 1024² annular JPEGs, both made here: ``noise`` (a textured noise panorama
mapped onto a ring, 493 KB per file: slow to entropy-decode) and ``world`` (procedural-world
renders as ``panoplace synth`` writes them, 172 KB per file).

Run: .venv/bin/python benchmarks/bench_pipeline.py [--sets noise world] [--backbone resnet18]
(about 2 minutes).

Measured 2026-11-24 on 2 idle cores, 48 images, median of 5 (a second run in brackets):

    per panorama, stage alone        noise      world
    JPEG decode (1 thread)           4.9 ms     2.5 ms
    ring -> 4 crops (one remap)      0.6 ms     0.6 ms
    uint8 -> normalised float        0.4 ms     0.4 ms
    backbone (2 threads)             ~24 ms     ~28 ms
    NetVLAD + fusion                 0.3 ms     0.3 ms

    efficientnet_lite0          backbone alone  full pipeline  ratio
    noise, prefetch thread      37.5 pano/s     28.5 pano/s    0.76 (0.79)
    noise, no thread            35.7            27.4           0.77 (0.76)
    noise, 1 worker process     36.1            23.4           0.65 (0.60)
    world, prefetch thread      36.4            30.0           0.82 (0.88)
    world, no thread            38.5            31.4           0.82 (0.83)
    world, 1 worker process     36.3            23.5           0.65 (0.68)

    resnet18 (24 images, median of 3): noise 0.87 / world 0.88 with the prefetch thread.

The 0.90 target is NOT met with the default backbone. Before this round the same benchmark gave
21.3 panoramas/s full (ratio 0.73); the full pipeline is now ~1.35x faster (28-31 panoramas/s)
because (1) the ring is sampled straight into the crops (0.6 instead of 3.0 ms), (2) the
normalisation is one strided copy + one in-place multiply-add (0.4 instead of 2.7 ms), (3) JPEGs
decode through torchvision, straight to RGB (4.9 instead of 6.0 ms), and (4) EfficientNet-Lite's
stride-2 blocks pad their narrow input instead of the 6x wider expansion, which made the
backbone itself ~1.3x faster, so the ratio's denominator moved too. What is left is decoding:
libjpeg-turbo's entropy decoding takes 10-20 % of the backbone's time per panorama and, on 2
cores already busy with the network's two threads, does not hide behind it (the prefetch
thread wins ~0.02 at best; a worker process loses 0.1 to inter-process copies). A heavier
backbone (ResNet-18, 2.3x the time) reaches 0.87-0.88.

Image runner (issue 10, 2026-12-01): extraction now goes through ``panoplace.runner`` (typed
bad-image records, engine seam, one projector per config). Same-run ratios (full / backbone alone,
32 images, median of 3), main before the runner (a1cf619) and after, run back to back on a
machine shared by ~8 engineers (load average 31 -> 19 during ``before``, 19 -> 17 during
``after``; the backbone alone ran 10x slower than on idle cores, so the noise is about +-0.15):

    ratio                       noise before  noise after  world before  world after
    main process, prefetch      1.177         1.026        1.183         1.272
    main process, no thread     0.726         0.692        0.777         0.890
    1 worker process            0.668         0.811        0.823         0.911

No slowdown shows beyond that noise (after >= before in 4 of 6 modes; mean 0.89 before, 0.93
after). An earlier run of ``before`` at load 1.3-2.4 gave 0.84 (noise) / 0.88 (world) with the
prefetch thread; a quiet-machine rerun of both was not possible before the session's deadline.

Rerun 2026-12-01 04:02-04:05 UTC with the benchmark at normal priority and other engineers' jobs
at nice 19 (load average 6.9 -> 9.5 during ``before``, 9.5 -> 10.9 during ``after``; the kernel's
autogroup scheduling was off, so nice held), ``--images 32``, before = a1cf619 (the worktree's
own code on PYTHONPATH), after = main at be7fe0b, back to back:

    ratio (full / backbone alone)   noise before  noise after  world before  world after
    main process, prefetch          0.685         0.732        0.784         0.770
    main process, no thread         0.753         0.735        0.766         0.836
    1 worker process                0.683         0.672        0.652         0.705

Mean 0.720 before, 0.742 after (after >= before in 4 of 6 modes): no slowdown from the runner.
Absolute rates (18-21 panoramas/s full, 24-28 backbone alone) are below the idle table above.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict

import cv2
import numpy as np
import torch

from panoplace.config import ModelConfig, PanoramaConfig
from panoplace.extract import extract
from panoplace.models.build import build_model
from panoplace.panorama.annular import AnnulusGeometry
from panoplace.panorama.project import PanoramaProjector
from panoplace.runner import CropDataset


def make_annular_images(folder: Path, n: int, size: int, seed: int = 0) -> AnnulusGeometry:
    """Write ``n`` annular JPEGs of ``size``² with a known ring; return its geometry."""
    rng = np.random.default_rng(seed)
    g = AnnulusGeometry(cx=size / 2 - 0.5, cy=size / 2 - 0.5, r_inner=size * 0.15, r_outer=size * 0.48)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dx, dy = xx - g.cx, -(yy - g.cy)
    r = np.hypot(dx, dy)
    az = (np.degrees(np.arctan2(dy, dx)) - g.start_deg) % 360.0
    pw, ph = 2048, 512
    map_x = (az / 360.0 * pw).astype(np.float32)
    map_y = ((g.r_outer - r) / (g.r_outer - g.r_inner) * ph).astype(np.float32)
    outside = (r < g.r_inner) | (r > g.r_outer)
    for i in range(n):
        base = rng.random((ph // 16, pw // 16, 3)).astype(np.float32)
        pano = cv2.resize(base, (pw, ph), interpolation=cv2.INTER_CUBIC)
        pano += 0.15 * rng.standard_normal((ph, pw, 3)).astype(np.float32)
        pano = np.clip(pano * 255, 0, 255).astype(np.uint8)
        img = cv2.remap(pano, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        img[outside] = 0
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return g


def backbone_only(model, crops: torch.Tensor, batch: int) -> float:
    """Seconds for the backbone alone over all crops ``(N, K, H, W, 3)`` uint8, preprocessed
    beforehand (outside the timing)."""
    x = model.preprocess(crops)  # (N, K, 3, H, W)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            model.backbone(x[i:i + batch].flatten(0, 1))
    return time.perf_counter() - t0


def make_world_images(folder: Path, n: int, size: int) -> AnnulusGeometry:
    """Render ``n`` annular frames (``size``²) of a procedural-world day drive into ``folder``
    (as ``panoplace synth`` writes them); return the lens's ring geometry."""
    from panoplace.synth import WorldConfig, build_world, default_traversals, render_traversal

    world = build_world(WorldConfig(seed=0))
    drive = default_traversals(n, conditions=["day"])[0]
    render_traversal(world, drive, folder, projections=("annular",), width=size, height=size // 2,
                     progress=False)
    src = folder / drive.name / "annular"
    for i, f in enumerate(sorted(src.glob("*.jpg"))):
        f.rename(folder / f"{i:05d}.jpg")
    return AnnulusGeometry.from_dict(json.loads((src / "annulus.json").read_text()))


def per_image_stages(path: Path, panorama: PanoramaConfig, model, crops: torch.Tensor) -> Dict[str, float]:
    """Milliseconds per panorama of each stage run alone (median of 20; backbone median of 5)."""
    from panoplace.decode import decode_image
    from panoplace.panorama.project import image_to_crops

    img = decode_image(path)

    def ms(fn, n: int = 20, per: int = 1) -> float:
        fn()
        t = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            t.append(time.perf_counter() - t0)
        return statistics.median(t) * 1000 / per

    from panoplace.models.fusion import fuse

    b, k = crops.shape[:2]
    x = model.preprocess(crops)
    with torch.inference_mode():
        feats = model.backbone(x.flatten(0, 1))

        def head():
            raw = model.aggregator.raw(feats)
            return fuse(raw.reshape(b, k, *raw.shape[1:]), model.aggregator, model.config.fusion)

        return {
            "JPEG decode (1 thread)": ms(lambda: decode_image(path)),
            "ring -> crops, one remap (1 thread)": ms(lambda: image_to_crops(img, panorama)),
            "uint8 -> normalised float": ms(lambda: model.preprocess(crops), per=b),
            "backbone (torch threads)": ms(lambda: model.backbone(x.flatten(0, 1)), n=5, per=b),
            "NetVLAD + fusion": ms(head, per=b),
        }


def run_set(name: str, folder: Path, geometry: AnnulusGeometry, model, args) -> None:
    """Stage costs and the pipeline/backbone ratio for every decoding mode on one image set."""
    paths = sorted(p.name for p in folder.glob("*.jpg"))
    panorama = PanoramaConfig(projection="annular", annulus=geometry.to_dict(), pano_width=1024,
                              pano_height=256, n_crops=args.crops, crop_size=(224, 224))
    projector = PanoramaProjector(panorama)
    k = projector.n_crops
    ds = CropDataset(folder, paths, projector)
    crops = torch.stack([ds[i][0] for i in range(len(ds))])  # (N, K, H, W, 3) decoded once
    stages = per_image_stages(folder / paths[0], panorama, model, crops[:args.batch])
    modes = [(w, w == 0) for w in args.workers] + ([(0, False)] if 0 in args.workers else [])
    rows = []
    for workers, prefetch in modes:
        full, bb = [], []
        for r in range(args.repeats):
            bb.append(backbone_only(model, crops, args.batch))
            t0 = time.perf_counter()
            extract(folder, paths, model, panorama, out=folder / f"d{r}.h5", batch_size=args.batch,
                    num_workers=workers, device="cpu", progress=False, prefetch=prefetch)
            full.append(time.perf_counter() - t0)
        rows.append((workers, prefetch, statistics.median(bb), statistics.median(full)))
    n = len(paths)
    kb = statistics.mean(p.stat().st_size for p in folder.glob("*.jpg")) / 1e3
    print(f"\n== {name}: {n} annular {args.size}² JPEGs ({kb:.0f} KB each), K={k} crops of 224², "
          f"{args.backbone}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print("per panorama, each stage alone:")
    for stage, ms in stages.items():
        print(f"  {stage:<40}{ms:>8.2f} ms")
    print(f"pipeline vs backbone alone, median of {args.repeats} (target ratio >= 0.90):")
    print(f"  {'decoding':<32}{'backbone alone pano/s':>22}{'full pipeline pano/s':>22}{'ratio':>8}")
    for workers, prefetch, t_bb, t_full in rows:
        how = (f"{workers} worker process(es)" if workers else
               ("main process, prefetch thread" if prefetch else "main process, no thread"))
        print(f"  {how:<32}{n / t_bb:>22.2f}{n / t_full:>22.2f}{t_bb / t_full:>8.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=1024, help="annular image side in pixels")
    ap.add_argument("--crops", type=int, default=4)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1],
                    help="decoding worker processes to compare (0 = in the main process)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--sets", nargs="+", choices=("noise", "world"), default=["noise", "world"],
                    help="image sets: noise = textured noise (hard to decode), world = procedural-world renders")
    args = ap.parse_args()

    torch.manual_seed(0)
    # timing only: other backbones than the offline default run with random weights
    weights = "imagenet" if args.backbone == "efficientnet_lite0" else "none"
    model = build_model(ModelConfig(backbone=args.backbone, weights=weights, num_clusters=32)).eval()
    for name in args.sets:
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            if name == "noise":
                geometry = make_annular_images(tmp, args.images, args.size)
            else:
                geometry = make_world_images(tmp, args.images, args.size)
            run_set(name, tmp, geometry, model, args)


if __name__ == "__main__":
    main()

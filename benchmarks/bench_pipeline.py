"""Full extraction pipeline versus the backbone alone, same crops, same run.

Full pipeline = JPEG decode + annular unwrap + K crops + resize (in DataLoader workers)
+ backbone + NetVLAD + add-fusion (one batched model call), as ``panoplace extract`` runs it,
writing the store. Backbone alone = the same crops, already decoded and in memory, through the
backbone only. The ratio (full / backbone-only panoramas per second) says how much the
pipeline around the network costs; target >= 0.90 on a 2-core machine.

The annular test images are made here: a textured panorama mapped onto a ring by the inverse
of the unwrap geometry, saved as JPEG.

Run: .venv/bin/python benchmarks/bench_pipeline.py [--images 48] [--crops 4] [--size 1024]

Measured 2026-11-24, 2 idle cores, 48 images, median of 3 (two runs each, to show the noise):

    workers  backbone alone pano/s  full pipeline pano/s  ratio
    0        29.3 / 28.2            21.3 / 20.9           0.73 / 0.74
    1        26.4 / 32.6            20.1 / 19.8           0.76 / 0.61

Target 0.90 is not met. Per panorama (one core, idle): JPEG decode 6.3 ms, unwrap + 4 crops
4.5 ms, uint8 -> float preprocess ~1-4 ms, NetVLAD + fusion ~2.5 % of the backbone; the
backbone itself is ~30 ms of 2-core time. On 2 cores the decode work cannot hide behind the
network (both need the same cores), so the ceiling is about 60 / (60 + 11) = 0.85 of 2-core
milliseconds unless decoding gets cheaper (reduced-size JPEG decode, one remap straight from
the ring to the crops).
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
from panoplace.extract import CropDataset, count_crops, extract
from panoplace.models.build import build_model
from panoplace.panorama.annular import AnnulusGeometry


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
    k = count_crops(panorama)
    ds = CropDataset(folder, paths, panorama, k)
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

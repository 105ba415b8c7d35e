"""The whole pipeline on a procedural world made on the spot (``panoplace demo``).

1. Build a seeded town and drive its route several times: a day map and query drives under
   other conditions (day again in another lane with other traffic, dusk, night, fog).
2. Initialise NetVLAD by k-means on local features of the map, extract descriptors of every
   drive (NetVLAD, and GeM with the same backbone), and raw-pixel descriptors as a baseline.
   The models come from the presets ``equirect``/``annular`` and their ``-gem`` variants
   (:mod:`panoplace.presets`), and every step is a :mod:`panoplace.steps` function (cluster,
   extract, scene_predict, evaluate), the ones the CLI verbs run.
3. Single-frame retrieval and sequence matching for every query drive against the map,
   evaluated against the GPS ground truth (positives within ``radius`` metres).
4. Scene recognition: a scene head (procedural-world categories) trained on the map drive's
   scene labels, predicted on the query drives, and scene-aware re-ranking of NetVLAD
   candidates (accuracy and Recall@1 with/without re-ranking in the table and summary).
5. A report folder: ``summary.json``, one HTML report per query drive (PR curve, Recall@N,
   trajectory map, match gallery) and ``index.html`` linking them; a table in the terminal.

The realism check of the world is the same table: NetVLAD should beat raw pixels across
conditions, cross-condition should be harder than same-condition, and sequence matching
should beat single frames.
"""

from __future__ import annotations

import html
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from panoplace.atomic import write_text_atomic
from panoplace.config import PanoramaConfig
from panoplace.data import Dataset, ImageSet, load_csv
from panoplace.data.groundtruth import GroundTruth
from panoplace.errors import InputError
from panoplace.evaluation.metrics import EvaluationResult
from panoplace.evaluation.report import Drive, write_drives_report, write_report
from panoplace.extract import calibrate_panorama
from panoplace.matching.seqslam_classic import patch_normalise
from panoplace.panorama.project import PanoramaProjector, read_image
from panoplace.scene import demo_scene_block, world_scene_model
from panoplace.steps import cluster, evaluate, extract, scene_predict
from panoplace.steps.resolve import pipeline_config, place_model
from panoplace.store import DescriptorSet
from panoplace.synth import WorldConfig, build_world, default_traversals, render_world

log = logging.getLogger(__name__)
PathLike = Union[str, Path]

MAP = "day"
QUERY_CONDITIONS = ("day2", "dusk", "night", "fog")
SEQUENCE_MATCHER = "hmm"


@dataclass
class DemoConfig:
    """What the demo builds and runs (defaults finish in a few minutes on a 2-core CPU).

    frames: frames per drive; spacing_m: metres between frames; radius: ground-truth radius
    in metres; ds: sequence length of the sequence matcher in frames; enhance_window: database
    frames of the matcher's local contrast enhancement. At 5 m spacing neighbouring frames look
    alike, and a 10-frame window (SeqSLAM's usual) normalises the true match away against its
    neighbours: measured on the demo world (40 frames, seed 0), HMM R@1 day->dusk 0.70 with 10,
    1.00 with 40 (single frame 0.93).
    """

    seed: int = 0
    frames: int = 50
    spacing_m: float = 5.0
    conditions: Tuple[str, ...] = QUERY_CONDITIONS
    width: int = 1024
    height: int = 512
    projection: str = "equirect"
    crops: int = 4
    num_clusters: int = 32
    radius: float = 10.0
    ds: int = 10
    enhance_window: int = 40
    batch_size: int = 8
    workers: Optional[int] = None  # None = extract.default_workers()

    def __post_init__(self) -> None:
        if self.frames < 2 * self.ds:
            raise InputError(f"--frames must be at least twice the sequence length ({2 * self.ds}), got {self.frames}")
        if self.projection not in ("equirect", "annular"):
            raise InputError(f"the demo renders equirect or annular images, not {self.projection!r}")
        if not self.conditions:
            raise InputError("the demo needs at least one query condition")


@dataclass
class DemoResult:
    """Metrics by query drive and method, and where the report is."""

    out_dir: Path
    summary: Dict[str, Any] = field(default_factory=dict)
    table: str = ""


def _render(cfg: DemoConfig, world_dir: Path, progress: bool) -> Dict[str, Path]:
    world = build_world(WorldConfig(seed=cfg.seed))
    names = [MAP, *[c for c in cfg.conditions if c != MAP]]
    traversals = default_traversals(n_frames=cfg.frames, conditions=names, spacing_m=cfg.spacing_m, seed=cfg.seed)
    projections = ("equirect",) if cfg.projection == "equirect" else ("annular",)
    return render_world(world, traversals, world_dir, projections=projections, width=cfg.width,
                        height=cfg.height, progress=progress)




def raw_pixel_descriptors(root: Path, paths: Sequence[str], panorama: PanoramaConfig,
                          size: Tuple[int, int] = (64, 16)) -> np.ndarray:
    """The raw-pixel baseline: the panorama band in grey, ``size`` (w, h), patch-normalised.

    Returns:
        float32 ``(N, w*h)`` L2-normalised.
    """
    projector = PanoramaProjector(panorama)  # geometry parsed once
    out = []
    for p in paths:
        pano = projector.panorama(read_image(root / p))
        grey = cv2.cvtColor(cv2.resize(pano, size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        out.append(patch_normalise(grey, patch=8).ravel())
    d = np.stack(out).astype(np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def _as_set(descriptors: np.ndarray, images: ImageSet) -> DescriptorSet:
    """In-memory descriptors of a drive as a set the ``evaluate`` step aligns to the drive's frames."""
    return DescriptorSet(descriptors, list(images.paths))


def run_demo(out_dir: PathLike, cfg: Optional[DemoConfig] = None, progress: bool = True) -> DemoResult:
    """Run the whole pipeline and write the report folder ``out_dir`` (see the module doc)."""
    cfg = cfg or DemoConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: Dict[str, float] = {}

    log.info("1/4 rendering the world: %d frames per drive, map '%s', queries %s",
             cfg.frames, MAP, list(cfg.conditions))
    csvs = _render(cfg, out / "world", progress)
    sets = {name: load_csv(path) for name, path in csvs.items()}
    timings["render"] = time.perf_counter() - t0

    log.info("2/4 NetVLAD initialised by k-means on the map drive")
    t = time.perf_counter()
    db = sets[MAP]
    # the preset of the projection (equirect/annular) with the demo's crops and clusters; an annular
    # lens is calibrated once, on the map drive (night drives are too dark to calibrate on)
    netvlad_cfg = pipeline_config(cfg.projection, panorama_overrides={"n_crops": cfg.crops},
                                  model_overrides={"num_clusters": cfg.num_clusters})
    panorama = calibrate_panorama(netvlad_cfg.panorama, Path(db.root), db.paths)
    netvlad_cfg.panorama = panorama
    kw: Dict[str, Any] = dict(batch_size=cfg.batch_size, num_workers=cfg.workers, progress=progress)
    ckpt = cluster(db, out / "model_netvlad.pt", pipeline=netvlad_cfg, n_images=len(db), per_image=200,
                   seed=cfg.seed, **kw)
    netvlad, _ = place_model(ckpt, panorama=panorama)
    gem, _ = place_model(preset=f"{cfg.projection}-gem", panorama=panorama)
    timings["cluster"] = time.perf_counter() - t

    log.info("3/4 descriptors of %d drives (NetVLAD, GeM, raw pixels)", len(sets))
    t = time.perf_counter()
    descs: Dict[str, Dict[str, np.ndarray]] = {}
    # (scene) the GeM model with a scene branch on its base: one pass gives the GeM descriptors and
    # the pooled per-crop features the scene head is trained on (panoplace.scene)
    gem_scene = world_scene_model(gem)
    scene_features: Dict[str, np.ndarray] = {}
    for name, s in sets.items():
        gem_pass = scene_predict(s, model=gem_scene, panorama=panorama, return_features=True, **kw)
        if gem_pass.features is None:  # asked for with return_features
            raise RuntimeError("the scene pass returned no features")
        scene_features[name] = gem_pass.features
        descs[name] = {
            "NetVLAD": extract(s, out / "descriptors" / f"{name}.h5", model=netvlad, panorama=panorama,
                               **kw).descriptors.descriptors,
            "GeM": gem_pass.descriptors.descriptors,
            "raw pixels": raw_pixel_descriptors(Path(s.root), s.paths, panorama),
        }
    timings["extract"] = time.perf_counter() - t

    # --- scene recognition: a head on the map drive's scene labels, predictions and scene
    # re-ranking for every query drive (categories: procedural-world)
    t = time.perf_counter()
    scene = demo_scene_block(sets, MAP, [c for c in cfg.conditions if c != MAP] or [MAP], scene_features,
                             {n: d["NetVLAD"] for n, d in descs.items()}, radius=cfg.radius, seed=cfg.seed)
    timings["scene"] = time.perf_counter() - t
    # --- end of scene recognition

    log.info("4/4 matching and evaluation (ground truth: within %.0f m)", cfg.radius)
    t = time.perf_counter()
    summary: Dict[str, Any] = {"map": MAP, "radius_m": cfg.radius, "frames": cfg.frames,
                               "config": {k: (list(v) if isinstance(v, tuple) else v)
                                          for k, v in cfg.__dict__.items()},
                               "pipeline": netvlad_cfg.to_dict(), "results": {}}
    rows: List[Tuple[str, str, Dict[str, Any]]] = []
    reports = []
    drives = []
    for name in [c for c in cfg.conditions if c != MAP] or [MAP]:
        q = sets[name]
        gt = GroundTruth.from_positions(db.require_positions("the demo"), q.require_positions("the demo"),
                                        radius=cfg.radius)
        data = Dataset(db, q, gt, radius=cfg.radius)
        results: Dict[str, EvaluationResult] = {}
        for method in ("raw pixels", "GeM", "NetVLAD"):
            results[method] = evaluate(_as_set(descs[name][method], q), _as_set(descs[MAP][method], db), data)
        main_name = f"NetVLAD + {SEQUENCE_MATCHER} (ds={cfg.ds})"
        results[main_name] = evaluate(_as_set(descs[name]["NetVLAD"], q), _as_set(descs[MAP]["NetVLAD"], db), data,
                                      matcher=SEQUENCE_MATCHER, ds=cfg.ds,
                                      matcher_options={"enhance_window": cfg.enhance_window})
        pair = f"{MAP}->{name}"
        summary["results"][pair] = {m: r.to_json() for m, r in results.items()}
        for m, r in results.items():
            rows.append((pair, m, r.to_json()))
        others = {m: r for m, r in results.items() if m != main_name}
        page = write_report(out / "reports" / name, results[main_name], others=others, query_xy=q.xy,
                            db_xy=db.xy, query_paths=q.abs_paths(), db_paths=db.abs_paths(),
                            title=f"panoplace demo: {MAP} map, {name} queries")
        reports.append((pair, page.relative_to(out)))
        drives.append(Drive(name, {main_name: results[main_name], **others}, q.xy, q.abs_paths()))
    if len(drives) > 1:
        page = write_drives_report(out / "reports" / "all", drives, db_xy=db.xy, db_paths=db.abs_paths(),
                                   title=f"panoplace demo: {MAP} map, every query drive side by side")
        reports.append(("all drives side by side", page.relative_to(out)))
    timings["evaluate"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    summary["seconds"] = {k: round(v, 1) for k, v in timings.items()}
    summary["scene"] = scene.summary
    table = format_table(rows) + "\n\n" + scene.table
    summary["table"] = table.splitlines()
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2, default=_json_default) + "\n")
    write_text_atomic(out / "index.html", _index_html(reports, table, summary["seconds"]))
    return DemoResult(out, summary, table)


def format_table(rows: Sequence[Tuple[str, str, Dict[str, Any]]]) -> str:
    """A plain-text table: condition pair, method, R@1/5/10, PR-AUC."""
    head = f"{'map -> queries':<16}{'method':<28}{'R@1':>7}{'R@5':>7}{'R@10':>7}{'PR-AUC':>8}"
    lines = [head, "-" * len(head)]
    def num(v: Optional[float], width: int) -> str:
        return f"{v:>{width}.3f}" if v is not None else f"{'n/a':>{width}}"

    for pair, method, js in rows:
        r = js["recall"]
        lines.append(f"{pair:<16}{method:<28}{num(r.get('1'), 7)}{num(r.get('5'), 7)}"
                     f"{num(r.get('10'), 7)}{num(js.get('pr_auc'), 8)}")
    return "\n".join(lines)


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _index_html(reports: Sequence[Tuple[str, Path]], table: str, seconds: Dict[str, float]) -> str:
    links = "\n".join(f'<li><a href="{p.as_posix()}">{html.escape(pair)}</a></li>' for pair, p in reports)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>panoplace demo</title>"
        "<style>body{font-family:sans-serif;margin:2em} pre{background:#f4f4f4;padding:1em}</style>"
        "</head><body><h1>panoplace demo</h1>"
        "<p>A procedural town driven several times; the day drive is the map, the others are "
        "queries. Each report shows the PR curve, Recall@N, the trajectory map and a gallery of "
        "query | best match pairs.</p>"
        f"<ul>{links}</ul><h2>Recall and PR-AUC</h2><pre>{html.escape(table)}</pre>"
        f"<p>Seconds: {html.escape(json.dumps(seconds))}</p>"
        "<p>Files: <a href='summary.json'>summary.json</a>, descriptor stores in "
        "<code>descriptors/</code>, the NetVLAD model in <code>model_netvlad.pt</code>, the "
        "rendered world in <code>world/</code>.</p></body></html>\n"
    )

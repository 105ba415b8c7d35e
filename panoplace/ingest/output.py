"""The folder an ingest writes: images, ``frames.csv``, ``skipped.csv`` and ``ingest.json``.

Layout::

    OUT/images/<name>.jpg   one image per kept frame or photo (written atomically)
    OUT/frames.csv          panoplace CSV: image,lat,lon[,heading],timestamp,sequence[,condition]
    OUT/skipped.csv         source,frame,time,reason: every frame/photo left out and why
    OUT/ingest.json         the inputs and parameters (a rerun with the same ones resumes)

Resuming: images already in ``OUT/images`` are kept (not decoded or written again) when
``ingest.json`` holds the same parameters; a folder made with other inputs or parameters is
refused. The CSVs are written last, so a killed run leaves no CSV that lists missing images.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from panoplace.atomic import write_text_atomic
from panoplace.data.frames import ImageSet, write_csv
from panoplace.errors import InputError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class Skipped:
    """One frame or photo left out: its source file, frame index (-1 for photos), time, reason."""

    source: str
    frame: int
    time: float
    reason: str


@dataclass
class IngestResult:
    """What an ingest wrote.

    frames_csv: path of ``frames.csv``; images: the kept images (relative to OUT);
    skipped: frames/photos left out with the reason; reused: images kept from an earlier run.
    """

    frames_csv: Path
    images: List[str]
    skipped: List[Skipped] = field(default_factory=list)
    reused: int = 0


class IngestFolder:
    """An ingest output folder: checks/writes ``ingest.json``, names images, writes the CSVs."""

    def __init__(self, out_dir: Path, params: Dict[str, Any], inputs: Sequence[Path]) -> None:
        self.root = Path(out_dir)
        self.images = self.root / "images"
        out = self.root.resolve()
        for p in inputs:
            rp = Path(p).resolve()
            if rp == out or out in rp.parents:
                raise InputError(f"the output folder {self.root} holds the input {p}; choose another output folder")
        self.params = {"format_version": FORMAT_VERSION, **params}
        meta = self.root / "ingest.json"
        if meta.exists():
            try:
                old = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read {meta}: {exc}") from None
            if old != json.loads(json.dumps(self.params)):
                raise InputError(f"{self.root} holds an ingest of other inputs or parameters "
                                 f"(see {meta.name}); use a new output folder")
            log.info("resuming the ingest in %s", self.root)
        elif self.root.exists() and any(self.root.iterdir()):
            raise InputError(f"output folder {self.root} is not empty and holds no ingest.json; use a new folder")
        self.images.mkdir(parents=True, exist_ok=True)
        write_text_atomic(meta, json.dumps(self.params, indent=2, sort_keys=True) + "\n")

    def image_path(self, name: str) -> Path:
        return self.images / name

    def finish(self, names: List[str], latlon: np.ndarray, timestamp: np.ndarray,
               heading: Optional[np.ndarray], sequence: List[str], condition: Optional[str],
               skipped: List[Skipped], reused: int) -> IngestResult:
        """Write ``frames.csv`` and ``skipped.csv``; returns the result."""
        if not names:
            if not skipped:
                raise InputError("nothing to ingest: no frame was selected")
            self.write_skipped(skipped)
            raise InputError(f"no frame has a position: all {len(skipped)} left out (first: {skipped[0].reason}); "
                             f"see {self.root / 'skipped.csv'}")
        rel = [f"images/{n}" for n in names]
        cond = [condition] * len(names) if condition else None
        frames = ImageSet(self.root.name, self.root, rel, latlon=np.asarray(latlon), heading=heading,
                          timestamp=np.asarray(timestamp), sequence=sequence, condition=cond)
        path = write_csv(frames, self.root / "frames.csv")
        self.write_skipped(skipped)
        if skipped:
            log.warning("%d frame(s) left out (no position); listed in %s", len(skipped), self.root / "skipped.csv")
        log.info("%d frames written to %s (%d kept from an earlier run)", len(names), path, reused)
        return IngestResult(path, rel, skipped, reused)

    def write_skipped(self, skipped: List[Skipped]) -> Path:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["source", "frame", "time", "reason"])
        for s in skipped:
            w.writerow([s.source, s.frame, "" if not np.isfinite(s.time) else repr(float(s.time)), s.reason])
        return write_text_atomic(self.root / "skipped.csv", buf.getvalue())

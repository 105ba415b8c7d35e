"""GPS tracks: GPX files, NMEA logs and CSVs of ``time,lat,lon``, and positions at given times.

A :class:`Track` is a time-ordered list of fixes (seconds since the Unix epoch, UTC, or any
other clock the user states, and WGS84 lat/lon). :meth:`Track.positions_at` interpolates the
position at each requested time linearly between the two fixes around it; a time before the
first fix, after the last one, or inside a gap between fixes longer than ``max_gap_s`` has no
position (it is reported by the caller and left out, never extrapolated).

Readers (all parse text only; nothing in a file is ever executed or resolved):

- :func:`read_gpx`: ``<trkpt lat= lon=><time>`` (and ``<rtept>``/``<wpt>`` with a time), parsed
  with :mod:`defusedxml` (no entities, no external references);
- :func:`read_nmea`: ``$..RMC`` (date, time, position, status ``A``) and ``$..GGA`` (time,
  position, fix quality > 0; the date comes from the RMC sentences before it); sentences with
  a wrong ``*hh`` checksum are skipped;
- :func:`read_track_csv`: a header with ``time`` (or ``timestamp``), ``lat``, ``lon``; times are
  seconds (any epoch) or ISO 8601 date-times (UTC unless they carry an offset).

:func:`load_track` picks the reader by extension (``.gpx``, ``.nmea``/``.nma``/``.log``/``.txt``,
``.csv``).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException
from numpy.typing import ArrayLike

from panoplace.errors import InputError

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
EARTH_RADIUS_M = 6371008.8
DEFAULT_MAX_GAP_S = 10.0
NMEA_EXTENSIONS = (".nmea", ".nma", ".log", ".txt")

__all__ = ["Track", "load_track", "read_gpx", "read_nmea", "read_track_csv", "parse_time",
           "DEFAULT_MAX_GAP_S", "haversine_m"]


def parse_time(text: str, where: str = "") -> float:
    """Seconds since the Unix epoch of a number (returned as is) or an ISO 8601 date-time.

    A date-time without a zone is taken as UTC; ``Z`` and ``+hh:mm`` offsets are honoured.
    Raises :class:`InputError` naming ``where`` when it is neither.
    """
    s = str(text).strip()
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(value):
            raise InputError(f"{where}: time {s!r} is not finite")
        return value
    iso = s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s
    try:
        t = dt.datetime.fromisoformat(iso)
    except ValueError:
        raise InputError(f"{where}: cannot read time {s!r} (seconds or ISO 8601 like 2024-05-01T10:00:00Z)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def haversine_m(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> np.ndarray:
    """Great-circle distance in metres between points given in degrees (broadcasting)."""
    p1, p2 = np.radians(np.asarray(lat1, np.float64)), np.radians(np.asarray(lat2, np.float64))
    dphi = p2 - p1
    dl = np.radians(np.asarray(lon2, np.float64) - np.asarray(lon1, np.float64))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2.0 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@dataclass
class Track:
    """Time-ordered GPS fixes.

    time: ``(N,)`` float64 seconds, strictly increasing (duplicates are dropped on load).
    latlon: ``(N, 2)`` float64 WGS84 degrees.
    source: where the fixes came from (for messages).
    """

    time: np.ndarray
    latlon: np.ndarray
    source: str = "track"

    def __post_init__(self) -> None:
        t = np.asarray(self.time, dtype=np.float64).reshape(-1)
        ll = np.asarray(self.latlon, dtype=np.float64).reshape(-1, 2)
        if len(t) != len(ll):
            raise InputError(f"{self.source}: {len(t)} times for {len(ll)} positions")
        if len(t) == 0:
            raise InputError(f"{self.source}: the track has no fixes")
        bad = ~np.isfinite(ll).all(axis=1) | (np.abs(ll[:, 0]) > 90) | (np.abs(ll[:, 1]) > 180) | ~np.isfinite(t)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{self.source}: fix {i + 1} has an invalid time or lat/lon ({t[i]}, {tuple(ll[i])})")
        order = np.argsort(t, kind="stable")
        t, ll = t[order], ll[order]
        keep = np.ones(len(t), dtype=bool)
        keep[1:] = np.diff(t) > 0
        if not keep.all():
            log.warning("%s: %d fixes with a repeated time dropped", self.source, int((~keep).sum()))
        self.time, self.latlon = t[keep], ll[keep]

    def __len__(self) -> int:
        return len(self.time)

    @property
    def span(self) -> Tuple[float, float]:
        """(first, last) fix time."""
        return float(self.time[0]), float(self.time[-1])

    def positions_at(self, times: np.ndarray, max_gap_s: Optional[float] = DEFAULT_MAX_GAP_S) -> Tuple[np.ndarray, np.ndarray]:
        """Linearly interpolated positions at ``times``.

        A time that equals a fix gets that fix; a time between two fixes gets the point on the
        straight lat/lon segment between them (longitude unwrapped across ±180°), provided the
        two fixes are at most ``max_gap_s`` apart (None: any gap). Times outside the track or
        in a longer gap get NaN and ``inside`` False.

        Shape: ``times`` ``(M,)`` → ``latlon`` ``(M, 2)`` float64, ``inside`` ``(M,)`` bool.
        """
        q = np.asarray(times, dtype=np.float64).reshape(-1)
        t, ll = self.time, self.latlon
        out = np.full((len(q), 2), np.nan)
        inside = np.isfinite(q) & (q >= t[0]) & (q <= t[-1])
        if len(t) == 1:
            inside &= q == t[0]
            out[inside] = ll[0]
            return out, inside
        j = np.clip(np.searchsorted(t, q, side="right") - 1, 0, len(t) - 2)  # segment t[j]..t[j+1]
        t0, t1 = t[j], t[j + 1]
        exact = q == t0
        if max_gap_s is not None:
            inside &= exact | ((t1 - t0) <= max_gap_s) | (q == t1)
        w = np.where(inside, (q - t0) / (t1 - t0), 0.0)
        lat = ll[j, 0] + w * (ll[j + 1, 0] - ll[j, 0])
        dlon = (ll[j + 1, 1] - ll[j, 1] + 180.0) % 360.0 - 180.0
        lon = (ll[j, 1] + w * dlon + 180.0) % 360.0 - 180.0
        out[inside, 0] = lat[inside]
        out[inside, 1] = lon[inside]
        return out, inside


# --- GPX --------------------------------------------------------------------------------------

def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def read_gpx(path: PathLike) -> Track:
    """Fixes of a GPX file: every ``trkpt`` (else ``rtept``/``wpt``) that has a ``<time>``.

    Points without a time are skipped with a warning. Raises :class:`InputError` on a file
    that is not well-formed XML, uses entities/DTDs, or has no timed point.
    """
    path = Path(path)
    try:
        root = SafeET.parse(str(path)).getroot()
    except OSError as exc:
        raise InputError(f"cannot read GPX file {path}: {exc.strerror or exc}") from None
    except DefusedXmlException as exc:
        raise InputError(f"{path}: refused GPX with DTD/entity declarations ({type(exc).__name__})") from None
    except SafeET.ParseError as exc:
        raise InputError(f"{path}: not a valid GPX (XML) file: {exc}") from None
    if _local(root.tag) != "gpx":
        raise InputError(f"{path}: not a GPX file (root element <{_local(root.tag)}>)")
    times: List[float] = []
    latlon: List[Tuple[float, float]] = []
    untimed = 0
    for kind in ("trkpt", "rtept", "wpt"):
        for el in root.iter():
            if _local(el.tag) != kind:
                continue
            t_el = next((c for c in el if _local(c.tag) == "time"), None)
            if t_el is None or not (t_el.text or "").strip():
                untimed += 1
                continue
            where = f"{path} <{kind}> {len(times) + untimed + 1}"
            try:
                lat, lon = float(el.attrib["lat"]), float(el.attrib["lon"])
            except (KeyError, ValueError):
                raise InputError(f"{where}: missing or non-numeric lat/lon attributes") from None
            times.append(parse_time(t_el.text or "", where))
            latlon.append((lat, lon))
        if times:
            break
    if untimed:
        log.warning("%s: %d points without <time> skipped", path, untimed)
    if not times:
        raise InputError(f"{path}: no track point with a <time> (a GPX track needs timestamps)")
    return Track(np.array(times), np.array(latlon), source=str(path))


# --- NMEA -------------------------------------------------------------------------------------

_NMEA_RE = re.compile(r"\$([A-Z]{2})([A-Z]{3}),([^*]*)\*([0-9A-Fa-f]{2})")


def _nmea_coord(value: str, hemi: str, deg_digits: int) -> float:
    if len(value) < deg_digits + 2 or hemi not in ("N", "S", "E", "W"):
        raise ValueError(value)
    deg = float(value[:deg_digits]) + float(value[deg_digits:]) / 60.0
    return -deg if hemi in ("S", "W") else deg


def _nmea_seconds(hhmmss: str) -> float:
    if len(hhmmss) < 6:
        raise ValueError(hhmmss)
    h, m, s = int(hhmmss[0:2]), int(hhmmss[2:4]), float(hhmmss[4:])
    if h > 23 or m > 59 or s >= 61:
        raise ValueError(hhmmss)
    return h * 3600 + m * 60 + s


def _nmea_date(ddmmyy: str) -> dt.date:
    d, m, y = int(ddmmyy[0:2]), int(ddmmyy[2:4]), int(ddmmyy[4:6])
    return dt.date(2000 + y if y < 80 else 1900 + y, m, d)


def read_nmea(path: PathLike) -> Track:
    """Fixes of an NMEA 0183 log (RMC with status A; GGA with fix quality > 0).

    GGA carries no date: it is dated by the latest RMC before it (a GGA whose time of day is
    smaller than that RMC's is taken to be on the next day). Sentences with a bad checksum or
    malformed fields are skipped and counted in a warning. Raises :class:`InputError` when
    no dated fix is found.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read NMEA log {path}: {exc.strerror or exc}") from None
    fixes: Dict[float, Tuple[float, float]] = {}
    date: Optional[dt.date] = None
    date_sod = 0.0
    bad = undated = 0
    for line in text.splitlines():
        m = _NMEA_RE.search(line)
        if not m:
            continue
        talker, kind, body, checksum = m.groups()
        calc = 0
        for ch in f"{talker}{kind},{body}":
            calc ^= ord(ch)
        if calc != int(checksum, 16):
            bad += 1
            continue
        f = body.split(",")
        try:
            if kind == "RMC" and len(f) >= 9:
                if f[1] != "A":
                    continue
                sod = _nmea_seconds(f[0])
                date, date_sod = _nmea_date(f[8]), sod
                lat, lon = _nmea_coord(f[2], f[3], 2), _nmea_coord(f[4], f[5], 3)
            elif kind == "GGA" and len(f) >= 6:
                if not f[5].isdigit() or int(f[5]) == 0:
                    continue
                sod = _nmea_seconds(f[0])
                lat, lon = _nmea_coord(f[1], f[2], 2), _nmea_coord(f[3], f[4], 3)
                if date is None:
                    undated += 1
                    continue
            else:
                continue
        except ValueError:
            bad += 1
            continue
        day = date + dt.timedelta(days=1) if (kind == "GGA" and sod < date_sod - 43200) else date
        epoch = dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp() + sod
        fixes[epoch] = (lat, lon)
    if bad:
        log.warning("%s: %d NMEA sentences with a bad checksum or malformed fields skipped", path, bad)
    if undated:
        log.warning("%s: %d GGA fixes before the first RMC (no date) skipped", path, undated)
    if not fixes:
        raise InputError(f"{path}: no valid dated NMEA fix (needs $..RMC sentences with status A)")
    times = np.array(sorted(fixes))
    return Track(times, np.array([fixes[t] for t in times]), source=str(path))


# --- CSV --------------------------------------------------------------------------------------

def read_track_csv(path: PathLike) -> Track:
    """Fixes of a CSV with a header holding ``time`` (or ``timestamp``), ``lat`` and ``lon``."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read track CSV {path}: {exc}") from None
    tcol = "time" if "time" in header else "timestamp" if "timestamp" in header else None
    if tcol is None or "lat" not in header or "lon" not in header:
        raise InputError(f"{path}: a track CSV needs columns time (or timestamp), lat, lon; found {header}")
    times, latlon = [], []
    for i, row in enumerate(rows):
        where = f"{path} row {i + 2}"
        times.append(parse_time(row.get(tcol) or "", where))
        try:
            latlon.append((float(row.get("lat") or ""), float(row.get("lon") or "")))
        except ValueError:
            raise InputError(f"{where}: lat/lon are not numbers ({row.get('lat')!r}, {row.get('lon')!r})") from None
    if not times:
        raise InputError(f"{path}: the track CSV has no rows")
    return Track(np.array(times), np.array(latlon), source=str(path))


def load_track(path: PathLike) -> Track:
    """Read a GPX, NMEA or CSV track, chosen by the file extension."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"track file not found: {path}")
    ext = path.suffix.lower()
    if ext == ".gpx":
        track = read_gpx(path)
    elif ext in NMEA_EXTENSIONS:
        track = read_nmea(path)
    elif ext == ".csv":
        track = read_track_csv(path)
    else:
        raise InputError(f"unknown track format {ext or '(no extension)'} for {path}: "
                         f"use .gpx, .csv (time,lat,lon) or an NMEA log ({', '.join(NMEA_EXTENSIONS)})")
    log.info("%s: %d fixes over %.1f s", path.name, len(track), track.span[1] - track.span[0])
    return track

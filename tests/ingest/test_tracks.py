"""GPS tracks: GPX (defusedxml), NMEA (checksums, dates), CSV, and interpolation at times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from panoplace.errors import InputError
from panoplace.ingest.tracks import Track, load_track, parse_time
from tests.ingest.conftest import LAT0, LON0, T0, write_gpx


def _nmea(body: str) -> str:
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"${body}*{c:02X}"


def test_interpolation_inside_outside_and_gaps() -> None:
    tr = Track([10.0, 11.0, 20.0], [(0.0, 179.9), (1.0, -179.9), (3.0, -179.9)])
    ll, inside = tr.positions_at(np.array([9.9, 10.0, 10.25, 11.0, 15.0, 20.0, 20.1]), max_gap_s=5.0)
    assert inside.tolist() == [False, True, True, True, False, True, False]
    np.testing.assert_allclose(ll[2], [0.25, 179.95])  # across the antimeridian, not the long way round
    np.testing.assert_allclose(ll[3], [1.0, -179.9])
    assert np.isnan(ll[0]).all() and np.isnan(ll[4]).all()
    ll, inside = tr.positions_at(np.array([15.5]), max_gap_s=None)
    assert inside[0] and ll[0, 0] == pytest.approx(2.0)


def test_gpx_reads_timed_points(tmp_path: Path) -> None:
    p = write_gpx(tmp_path / "t.gpx", [T0 + 1, T0], [(LAT0 + 1e-4, LON0), (LAT0, LON0)])
    tr = load_track(p)
    assert tr.time.tolist() == [T0, T0 + 1]  # sorted by time
    np.testing.assert_allclose(tr.latlon[1], [LAT0 + 1e-4, LON0])


def test_gpx_with_entities_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "xxe.gpx"
    p.write_text('<?xml version="1.0"?><!DOCTYPE gpx [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                 '<gpx><trk><trkseg><trkpt lat="1" lon="2"><time>&x;</time></trkpt></trkseg></trk></gpx>')
    with pytest.raises(InputError, match="refused"):
        load_track(p)


def test_nmea_rmc_gga_checksums_and_midnight(tmp_path: Path) -> None:
    lines = [
        _nmea("GPRMC,235959.00,A,4807.0380,N,01134.5000,E,0.0,0.0,010524,,,A"),
        _nmea("GPGGA,235959.50,4807.0390,N,01134.5000,E,1,08,0.9,545.4,M,46.9,M,,"),
        _nmea("GPGGA,000000.00,4807.0400,S,01134.5000,W,1,08,0.9,545.4,M,46.9,M,,"),
        _nmea("GPGGA,000001.00,4807.0410,N,01134.5000,E,0,00,,,M,,M,,"),  # no fix
        "$GPGGA,000002.00,4807.0420,N,01134.5000,E,1,08,0.9,545.4,M,46.9,M,,*00",  # bad checksum
        "garbage line",
    ]
    p = tmp_path / "log.nmea"
    p.write_text("\r\n".join(lines) + "\r\n")
    tr = load_track(p)
    t_day = parse_time("2024-05-01T23:59:59Z")
    np.testing.assert_allclose(tr.time, [t_day, t_day + 0.5, t_day + 1.0])  # GGA after midnight: next day
    np.testing.assert_allclose(tr.latlon[0], [48 + 7.038 / 60, 11 + 34.5 / 60])
    np.testing.assert_allclose(tr.latlon[2], [-(48 + 7.04 / 60), -(11 + 34.5 / 60)])


def test_csv_track_iso_and_seconds(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("time,lat,lon\n2024-05-01T10:00:00+02:00,1.0,2.0\n2024-05-01T08:00:01Z,1.5,2.5\n")
    tr = load_track(p)
    assert tr.time.tolist() == [parse_time("2024-05-01T08:00:00Z"), parse_time("2024-05-01T08:00:01Z")]
    q = tmp_path / "s.csv"
    q.write_text("timestamp,lat,lon\n0.0,1,2\n2.0,3,2\n")
    assert load_track(q).positions_at(np.array([1.0]))[0][0, 0] == pytest.approx(2.0)


@pytest.mark.parametrize("name,text,match", [
    ("a.csv", "t,lat,lon\n1,2,3\n", "needs columns"),
    ("b.csv", "time,lat,lon\nnoon,2,3\n", "cannot read time"),
    ("c.csv", "time,lat,lon\n1,200,3\n", "invalid"),
    ("d.gpx", "<gpx><trk><trkseg><trkpt lat='1' lon='2'/></trkseg></trk></gpx>", "no track point"),
    ("e.gpx", "<gpx><trk>", "not a valid GPX"),
    ("f.nmea", "$GPGGA,1*00\n", "no valid dated NMEA fix"),
    ("g.kml", "<kml/>", "unknown track format"),
])
def test_bad_tracks_give_one_clear_error(tmp_path: Path, name: str, text: str, match: str) -> None:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(InputError, match=match):
        load_track(p)

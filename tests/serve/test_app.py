"""API contract of ``panoplace serve`` (FastAPI TestClient on the tiny map)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List

import numpy as np
import pytest
from fastapi.testclient import TestClient

from panoplace.data.frames import load_csv
from panoplace.serve.app import HttpOptions, create_app
from panoplace.serve.service import LocalisationService

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def client(service: LocalisationService):
    with TestClient(create_app(service)) as c:
        yield c


def test_localize_raw_and_multipart_agree_and_find_the_place(client: TestClient, query_images: List[Path],
                                                             tiny_world: Path) -> None:
    dusk = load_csv(tiny_world / "dusk" / "frames.csv")
    data = query_images[5].read_bytes()
    raw = client.post("/v1/localize?k=4", content=data, headers={"Content-Type": "image/jpeg"})
    form = client.post("/v1/localize?k=4", files={"image": ("q.jpg", data, "image/jpeg")})
    assert raw.status_code == form.status_code == 200
    a, b = raw.json(), form.json()
    assert [c["index"] for c in a["candidates"]] == [c["index"] for c in b["candidates"]]
    assert len(a["candidates"]) == 4 and [c["rank"] for c in a["candidates"]] == [1, 2, 3, 4]
    scores = [c["score"] for c in a["candidates"]]
    assert scores == sorted(scores, reverse=True)
    best = a["candidates"][0]
    for key in ("id", "index", "x", "y", "lat", "lon", "score", "heading_deg", "relative_heading_deg"):
        assert key in best
    assert a["position"] == {k: best[k] for k in ("x", "y", "lat", "lon")}
    assert a["confidence"] >= 0
    # the dusk frame was taken within ~10 m of its best day match (same route, 5 m spacing)
    q_xy = dusk.xy[5]
    assert np.hypot(best["x"] - q_xy[0], best["y"] - q_xy[1]) < 15.0
    # per-crop map: a heading = the map frame's heading + the relative heading
    assert best["heading_deg"] == pytest.approx(
        ((best["map_heading_deg"] + best["relative_heading_deg"] + 180) % 360) - 180)


def test_default_k_and_png_uploads(client: TestClient, query_images: List[Path]) -> None:
    import cv2

    img = cv2.imread(str(query_images[2]))
    ok, png = cv2.imencode(".png", img)
    r = client.post("/v1/localize", content=png.tobytes(), headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and len(r.json()["candidates"]) == 3  # the service's default k


@pytest.mark.parametrize("body,status,words", [
    (b"", 400, "empty body"),
    (b"GIF89a" + b"\0" * 50, 415, "not a JPEG or PNG"),
    (b"\xff\xd8\xff\xe0" + b"\0" * 10, 400, "truncated"),
])
def test_bad_uploads_get_clear_4xx_json(client: TestClient, body: bytes, status: int, words: str) -> None:
    r = client.post("/v1/localize", content=body, headers={"Content-Type": "image/jpeg"})
    assert r.status_code == status
    assert words in r.json()["error"]


def test_truncated_jpeg_and_wrong_multipart_field(client: TestClient, query_images: List[Path]) -> None:
    data = query_images[0].read_bytes()
    r = client.post("/v1/localize", content=data[: len(data) * 2 // 3])
    assert r.status_code == 400 and "truncated" in r.json()["error"]
    r = client.post("/v1/localize", files={"picture": ("q.jpg", data, "image/jpeg")})
    assert r.status_code == 400 and "'image'" in r.json()["error"]
    r = client.post("/v1/localize?k=0", content=data)
    assert r.status_code == 422 and "k" in r.json()["error"]


def test_oversized_uploads_get_413(service: LocalisationService, query_images: List[Path]) -> None:
    with TestClient(create_app(service, HttpOptions(max_upload_bytes=4096))) as c:
        data = query_images[0].read_bytes()
        assert len(data) > 4096
        r = c.post("/v1/localize", content=data)
        assert r.status_code == 413 and "4096 bytes" in r.json()["error"]

        def chunks():  # no Content-Length: the limit holds while reading
            for i in range(0, len(data), 1000):
                yield data[i:i + 1000]

        r = c.post("/v1/localize", content=chunks())
        assert r.status_code == 413


def test_bearer_token_protects_the_api_but_not_health_or_page(service: LocalisationService,
                                                              query_images: List[Path]) -> None:
    with TestClient(create_app(service, HttpOptions(token=TOKEN))) as c:
        data = query_images[0].read_bytes()
        for headers in ({}, {"Authorization": "Bearer wrong-token-123"}, {"Authorization": TOKEN}):
            r = c.post("/v1/localize", content=data, headers=headers)
            assert r.status_code == 401 and "bearer token" in r.json()["error"]
        assert c.get("/v1/map").status_code == 401
        assert c.get("/metrics").status_code == 401
        assert c.post("/v1/localize", content=data, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert c.get("/healthz").status_code == 200
        assert c.get("/").status_code == 200


def test_map_geojson_thumbnails_health_and_no_file_paths(client: TestClient, tiny_map: Path) -> None:
    g = client.get("/v1/map")
    assert g.status_code == 200 and g.headers["content-type"].startswith("application/geo+json")
    fc = g.json()
    assert fc["type"] == "FeatureCollection" and fc["coordinates"].startswith("lon/lat")
    line = fc["features"][0]
    assert line["geometry"]["type"] == "LineString" and len(line["geometry"]["coordinates"]) == 12
    frames = load_csv(tiny_map / "frames.csv")
    lon, lat = line["geometry"]["coordinates"][4]
    assert (lat, lon) == pytest.approx(tuple(frames.latlon[4]))
    points = fc["features"][1:]
    assert [p["properties"]["index"] for p in points] == list(range(12))
    t = client.get("/v1/frames/4/thumbnail")
    assert t.status_code == 200 and t.content == (tiny_map / "thumbs" / "000004.jpg").read_bytes()
    assert client.get("/v1/frames/12/thumbnail").status_code == 404
    assert client.get("/v1/frames/-1/thumbnail").status_code == 422
    for path in ("/v1/frames/..%2Fmap.json/thumbnail", "/static/..%2F..%2Fmapfolder.py", "/static/index.html",
                 "/v1/frames/%2Fetc%2Fpasswd/thumbnail"):
        r = client.get(path)
        assert r.status_code in (404, 422) and "error" in r.json()
    h = client.get("/healthz").json()
    assert h["status"] == "ok" and h["frames"] == 12 and h["map"] == "map"


def test_metrics_count_requests_batches_and_queue(client: TestClient, query_images: List[Path]) -> None:
    data = query_images[1].read_bytes()
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda _: client.post("/v1/localize", content=data).status_code, range(6)))
    assert codes == [200] * 6
    client.post("/v1/localize", content=b"nope")
    text = client.get("/metrics").text
    assert 'panoplace_http_requests_total{route="/v1/localize",method="POST",status="200"} 6' in text
    assert 'panoplace_http_requests_total{route="/v1/localize",method="POST",status="415"} 1' in text
    assert 'panoplace_http_request_duration_seconds_count{route="/v1/localize"} 7' in text
    assert "panoplace_batch_size_count" in text and "panoplace_queue_depth 0" in text
    batches = float(text.split("panoplace_batch_size_count ")[1].split()[0])
    images = float(text.split("panoplace_batch_size_sum ")[1].split()[0])
    assert images == 6 and 1 <= batches <= 6


def test_cors_is_off_by_default_and_on_when_asked(service: LocalisationService) -> None:
    origin = {"Origin": "http://example.test"}
    with TestClient(create_app(service)) as c:
        assert "access-control-allow-origin" not in c.get("/healthz", headers=origin).headers
    with TestClient(create_app(service, HttpOptions(cors_origins=["http://example.test"]))) as c:
        assert c.get("/healthz", headers=origin).headers["access-control-allow-origin"] == "http://example.test"


def test_page_and_openapi(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text  # nothing loaded from elsewhere
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "https://" not in js.text and "http://" not in js.text
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would load a CDN's scripts
    spec = client.get("/openapi.json").json()
    assert {"/v1/localize", "/v1/sessions", "/v1/sessions/{session_id}/frames", "/v1/map", "/healthz",
            "/metrics"} <= set(spec["paths"])
    body = spec["paths"]["/v1/localize"]["post"]["requestBody"]["content"]
    assert {"image/jpeg", "image/png", "multipart/form-data"} <= set(body)





# ---- sessions (the online localiser of panoplace.matching.online) ------------------------------

def _play(c: TestClient, sid: str, images: List[Path]) -> List[dict]:
    out = []
    for p in images:
        r = c.post(f"/v1/sessions/{sid}/frames", content=p.read_bytes(), headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 200, r.text
        out.append(r.json())
    return out


def test_session_follows_a_moving_camera(client: TestClient, query_images: List[Path], tiny_world: Path) -> None:
    dusk = load_csv(tiny_world / "dusk" / "frames.csv")
    r = client.post("/v1/sessions")
    assert r.status_code == 201
    sid = r.json()["session_id"]
    estimates = _play(client, sid, query_images)
    assert [e["frame"] for e in estimates] == list(range(len(query_images)))
    for e in estimates:
        assert e["session_id"] == sid and 0.0 <= e["confidence"] <= 1.0 and e["candidates"]
        assert e["position"] == {k: e["position"][k] for k in ("x", "y", "lat", "lon")}
    rows = dusk.rows_for([p.relative_to(dusk.root).as_posix() for p in query_images])
    errors = [np.hypot(e["position"]["x"] - dusk.xy[r_, 0], e["position"]["y"] - dusk.xy[r_, 1])
              for e, r_ in zip(estimates, rows)]
    assert np.median(errors[len(errors) // 2:]) < 15.0  # once the window is full: within ~2 frames
    assert client.get(f"/v1/sessions/{sid}").json()["frames"] == len(query_images)
    assert client.delete(f"/v1/sessions/{sid}").status_code == 204
    r = client.post(f"/v1/sessions/{sid}/frames", content=query_images[0].read_bytes())
    assert r.status_code == 404 and "no open session" in r.json()["error"]
    assert client.get(f"/v1/sessions/{sid}").status_code == 404
    assert client.delete(f"/v1/sessions/{sid}").status_code == 404


def test_sessions_are_independent_when_interleaved(client: TestClient, query_images: List[Path]) -> None:
    frames = query_images[:6]
    alone = client.post("/v1/sessions").json()["session_id"]
    reference = _play(client, alone, frames)
    a = client.post("/v1/sessions").json()["session_id"]
    b = client.post("/v1/sessions").json()["session_id"]
    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(_play, client, a, frames)
        fb = pool.submit(_play, client, b, list(reversed(query_images)))
        got_a, got_b = fa.result(), fb.result()
    assert [e["candidates"] for e in got_a] == [e["candidates"] for e in reference]
    assert [e["confidence"] for e in got_a] == pytest.approx([e["confidence"] for e in reference])
    assert [e["frame"] for e in got_b] == list(range(len(query_images)))
    assert client.get("/healthz").json()["sessions"] == 3


def test_session_limits_expiry_and_bad_frames(service: LocalisationService, query_images: List[Path]) -> None:
    from panoplace.serve.sessions import SessionOptions

    now = [1000.0]  # the sessions' clock, moved by hand: expiry must not depend on the machine's load
    app = create_app(service, HttpOptions(sessions=SessionOptions(ttl_s=0.3, max_sessions=2)))
    app.state.sessions.clock = lambda: now[0]
    with TestClient(app) as c:
        s1 = c.post("/v1/sessions").json()["session_id"]
        c.post("/v1/sessions")
        r = c.post("/v1/sessions")
        assert r.status_code == 429 and "2 sessions are open" in r.json()["error"]
        r = c.post(f"/v1/sessions/{s1}/frames", content=b"\xff\xd8\xff\xe0 truncated")
        assert r.status_code == 400 and "truncated" in r.json()["error"]
        now[0] += 0.5
        r = c.post(f"/v1/sessions/{s1}/frames", content=query_images[0].read_bytes())
        assert r.status_code == 404 and "expired" in r.json()["error"]
        assert c.post("/v1/sessions").status_code == 201  # the idle ones made room
        assert "panoplace_sessions_expired_total 2" in c.get("/metrics").text

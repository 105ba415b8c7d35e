"""The HTTP API and web page of ``panoplace serve`` (FastAPI; the ``serve`` extra).

Endpoints (JSON unless said otherwise; OpenAPI spec at ``/openapi.json``):

- ``POST /v1/localize?k=5``: one image (raw JPEG/PNG body, or multipart field ``image``) ->
  top-k map frames with positions, scores, the confidence and the heading.
- ``POST /v1/sessions`` -> ``{"session_id"}``; ``POST /v1/sessions/{id}/frames`` (an image,
  frames in order) -> the online localiser's estimate; ``GET``/``DELETE /v1/sessions/{id}``.
- ``GET /v1/map`` (the trajectory as GeoJSON), ``GET /v1/frames/{index}/thumbnail`` (JPEG).
- ``GET /healthz``, ``GET /metrics`` (Prometheus text), ``GET /`` (the web page).

Every error is JSON ``{"error": MESSAGE}`` with a 4xx status (5xx only for a fault of the
server, without its details). With a token set, ``/v1/*`` and ``/metrics`` need
``Authorization: Bearer TOKEN``. No request names a file on the server: frames are addressed
by their index in the map.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Union

import numpy as np
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from panoplace import __version__
from panoplace.errors import InputError, PanoplaceError
from panoplace.matching.graph import MapGraph
from panoplace.matching.online import OnlineLocaliser, OnlineParams
from panoplace.serve.batcher import QueueFullError
from panoplace.serve.images import UploadError
from panoplace.serve.service import MAX_K, LocalisationService
from panoplace.serve.sessions import SessionNotFound, SessionOptions, SessionStore, TooManySessions

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD = 16 * 2 ** 20
STATIC_FILES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
# the page loads nothing from elsewhere: scripts, styles, images and requests stay on this server
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
IMAGE_BODY = {
    "required": True,
    "content": {
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
            "image": {"type": "string", "format": "binary", "description": "the JPEG or PNG image"}}}},
    },
}


@dataclass
class HttpOptions:
    """token: bearer token required on ``/v1/*`` and ``/metrics`` (None = no auth).
    max_upload_bytes: largest request body. cors_origins: origins allowed cross-origin
    requests (empty = CORS off). sessions: :class:`SessionOptions`."""

    token: Optional[str] = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD
    cors_origins: List[str] = field(default_factory=list)
    sessions: SessionOptions = field(default_factory=SessionOptions)

    def __post_init__(self) -> None:
        if int(self.max_upload_bytes) < 1024:
            raise InputError(f"the upload limit must be at least 1024 bytes, got {self.max_upload_bytes}")
        if self.token is not None and len(self.token) < 8:
            raise InputError("the bearer token must be at least 8 characters long")


# ---- response models (they make the OpenAPI spec) -------------------------------------------

class ErrorOut(BaseModel):
    error: str = Field(description="what was wrong, in one line")


class Position(BaseModel):
    x: float = Field(description="metres east in the map's frame (UTM or local)")
    y: float = Field(description="metres north in the map's frame")
    lat: Optional[float] = Field(None, description="WGS84 latitude, when the map has lat/lon")
    lon: Optional[float] = Field(None, description="WGS84 longitude, when the map has lat/lon")


class Candidate(Position):
    rank: int = Field(description="1 = best")
    index: int = Field(description="the map frame's index (row of the map's frames table)")
    id: str = Field(description="the map frame's image id")
    score: float = Field(description="similarity (cosine; best-shift crop similarity for per-crop maps)")
    heading_deg: Optional[float] = Field(None, description="estimated camera heading (map frame heading + relative)")
    relative_heading_deg: Optional[float] = Field(None, description="query heading minus the frame's (per-crop maps)")
    map_heading_deg: Optional[float] = Field(None, description="the map frame's heading")


class LocalizeOut(BaseModel):
    confidence: float = Field(description="score margin between the best match and the best different place")
    position: Optional[Position] = Field(None, description="position of the best candidate")
    heading_deg: Optional[float] = Field(None, description="camera heading from the best candidate")
    candidates: List[Candidate]
    timing_ms: Dict[str, float] = Field(default_factory=dict)


class SessionOut(BaseModel):
    session_id: str
    frames: int = Field(description="frames posted so far")
    ttl_s: float = Field(description="idle seconds after which the session is closed")


class EstimateOut(LocalizeOut):
    session_id: str
    frame: int = Field(description="frame number within the session (0-based)")
    index: Optional[int] = Field(None, description="the map frame the camera is at (None: no estimate)")
    relocalised: bool = Field(description="the localiser jumped to a new place with this frame")


class HealthOut(BaseModel):
    status: str
    version: str
    map: str
    frames: int
    sessions: int


# ---- the app ---------------------------------------------------------------------------------

def create_app(service: LocalisationService, options: Optional[HttpOptions] = None,
               localiser_factory: Optional[Callable[[], Any]] = None) -> FastAPI:
    """The FastAPI app serving ``service``.

    Args:
        localiser_factory: a fresh online localiser per session (default: the map's
            :class:`panoplace.matching.online.OnlineLocaliser`).
    """
    options = options or HttpOptions()
    if localiser_factory is None:
        localiser_factory = default_localiser_factory(service)
    metrics = service.metrics
    sessions = SessionStore(localiser_factory, options.sessions,
                            on_expire=lambda n: metrics.sessions_expired.inc(amount=n))
    service.sessions_count = lambda: float(len(sessions))

    async def sweep() -> None:
        while True:
            await asyncio.sleep(max(1.0, options.sessions.ttl_s / 4))
            sessions.expire()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(sweep())
        try:
            yield
        finally:
            task.cancel()

    # no /docs or /redoc: FastAPI's pages load their scripts from a CDN; the spec is /openapi.json
    app = FastAPI(title="panoplace", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Visual place recognition service: localise images and camera streams "
                              f"against the map '{service.map.name}' ({len(service.map)} frames).")
    app.state.service = service
    app.state.sessions = sessions
    errors: Dict[Union[int, str], Dict[str, Any]] = {
        s: {"model": ErrorOut} for s in (400, 401, 404, 413, 415, 422, 429, 501, 503)}
    if options.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(options.cors_origins),
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])

    # ---- errors: always JSON, never a traceback
    def err(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return err(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return err(422, f"invalid request: {where}: {first.get('msg', 'invalid value')}")

    @app.exception_handler(PanoplaceError)
    async def user_error(request: Request, exc: PanoplaceError) -> JSONResponse:
        status = 400
        if isinstance(exc, UploadError):
            status = exc.status
        elif isinstance(exc, SessionNotFound):
            status = 404
        elif isinstance(exc, TooManySessions):
            status = 429
        elif isinstance(exc, QueueFullError):
            status = 503

        return err(status, str(exc))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return err(500, "internal server error (see the server log)")

    # ---- metrics of every request
    @app.middleware("http")
    async def count(request: Request, call_next: Callable[..., Any]) -> Response:
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = getattr(request.scope.get("route"), "path", "unmatched")
            metrics.requests.inc(route, request.method, str(status))
            metrics.latency.observe(time.perf_counter() - t0, route)

    # ---- auth
    def authorise(request: Request) -> None:
        if options.token is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), options.token.encode()):
            raise StarletteHTTPException(401, "missing or wrong bearer token (send 'Authorization: Bearer TOKEN')",
                                         headers={"WWW-Authenticate": "Bearer"})

    auth = [Depends(authorise)]

    async def read_image(request: Request) -> bytes:
        """The uploaded image: raw body or multipart field ``image``, at most max_upload_bytes."""
        limit = int(options.max_upload_bytes)
        too_big = f"the upload is larger than the limit of {limit} bytes"
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise UploadError(too_big, status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise UploadError(too_big, status=413)
            chunks.append(chunk)
        body = b"".join(chunks)
        ctype = request.headers.get("content-type", "").lower()
        if not ctype.startswith("multipart/form-data"):
            return body
        request._body = body  # let starlette parse the form from what was read
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise UploadError("the multipart form has no file field 'image'")
        return await upload.read()

    async def describe(data: bytes) -> np.ndarray:
        with service.in_flight():
            crops = await run_in_threadpool(service.crops, data)
            return await asyncio.wrap_future(service.batcher.submit(crops))

    # ---- routes
    @app.get("/healthz", response_model=HealthOut, tags=["service"])
    async def healthz() -> Dict[str, Any]:
        """Liveness: the map is loaded and the model worker is running."""
        return {"status": "ok", "version": __version__, "map": service.map.name, "frames": len(service.map),
                "sessions": len(sessions)}

    @app.get("/metrics", dependencies=auth, tags=["service"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, 401: errors[401]})
    async def metrics_page() -> Response:
        """Prometheus metrics: request counts, latency histograms, batch sizes, queue depth, sessions."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/v1/localize", response_model=LocalizeOut, dependencies=auth, tags=["localize"],
              openapi_extra={"requestBody": IMAGE_BODY}, responses=errors)
    async def localize(request: Request, k: Optional[int] = Query(None, ge=1, le=MAX_K,
                                                                  description="candidates to return")
                       ) -> Dict[str, Any]:
        """Localise one image: the map's panorama projection is applied, then the top-k frames."""
        t0 = time.perf_counter()
        data = await read_image(request)
        desc = await describe(data)
        t1 = time.perf_counter()
        out = await run_in_threadpool(lambda: service.answer(service.retrieve(desc, k)))
        metrics.images.inc("single")
        out["timing_ms"] = {"describe": 1e3 * (t1 - t0), "retrieve": 1e3 * (time.perf_counter() - t1)}
        return out

    @app.post("/v1/sessions", response_model=SessionOut, status_code=201, dependencies=auth,
              tags=["sessions"], responses=errors)
    async def create_session() -> Dict[str, Any]:
        """Open a session for a moving camera; post its frames in order."""
        session = sessions.create(lock=asyncio.Lock())
        metrics.sessions_opened.inc()
        return {"session_id": session.id, "frames": 0, "ttl_s": options.sessions.ttl_s}

    session_id = Path(..., min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")

    @app.get("/v1/sessions/{session_id}", response_model=SessionOut, dependencies=auth, tags=["sessions"],
             responses=errors)
    async def get_session(session_id: str = session_id) -> Dict[str, Any]:
        s = sessions.get(session_id)
        return {"session_id": s.id, "frames": s.frames, "ttl_s": options.sessions.ttl_s}

    @app.delete("/v1/sessions/{session_id}", status_code=204, dependencies=auth, tags=["sessions"],
                responses=errors, response_class=Response)
    async def delete_session(session_id: str = session_id) -> Response:
        sessions.delete(session_id)
        return Response(status_code=204)

    @app.post("/v1/sessions/{session_id}/frames", response_model=EstimateOut, dependencies=auth,
              tags=["sessions"], openapi_extra={"requestBody": IMAGE_BODY}, responses=errors)
    async def post_frame(request: Request, session_id: str = session_id,
                         k: Optional[int] = Query(None, ge=1, le=MAX_K, description="candidates to return")
                         ) -> Dict[str, Any]:
        """The next frame of the session's camera -> the online localiser's estimate."""
        t0 = time.perf_counter()
        session = sessions.get(session_id)
        kk = service.check_k(k)
        data = await read_image(request)
        desc = await describe(data)
        t1 = time.perf_counter()
        async with session.lock:
            est = await run_in_threadpool(session.localiser.update, desc)
            frame = session.frames
            session.frames += 1
        metrics.images.inc("session")
        out = estimate_answer(service, est, kk, frame)
        out.update(session_id=session.id, timing_ms={"describe": 1e3 * (t1 - t0),
                                                     "match": 1e3 * (time.perf_counter() - t1)})
        return out

    @app.get("/v1/map", dependencies=auth, tags=["map"],
             responses={200: {"content": {"application/geo+json": {"schema": {"type": "object"}}}}, 401: errors[401]})
    async def map_geojson() -> JSONResponse:
        """The map's trajectory as GeoJSON: a LineString and one Point per frame (lon/lat when the
        map has them; otherwise x/y metres, said in the collection's ``coordinates`` member)."""
        return JSONResponse(map_geojson_dict(service), media_type="application/geo+json")

    @app.get("/v1/frames/{index}/thumbnail", dependencies=auth, tags=["map"], response_class=Response,
             responses={200: {"content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
                        401: errors[401], 404: errors[404]})
    async def thumbnail(index: int = Path(..., ge=0, description="map frame index")) -> Response:
        """The thumbnail of map frame ``index`` (what the model saw of it)."""
        if index >= len(service.map):
            raise StarletteHTTPException(404, f"frame {index} is not in the map (0..{len(service.map) - 1})")
        data = await run_in_threadpool(service.map.thumbnail_path(index).read_bytes)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return static_response("index.html", "text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise StarletteHTTPException(404, f"no static file {name!r}")
        return static_response(name, STATIC_FILES[name])

    return app


def map_graph(service: LocalisationService) -> MapGraph:
    """Which map frames follow which: the map's traversals (``sequence`` column, else one) in
    timestamp order when known (else index order), cut at gaps and linked where they meet."""
    frames = service.map.frames
    n = len(frames)
    sequence = frames.sequence if frames.sequence is not None else ["map"] * n
    position = frames.timestamp if frames.timestamp is not None and np.isfinite(frames.timestamp).all() else None
    return MapGraph.from_sequences(sequence, position=position, xy=frames.xy)


def default_localiser_factory(service: LocalisationService) -> Callable[[], OnlineLocaliser]:
    """A fresh :class:`panoplace.matching.online.OnlineLocaliser` per session, on the map's index
    and :func:`map_graph`, reporting up to ``MAX_K`` candidates."""
    index = service.map.index
    graph = map_graph(service)
    params = OnlineParams(n_out=MAX_K)
    return lambda: OnlineLocaliser(index, graph, params)


def static_response(name: str, media_type: str) -> Response:
    """A file of the web page (shipped inside the package), with a strict content policy."""
    data = resources.files("panoplace.serve").joinpath("static").joinpath(name).read_bytes()
    return Response(data, media_type=media_type, headers={"Content-Security-Policy": PAGE_CSP,
                                                          "X-Content-Type-Options": "nosniff"})


def estimate_answer(service: LocalisationService, est: Any, k: int, frame: int) -> Dict[str, Any]:
    """JSON of an online-localiser estimate (``panoplace.matching.online.Estimate``) for the
    session's ``frame``-th frame: the position and heading are those of the estimate's map frame
    (``est.frame``, -1 = none), the heading being that frame's heading plus ``est.heading_deg``."""
    rows = np.asarray(est.candidates, dtype=np.int64)[:k]
    scores = np.asarray(est.scores, dtype=np.float64)[:k]
    relative = np.full(len(rows), np.nan)
    if est.heading_deg is not None:
        relative[rows == int(est.frame)] = float(est.heading_deg)
    cands = service.candidates(rows, scores, relative)
    best: Optional[Dict[str, Any]] = None
    if int(est.frame) >= 0:
        best = service.candidates(np.array([int(est.frame)]), np.array([np.nan]),
                                  None if est.heading_deg is None else np.array([float(est.heading_deg)]))[0]
    return {
        "frame": int(frame),
        "index": int(est.frame) if int(est.frame) >= 0 else None,
        "confidence": float(est.confidence),
        "relocalised": bool(est.relocalised),
        "position": ({c: best[c] for c in ("x", "y", "lat", "lon")} if best else None),
        "heading_deg": best["heading_deg"] if best else None,
        "candidates": cands,
    }


def map_geojson_dict(service: LocalisationService) -> Dict[str, Any]:
    """The map's trajectory as a GeoJSON FeatureCollection (see ``GET /v1/map``)."""
    frames = service.map.frames
    use_latlon = frames.latlon is not None
    coords = (np.asarray(frames.latlon)[:, ::-1] if use_latlon else np.asarray(frames.xy)).tolist()
    xy = np.asarray(frames.xy)
    points = []
    for i, c in enumerate(coords):
        f = service.frame(i)
        points.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": c},
                       "properties": {"index": i, "id": f["id"], "x": f["x"], "y": f["y"],
                                      "heading_deg": f["heading_deg"],
                                      "thumbnail": f"/v1/frames/{i}/thumbnail"}})
    line = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": coords},
            "properties": {"kind": "trajectory", "frames": len(coords)}}
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return {"type": "FeatureCollection", "name": service.map.name,
            "coordinates": "lon/lat (WGS84)" if use_latlon else "x/y metres (local frame)",
            "bounds_xy": [float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])],
            "per_crop": service.map.index.n_crops is not None,
            "features": [line, *points]}

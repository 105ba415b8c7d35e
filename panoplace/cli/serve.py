"""``panoplace serve MAP_DIR``: the localisation HTTP API and web map for a map folder."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Optional

from panoplace.cli.argtypes import (
    device,
    existing_dir,
    existing_file,
    non_negative_float,
    port,
    positive_float,
    positive_int,
)
from panoplace.errors import InputError
from panoplace.textfiles import read_text

log = logging.getLogger(__name__)

TOKEN_ENV = "PANOPLACE_TOKEN"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="serve a map folder over HTTP: localisation API, camera sessions, web map",
        description="Open a map folder (from `panoplace map build`) and serve it: POST /v1/localize "
                    "(one image), sessions for moving cameras (/v1/sessions), GET /v1/map (GeoJSON), "
                    "/healthz, /metrics (Prometheus) and a web page at /. Concurrent images share one "
                    "model call (--max-batch, --max-wait-ms). Listens on 127.0.0.1 unless --host says "
                    "otherwise. Needs the serve extra: pip install 'panoplace[serve]'.",
        epilog="example: panoplace serve runs/map --port 8080   (then open http://127.0.0.1:8080/)",
    )
    p.add_argument("map_dir", metavar="MAP_DIR", type=existing_dir("map folder"), help="map folder from `panoplace map build`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the service)")
    p.add_argument("--port", type=port, default=8080, help="port (default 8080)")
    p.add_argument("--token-file", metavar="FILE", default=None, type=existing_file("token file"),
                   help=f"require 'Authorization: Bearer TOKEN' on /v1/* and /metrics, the token read from "
                        f"FILE (or from the environment variable {TOKEN_ENV})")
    p.add_argument("--max-upload-mb", type=positive_float, default=16.0, help="largest request body in MiB (default 16)")
    p.add_argument("--max-pixels", type=positive_int, default=40_000_000,
                   help="largest decoded image in pixels (default 40 000 000)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow cross-origin requests from ORIGIN (repeatable; default: CORS off)")
    p.add_argument("--k", type=positive_int, default=5, help="candidates returned by default (default 5)")
    p.add_argument("--max-batch", type=positive_int, default=16,
                   help="images per model call at most (default 16; on a small, busy CPU 1 can be faster, see "
                        "benchmarks/bench_serve.py)")
    p.add_argument("--max-wait-ms", type=non_negative_float, default=5.0,
                   help="how long an image waits for others to share its model call (default 5 ms)")
    p.add_argument("--session-ttl", type=positive_float, default=300.0,
                   help="seconds after which an idle session is closed (default 300)")
    p.add_argument("--max-sessions", type=positive_int, default=256, help="sessions open at once at most (default 256)")
    p.add_argument("--device", default="auto", type=device, help="auto (GPU when present), cpu or cuda")
    p.set_defaults(func=run)


def read_token(token_file: Optional[str]) -> Optional[str]:
    """The bearer token from ``token_file`` or the environment, or None for no auth."""
    if token_file:
        path = Path(token_file)
        token = read_text(path, "token file").strip()
        if not token:
            raise InputError(f"token file {path} is empty")
        return token
    return os.environ.get(TOKEN_ENV) or None


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from panoplace.serve.app import HttpOptions, create_app
    except ModuleNotFoundError as exc:
        raise InputError(f"`panoplace serve` needs the serve extra ({exc.name} is missing): "
                         "pip install 'panoplace[serve]'") from None
    from panoplace.mapfolder import load_map
    from panoplace.serve.batcher import BatchOptions
    from panoplace.serve.service import LocalisationService, ServiceOptions
    from panoplace.serve.sessions import SessionOptions

    http = HttpOptions(token=read_token(args.token_file), max_upload_bytes=int(args.max_upload_mb * 2 ** 20),
                       cors_origins=list(args.cors_origin),
                       sessions=SessionOptions(ttl_s=args.session_ttl, max_sessions=args.max_sessions))
    options = ServiceOptions(k=args.k, max_pixels=args.max_pixels, device=args.device,
                             batch=BatchOptions(max_batch=args.max_batch, max_wait_s=args.max_wait_ms / 1000.0))
    service = LocalisationService(load_map(args.map_dir), options)
    app = create_app(service, http)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: the service is reachable from other machines%s", args.host,
                    "" if http.token else " without a token (--token-file)")
    log.info("serving map %s (%d frames) on http://%s:%d/", service.map.name, len(service.map), args.host, args.port)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    finally:
        service.close()
    return 0

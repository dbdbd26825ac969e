"""The dashboard service: live web dashboard, REST API (OpenAPI at ``/docs``), health and Prometheus metrics.

Open without a token (aggregates only, no identity): ``/`` (the live page), ``/api/summary``, ``/api/panels``,
``/api/stream`` (server-sent events, one panel snapshot per second), ``/healthz``, ``/metrics``.
Everything with identity data is in :mod:`dashboard.api` and needs a token with the right role.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import plotly
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.background import BackgroundTask

from core.config import Settings
from dashboard import metrics as M
from dashboard.api import router
from dashboard.panels import snapshot
from dashboard.services import Services

STATIC = Path(__file__).with_name("static")
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"  # served locally: there is no CDN


def create_app(settings: Settings, environ: dict[str, str] | None = None, background: bool = True) -> FastAPI:
    """The app. ``background=False`` skips the stream follower, scraper and outbox (API-only tests)."""
    services = Services.create(settings, environ)
    stop = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop.clear()
        task = asyncio.create_task(services.run(stop)) if background else None
        yield
        stop.set()
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
        services.close()

    app = FastAPI(
        title="paxsim dashboard",
        version="0.2.0",
        lifespan=lifespan,
        description="Live panels and the API for consent, gallery, erasure, policy, trajectories and audit. "
        "Identity data needs `Authorization: Bearer <token>` and the right role (admin, operator, auditor).",
    )
    app.state.services = services
    app.state.view = services.view  # kept for callers of the skeleton's app
    app.state.stop = stop
    app.state.stream_clients = 0
    app.include_router(router)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict:
        """Liveness plus whether the stream reader is connected to the broker."""
        return {"status": "ok", "broker_connected": services.view.connected}

    @app.get("/api/summary", tags=["aggregates"])
    async def summary() -> dict:
        """Aggregates only: decisions, refusals by rule, matches and count-only faces by zone, zone flows."""
        return services.view.summary()

    @app.get("/api/panels", tags=["aggregates"])
    async def panels() -> dict:
        """One snapshot of every live panel (aggregates only): what /api/stream pushes each second."""
        return snapshot(services.view, services.scraper, services.biometric_zones)

    @app.get("/api/stream", include_in_schema=False)
    async def stream(request: Request, interval: float = Query(1.0, ge=0.2, le=10.0), count: int = Query(0, ge=0)) -> StreamingResponse:
        """Server-sent events: a panel snapshot every ``interval`` seconds (``count`` > 0 stops after that many).
        At most ``dashboard.max_stream_clients`` at once: each holds a connection and a snapshot per second."""
        if app.state.stream_clients >= settings.dashboard.max_stream_clients:
            M.SSE_REFUSED.inc()
            raise HTTPException(503, "too many live streams; try again later", headers={"Retry-After": "5"})
        app.state.stream_clients += 1  # counted now, not when the body starts: a burst of connects cannot all pass
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                app.state.stream_clients -= 1

        async def events() -> AsyncIterator[bytes]:
            M.SSE_CLIENTS.inc()
            try:
                sent = 0
                while not stop.is_set() and not await request.is_disconnected():
                    snap = snapshot(services.view, services.scraper, services.biometric_zones)
                    yield f"event: panels\ndata: {json.dumps(snap, separators=(',', ':'))}\n\n".encode()
                    sent += 1
                    if count and sent >= count:
                        break
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval)
            finally:
                M.SSE_CLIENTS.dec()
                release()

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            background=BackgroundTask(release),  # also when the body never started (client gone at once)
        )

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/vendor/plotly.min.js", include_in_schema=False)
    async def plotly_js() -> FileResponse:
        return FileResponse(PLOTLY_JS, media_type="application/javascript")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        """Prometheus exposition of this process (served at /metrics exactly: no redirect to /metrics/)."""
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


class _Server(uvicorn.Server):
    """uvicorn server that leaves signal handling to the stage runner (which sets ``stop``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_dashboard(settings: Settings, stop: asyncio.Event, port: int | None = None) -> None:
    app = create_app(settings)
    cfg = uvicorn.Config(app, host=settings.dashboard.host, port=port if port is not None else settings.dashboard.port, log_level="warning")
    server = _Server(cfg)
    task = asyncio.create_task(server.serve())
    await stop.wait()
    app.state.stop.set()  # ends the live streams, so the server can shut down promptly
    server.should_exit = True
    await task

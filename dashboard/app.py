"""The dashboard service: FastAPI app with the API, health and Prometheus metrics."""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Iterator

import uvicorn

from fastapi import FastAPI
from prometheus_client import make_asgi_app

from dashboard.feed import StreamView, follow
from paxsim.config import Settings


def create_app(settings: Settings) -> FastAPI:
    view = StreamView()
    stop = asyncio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(follow(settings, view, stop))
        yield
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)

    app = FastAPI(title="paxsim dashboard", version="0.1.0", lifespan=lifespan)
    app.state.view = view

    @app.get("/healthz")
    async def healthz() -> dict:
        """Liveness plus whether the stream reader is connected to the broker."""
        return {"status": "ok", "broker_connected": view.connected}

    @app.get("/api/summary")
    async def summary() -> dict:
        """Aggregates only: decisions, refusals by rule, matches and count-only faces by zone, zone flows."""
        return view.summary()

    app.mount("/metrics", make_asgi_app())
    return app


class _Server(uvicorn.Server):
    """uvicorn server that leaves signal handling to the stage runner (which sets ``stop``)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run_dashboard(settings: Settings, stop: asyncio.Event, port: int | None = None) -> None:
    cfg = uvicorn.Config(create_app(settings), host=settings.dashboard.host, port=port if port is not None else settings.dashboard.port, log_level="warning")
    server = _Server(cfg)
    task = asyncio.create_task(server.serve())
    await stop.wait()
    server.should_exit = True
    await task

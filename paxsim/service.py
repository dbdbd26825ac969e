"""Running one stage as a process: logging, settings, metrics endpoint, signals, clear fatal errors."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable

from broker.clients import BrokerUnreachable
from core.config import ConfigError, Settings, load_settings
from core.obs import serve_metrics, setup_logging

EXIT_CONFIG = 2
EXIT_BROKER = 3


def run_stage(
    name: str, main: Callable[[Settings, asyncio.Event], Awaitable[object]], metrics_port: int | None, config: str | None
) -> None:
    """Run ``main(settings, stop)`` until it returns or SIGINT/SIGTERM sets ``stop``. Exits the process on fatal errors."""
    log = setup_logging(name)
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        log.error(str(exc))
        print(f"paxsim {name}: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    if metrics_port is not None:
        port = serve_metrics(metrics_port, settings.metrics.host)
        log.info("metrics endpoint", extra={"url": f"http://{settings.metrics.host}:{port}/metrics"})

    async def _run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(settings, stop)

    try:
        asyncio.run(_run())
    except BrokerUnreachable as exc:
        log.error(str(exc))
        print(f"paxsim {name}: {exc}", file=sys.stderr)
        sys.exit(EXIT_BROKER)
    logging.shutdown()

"""Background tasks that must not end silently: a failure is logged, counted and the task started again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("paxsim.tasks")


async def supervised(
    name: str,
    factory: Callable[[], Awaitable[object]],
    stop: asyncio.Event,
    on_restart: Callable[[str], None] | None = None,
    first_s: float = 0.5,
    max_s: float = 30.0,
) -> None:
    """Run ``factory()`` until it returns or ``stop`` is set; on an exception, log it, call ``on_restart(name)``
    (a stage's counter) and start it again after a back-off (``first_s`` doubling up to ``max_s``)."""
    delay = first_s
    while not stop.is_set():
        try:
            await factory()
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the task's own errors: never the end of the stage's duty
            log.error("background task failed; restarting", extra={"task": name, "error": repr(exc), "retry_s": delay})
            if on_restart is not None:
                on_restart(name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, max_s)

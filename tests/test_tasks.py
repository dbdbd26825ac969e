"""core.tasks.supervised: a background duty that fails is restarted, counted, and still ends on stop."""

from __future__ import annotations

import asyncio

from core.tasks import supervised


def test_a_failing_task_is_restarted_and_counted_until_it_succeeds():
    runs: list[int] = []
    restarts: list[str] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise OSError("disk full")

    asyncio.run(supervised("erasure", flaky, asyncio.Event(), restarts.append, first_s=0.01))
    assert len(runs) == 3 and restarts == ["erasure", "erasure"]


def test_stop_ends_the_back_off():
    async def run() -> int:
        stop = asyncio.Event()
        calls = 0

        async def always_fails() -> None:
            nonlocal calls
            calls += 1
            stop.set()
            raise RuntimeError("broker gone")

        await supervised("keys", always_fails, stop, first_s=60.0)
        return calls

    assert asyncio.run(run()) == 1

"""Bounded, non-blocking publishing from an edge agent to the broker.

``offer`` never waits: when the queue is full the message is dropped and counted (backpressure shows up as
a drop counter, never as unbounded memory or a stalled camera). ``run`` drains the queue into the producer
and waits for acknowledgements in windows so throughput does not depend on the round-trip time.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge, Histogram

from edge import metricnames as edge_metrics

PUBLISHED = Counter(edge_metrics.PUBLISHED_TOTAL, "Messages acknowledged by the broker", ["topic"])
DROPPED = Counter(edge_metrics.DROPPED_TOTAL, "Messages dropped at the edge", ["reason"])
QUEUE_DEPTH = Gauge("paxsim_edge_publish_queue_messages", "Messages waiting to be sent")
PUBLISH_LAG = Histogram(
    edge_metrics.PUBLISH_LAG_SECONDS,
    "Enqueue to broker acknowledgement",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

_CLOSE = object()


class Publisher:
    def __init__(self, producer: AIOKafkaProducer, maxsize: int = 10_000, window: int = 500, max_wait_s: float | None = None) -> None:
        """``max_wait_s``: a message that waited longer in the queue (the loop was stalled) is dropped, counted
        (``late_in_queue``) instead of going out behind its schedule."""
        self.producer = producer
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize=maxsize)
        self.window = window
        self.max_wait_s = max_wait_s

    def offer(self, topic: str, value: bytes, key: bytes) -> bool:
        """Queue a message; False (and counted) when the queue is full."""
        try:
            self.queue.put_nowait((topic, value, key, time.perf_counter()))
        except asyncio.QueueFull:
            DROPPED.labels("queue_full").inc()
            return False
        QUEUE_DEPTH.set(self.queue.qsize())
        return True

    async def run(self) -> None:
        """Send until ``close`` has been called and the queue is drained."""
        inflight: list[tuple[asyncio.Future[object], str, float]] = []
        closing = False
        while not closing:
            item = await self.queue.get()
            items = [item]
            while len(items) < self.window and not self.queue.empty():
                items.append(self.queue.get_nowait())
            for it in items:
                if it is _CLOSE:
                    closing = True
                    continue
                topic, value, key, t0 = it  # type: ignore[misc]
                if self.max_wait_s is not None and time.perf_counter() - t0 > self.max_wait_s:
                    DROPPED.labels("late_in_queue").inc()
                    continue
                inflight.append((await self.producer.send(topic, value, key=key), topic, t0))
            QUEUE_DEPTH.set(self.queue.qsize())
            await self._settle(inflight)
            inflight = []

    @staticmethod
    async def _settle(inflight: list[tuple[asyncio.Future[object], str, float]]) -> None:
        for fut, topic, t0 in inflight:
            try:
                await fut
            except Exception:
                DROPPED.labels("send_failed").inc()
                continue
            PUBLISHED.labels(topic).inc()
            PUBLISH_LAG.observe(time.perf_counter() - t0)

    async def close(self) -> None:
        """Ask ``run`` to finish after everything queued so far (waits for room if the queue is full)."""
        await self.queue.put(_CLOSE)

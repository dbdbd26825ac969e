"""broker/reader: a read from an offset to the end returns every record, even when the broker stalls mid-read."""

from __future__ import annotations

import asyncio
import os
import signal

from aiokafka import TopicPartition

from broker import topics as t
from broker.clients import start_consumer, start_producer
from broker.embedded import EmbeddedBroker
from broker.reader import _drain
from core.config import Settings

RECORDS = 200


class _StallsOnce:
    """The real consumer; on its second poll the broker process is frozen (SIGSTOP) for ``stall_s``, as a
    loaded machine leaves fetches unanswered for a while."""

    def __init__(self, consumer, broker: EmbeddedBroker, stall_s: float) -> None:  # noqa: ANN001
        self.consumer, self.pid, self.stall_s, self.polls = consumer, broker.proc.pid, stall_s, 0  # type: ignore[union-attr]

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.consumer, name)

    async def getmany(self, *tps, **kw):  # noqa: ANN002, ANN003, ANN201
        self.polls += 1
        if self.polls == 2:
            os.kill(self.pid, signal.SIGSTOP)
            asyncio.get_running_loop().call_later(self.stall_s, os.kill, self.pid, signal.SIGCONT)
        return await self.consumer.getmany(*tps, **kw)


def test_a_broker_that_stalls_mid_read_does_not_end_the_read_early(client_settings: Settings, broker: EmbeddedBroker):
    async def run() -> int:
        producer = await start_producer(client_settings)
        try:
            for _ in range(RECORDS):  # one batch each: the broker then honours the small fetch size below
                await producer.send_and_wait(t.MATCHES.name, b"x" * 1000, key=b"k", partition=0)
        finally:
            await producer.stop()
        # small fetches: the read needs many round trips, so the stall falls in the middle of it
        consumer = await start_consumer(client_settings, group_id=None, max_partition_fetch_bytes=8_000, fetch_max_bytes=8_000)
        try:
            records = await _drain(_StallsOnce(consumer, broker, 1.5), {TopicPartition(t.MATCHES.name, 0): 0})  # type: ignore[arg-type]
        finally:
            await consumer.stop()
        return len(records)

    assert asyncio.run(run()) == RECORDS

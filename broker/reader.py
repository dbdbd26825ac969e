"""Reading a topic from offset 0 to its current end (for recovery, summaries and the audit scan).

The end is the partition's highwater as reported by fetch responses: ListOffsets(latest) is wrong on the
embedded broker after batched produce, the highwater is right on both Tansu and Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from broker.clients import start_consumer
from core.config import Settings

READ_TIMEOUT_S = 60.0  # a read that cannot learn every partition's end by then fails: never a silent partial read


class ReadIncomplete(RuntimeError):
    """The broker did not answer for every partition in time: what was read is not the whole topic."""


async def read_all(settings: Settings, topic: str, partitions: Iterable[int] | None = None) -> list[ConsumerRecord]:
    """Every record of ``topic`` (or of the given partitions) from the beginning to the current highwater."""
    consumer = await start_consumer(settings, group_id=None)
    try:
        if partitions is None:
            await consumer.topics()  # refreshes metadata
            partitions = consumer.partitions_for_topic(topic) or ()
        return await _drain(consumer, {TopicPartition(topic, p): 0 for p in sorted(partitions)})
    finally:
        await consumer.stop()


async def read_from(settings: Settings, topic: str, starts: dict[int, int]) -> list[ConsumerRecord]:
    """Records of ``topic`` from ``starts[partition]`` (an offset) to the partition's current highwater."""
    if not starts:
        return []
    consumer = await start_consumer(settings, group_id=None)
    try:
        return await _drain(consumer, {TopicPartition(topic, p): off for p, off in starts.items()})
    finally:
        await consumer.stop()


async def _drain(consumer: AIOKafkaConsumer, tps: dict[TopicPartition, int]) -> list[ConsumerRecord]:
    """With one consumer: assign ``tps``, seek each to its offset, read until every partition is at its highwater."""
    out: list[ConsumerRecord] = []
    if not tps:
        return out
    consumer.assign(list(tps))
    for tp, off in tps.items():
        consumer.seek(tp, off)
    done: set[TopicPartition] = set()
    deadline = time.monotonic() + READ_TIMEOUT_S
    while len(done) < len(tps):
        batch = await consumer.getmany(*[tp for tp in tps if tp not in done], timeout_ms=200, max_records=10_000)
        for recs in batch.values():
            out.extend(recs)
        behind: list[str] = []
        for tp in tps:
            if tp in done:
                continue
            hw = consumer.highwater(tp)
            position = await consumer.position(tp)
            if hw is not None and position >= hw:
                done.add(tp)
            else:  # no fetch answer yet, or records before the end still to come (a loaded broker answers slowly)
                behind.append(f"{tp.topic}:{tp.partition} at {position} of {'?' if hw is None else hw}")
        # stopping early, even after empty polls, would make a recovering matcher decide the unread events again
        if behind and time.monotonic() > deadline:
            raise ReadIncomplete(f"not read to the end within {READ_TIMEOUT_S:.0f} s: {', '.join(behind)}")
    return out

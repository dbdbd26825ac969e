"""The embedded broker launcher: explicit topics, restart detection, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal

from aiokafka.admin import AIOKafkaAdminClient

from broker import topics as t
from broker.embedded import EmbeddedBroker
from core.config import Settings


async def _topics(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if n.startswith("paxsim.")]
        described = await admin.describe_topics(names)
        return {d["topic"]: len(d["partitions"]) for d in described}
    finally:
        await admin.close()


def test_topics_created_explicitly_with_configured_partitions(settings: Settings):
    s = settings.model_copy(update={"broker": settings.broker.model_copy(update={"partitions": 3})})

    async def go() -> dict[str, int]:
        async with EmbeddedBroker(s) as b:
            return await _topics(b.bootstrap)

    assert asyncio.run(go()) == {topic.name: 3 for topic in t.ALL}


def test_restart_is_detected_and_topics_recreated(settings: Settings):
    async def go() -> tuple[int, dict[str, int], bool]:
        b = await EmbeddedBroker(settings).start()
        sup = asyncio.create_task(b.supervise(interval_s=0.2))
        try:
            old_pid = b.proc.pid
            os.kill(old_pid, signal.SIGKILL)  # a crash: Tansu loses every topic and record
            for _ in range(100):
                await asyncio.sleep(0.1)
                if b.restarts and b.alive():
                    break
            topics = await _topics(b.bootstrap)
            return b.restarts, topics, b.proc.pid != old_pid
        finally:
            sup.cancel()
            await b.stop()

    restarts, topics, new_pid = asyncio.run(go())
    assert restarts == 1 and new_pid
    assert set(topics) == {topic.name for topic in t.ALL}


def test_stop_kills_the_process(settings: Settings):
    async def go() -> int:
        b = await EmbeddedBroker(settings).start()
        pid = b.proc.pid
        await b.stop()
        return pid

    pid = asyncio.run(go())
    try:
        os.kill(pid, 0)
        alive = os.path.exists(f"/proc/{pid}") and "zombie" not in open(f"/proc/{pid}/status").read().lower()
    except ProcessLookupError:
        alive = False
    assert not alive


def test_lag_export_skips_a_partition_a_rebalance_took_away_during_the_batch(client_settings: Settings, broker):
    from aiokafka import TopicPartition
    from aiokafka.structs import ConsumerRecord

    from broker.clients import start_consumer
    from broker.stream import CONSUMER_LAG, update_lag

    async def go() -> None:
        consumer = await start_consumer(client_settings, group_id=None)
        try:
            mine, gone = TopicPartition(t.ADMITTED.name, 0), TopicPartition(t.ADMITTED.name, 1)
            consumer.assign([mine])
            await consumer.getmany(mine, timeout_ms=500)  # a fetch answer: the partition's highwater is known

            def rec(tp: TopicPartition) -> ConsumerRecord:
                return ConsumerRecord(tp.topic, tp.partition, 0, 0, 0, None, b"x", None, 1, 0, [])

            # the batch was read before the rebalance: one of its partitions now belongs to another replica
            update_lag(consumer, "test-lag", {mine: [rec(mine)], gone: [rec(gone)]})
            exported = {s.labels["partition"] for m in CONSUMER_LAG.collect() for s in m.samples if s.labels.get("stage") == "test-lag"}
            assert exported == {"0"}
        finally:
            await consumer.stop()

    asyncio.run(go())

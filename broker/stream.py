"""Consume-transform-produce helpers shared by the stages: dead letters, acknowledged sends, lag."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from prometheus_client import Counter, Gauge

from broker import metricnames as broker_metrics
from broker import topics as t
from broker.messages import DeadLetter, encode

log = logging.getLogger("paxsim.broker.stream")

DEADLETTERS = Counter("paxsim_broker_deadletters_total", "Messages sent to the dead-letter topic", ["stage", "kind"])
ASSIGNED = Gauge(broker_metrics.ASSIGNED_PARTITIONS, "Partitions currently assigned to a consuming stage", ["stage"])
COMMIT_FAILURES = Counter(
    "paxsim_broker_commit_failures_total", "Offset commits refused because the group rebalanced during the batch", ["stage"]
)
CONSUMER_LAG = Gauge(broker_metrics.CONSUMER_LAG_MESSAGES, "Highwater minus position, per consuming stage", ["stage", "topic", "partition"])


async def dead_letter(producer: AIOKafkaProducer, record: ConsumerRecord, stage: str, kind: str, reason: str) -> asyncio.Future[Any]:
    """Queue the original bytes of ``record`` on the dead-letter topic with the reason; returns the send future."""
    DEADLETTERS.labels(stage, kind).inc()
    dl = DeadLetter(
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        stage=stage,
        reason=f"{kind}: {reason}",
        at=time.time(),
        payload=record.value or b"",
    )
    return await producer.send(t.DEADLETTER.name, encode(dl), key=stage.encode())


async def commit(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int], stage: str) -> bool:
    """Commit ``offsets``; False (counted, logged) when the group rebalanced meanwhile. Never fatal: the
    partition's new owner reads the batch again from the last commit and skips what was already decided
    (each stage is idempotent by event id), so a rebalance costs duplicates skipped, never a crashed stage."""
    from aiokafka.errors import CommitFailedError, IllegalStateError

    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError) as exc:
        COMMIT_FAILURES.labels(stage).inc()
        log.warning("offset commit refused after a rebalance; the new owner re-reads the batch", extra={"stage": stage, "error": str(exc)})
        return False
    return True


async def acknowledged(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Wait until the broker acknowledged every queued send (raises if one failed)."""
    futs = list(futures)
    if futs:
        await asyncio.gather(*futs)


def update_lag(consumer: AIOKafkaConsumer, stage: str, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
    """Export lag as highwater − next offset (ListOffsets(latest) is wrong on Tansu; highwater is right).
    Partitions a rebalance took away while the batch was decided are skipped (their new owner exports them)."""
    assigned = consumer.assignment()
    for tp, recs in batch.items():
        if tp not in assigned:
            continue
        hw = consumer.highwater(tp)
        if hw is not None and recs:
            CONSUMER_LAG.labels(stage, tp.topic, str(tp.partition)).set(max(0, hw - recs[-1].offset - 1))


def offsets_after(batch: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, int]:
    """Commit positions for a processed batch: last offset + 1 per partition."""
    return {tp: recs[-1].offset + 1 for tp, recs in batch.items() if recs}


class AssignmentGauge(ConsumerRebalanceListener):
    """Rebalance listener that exports how many partitions a stage holds (0 until it has joined its group)."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        ASSIGNED.labels(self.stage).set(0)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        ASSIGNED.labels(self.stage).set(len(assigned))

"""The policy gate service: sightings topic → (filters) → admitted topic. Broker → matcher boundary.

At-least-once: a batch's admitted records and dead letters are acknowledged by the broker before the
batch's offsets are committed, so a crash re-delivers rather than loses; the matcher is idempotent by event id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Literal

# checking a plaintext embedding (only poison carries one: honest ones are sealed) needs numpy: imported at
# start-up, not on the event loop at the first such record (which held the loop ~0.2 s)
import numpy  # noqa: F401
from prometheus_client import Counter, Histogram

from broker import topics as t
from broker.clients import start_consumer, start_producer
from broker.messages import MessageError, Sighting, check_sighting, decode
from broker.stream import AssignmentGauge, acknowledged, commit, dead_letter, offsets_after, update_lag
from core import faults
from core.config import Settings
from core.obs import LOOP_LAG_BUCKETS, watch_loop_lag
from core.tasks import supervised
from policy import metricnames as policy_metrics
from policy.erasure import run_publisher
from policy.filters import Chain, GateContext
from policy.runtime import PolicyRuntime

log = logging.getLogger("paxsim.policy.gate")

STAGE = "gate"
GROUP = "paxsim-policy-gate"
EVENTS = Counter(policy_metrics.GATE_EVENTS_TOTAL, "Sightings the gate handled, by outcome", ["outcome"])
LOOP_LAG = Histogram(policy_metrics.GATE_LOOP_LAG_SECONDS, "How late the gate's event loop woke a 10 ms sleep", buckets=LOOP_LAG_BUCKETS)


Outcome = Literal["admitted", "denied", "undecodable", "unsealed", "key id", "internal"]


def screen(rt: PolicyRuntime, chain: Chain, value: bytes, now: float) -> tuple[Outcome, str]:
    """What the gate does with one record's bytes: admit, deny (the policy chain said no), or a dead-letter kind
    with its reason. Pure but for the chain's audit rows and counters; the loop turns anything it raises into
    an ``internal`` dead letter."""
    try:
        s = decode(value, Sighting)
        check_sighting(s)
    except MessageError as exc:
        return "undecodable", str(exc)
    refused = rt.plaintext_refused(s)
    if refused:  # never forwarded: plaintext biometrics would reach a second topic
        return "unsealed", refused
    refused = rt.key_id_refused(s, now)
    if refused:  # by arithmetic on the key id: the gate holds no sighting key
        return "key id", refused
    return ("admitted", "") if chain(GateContext(s, now)).allow else ("denied", "")


async def run_gate(settings: Settings, stop: asyncio.Event, rt: PolicyRuntime | None = None) -> None:
    """Run until ``stop``. ``rt``: the stage's policy runtime (default: built from ``settings``; closed on return)."""
    rt = rt or PolicyRuntime.for_stage(settings, STAGE, policy_path=settings.policy.file, sighting_keys="none")
    chain = rt.gate_chain()  # audited (batched), counted, timed; follows policy hot reloads
    background = asyncio.create_task(rt.background(stop))
    lag = asyncio.create_task(watch_loop_lag(LOOP_LAG, stop))
    producer = await start_producer(settings)
    # the gate also ships the consent registry's erasure outbox (withdrawals made by CLI or API) to the topic
    publisher = asyncio.create_task(
        supervised("erasure-outbox", lambda: run_publisher(rt.consent, producer, stop, vault=rt.vault, control=rt.control), stop)
    )
    consumer = await start_consumer(settings, group_id=GROUP)
    consumer.subscribe([t.SIGHTINGS.name], listener=AssignmentGauge(STAGE))
    admitted_c, denied_c, dead_c = EVENTS.labels("admitted"), EVENTS.labels("denied"), EVENTS.labels("deadletter")
    log.info("gate running", extra={"topic_in": t.SIGHTINGS.name, "topic_out": t.ADMITTED.name, "policy": rt.holder.version})
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            if not batch:
                continue
            now = time.time()
            sends = []
            for records in batch.values():
                for rec in records:
                    try:
                        outcome, detail = screen(rt, chain, rec.value or b"", now)
                    except Exception as exc:  # noqa: BLE001  no record, however built, may stop the gate
                        if faults.disabled("record.isolation"):
                            raise
                        outcome, detail = "internal", f"{type(exc).__name__}: {str(exc)[:200]}"
                        log.warning("record raised in the gate: dead-lettered", extra={"error": detail, "offset": rec.offset})
                    if outcome == "admitted":  # forwarded byte for byte: the gate never unseals the embedding
                        sends.append(await producer.send(t.ADMITTED.name, rec.value, key=rec.key))
                        admitted_c.inc()
                    elif outcome == "denied":
                        denied_c.inc()
                    else:
                        sends.append(await dead_letter(producer, rec, STAGE, outcome, detail))
                        dead_c.inc()
            await acknowledged(sends)
            rt.flush_audit()
            await commit(consumer, offsets_after(batch), STAGE)
            update_lag(consumer, STAGE, batch)
    finally:
        background.cancel()
        lag.cancel()
        publisher.cancel()
        await consumer.stop()
        await producer.stop()
        rt.close()

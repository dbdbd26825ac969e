"""Erasure propagation: consent withdrawal → erasure topic → every store forgets the subject.

* :func:`publish_pending` ships the registry's erasure outbox (filled by ``withdraw``, even from the CLI
  without a broker) to the erasure topic, at least once, and marks what the broker acknowledged.
* :class:`ErasureWorker` reads the whole erasure topic in every process (no consumer group, so every stage
  and every replica sees every request), calls the stage's handlers (drop gallery rows, tracks, snapshots, destroy or
  forget subject keys), audits each application and records the withdrawal→gone latency in
  ``paxsim_policy_erasure_seconds{stage}``. Handlers must be idempotent (redelivery after a crash).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

import msgspec
from prometheus_client import Counter, Histogram

from broker import topics as t
from broker.messages import ErasureRequest, MessageError, decode, encode
from core import faults
from policy import metricnames as policy_metrics
from policy.audit import AuditLog
from policy.consent import ConsentRegistry
from policy.crypto import (
    CryptoError,
    EpochKeyRing,
    KeyUnavailable,
    SealError,
    SubjectVault,
    open_erasure,
    seal_erasure,
    sign_erasure,
    verify_erasure,
)

log = logging.getLogger("paxsim.policy.erasure")

ERASURE_SECONDS = Histogram(
    "paxsim_policy_erasure_seconds",
    "Consent withdrawal → subject gone from a stage",
    ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
ERASURES = Counter(policy_metrics.ERASURES_TOTAL, "Erasure requests applied by a stage", ["stage", "outcome"])

Handler = Callable[[ErasureRequest], Awaitable[None] | None]
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0  # back-off of a failed erasure, per request


def reference(subject_id: str, vault: SubjectVault | None) -> str:
    """The subject's pseudonym while its key exists, else "" (no key holder, never keyed, already erased).
    Raises KeyUnavailable when the key holder cannot answer: the caller must not guess."""
    if vault is None:
        return ""
    return vault.existing_pseudonym(subject_id) or ""


def for_the_topic(req: ErasureRequest, vault: SubjectVault | None, control: EpochKeyRing | None) -> ErasureRequest:
    """The request as it goes on the erasure topic: with the pseudonym attached, and both references sealed
    under the control key class when the run has a key holder (nothing on the broker joins them in clear).
    Raises KeyUnavailable when the pseudonym cannot be looked up now: a request published without it would
    leave pseudonymous copies behind once the key is destroyed, so it waits in the outbox instead."""
    if not req.subject_ref:
        ref = reference(req.subject_id, vault)
        req = msgspec.structs.replace(req, subject_ref=ref) if ref else req
    if control is None:
        return req
    return sign_erasure(control.source, seal_erasure(control, req))


async def send_erasures(producer, reqs: list[ErasureRequest], vault: SubjectVault | None, control: EpochKeyRing | None) -> None:  # noqa: ANN001
    """Publish and wait for the broker's acks; keyed by request id (the subject id must not be a record key)."""
    # pseudonym lookups and sealing may need the key holder: off the event loop
    wire = await asyncio.to_thread(lambda: [for_the_topic(r, vault, control) for r in reqs])
    futs = [await producer.send(t.ERASURES.name, encode(r), key=r.request_id.encode()) for r in wire]
    await asyncio.gather(*futs)


async def publish_pending(
    registry: ConsentRegistry,
    producer,  # noqa: ANN001
    vault: SubjectVault | None = None,
    control: EpochKeyRing | None = None,
) -> int:
    """Send every unpublished erasure request; mark those the broker acknowledged. Returns how many."""
    pending = registry.pending_erasures()
    if not pending:
        return 0
    await send_erasures(producer, pending, vault, control)
    registry.mark_published([r.request_id for r in pending])
    return len(pending)


LAPSED_SWEEP_S = 1.0  # how often a publisher looks for subjects whose consents have all lapsed


async def run_publisher(
    registry: ConsentRegistry,
    producer,
    stop: asyncio.Event,
    interval_s: float = 0.1,  # noqa: ANN001
    vault: SubjectVault | None = None,
    control: EpochKeyRing | None = None,
) -> None:
    """Poll the outbox until ``stop``; a failed send is retried on the next poll. About every second, subjects
    whose consents have all lapsed are queued for erasure first (``ConsentRegistry.queue_lapsed``)."""
    swept_at = -1e18
    while not stop.is_set():
        try:
            if time.monotonic() - swept_at >= LAPSED_SWEEP_S:
                swept_at = time.monotonic()
                lapsed = registry.queue_lapsed()  # one indexed query, on the loop: the connection is not shared across threads
                if lapsed:
                    log.info("erasures queued for lapsed consents", extra={"count": len(lapsed)})
            n = await publish_pending(registry, producer, vault, control)
            if n:
                log.info("erasure requests published", extra={"count": n})
        except Exception as exc:  # keep the outbox; retry next time
            log.warning("erasure publish failed; will retry", extra={"error": str(exc)})
        try:
            await asyncio.wait_for(stop.wait(), interval_s)
        except TimeoutError:
            pass


def open_request(req: ErasureRequest, control: EpochKeyRing | None) -> ErasureRequest:
    """The request with its subject references, opened under the control key class if sealed. With a key holder
    (``control``), a request must be signed by the key holder for an issuing role (the gate or the dashboard
    publishing the consent outbox, an admin tool) and sealed: a producer that can merely write to the topic, or
    a stage that holds the control key but may not issue (a matcher), cannot erase anybody.
    Raises SealError (unsigned, forged, tampered) or KeyUnavailable (no key holder here, or it is down)."""
    if control is not None and not faults.disabled("erasure.signature"):
        verify_erasure(control.source, req)
    if not req.sealed:
        if control is not None and not faults.disabled("erasure.signature"):
            raise SealError(f"unsealed erasure request {req.request_id} while this run seals control messages: forged")
        return req
    if control is None:
        raise KeyUnavailable("a sealed erasure request, and this stage has no key holder")
    return open_erasure(control, req)


class ErasureWorker:
    """Applies erasure requests from the topic in one stage."""

    def __init__(
        self,
        stage: str,
        handlers: Iterable[Handler],
        audit: AuditLog | None = None,
        clock: Callable[[], float] = time.time,
        control: EpochKeyRing | None = None,
    ) -> None:
        self.stage, self.handlers, self.audit, self.clock, self.control = stage, list(handlers), audit, clock, control
        self.latencies: list[float] = []
        self._hist = ERASURE_SECONDS.labels(stage)
        # (request id, pseudonym) already applied here: two publishers of one outbox may both ship a request;
        # a copy that names a pseudonym the first did not is applied again
        self._done: set[tuple[str, str]] = set()
        self._producer = None  # for dead letters (refused requests), made on first need

    def open(self, req: ErasureRequest) -> ErasureRequest:
        return open_request(req, self.control)

    async def _run_handlers(self, req: ErasureRequest) -> None:
        for h in self.handlers:
            out = h(req)
            if inspect.isawaitable(out):
                await out

    async def apply(self, req: ErasureRequest) -> float:
        """Run every handler for ``req``; returns the withdrawal→gone latency in seconds."""
        await self._run_handlers(req)
        latency = max(0.0, self.clock() - req.requested_at)
        self._hist.observe(latency)
        self.latencies.append(latency)
        ERASURES.labels(self.stage, "applied").inc()
        log.info("erasure applied", extra={"request_id": req.request_id, "latency_ms": round(latency * 1000, 1)})
        if self.audit is not None:
            self.audit.append("erasure.applied", "allow", rule=req.reason, subject_id=req.subject_id, object_id=req.request_id)
        return latency

    async def run(self, settings, stop: asyncio.Event) -> None:  # noqa: ANN001
        """Follow the whole erasure topic in this process until ``stop``.

        No consumer group: every instance (each matcher replica, each dashboard) reads every partition from the
        beginning, so each hears every request; a group shared by replicas would hand each request to one of them.
        Requests already on the topic when this worker first fetched are caught up (applied, counted ``replayed``,
        not timed): that also re-applies what a restored snapshot may still hold. A handler that fails is retried with back-off
        until it succeeds or ``stop``; the worker never ends on a bad request."""
        from aiokafka import TopicPartition

        from broker.clients import start_consumer

        consumer = await start_consumer(settings, group_id=None, background=True)
        caught_up_to: dict[TopicPartition, int] = {}  # the partition's end when this worker first fetched it
        try:
            await consumer.topics()  # refreshes metadata
            tps = [TopicPartition(t.ERASURES.name, p) for p in sorted(consumer.partitions_for_topic(t.ERASURES.name) or ())]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, 0)
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=100, max_records=500)
                for tp in tps:
                    if tp not in caught_up_to and consumer.highwater(tp) is not None:
                        caught_up_to[tp] = consumer.highwater(tp)
                for tp, records in batch.items():
                    for rec in records:
                        fresh = rec.offset >= caught_up_to.get(tp, 0)  # a restart re-reads the topic: dead-letter once
                        try:
                            req = decode(rec.value or b"", ErasureRequest)
                        except MessageError as exc:
                            ERASURES.labels(self.stage, "undecodable").inc()
                            log.warning("undecodable erasure request skipped", extra={"error": str(exc)})
                            if fresh:
                                await self._dead_letter(settings, rec, "undecodable", str(exc))
                            continue
                        try:
                            req = await self._open_until_done(req, stop)
                        except SealError as exc:  # unsigned, badly signed, tampered: changes nothing, goes to dead letters
                            ERASURES.labels(self.stage, "refused").inc()
                            log.error("erasure request refused", extra={"request_id": req.request_id[:80], "error": str(exc)})
                            if fresh:
                                await self._dead_letter(settings, rec, "forged", str(exc))
                            continue
                        except (CryptoError, KeyUnavailable) as exc:
                            ERASURES.labels(self.stage, "unreadable").inc()
                            log.error("sealed erasure request cannot be opened", extra={"request_id": req.request_id, "error": repr(exc)})
                            continue
                        if (req.request_id, req.subject_ref) in self._done:
                            ERASURES.labels(self.stage, "duplicate").inc()
                            continue
                        await self._apply_until_done(req, replay=rec.offset < caught_up_to.get(tp, 0), stop=stop)
        finally:
            await consumer.stop()
            if self._producer is not None:
                await self._producer.stop()

    async def _open_until_done(self, req: ErasureRequest, stop: asyncio.Event) -> ErasureRequest:
        """Verify and open ``req``, waiting with back-off while the key holder cannot answer (it holds the key
        that verifies and opens requests): a request read during an outage is applied after it, not skipped.
        SealError (forged) and other crypto errors are raised at once; KeyUnavailable only on ``stop``."""
        delay = RETRY_FIRST_S
        while True:
            try:
                return await asyncio.to_thread(self.open, req)
            except KeyUnavailable as exc:
                if stop.is_set():
                    raise
                ERASURES.labels(self.stage, "waiting").inc()
                log.warning("key holder unavailable; erasure request waits", extra={"request_id": req.request_id, "error": str(exc)})
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, RETRY_MAX_S)

    async def _dead_letter(self, settings, rec, kind: str, reason: str) -> None:  # noqa: ANN001
        """The refused record on the dead-letter topic with this stage's reason (a producer made on first need)."""
        from broker.clients import start_producer
        from broker.stream import dead_letter

        try:
            if self._producer is None:
                self._producer = await start_producer(settings)
            await (await dead_letter(self._producer, rec, self.stage, kind, reason))
        except Exception as exc:  # the refusal stands without the copy; logged above
            log.warning("dead letter not written", extra={"error": repr(exc)})

    async def _apply_until_done(self, req: ErasureRequest, replay: bool, stop: asyncio.Event) -> None:
        delay = RETRY_FIRST_S
        while not stop.is_set():
            try:
                if replay:
                    await self._run_handlers(req)
                    ERASURES.labels(self.stage, "replayed").inc()
                else:
                    await self.apply(req)
                self._done.add((req.request_id, req.subject_ref))
                return
            except Exception as exc:  # a full disk, an unreachable key holder: retried, counted, never fatal
                ERASURES.labels(self.stage, "failed").inc()
                log.error("erasure failed; retrying", extra={"request_id": req.request_id, "error": repr(exc), "retry_s": delay})
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, RETRY_MAX_S)

"""The matcher service: admitted sightings → 1:N search → post-match policy → matches and track updates.

Delivery is at-least-once; the output is exactly-once per event id without Kafka transactions (which the
embedded broker lacks): the matches topic is partitioned like the admitted topic and the match for an input
record is written to the same partition number. When a partition is assigned (start, restart after
``kill -9``, rebalance) the matcher reads that matches partition back and so learns which events it already
decided, skipping them if they are delivered again. Track updates are written (and acknowledged) before the
match, so a recorded match implies its track update exists; a track update may repeat after a crash and carries
the event id for idempotent consumers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from prometheus_client import Counter, Gauge, Histogram

from broker import topics as t
from broker.clients import start_consumer, start_producer
from broker.messages import Match, MessageError, Sighting, TrackUpdate, check_sighting, decode, encode
from broker.reader import read_all
from broker.stream import AssignmentGauge, acknowledged, dead_letter, offsets_after, update_lag
from matcher.gallery import Gallery
from matcher.index import GalleryIndex, SearchResult
from paxsim.config import Settings
from paxsim.state import consent_path, gallery_path
from policy.consent import ConsentRegistry
from policy.filters import PostMatchContext, post_match_chain

log = logging.getLogger("paxsim.matcher")

STAGE = "matcher"
GROUP = "paxsim-matcher"
DECISIONS = Counter("paxsim_matcher_events_total", "Admitted sightings decided, by decision", ["decision"])
DUPLICATES = Counter("paxsim_matcher_duplicates_total", "Redelivered sightings skipped because already decided")
SEARCH_SECONDS = Histogram(
    "paxsim_matcher_search_seconds", "FAISS search time per micro-batch", buckets=(1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5)
)
BATCH_SIZE = Histogram("paxsim_matcher_batch_size_events", "Events per micro-batch", buckets=(1, 4, 16, 64, 256, 1024))
E2E_SECONDS = Histogram(
    "paxsim_matcher_e2e_latency_seconds",
    "Capture to decision latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
GALLERY_SIZE = Gauge("paxsim_matcher_gallery_templates", "Templates in the gallery")
RECOVERED = Counter("paxsim_matcher_recovered_decisions_total", "Decisions re-read from the matches topic on assignment")


class MatcherState:
    """What the matcher knows besides the gallery: decided event ids and each subject's last zone."""

    def __init__(self, dedupe_window_s: float) -> None:
        self.window = dedupe_window_s
        self.decided: OrderedDict[str, float] = OrderedDict()
        self.last_zone: dict[str, tuple[str, float]] = {}

    def seen(self, event_id: str) -> bool:
        return event_id in self.decided

    def remember(self, event_id: str, at: float) -> None:
        self.decided[event_id] = at
        horizon = at - self.window
        while self.decided:
            first, ts = next(iter(self.decided.items()))
            if ts >= horizon:
                break
            self.decided.popitem(last=False)

    def apply(self, m: Match) -> None:
        self.remember(m.event_id, m.matched_at)
        if m.decision == "match" and m.subject_id is not None:
            prev = self.last_zone.get(m.subject_id)
            if prev is None or prev[1] <= m.captured_at:
                self.last_zone[m.subject_id] = (m.zone, m.captured_at)


async def read_back_matches(settings: Settings, partitions: list[int], state: MatcherState) -> dict[int, int]:
    """Replay these matches partitions into ``state``; return the next input offset to process per partition."""
    next_offset = {p: 0 for p in partitions}
    for rec in await read_all(settings, t.MATCHES.name, partitions):
        try:
            m = decode(rec.value or b"", Match)
        except MessageError:
            continue
        state.apply(m)
        RECOVERED.inc()
        next_offset[rec.partition] = max(next_offset[rec.partition], m.source_offset + 1)
    return next_offset


class _Recover(AssignmentGauge):
    """On assignment: rebuild decided events from the matches topic, seek past them, then report the assignment."""

    def __init__(self, settings: Settings, state: MatcherState, consumer_ref: list[AIOKafkaConsumer]) -> None:
        super().__init__(STAGE)
        self.settings, self.state, self.ref = settings, state, consumer_ref

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self.ref[0]
        resumes = await read_back_matches(self.settings, [tp.partition for tp in assigned], self.state)
        for tp in assigned:
            resume = resumes[tp.partition]
            committed = await consumer.committed(tp) or 0
            if resume > committed:
                consumer.seek(tp, resume)
            log.info("partition assigned", extra={"partition": tp.partition, "committed": committed, "resume": max(resume, committed)})
        await super().on_partitions_assigned(assigned)


class Matcher:
    """Decides micro-batches: decode, dedupe by event id, one search per batch, post-match policy, outputs."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, state: MatcherState) -> None:
        gallery = Gallery.load(gallery_path(settings)) if gallery_path(settings).exists() else Gallery()
        consent = ConsentRegistry.load(consent_path(settings)) if consent_path(settings).exists() else ConsentRegistry()
        self.index = GalleryIndex.build(gallery.subject_ids, gallery.vectors) if len(gallery) else None
        GALLERY_SIZE.set(len(gallery))
        self.chain = post_match_chain(consent.is_allowed)
        self.zone_purpose = settings.policy.zone_purpose
        self.threshold = settings.matcher.threshold
        self.producer = producer
        self.state = state
        log.info("gallery loaded", extra={"templates": len(gallery), "subjects": len(gallery.subjects())})

    async def _search(self, queries: np.ndarray) -> list[SearchResult | None]:
        if self.index is None:
            return [None] * len(queries)
        t0 = time.perf_counter()
        results = await asyncio.to_thread(self.index.search, queries)  # FAISS releases the GIL
        SEARCH_SECONDS.observe(time.perf_counter() - t0)
        return list(results)

    async def decide_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        producer, state = self.producer, self.state
        pending: list[tuple[int, int, Sighting, np.ndarray]] = []
        dead = []
        for tp, records in batch.items():
            for rec in records:
                try:
                    s = decode(rec.value or b"", Sighting)
                    check_sighting(s)
                    vec = s.vector()
                except MessageError as exc:
                    dead.append(await dead_letter(producer, rec, STAGE, "undecodable", str(exc)))
                    continue
                if state.seen(s.event_id):
                    DUPLICATES.inc()
                    continue
                pending.append((tp.partition, rec.offset, s, vec))
        results: list[SearchResult | None] = []
        if pending:
            BATCH_SIZE.observe(len(pending))
            results = await self._search(np.stack([p[3] for p in pending]))
        tracks, matches = [], []
        now = time.time()
        for (partition, offset, s, _vec), result in zip(pending, results):
            m = self._decide(s, result, partition, offset, now)
            if m.decision == "match":
                tracks.append(await producer.send(t.TRACKS.name, encode(self._track_update(m, now)), key=m.subject_id.encode()))
            state.apply(m)
            DECISIONS.labels(m.decision).inc()
            E2E_SECONDS.observe(max(0.0, now - s.captured_at))
            matches.append((partition, m))
        await acknowledged(tracks + dead)  # a recorded match implies its track update exists
        await acknowledged([await producer.send(t.MATCHES.name, encode(m), key=m.camera_id.encode(), partition=p) for p, m in matches])

    def _decide(self, s: Sighting, result: SearchResult | None, partition: int, offset: int, now: float) -> Match:
        purpose = self.zone_purpose.get(s.zone, "")
        hit = result.identify(self.threshold) if result is not None else None
        common = dict(
            event_id=s.event_id, camera_id=s.camera_id, zone=s.zone, purpose=purpose, captured_at=s.captured_at,
            matched_at=now, source_partition=partition, source_offset=offset,
        )
        if not purpose:
            return Match(decision="refused", rule="purpose", **common)
        decision = self.chain(PostMatchContext(hit.subject_id if hit else None, purpose, s.zone, s.captured_at))
        if not decision.allow:
            # unknown or non-consented: the embedding is dropped here, only the count survives
            return Match(decision="unknown" if decision.rule == "known_face" else "refused", rule=decision.rule, **common)
        assert hit is not None
        return Match(decision="match", subject_id=hit.subject_id, distance=hit.distance, **common)

    def _track_update(self, m: Match, now: float) -> TrackUpdate:
        assert m.subject_id is not None
        prev = self.state.last_zone.get(m.subject_id)
        return TrackUpdate(
            event_id=m.event_id, subject_id=m.subject_id, camera_id=m.camera_id, zone=m.zone,
            prev_zone=prev[0] if prev else None, at=now, captured_at=m.captured_at,
            dwell_s=(m.captured_at - prev[1]) if prev and prev[0] == m.zone else 0.0,
        )


async def run_matcher(settings: Settings, stop: asyncio.Event) -> None:
    state = MatcherState(settings.matcher.dedupe_window_s)
    producer = await start_producer(settings)
    matcher = Matcher(settings, producer, state)
    ref: list[AIOKafkaConsumer] = []
    consumer = await start_consumer(settings, group_id=GROUP)
    ref.append(consumer)
    consumer.subscribe([t.ADMITTED.name], listener=_Recover(settings, state, ref))
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=settings.matcher.batch_max)
            if not batch:
                continue
            await matcher.decide_batch(batch)
            await consumer.commit(offsets_after(batch))
            update_lag(consumer, STAGE, batch)
    finally:
        await consumer.stop()
        await producer.stop()

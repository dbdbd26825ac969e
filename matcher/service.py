"""The matcher service: admitted sightings → 1:N search → post-match policy → matches and track updates.

Delivery is at-least-once; the output is exactly-once per event id without Kafka transactions (which the
embedded broker lacks): the matches topic is partitioned like the admitted topic and the match for an input
record is written to the same partition number. When a partition is assigned (start, restart after
``kill -9``, rebalance) the matcher reads that matches partition back and so learns which events it already
decided, skipping them if they are delivered again. Track updates are written (and acknowledged) before the
match, so a recorded match implies its track update exists; a track update may repeat after a crash and carries
the event id for idempotent consumers.

E-gates: a sighting with a ``claimed_subject`` (the passport presented at the gate) is verified 1:1 against
the claimed subject's templates (``matcher.verify.Verifier``), never searched 1:N, and decided ``verified`` or
``rejected`` through the same post-match policy chain (purpose of the zone: ``egate-verification``).

Alerts: every trajectory update is evaluated by ``matcher.alerts`` under the alert rules
(``AlertPolicy.load``: off unless enabled, only for the purposes listed). Alert ids are deterministic, each
is published once per run (and written before the match, like track updates); after a restart the ids of
alerts already raised are re-derived from the matches read back, so a replay raises none twice.
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
from broker.messages import Alert, ErasureRequest, Match, MessageError, Sighting, TrackUpdate, check_sighting, decode, encode
from broker.reader import read_all
from broker.stream import AssignmentGauge, acknowledged, dead_letter, offsets_after, update_lag
from matcher.alerts import AlertPolicy, evaluate
from matcher.gallery import Gallery
from matcher.index import GalleryIndex, SearchResult
from matcher.trajectory import TrajectoryStore, ZoneMap
from matcher.verify import Verification, Verifier
from paxsim.config import Settings
from paxsim.state import gallery_path
from policy.crypto import KeyExpired, KeyUnavailable, SealError
from policy.erasure import ErasureWorker
from policy.filters import PostMatchContext
from policy.runtime import PolicyRuntime
from scenario.world import load_spec

log = logging.getLogger("paxsim.matcher")

STAGE = "matcher"
PRUNE_EVERY_S = 5.0
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
EXPIRED = Counter("paxsim_matcher_expired_total", "Sealed sightings whose epoch key was already destroyed (retention)")
IMPLAUSIBLE = Counter("paxsim_matcher_implausible_transitions_total", "Zone changes faster than walking (probable mismatches)")
VERIFICATIONS = Counter("paxsim_matcher_verifications_total", "1:1 e-gate claims, by outcome", ["outcome"])
VERIFY_SECONDS = Histogram(
    "paxsim_matcher_verify_seconds", "1:1 verification time per micro-batch", buckets=(1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1)
)
ALERTS = Counter("paxsim_matcher_alerts_total", "Alerts published, by rule", ["kind"])
IDENTIFIED = ("match", "verified")  # decisions that name a subject
RECOVERED = Counter("paxsim_matcher_recovered_decisions_total", "Decisions re-read from the matches topic on assignment")


def zone_map(settings: Settings) -> ZoneMap:
    """Walking distances between zones, from the airport described by the scenario file (routes and zone lengths)."""
    spec = load_spec(settings.scenario.file)
    return ZoneMap.from_routes([r.path for r in spec.routes], {z.name: z.length_m for z in spec.zones})


class MatcherState:
    """What the matcher knows besides the gallery: decided event ids (for exactly-once output) and the
    trajectories of identified subjects (by pseudonym), both rebuilt from the matches topic on assignment."""

    def __init__(self, dedupe_window_s: float, zones: ZoneMap, tracks_ttl_s: float, alerts: AlertPolicy | None = None) -> None:
        self.window = dedupe_window_s
        self.decided: OrderedDict[str, float] = OrderedDict()
        self.trajectories = TrajectoryStore(zones, ttl_s=tracks_ttl_s, dedupe_window_s=dedupe_window_s)
        self.alert_policy = alerts or AlertPolicy()
        self.raised: OrderedDict[str, float] = OrderedDict()  # alert ids already published, within the window

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

    def apply(self, m: Match) -> tuple[TrackUpdate | None, list[Alert]]:
        """Record a decision; for an identification, move the subject's trajectory (None if already applied)
        and return the alerts it raises that were not raised before."""
        self.remember(m.event_id, m.matched_at)
        if m.decision not in IDENTIFIED or m.subject_id is None:
            return None, []
        update = self.trajectories.apply(m.event_id, m.subject_id, m.camera_id, m.zone, m.captured_at, at=m.matched_at)
        if update is None:
            return None, []
        fresh = [a for a in evaluate(update, self.alert_policy, m.purpose) if a.alert_id not in self.raised]
        for a in fresh:
            self.raised[a.alert_id] = m.matched_at
        horizon = m.matched_at - self.window
        while self.raised and next(iter(self.raised.values())) < horizon:
            self.raised.popitem(last=False)
        return update, fresh


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
    """Decides micro-batches: decode, unseal, dedupe by event id, one search per batch, post-match policy, outputs.

    What leaves the matcher names a subject only by pseudonym (``policy.crypto.SubjectVault``) when the run has a
    key holder: after an erasure the subject key is destroyed and every copy on the broker becomes unlinkable."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, state: MatcherState, rt: PolicyRuntime) -> None:
        self.settings = settings
        gallery = Gallery.load(gallery_path(settings)) if gallery_path(settings).exists() else Gallery()
        self.index = GalleryIndex.build(gallery.subject_ids, gallery.vectors) if len(gallery) else None
        GALLERY_SIZE.set(len(gallery))
        self.rt = rt
        self.chain = rt.post_match_chain()
        self.threshold = settings.matcher.threshold
        self.producer = producer
        self.state = state
        self._claims: dict[str, str] = {}  # pseudonym -> subject, for the gallery's subjects (refreshed with the keys)
        log.info("gallery loaded", extra={"templates": len(gallery), "subjects": len(gallery.subjects())})

    def subjects(self) -> list[str]:
        return self.index.subjects() if self.index is not None else []

    def reference(self, subject_id: str) -> str:
        """How a subject is named outside the matcher: its pseudonym, or the id when the run has no key holder."""
        return self.rt.vault.pseudonym(subject_id) if self.rt.vault is not None else subject_id

    async def keep_keys_warm(self, stop: asyncio.Event, every_s: float = 2.0) -> None:
        """Refresh the gallery's subject keys in one round trip, off the event loop, so pseudonyms never block it."""
        while not stop.is_set() and self.rt.vault is not None:
            subjects = self.subjects()
            if subjects:
                try:
                    await asyncio.to_thread(self.rt.vault.warm, subjects, True)
                    self._claims = {self.rt.vault.pseudonym(sid): sid for sid in subjects}  # cache hits: no I/O
                except Exception as exc:  # key holder briefly unreachable: pseudonym() will retry
                    log.warning("subject key refresh failed", extra={"error": repr(exc)})
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except asyncio.TimeoutError:
                pass

    def erase(self, req: ErasureRequest) -> None:
        """Erasure handler (idempotent): drop the subject from the index, the gallery file and the trajectory state,
        then destroy its key."""
        ref = req.subject_ref or (self.rt.vault.existing_pseudonym(req.subject_id) if self.rt.vault is not None else None)
        if self.index is not None:
            self.index.remove(req.subject_id)
            GALLERY_SIZE.set(len(self.index))
        path = gallery_path(self.settings)
        if path.exists():
            gallery = Gallery.load(path)
            if gallery.remove(req.subject_id):
                gallery.save(path)
        self.state.trajectories.erase(ref or req.subject_id)
        if self.rt.vault is not None:
            self.rt.vault.erase(req.subject_id)

    async def resolve_claims(self, claims: list[str]) -> list[str | None]:
        """The gallery subject each claim names (a pseudonym, or a plain id when the run has no key holder)."""
        if self.rt.vault is None or self.index is None:
            return [c if self.index is not None and c in self.index else None for c in claims]
        unknown = {c for c in claims if c not in self._claims}
        if unknown:  # keys not warm yet, or a claim of someone not enrolled: one round trip for the batch
            try:
                found = await asyncio.to_thread(self.rt.vault.resolve, unknown, self.subjects())
                self._claims.update(found)
            except Exception as exc:
                log.warning("claim resolution failed", extra={"error": repr(exc)})
        return [self._claims.get(c) for c in claims]

    async def _verify(self, claims: list[tuple[str, np.ndarray]]) -> list[Verification]:
        if self.index is None:
            return []
        t0 = time.perf_counter()
        out = await asyncio.to_thread(Verifier(self.index, self.threshold).verify_many, claims)
        VERIFY_SECONDS.observe(time.perf_counter() - t0)
        return out

    async def _search(self, queries: np.ndarray) -> list[SearchResult | None]:
        if self.index is None:
            return [None] * len(queries)
        t0 = time.perf_counter()
        results = await asyncio.to_thread(self.index.search, queries)  # FAISS releases the GIL
        SEARCH_SECONDS.observe(time.perf_counter() - t0)
        return list(results)

    async def decide_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        producer, state = self.producer, self.state
        pending: list[tuple[int, int, Sighting, np.ndarray | None]] = []
        in_batch: set[str] = set()
        dead = []
        for tp, records in batch.items():
            for rec in records:
                try:
                    s = decode(rec.value or b"", Sighting)
                    check_sighting(s)
                except MessageError as exc:
                    dead.append(await dead_letter(producer, rec, STAGE, "undecodable", str(exc)))
                    continue
                if state.seen(s.event_id) or s.event_id in in_batch:  # redelivered, or delivered twice in this batch
                    DUPLICATES.inc()
                    continue
                in_batch.add(s.event_id)
                try:
                    vec = self.rt.unseal(s).vector()
                except KeyExpired:
                    vec = None  # past its retention: unreadable by design, decided as refused below
                except (KeyUnavailable, SealError, MessageError) as exc:
                    dead.append(await dead_letter(producer, rec, STAGE, "unreadable", str(exc)))
                    continue
                pending.append((tp.partition, rec.offset, s, vec))
        readable = [i for i, p in enumerate(pending) if p[3] is not None and not p[2].claimed_subject]
        claimed = [i for i, p in enumerate(pending) if p[3] is not None and p[2].claimed_subject]
        results: list[SearchResult | Verification | None] = [None] * len(pending)
        if readable:
            BATCH_SIZE.observe(len(readable))
            found = await self._search(np.stack([pending[i][3] for i in readable]))
            for i, r in zip(readable, found):
                results[i] = r
        if claimed:
            subjects = await self.resolve_claims([pending[i][2].claimed_subject for i in claimed])
            known = [(i, sid) for i, sid in zip(claimed, subjects) if sid is not None]
            for (i, _sid), v in zip(known, await self._verify([(sid, pending[i][3]) for i, sid in known])):
                results[i] = v
        tracks, matches = [], []
        now = time.time()
        for (partition, offset, s, vec), result in zip(pending, results):
            if vec is None:
                m = self._expired(s, partition, offset, now)
            elif s.claimed_subject:
                m = self._decide_claim(s, result, partition, offset, now)  # type: ignore[arg-type]
            else:
                m = self._decide(s, result, partition, offset, now)  # type: ignore[arg-type]
            update, alerts = state.apply(m)
            if update is not None:
                if not update.plausible:
                    IMPLAUSIBLE.inc()  # faster than walking between the zones: probably a false match
                tracks.append(await producer.send(t.TRACKS.name, encode(update), key=update.subject_id.encode()))
            for a in alerts:
                ALERTS.labels(a.kind).inc()
                tracks.append(await producer.send(t.ALERTS.name, encode(a), key=a.zone.encode()))
            DECISIONS.labels(m.decision).inc()
            E2E_SECONDS.observe(max(0.0, now - s.captured_at))
            matches.append((partition, m))
        await acknowledged(tracks + dead)  # a recorded match implies its track update and alerts exist
        await acknowledged([await producer.send(t.MATCHES.name, encode(m), key=m.camera_id.encode(), partition=p) for p, m in matches])

    def _common(self, s: Sighting, purpose: str, partition: int, offset: int, now: float) -> dict:
        return dict(
            event_id=s.event_id, camera_id=s.camera_id, zone=s.zone, purpose=purpose, captured_at=s.captured_at,
            matched_at=now, source_partition=partition, source_offset=offset,
        )

    def _purpose(self, zone: str) -> str:
        rule = self.rt.holder.current.zones.get(zone)
        return rule.purpose if rule is not None and rule.biometric and rule.purpose else ""

    def _expired(self, s: Sighting, partition: int, offset: int, now: float) -> Match:
        EXPIRED.inc()
        return Match(decision="refused", rule="retention", **self._common(s, self._purpose(s.zone), partition, offset, now))

    def _decide(self, s: Sighting, result: SearchResult | None, partition: int, offset: int, now: float) -> Match:
        purpose = self._purpose(s.zone)
        hit = result.identify(self.threshold) if result is not None else None
        common = self._common(s, purpose, partition, offset, now)
        if not purpose:
            return Match(decision="refused", rule="purpose", **common)
        decision = self.chain(PostMatchContext(hit.subject_id if hit else None, purpose, s.zone, s.captured_at))
        if not decision.allow:
            # unknown or non-consented: the embedding is dropped here, only the count survives
            return Match(decision="unknown" if decision.rule == "known_face" else "refused", rule=decision.rule, **common)
        assert hit is not None
        return Match(decision="match", subject_id=self.reference(hit.subject_id), distance=hit.distance, **common)

    def _decide_claim(self, s: Sighting, v: Verification | None, partition: int, offset: int, now: float) -> Match:
        """1:1: ``verified`` names the claimed subject; ``rejected`` names nobody (rule ``verification``: the live
        face is not the claimed person; ``unknown-subject``: the claimed person is not in the gallery)."""
        purpose = self._purpose(s.zone)
        common = self._common(s, purpose, partition, offset, now)
        outcome = v.outcome if v is not None else "unknown-subject"
        VERIFICATIONS.labels(outcome).inc()
        if not purpose:
            return Match(decision="refused", rule="purpose", **common)
        accepted = v is not None and v.accepted
        decision = self.chain(PostMatchContext(v.subject_id if accepted else None, purpose, s.zone, s.captured_at))
        if not accepted:
            return Match(decision="rejected", rule="verification" if outcome == "reject" else "unknown-subject", **common)
        if not decision.allow:  # the claimed subject has no active consent for e-gate verification here and now
            return Match(decision="refused", rule=decision.rule, **common)
        return Match(decision="verified", subject_id=self.reference(v.subject_id), distance=v.distance, **common)


async def run_matcher(settings: Settings, stop: asyncio.Event) -> None:
    rt = PolicyRuntime.for_stage(settings, STAGE, policy_path=settings.policy.file)
    policy = rt.holder.current
    tracks_ttl = max((p.retention_s for p in policy.purposes.values()), default=policy.retention.sightings_s)
    state = MatcherState(settings.matcher.dedupe_window_s, zone_map(settings), tracks_ttl, AlertPolicy.load())
    producer = await start_producer(settings)
    matcher = Matcher(settings, producer, state, rt)
    eraser = ErasureWorker(STAGE, [matcher.erase], audit=rt.audit)
    tasks = [
        asyncio.create_task(rt.background(stop)),
        asyncio.create_task(matcher.keep_keys_warm(stop)),
        asyncio.create_task(eraser.run(settings, stop)),
    ]
    ref: list[AIOKafkaConsumer] = []
    consumer = await start_consumer(settings, group_id=GROUP)
    ref.append(consumer)
    consumer.subscribe([t.ADMITTED.name], listener=_Recover(settings, state, ref))
    pruned_at = time.monotonic()
    try:
        while not stop.is_set():
            if time.monotonic() - pruned_at > PRUNE_EVERY_S:  # trajectories past their purpose's TTL are deleted
                state.trajectories.prune(time.time())
                pruned_at = time.monotonic()
            batch = await consumer.getmany(timeout_ms=200, max_records=settings.matcher.batch_max)
            if not batch:
                continue
            await matcher.decide_batch(batch)
            rt.flush_audit()
            await consumer.commit(offsets_after(batch))
            update_lag(consumer, STAGE, batch)
    finally:
        for task in tasks:
            task.cancel()
        await consumer.stop()
        await producer.stop()
        rt.close()

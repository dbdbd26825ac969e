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

Snapshots: every ``matcher.snapshot_every_s`` (default 5 s; and soon after an erasure) the matcher writes ``matcher-snapshot-<instance>.bin`` (one per replica, ``$PAXSIM_INSTANCE``) in
the state dir (``matcher.snapshot``: atomic, CRC-checked): trajectories, decided event ids, alert ids raised,
and per assigned partition the next admitted offset and the next matches offset. On its first assignment a
process restores the snapshot (dropping trajectories of subjects no longer in the gallery), then reads back
only the matches written after the snapshot's offsets. The index is not in it: the gallery file is the source
of truth (erasures are applied to it), so a snapshot can never bring an erased template back.

Alerts: every trajectory update is evaluated by ``matcher.alerts`` under the alert rules
(``AlertPolicy.load``: off unless enabled, only for the purposes listed). Alert ids are deterministic, each
is published once per run (and written before the match, like track updates); after a restart the ids of
alerts already raised are re-derived from the matches read back, so a replay raises none twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import IllegalStateError
from prometheus_client import Counter, Gauge, Histogram

from broker import topics as t
from broker.clients import start_consumer, start_producer
from broker.messages import Alert, ErasureRequest, Match, MessageError, Sighting, TrackUpdate, check_sighting, decode, encode
from broker.reader import read_from
from broker.stream import AssignmentGauge, acknowledged, commit, dead_letter, offsets_after, update_lag
from core import faults
from core.config import Settings
from core.obs import LOOP_LAG_BUCKETS, watch_loop_lag
from core.paths import gallery_path, instance_name
from core.tasks import supervised
from matcher import metricnames as matcher_metrics
from matcher import snapshot
from matcher.alerts import AlertPolicy, evaluate
from matcher.gallery import Gallery, GallerySealed
from matcher.index import GalleryIndex, SearchResult, search_k
from matcher.metric import comparison
from matcher.site import load_site, site_file
from matcher.trajectory import TrajectoryStore, ZoneMap
from matcher.verify import Verification, Verifier
from policy.crypto import CryptoError, KeyExpired, KeyUnavailable, SealError
from policy.crypto.outputs import Output, OutputKeys, anonymous, is_sealed_blob, open_blob, purpose_epoch_s, seal_blob
from policy.erasure import ErasureWorker
from policy.filters import PostMatchContext
from policy.policyfile import Policy
from policy.runtime import PolicyRuntime
from policy.tracklets import TrackletStore

log = logging.getLogger("paxsim.matcher")

STAGE = "matcher"
PRUNE_EVERY_S = 5.0
SNAPSHOT_FILE = "matcher-snapshot-{instance}.bin"
GROUP = "paxsim-matcher"
DECISIONS = Counter(matcher_metrics.EVENTS_TOTAL, "Admitted sightings decided, by decision", ["decision"])
DUPLICATES = Counter(matcher_metrics.DUPLICATES_TOTAL, "Redelivered sightings skipped because already decided")
EXPIRED_OUTPUTS = Counter(
    "paxsim_matcher_outputs_past_retention_total", "Subject references not published: the event was already past its purpose's retention"
)
SEARCH_SECONDS = Histogram(
    "paxsim_matcher_search_seconds", "FAISS search time per micro-batch", buckets=(1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5)
)
BATCH_SIZE = Histogram("paxsim_matcher_batch_size_events", "Events per micro-batch", buckets=(1, 4, 16, 64, 256, 1024))
E2E_SECONDS = Histogram(
    matcher_metrics.E2E_LATENCY_SECONDS,
    "Capture to decision latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),  # saturated runs reach minutes
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
RESTORED = Counter("paxsim_matcher_snapshot_restored_decisions_total", "Decided event ids restored from the snapshot")
SNAPSHOTS = Counter("paxsim_matcher_snapshots_total", "Snapshots written")
LOOP_LAG = Histogram(matcher_metrics.LOOP_LAG_SECONDS, "How late the matcher's event loop woke a 10 ms sleep", buckets=LOOP_LAG_BUCKETS)
KEYD_WAITS = Counter("paxsim_matcher_keyholder_waits_total", "Batches put back because the key holder was unavailable")
KEYD_RETRY_FIRST_S, KEYD_RETRY_MAX_S = 0.5, 10.0
TASK_RESTARTS = Counter("paxsim_matcher_task_restarts_total", "Background tasks restarted after a failure", ["task"])


def _count_restart(task: str) -> None:
    TASK_RESTARTS.labels(task).inc()


SNAPSHOT_BYTES = Counter("paxsim_matcher_snapshot_written_bytes_total", "Bytes of snapshots written")
SNAPSHOT_SECONDS = Histogram(
    "paxsim_matcher_snapshot_seconds", "Time to capture and write one snapshot", buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
)


class _ServiceState(msgspec.Struct):
    decided: list[tuple[str, float]]
    raised: list[tuple[str, float]]


def _raised(exc: BaseException) -> str:
    """A dead letter's reason for an exception no check foresaw (logged too: it names a missing check)."""
    if faults.disabled("record.isolation"):
        raise exc
    detail = f"{type(exc).__name__}: {str(exc)[:200]}"
    log.warning("record raised in the matcher: dead-lettered", extra={"error": detail})
    return detail


def zone_map(settings: Settings) -> ZoneMap:
    """Walking distances between zones, from the site description (matcher/site.py)."""
    return load_site(site_file(settings)).zone_map()


class MatcherState:
    """What the matcher knows besides the gallery: decided event ids (for exactly-once output) and the
    trajectories of identified subjects (by pseudonym), both rebuilt from the matches topic on assignment."""

    def __init__(self, dedupe_window_s: float, zones: ZoneMap, tracks_ttl_s: float, alerts: AlertPolicy | None = None) -> None:
        self.window = dedupe_window_s
        self.decided: OrderedDict[str, float] = OrderedDict()
        self.trajectories = TrajectoryStore(zones, ttl_s=tracks_ttl_s, dedupe_window_s=dedupe_window_s)
        self.alert_policy = alerts or AlertPolicy()
        self.raised: OrderedDict[str, float] = OrderedDict()  # alert ids already published, within the window
        self.next_input: dict[int, int] = {}  # admitted partition -> next offset to decide
        self.next_match: dict[int, int] = {}  # matches partition -> next offset (everything before is in this state)
        self.base: dict[tuple[str, int], int] = {}  # offsets of the snapshot this process started from
        self.restored = False
        self.changed = False  # since the last snapshot
        self.erased = False  # an erasure since the last snapshot: write the next one soon
        # references erased in this process: a snapshot restored or matches read back later (a replica that
        # joins its group after its erasure worker caught up) must not bring their trajectories back
        self.forgotten: set[str] = set()

    def to_snapshot(self, partitions: list[int], seal: Callable[[bytes], bytes] | None = None) -> snapshot.Snapshot:
        """The state now (call between batches), with the offsets of ``partitions``; ``seal``: how the trajectories
        are kept at rest (sealed so that they die with their first point's retention, :func:`trajectory_sealer`)."""
        offsets = {(t.ADMITTED.name, p): self.next_input[p] for p in partitions if p in self.next_input}
        offsets.update({(t.MATCHES.name, p): self.next_match[p] for p in partitions if p in self.next_match})
        extra = msgspec.msgpack.encode(_ServiceState(list(self.decided.items()), list(self.raised.items())))
        trajectories = self.trajectories.to_bytes()
        if seal is not None:
            trajectories = seal(trajectories)
        return snapshot.Snapshot(b"", trajectories, offsets, {"written_at": f"{time.time():.3f}"}, extra)

    def restore(self, snap: snapshot.Snapshot, known: set[str] | None, outputs: OutputKeys | None = None) -> None:
        """Start from ``snap``; ``known``: subject references still in the gallery (None = keep all). Sealed
        trajectories are opened with ``outputs``; past their retention they are gone, and so left out."""
        data: bytes | None = snap.trajectories
        if data and is_sealed_blob(data):
            try:
                data = open_blob(outputs, data, snapshot.TRAJECTORIES_AAD) if outputs is not None else None
            except (SealError, KeyUnavailable) as exc:  # forged or unopenable now: start without trajectories
                log.warning("snapshot trajectories not restored", extra={"error": type(exc).__name__})
                data = None
        if data:  # past their retention (key gone) or none: nothing to restore, the matches read back hold the rest
            self.trajectories.restore(data)
        for ref in self.trajectories.subjects():
            if ref in self.forgotten or (known is not None and ref not in known):  # erased after the snapshot
                self.trajectories.erase(ref)
        if snap.state:
            st = msgspec.msgpack.decode(snap.state, type=_ServiceState)
            self.decided = OrderedDict(st.decided)
            self.raised = OrderedDict(st.raised)
            RESTORED.inc(len(st.decided))
        self.base = dict(snap.offsets)

    def seen(self, event_id: str) -> bool:
        return event_id in self.decided and not faults.disabled("matcher.dedupe")

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
        if m.decision not in IDENTIFIED or m.subject_id is None or m.subject_id in self.forgotten:
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


async def read_back_matches(
    settings: Settings, starts: dict[int, int], state: MatcherState, outputs: OutputKeys | None = None
) -> dict[int, int]:
    """Replay the matches partitions from ``starts`` into ``state``; return the next input offset per partition.
    Sealed subject references are opened with ``outputs``; one past its purpose's retention names nobody (its
    event id still counts as decided)."""
    next_offset = {p: 0 for p in starts}
    for p, off in starts.items():
        state.next_match[p] = max(state.next_match.get(p, 0), off)
    for rec in await read_from(settings, t.MATCHES.name, starts):
        state.next_match[rec.partition] = max(state.next_match[rec.partition], rec.offset + 1)
        try:
            m = decode(rec.value or b"", Match)
        except MessageError:
            continue
        if outputs is not None:
            try:
                m, _readable = outputs.open(m)
            except CryptoError:  # forged, or the key holder away: the event still counts as decided, naming nobody
                m = anonymous(m)
        state.apply(m)
        RECOVERED.inc()
        next_offset[rec.partition] = max(next_offset[rec.partition], m.source_offset + 1)
    return next_offset


def load_gallery(path, vault) -> Gallery:  # noqa: ANN001
    """The gallery, templates sealed at rest per subject when the run has a key holder (a plaintext file is
    sealed on first load). A sealed file without a key holder is refused: the matcher fails closed."""
    if not path.exists():
        return Gallery()
    sealed = Gallery.file_is_sealed(path)
    if sealed and vault is None:
        raise GallerySealed(f"{path} is sealed per subject and no key holder is reachable (PAXSIM_KEYD_URL/TOKEN)")
    gallery = Gallery.load(path, vault)
    if vault is not None and not sealed:
        gallery.save(path, vault)
        log.info("gallery sealed at rest", extra={"templates": len(gallery)})
    if gallery.dropped:
        log.info("gallery rows of erased subjects skipped", extra={"rows": gallery.dropped})
    return gallery


def snapshot_path(settings: Settings, instance: str | None = None) -> Path:
    """This replica's snapshot: replicas never share one (each restores only what it wrote itself)."""
    name = instance or instance_name()
    return gallery_path(settings).with_name(SNAPSHOT_FILE.format(instance=name))


class _Recover(AssignmentGauge):
    """On assignment: start from the snapshot (first assignment of this process), rebuild decided events from
    the matches written after it, seek past them, then report the assignment."""

    def __init__(self, settings: Settings, state: MatcherState, consumer_ref: list[AIOKafkaConsumer], matcher: Matcher) -> None:
        super().__init__(STAGE)
        self.settings, self.state, self.ref, self.matcher = settings, state, consumer_ref, matcher

    async def _restore(self) -> None:
        try:
            snap = await asyncio.to_thread(snapshot.read, snapshot_path(self.settings))
        except snapshot.SnapshotError as exc:  # torn or corrupt: recover from the matches topic alone
            log.warning("matcher snapshot ignored", extra={"error": str(exc)})
            return
        if snap is None:
            return
        known = await self.matcher.known_references()
        try:
            self.state.restore(snap, known, self.matcher.rt.outputs)
        except ValueError as exc:  # a corrupt trajectory part: recover from the matches topic alone
            log.warning("matcher snapshot trajectories ignored", extra={"error": str(exc)})
        log.info("restored from snapshot", extra={"decided": len(self.state.decided), "subjects": len(self.state.trajectories.subjects())})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer, state = self.ref[0], self.state
        if not state.restored:
            state.restored = True
            await self._restore()
        starts = {tp.partition: state.base.get((t.MATCHES.name, tp.partition), 0) for tp in assigned}
        resumes = await read_back_matches(self.settings, starts, state, self.matcher.rt.outputs)
        for tp in assigned:
            resume = max(resumes[tp.partition], state.base.get((t.ADMITTED.name, tp.partition), 0))
            committed = await consumer.committed(tp) or 0
            if resume > committed:
                consumer.seek(tp, resume)
            state.next_input[tp.partition] = max(resume, committed)
            log.info("partition assigned", extra={"partition": tp.partition, "committed": committed, "resume": max(resume, committed)})
        await super().on_partitions_assigned(assigned)


class Matcher:
    """Decides micro-batches: decode, unseal, dedupe by event id, one search per batch, post-match policy, outputs.

    What leaves the matcher names a subject only by pseudonym (``policy.crypto.SubjectVault``) when the run has a
    key holder: after an erasure the subject key is destroyed and every copy on the broker becomes unlinkable."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer, state: MatcherState, rt: PolicyRuntime) -> None:
        self.settings = settings
        gallery = load_gallery(gallery_path(settings), rt.vault)
        self.metric, self.threshold, self.margin = comparison(settings.matcher)  # MetricError: a clear start-up failure
        self.index = GalleryIndex.build(gallery.subject_ids, self._space(gallery.vectors)) if len(gallery) else None
        GALLERY_SIZE.set(len(gallery))
        self.rt = rt
        self.chain = rt.post_match_chain()
        if self.metric is not None:
            log.info(
                "learned metric", extra={"file": str(settings.matcher.metric_file), "threshold": self.threshold, "margin": self.margin}
            )
        self.producer = producer
        self.state = state
        self.tracklets = TrackletStore.for_policy(rt.holder)  # anonymous flow counting, off unless the policy enables it
        log.info("gallery loaded", extra={"templates": len(gallery), "subjects": len(gallery.subjects())})

    def _space(self, vectors: np.ndarray) -> np.ndarray:
        """Templates in the space the matcher compares them in (the learned metric's, when configured)."""
        return self.metric.apply(vectors) if self.metric is not None else vectors

    def subjects(self) -> list[str]:
        return self.index.subjects() if self.index is not None else []

    def reference(self, subject_id: str) -> str:
        """How a subject is named outside the matcher: its pseudonym (memoised per batch), or the id when the run
        has no key holder or enforcement is off."""
        return self.rt.reference(subject_id)

    async def keep_keys_warm(self, stop: asyncio.Event, every_s: float = 2.0) -> None:
        """Refresh the gallery's subject keys in one round trip, off the event loop, so pseudonyms never block it."""
        while not stop.is_set() and self.rt.vault is not None:
            subjects = self.subjects()
            if subjects:
                try:
                    await asyncio.to_thread(self.rt.vault.warm, subjects, True)
                except Exception as exc:  # key holder briefly unreachable: pseudonym() will retry
                    # the type only: a lagging replica's KeyExpired concerns an erased subject, named in no log
                    log.warning("subject key refresh failed", extra={"error": type(exc).__name__})
            try:
                await asyncio.wait_for(stop.wait(), every_s)
            except TimeoutError:
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
            gallery = Gallery.load(path)  # sealed rows stay sealed: nobody else's template is opened here
            if gallery.remove(req.subject_id):
                gallery.save(path, self.rt.vault)
        self.state.trajectories.erase(ref or req.subject_id)
        self.state.forgotten.update(r for r in (ref, req.subject_id) if r)
        self.state.erased = True  # the next snapshot (soon) no longer holds the trajectory
        if self.rt.vault is not None:
            self.rt.vault.erase(req.subject_id)

    async def known_references(self) -> set[str] | None:
        """How the gallery's subjects are named in trajectories (pseudonyms with a key holder); None if unknown."""
        subjects = self.subjects()
        if self.rt.vault is None:
            return set(subjects)
        try:
            await asyncio.to_thread(self.rt.vault.warm, subjects, True)
            known = set()
            for sid in subjects:
                with contextlib.suppress(KeyExpired):  # erased (its key is gone for good): none of its points are kept
                    known.add(self.rt.vault.pseudonym(sid))
            return known
        except Exception as exc:  # key holder unreachable: keep everything; erasures still arrive on their topic
            log.warning("cannot name gallery subjects for the snapshot filter", extra={"error": repr(exc)})
            return None

    async def resolve_claims(self, claims: list[str]) -> list[str | None]:
        """The gallery subject each claim names, or None (not enrolled, or erased). Claims arrive as subject ids
        inside the sealed payload (opened with the face), so no key holder round trip is needed."""
        return [c if self.index is not None and c in self.index else None for c in claims]

    def _verify_many(self, claims: list[tuple[str, np.ndarray]]) -> list[Verification]:
        """1:1 decisions in the matcher's space (run in a worker thread)."""
        assert self.index is not None
        if self.metric is not None and claims:
            vecs = self._space(np.stack([np.asarray(v, np.float32) for _, v in claims]))
            claims = [(sid, v) for (sid, _), v in zip(claims, vecs)]
        return Verifier(self.index, self.threshold).verify_many(claims)

    async def _verify(self, claims: list[tuple[str, np.ndarray]]) -> list[Verification]:
        if self.index is None:
            return []
        t0 = time.perf_counter()
        out = await asyncio.to_thread(self._verify_many, claims)
        VERIFY_SECONDS.observe(time.perf_counter() - t0)
        return out

    async def _search(self, queries: np.ndarray) -> list[SearchResult | None]:
        if self.index is None:
            return [None] * len(queries)
        t0 = time.perf_counter()
        index, k = self.index, search_k(self.margin)
        results = await asyncio.to_thread(lambda: index.search(self._space(queries), k))  # FAISS releases the GIL
        SEARCH_SECONDS.observe(time.perf_counter() - t0)
        return list(results)

    async def decide_batch(self, batch: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        producer, state = self.producer, self.state
        pending: list[tuple[int, int, Sighting, np.ndarray | None]] = []
        records_of: list[ConsumerRecord] = []  # pending[i] came from records_of[i]
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
                except Exception as exc:  # noqa: BLE001  no record, however built, may stop the matcher
                    dead.append(await dead_letter(producer, rec, STAGE, "internal", _raised(exc)))
                    continue
                if state.seen(s.event_id) or s.event_id in in_batch:  # redelivered, or delivered twice in this batch
                    DUPLICATES.inc()
                    continue
                try:
                    s = self.rt.unseal(s)  # the face, and any e-gate claim sealed with it
                    vec = s.vector()
                except KeyExpired:
                    vec = None  # past its retention: unreadable by design, decided as refused below
                except (KeyUnavailable, SealError, MessageError) as exc:
                    dead.append(await dead_letter(producer, rec, STAGE, "unreadable", str(exc)))
                    continue
                except Exception as exc:  # noqa: BLE001  e.g. a key id whose epoch overflows the clock arithmetic
                    dead.append(await dead_letter(producer, rec, STAGE, "internal", _raised(exc)))
                    continue
                in_batch.add(s.event_id)
                pending.append((tp.partition, rec.offset, s, vec))
                records_of.append(rec)
        readable = [i for i, p in enumerate(pending) if p[3] is not None and not p[2].claimed_subject]
        claimed = [i for i, p in enumerate(pending) if p[3] is not None and p[2].claimed_subject]
        results: list[SearchResult | Verification | None] = [None] * len(pending)
        refused: set[int] = set()  # dead-lettered after all (their search raised)
        if readable:
            BATCH_SIZE.observe(len(readable))
            try:
                found = await self._search(np.stack([pending[i][3] for i in readable]))
            except (KeyUnavailable, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001  one record the batch cannot hold: search them one by one
                log.warning("batch search failed; searching its records one by one", extra={"error": _raised(exc)})
                found, bad = [], set()
                for i in readable:
                    try:
                        found += await self._search(np.asarray(pending[i][3])[None, :])
                    except Exception as one:  # noqa: BLE001
                        found.append(None)
                        bad.add(i)
                        dead.append(await dead_letter(producer, records_of[i], STAGE, "internal", _raised(one)))
                refused |= bad
            for i, r in zip(readable, found):
                results[i] = r
        if claimed:
            subjects = await self.resolve_claims([pending[i][2].claimed_subject for i in claimed])
            known = [(i, sid) for i, sid in zip(claimed, subjects) if sid is not None]
            for (i, _sid), v in zip(known, await self._verify([(sid, pending[i][3]) for i, sid in known])):
                results[i] = v
        # every subject this batch may name gets its key now, before any state changes: a key holder that is down
        # raises KeyUnavailable here, and the batch is read again later (run_matcher), with nothing half-decided
        if self.rt.vault is not None and self.rt.enforcing:
            named = {r.subject_id for r in results if isinstance(r, Verification) and r.accepted}
            named |= {hit.subject_id for r in results if isinstance(r, SearchResult) and (hit := r.identify(self.threshold, self.margin))}
            if named:
                await asyncio.to_thread(self.rt.vault.warm, sorted(named), True)
            if self.rt.outputs is not None and named:  # the purpose rings too: sealing below needs no key holder
                # the oldest capture and now, per purpose: a ring that can seal both derives every epoch between
                oldest: dict[str, float] = {}
                for _part, _off, s, _vec in pending:
                    if purpose := self._purpose(s.zone):
                        oldest[purpose] = min(oldest.get(purpose, s.captured_at), s.captured_at)
                when = {(p, at) for p, at in oldest.items()} | {(p, time.time()) for p in oldest}
                await asyncio.to_thread(self.rt.outputs.warm, when)
        tracks, matches = [], []
        now = time.time()
        for k, ((partition, offset, s, vec), result, rec) in enumerate(zip(pending, results, records_of)):
            if k in refused:
                continue
            try:
                if vec is None:
                    m = self._expired(s, partition, offset, now)
                elif s.claimed_subject:
                    m = self._decide_claim(s, result, partition, offset, now)  # type: ignore[arg-type]
                else:
                    m = self._decide(s, result, partition, offset, now)  # type: ignore[arg-type]
                update, alerts = state.apply(m)
            except (KeyUnavailable, asyncio.CancelledError):
                raise  # the key holder is away: the whole batch is read again (run_matcher)
            except Exception as exc:  # noqa: BLE001  a field no check foresaw: this record goes, the batch goes on
                dead.append(await dead_letter(producer, rec, STAGE, "internal", _raised(exc)))
                continue
            if update is not None and (out := self._sealed(update, m.purpose)) is not None:
                if not update.plausible:
                    IMPLAUSIBLE.inc()  # faster than walking between the zones: probably a false match
                # keyed by camera: a key naming the subject would outlive the sealed reference on the log
                tracks.append(await producer.send(t.TRACKS.name, encode(out), key=update.camera_id.encode()))
            for a in alerts:
                if (sealed_alert := self._sealed(a, m.purpose)) is None:
                    continue
                ALERTS.labels(a.kind).inc()
                tracks.append(await producer.send(t.ALERTS.name, encode(sealed_alert), key=a.zone.encode()))
            DECISIONS.labels(m.decision).inc()
            self.tracklets.observe(s, m, now)  # unknown/refused/rejected only; keeps zone and times, never the face
            E2E_SECONDS.observe(max(0.0, now - s.captured_at))
            matches.append((partition, self._sealed(m, m.purpose) or msgspec.structs.replace(m, subject_id=None)))
        await acknowledged(tracks + dead)  # a recorded match implies its track update and alerts exist
        sent = [await producer.send(t.MATCHES.name, encode(m), key=m.camera_id.encode(), partition=p) for p, m in matches]
        for md in await asyncio.gather(*sent):
            state.next_match[md.partition] = max(state.next_match.get(md.partition, 0), md.offset + 1)
        state.changed = True

    def _sealed(self, msg: Output, purpose: str) -> Output | None:
        """``msg`` as it goes on its topic: its subject reference sealed under ``purpose``'s epoch key (per-purpose
        retention, policy.crypto.outputs); None when its time is already past that retention (nobody may be
        named then). Unchanged without a key holder or with enforcement off."""
        if self.rt.outputs is None or not self.rt.enforcing:
            return msg
        try:
            return self.rt.outputs.seal(msg, purpose)
        except KeyExpired:
            EXPIRED_OUTPUTS.inc()
            return None
        except KeyUnavailable:  # warmed before the batch: not expected; the event is decided, naming nobody
            EXPIRED_OUTPUTS.inc()
            log.warning("purpose key unavailable after warming: a decision published naming nobody")
            return None

    def _common(self, s: Sighting, purpose: str, partition: int, offset: int, now: float) -> dict:
        return dict(
            event_id=s.event_id,
            camera_id=s.camera_id,
            zone=s.zone,
            purpose=purpose,
            captured_at=s.captured_at,
            matched_at=now,
            source_partition=partition,
            source_offset=offset,
        )

    def _purpose(self, zone: str) -> str:
        rule = self.rt.holder.current.zones.get(zone)
        return rule.purpose if rule is not None and rule.biometric and rule.purpose else ""

    def _expired(self, s: Sighting, partition: int, offset: int, now: float) -> Match:
        EXPIRED.inc()
        return Match(decision="refused", rule="retention", **self._common(s, self._purpose(s.zone), partition, offset, now))

    def _decide(self, s: Sighting, result: SearchResult | None, partition: int, offset: int, now: float) -> Match:
        purpose = self._purpose(s.zone)
        hit = result.identify(self.threshold, self.margin) if result is not None else None
        common = self._common(s, purpose, partition, offset, now)
        if not purpose:
            return Match(decision="refused", rule="purpose", **common)
        decision = self.chain(PostMatchContext(hit.subject_id if hit else None, purpose, s.zone, s.captured_at, s.event_id))
        if not decision.allow:
            # unknown or non-consented: the embedding is dropped here, only the count survives
            return Match(decision="unknown" if decision.rule == "known_face" else "refused", rule=decision.rule, **common)
        assert hit is not None
        try:
            return Match(decision="match", subject_id=self.reference(hit.subject_id), distance=hit.distance, **common)
        except KeyExpired:  # erased after the batch's consent snapshot: nobody is named
            return Match(decision="refused", rule="erased", **common)

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
        decision = self.chain(PostMatchContext(v.subject_id if accepted else None, purpose, s.zone, s.captured_at, s.event_id))
        if not accepted:
            return Match(decision="rejected", rule="verification" if outcome == "reject" else "unknown-subject", **common)
        if not decision.allow:  # the claimed subject has no active consent for e-gate verification here and now
            return Match(decision="refused", rule=decision.rule, **common)
        try:
            return Match(decision="verified", subject_id=self.reference(v.subject_id), distance=v.distance, **common)
        except KeyExpired:  # erased after the batch's consent snapshot: nobody is named
            return Match(decision="refused", rule="erased", **common)


def trajectory_sealer(state: MatcherState, outputs: OutputKeys, policy: Policy) -> Callable[[bytes], bytes]:
    """Seal a snapshot's trajectories under the purpose with the shortest retention, at the time that makes the
    key die when the first point it holds reaches its own retention (at most one epoch later): a snapshot left on
    disk (a replica stopped) names nobody past any point's retention. Points already past it are pruned first."""
    shortest = min(policy.purposes, key=lambda p: policy.purposes[p].retention_s)
    ttl = policy.purposes[shortest].retention_s
    epoch = purpose_epoch_s(ttl, policy.retention.epoch_s)

    def seal(data: bytes) -> bytes:  # called right after a prune (write_snapshot): no point is past its retention
        first = state.trajectories.first_expiry()
        if first is None:
            return data  # no point held: nothing personal
        now = time.time()
        # an epoch's key dies at its start + TTL, up to one epoch before a time in it reaches the TTL: never seal
        # under an epoch that starts before now - TTL (its key may be gone), so at least one epoch later than that
        at = min(now, max(first - ttl, now - ttl + epoch))
        return seal_blob(outputs, data, shortest, at, snapshot.TRAJECTORIES_AAD)

    return seal


async def write_snapshot(
    settings: Settings, state: MatcherState, partitions: list[int], seal: Callable[[bytes], bytes] | None = None
) -> None:
    """Capture the state between batches, write it off the event loop (atomic file, fsync)."""
    t0 = time.perf_counter()
    if seal is not None:
        state.trajectories.prune(time.time())  # each point by its purpose's retention, before it goes to disk
    try:
        snap = state.to_snapshot(partitions, seal)
    except (KeyExpired, KeyUnavailable) as exc:  # the purpose key cannot seal now: keep no trajectories on disk
        log.warning("snapshot written without trajectories: they could not be sealed", extra={"error": type(exc).__name__})
        snap = state.to_snapshot(partitions, lambda _data: b"")
    state.changed = state.erased = False
    size = await asyncio.to_thread(snapshot.write, snapshot_path(settings), snap)
    SNAPSHOTS.inc()
    SNAPSHOT_BYTES.inc(size)
    SNAPSHOT_SECONDS.observe(time.perf_counter() - t0)


async def run_matcher(settings: Settings, stop: asyncio.Event, rt: PolicyRuntime | None = None) -> None:
    """Run until ``stop``. ``rt``: the stage's policy runtime (default: built from ``settings``; closed on return)."""
    rt = rt or PolicyRuntime.for_stage(settings, STAGE, policy_path=settings.policy.file)
    policy = rt.holder.current
    tracks_ttl = max((p.retention_s for p in policy.purposes.values()), default=policy.retention.sightings_s)
    state = MatcherState(settings.matcher.dedupe_window_s, zone_map(settings), tracks_ttl, AlertPolicy.load())
    # each trajectory point kept only as long as its zone's purpose allows (the live holder's policy, reloads too)
    state.trajectories.ttl_for_zone = lambda zone: rt.holder.current.retention_for(rt.holder.current.purpose_for_zone(zone) or "")
    sealer = trajectory_sealer(state, rt.outputs, policy) if rt.outputs is not None and rt.enforcing and policy.purposes else None
    producer = await start_producer(settings)
    matcher = Matcher(settings, producer, state, rt)
    eraser = ErasureWorker(STAGE, [matcher.erase], audit=rt.audit, control=rt.control)
    if rt.vault is not None and matcher.subjects():  # subject keys warm before the first batch: no inline fetches
        await asyncio.to_thread(rt.vault.warm, matcher.subjects(), True)
    tasks = [
        asyncio.create_task(rt.background(stop)),
        asyncio.create_task(watch_loop_lag(LOOP_LAG, stop)),
        asyncio.create_task(supervised("keys", lambda: matcher.keep_keys_warm(stop), stop, _count_restart)),
        asyncio.create_task(supervised("erasure", lambda: eraser.run(settings, stop), stop, _count_restart)),
    ]
    ref: list[AIOKafkaConsumer] = []
    consumer = await start_consumer(settings, group_id=GROUP)
    ref.append(consumer)
    consumer.subscribe([t.ADMITTED.name], listener=_Recover(settings, state, ref, matcher))
    pruned_at = snapped_at = time.monotonic()
    every = settings.matcher.snapshot_every_s
    backoff = KEYD_RETRY_FIRST_S
    try:
        while not stop.is_set():
            if time.monotonic() - pruned_at > min(PRUNE_EVERY_S, matcher.tracklets.config.ttl_s / 4):
                state.trajectories.prune(time.time())  # trajectories past their purpose's TTL are deleted
                matcher.tracklets.prune(time.time())  # anonymous tracklets past theirs
                pruned_at = time.monotonic()
            if (state.erased or (state.changed and time.monotonic() - snapped_at > every)) and consumer.assignment():
                await write_snapshot(settings, state, [tp.partition for tp in consumer.assignment()], sealer)
                snapped_at = time.monotonic()
            batch = await consumer.getmany(timeout_ms=200, max_records=settings.matcher.batch_max)
            if not batch:
                continue
            try:
                await matcher.decide_batch(batch)
            except KeyUnavailable as exc:  # the key holder is down or restarting: wait, keep the offsets, read again
                KEYD_WAITS.inc()
                log.error("key holder unavailable; the batch will be read again", extra={"error": str(exc), "retry_s": backoff})
                for tp, records in batch.items():
                    with contextlib.suppress(IllegalStateError):  # revoked meanwhile: its new owner reads it
                        consumer.seek(tp, records[0].offset)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff)
                backoff = min(backoff * 2, KEYD_RETRY_MAX_S)
                continue
            backoff = KEYD_RETRY_FIRST_S
            rt.flush_audit()
            done = offsets_after(batch)
            await commit(consumer, done, STAGE)
            for tp, off in done.items():
                state.next_input[tp.partition] = off
            update_lag(consumer, STAGE, batch)
    finally:
        for task in tasks:
            task.cancel()
        await consumer.stop()
        await producer.stop()
        rt.close()

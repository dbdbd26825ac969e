"""The dashboard's view of the stream: matches, track updates, zone counts, alerts and erasures.

Aggregates (counts by decision, rule, zone and camera, zone-to-zone flows, a per-second timeline) are kept
for the live panels. The only identity data is the trajectory store (subject → zone visits) served by the
authenticated API; each point is deleted when its purpose's retention (the policy) has passed and every
point of a subject when an erasure request for it arrives. No embedding ever reaches the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter, OrderedDict, defaultdict, deque
from dataclasses import dataclass, field

from aiokafka import TopicPartition

from broker import topics as t
from broker.clients import start_consumer
from broker.messages import Alert, ErasureRequest, Match, MessageError, TrackUpdate, ZoneCount, decode
from core.config import Settings
from dashboard import metrics as M
from policy.crypto import CryptoError, EpochKeyRing, KeyUnavailable
from policy.crypto.outputs import Output, OutputKeys, anonymous
from policy.erasure import open_request

log = logging.getLogger("paxsim.dashboard")

TIMELINE_S = 300  # seconds of per-second history kept for the live charts
RETRY_ERASURES_S = 2.0  # how often erasure requests read during a key-holder outage are tried again
FOLLOWED = (t.MATCHES, t.TRACKS, t.ZONE_COUNTS, t.ALERTS, t.ERASURES)


@dataclass(slots=True)
class Visit:
    event_id: str
    captured_at: float
    zone: str
    camera_id: str
    purpose: str
    prev_zone: str | None
    plausible: bool


@dataclass(slots=True)
class CameraStat:
    zone: str
    last_seen: float = 0.0  # wall time of its latest event (capture or count window end)
    decided: int = 0  # sightings decided by the matcher
    counted: int = 0  # faces counted in a non-biometric zone


@dataclass(slots=True)
class ErasureStat:
    request_id: str
    subject_id: str
    requested_at: float
    applied_at: float
    points_removed: int

    @property
    def latency_s(self) -> float:
        return max(0.0, self.applied_at - self.requested_at)


@dataclass
class StreamView:
    """Everything the dashboard knows from the topics. ``ttl_for(purpose)`` bounds how long points live."""

    zone_purpose: dict[str, str] = field(default_factory=dict)
    ttl: dict[str, float] = field(default_factory=dict)
    default_ttl_s: float = 3600.0
    decisions: Counter[str] = field(default_factory=Counter)
    refused_by_rule: Counter[str] = field(default_factory=Counter)
    matches_by_zone: Counter[str] = field(default_factory=Counter)
    unknown_by_zone: Counter[str] = field(default_factory=Counter)
    zone_faces: Counter[str] = field(default_factory=Counter)
    flows: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    track_events: OrderedDict[str, None] = field(default_factory=OrderedDict)
    timeline: dict[int, Counter[str]] = field(default_factory=dict)
    cameras: dict[str, CameraStat] = field(default_factory=dict)
    trajectories: dict[str, list[Visit]] = field(default_factory=dict)
    erased: dict[str, float] = field(default_factory=dict)  # subject → latest erasure request time
    # the control key class's ring when the run has a key holder (erasure requests are sealed under it)
    control: EpochKeyRing | None = None
    # the purpose rings: subject references on matches, tracks and alerts travel sealed (policy.crypto.outputs);
    # one past its purpose's retention opens to nobody and is counted, never stored
    outputs: OutputKeys | None = None
    erasures: dict[str, ErasureStat] = field(default_factory=dict)
    unopened: list[ErasureRequest] = field(default_factory=list)  # read while the key holder was down
    alerts: deque[Alert] = field(default_factory=lambda: deque(maxlen=50))
    records: int = 0
    connected: bool = False
    # the feed writes on the event loop while API endpoints read in the thread pool: every access holds it
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def ttl_for(self, purpose: str) -> float:
        return self.ttl.get(purpose, self.default_ttl_s)

    # ------------------------------------------------------------------------------------ input

    def apply(self, topic: str, value: bytes, now: float | None = None) -> None:
        """Fold one record in. Raises MessageError for an undecodable one (the caller counts and skips it)."""
        with self.lock:
            self._apply(topic, value, time.time() if now is None else now)

    def _apply(self, topic: str, value: bytes, now: float) -> None:
        self.records += 1
        if topic == t.MATCHES.name:
            match: Match = decode(value, Match)
            self._match(self._opened(match), now)
        elif topic == t.TRACKS.name:
            raw_tu: TrackUpdate = decode(value, TrackUpdate)
            tu = self._opened(raw_tu)
            if tu.subject_id:
                self._track(tu)
        elif topic == t.ZONE_COUNTS.name:
            zc = decode(value, ZoneCount)
            self.zone_faces[zc.zone] += zc.faces
            cam = self.cameras.setdefault(zc.camera_id, CameraStat(zc.zone))
            cam.counted += zc.faces
            cam.last_seen = max(cam.last_seen, zc.window_end)
            self._tick(zc.window_end)["counted"] += zc.faces
            M.ZONE_FACES.labels(zc.zone, "counted").inc(zc.faces)
            M.CAMERA_LAST.labels(zc.camera_id).set(cam.last_seen)
        elif topic == t.ALERTS.name:
            alert: Alert = decode(value, Alert)
            self.alerts.append(self._opened(alert))
        elif topic == t.ERASURES.name:
            self._erasure(decode(value, ErasureRequest), now)

    def _opened(self, msg: Output) -> Output:
        """``msg`` with its sealed subject reference opened (None when its purpose key is gone: past retention)."""
        if not msg.sealed:
            return msg
        if self.outputs is None:
            raise MessageError("a sealed subject reference and no key holder to open it")
        try:
            return self.outputs.open(msg)[0]
        except KeyUnavailable:  # the key holder is away: counted, anonymous (re-reading would count it twice)
            return anonymous(msg)
        except CryptoError as exc:  # forged (SealError) or refused: the caller counts and skips it
            raise MessageError(str(exc)) from None

    def _erasure(self, req: ErasureRequest, now: float) -> None:
        try:
            opened = open_request(req, self.control)
        except KeyUnavailable as exc:  # the key holder is down: applied once it answers (retry_erasures)
            log.warning("erasure request waits for the key holder", extra={"request_id": req.request_id, "error": repr(exc)})
            self.unopened.append(req)
            return
        except CryptoError as exc:  # forged, tampered
            log.error("erasure request not applied", extra={"request_id": req.request_id, "error": repr(exc)})
            return
        self._erase(opened, now)

    def retry_erasures(self, now: float | None = None) -> int:
        """Try again the erasure requests read while the key holder could not answer; returns how many remain."""
        with self.lock:
            waiting, self.unopened = self.unopened, []
        for req in waiting:  # the key holder round trip happens outside the lock (API readers never wait on it)
            try:
                opened = open_request(req, self.control)
            except KeyUnavailable:
                with self.lock:
                    self.unopened.append(req)
                continue
            except CryptoError as exc:
                log.error("erasure request not applied", extra={"request_id": req.request_id, "error": repr(exc)})
                continue
            self.erase(opened, time.time() if now is None else now)
        return len(self.unopened)

    def _tick(self, at: float) -> Counter[str]:
        sec = int(at)
        bucket = self.timeline.get(sec)
        if bucket is None:
            bucket = self.timeline[sec] = Counter()
            if len(self.timeline) > TIMELINE_S * 2:
                for old in sorted(self.timeline)[: len(self.timeline) - TIMELINE_S]:
                    del self.timeline[old]
        return bucket

    def _match(self, m: Match, now: float) -> None:
        self.decisions[m.decision] += 1
        if m.decision in ("match", "verified"):
            self.matches_by_zone[m.zone] += 1
        else:
            self.unknown_by_zone[m.zone] += 1
            if m.rule:
                self.refused_by_rule[m.rule] += 1
        self._tick(m.matched_at)[m.decision] += 1
        cam = self.cameras.setdefault(m.camera_id, CameraStat(m.zone))
        cam.decided += 1
        cam.last_seen = max(cam.last_seen, m.captured_at)
        M.CAMERA_LAST.labels(m.camera_id).set(cam.last_seen)
        M.ZONE_FACES.labels(m.zone, m.decision).inc()
        M.INGEST_SECONDS.observe(max(0.0, now - m.captured_at))

    def _track(self, tu: TrackUpdate) -> None:
        if tu.event_id in self.track_events:
            return  # at-least-once topic: idempotent by event id
        self.track_events[tu.event_id] = None
        if len(self.track_events) > 200_000:
            self.track_events.popitem(last=False)
        if tu.prev_zone and tu.prev_zone != tu.zone:
            self.flows[tu.prev_zone][tu.zone] += 1
            M.ZONE_FLOWS.labels(tu.prev_zone, tu.zone).inc()
        erased_at = self.erased.get(tu.subject_id)
        if erased_at is not None and tu.captured_at <= erased_at:
            return  # captured before the subject's erasure: never stored again
        purpose = self.zone_purpose.get(tu.zone, "")
        visit = Visit(tu.event_id, tu.captured_at, tu.zone, tu.camera_id, purpose, tu.prev_zone, tu.plausible)
        self.trajectories.setdefault(tu.subject_id, []).append(visit)

    def erase(self, req: ErasureRequest, now: float) -> ErasureStat:
        """Delete every stored point of the subject; idempotent by request id. A later copy of the same request
        that names a reference the first did not (the topic's copy carries the pseudonym) is applied too."""
        with self.lock:
            return self._erase(req, now)

    def _erase(self, req: ErasureRequest, now: float) -> ErasureStat:
        removed = 0
        for name in {req.subject_id, req.subject_ref} - {""}:  # stored under the pseudonym when the run has keys
            self.erased[name] = max(self.erased.get(name, 0.0), req.requested_at)
            removed += len(self.trajectories.pop(name, []))
        seen = self.erasures.get(req.request_id)
        if seen is not None:
            seen.points_removed += removed
            return seen
        stat = ErasureStat(req.request_id, req.subject_id, req.requested_at, now, removed)
        self.erasures[req.request_id] = stat
        M.ERASURES.inc()
        M.ERASURE_SECONDS.observe(stat.latency_s)
        return stat

    # ------------------------------------------------------------------------------------ retention

    def expire(self, now: float | None = None) -> dict[str, dict]:
        """Delete points past their purpose's TTL; return per purpose: oldest age, TTL, points held."""
        with self.lock:
            return self._expire(time.time() if now is None else now)

    def _expire(self, now: float) -> dict[str, dict]:
        oldest: dict[str, float] = {}
        held: Counter[str] = Counter()
        for sid in list(self.trajectories):
            keep = []
            for v in self.trajectories[sid]:
                if now - v.captured_at > self.ttl_for(v.purpose):
                    M.EXPIRED.labels(v.purpose).inc()
                    continue
                keep.append(v)
                held[v.purpose] += 1
                oldest[v.purpose] = min(oldest.get(v.purpose, v.captured_at), v.captured_at)
            if keep:
                self.trajectories[sid] = keep
            else:
                del self.trajectories[sid]
        out = {}
        for purpose in sorted(set(self.zone_purpose.values()) | set(held)):
            age = now - oldest[purpose] if purpose in oldest else 0.0
            ttl = self.ttl_for(purpose)
            M.DATA_AGE.labels(purpose).set(age)
            M.DATA_TTL.labels(purpose).set(ttl)
            M.STORED.labels(purpose).set(held[purpose])
            out[purpose] = {"oldest_age_s": age, "ttl_s": ttl, "points": held[purpose]}
        return out

    # ------------------------------------------------------------------------------------ output

    def summary(self) -> dict:
        """Aggregates only: no subject id, no trajectory."""
        with self.lock:
            return self._summary()

    def _summary(self) -> dict:
        return {
            "decisions": dict(self.decisions),
            "refused_by_rule": dict(self.refused_by_rule),
            "matches_by_zone": dict(self.matches_by_zone),
            "unknown_by_zone": dict(self.unknown_by_zone),
            "count_only_faces_by_zone": dict(self.zone_faces),
            "zone_flows": {a: dict(b) for a, b in self.flows.items()},
            "records": self.records,
            "erasures_applied": len(self.erasures),
        }

    def trajectory(self, subject_id: str) -> list[Visit]:
        with self.lock:
            return sorted(self.trajectories.get(subject_id, []), key=lambda v: v.captured_at)

    def subjects(self) -> list[tuple[str, list[Visit]]]:
        """Every subject with stored points and a copy of its visits (a consistent read)."""
        with self.lock:
            return [(sid, list(visits)) for sid, visits in self.trajectories.items()]

    def refs(self) -> list[dict]:
        """Every subject reference held in memory (trajectory points, recent alerts), for the leak scanner."""
        with self.lock:
            rows = [
                {
                    "where": f"trajectories[{sid}]@{v.captured_at:.3f}",
                    "subject_ref": sid,
                    "purpose": v.purpose,
                    "zone": v.zone,
                    "at": v.captured_at,
                }
                for sid, visits in self.trajectories.items()
                for v in visits
            ]
            rows += [
                {"where": f"alerts[{a.kind}]@{a.at:.3f}", "subject_ref": a.subject_id, "purpose": None, "zone": None, "at": a.at}
                for a in self.alerts
                if a.subject_id
            ]
            return rows


async def follow(settings: Settings, view: StreamView, stop: asyncio.Event) -> None:
    """Read the output topics from the beginning into ``view`` until ``stop``."""
    consumer = await start_consumer(settings, group_id=None, background=True)
    try:
        await consumer.topics()  # refreshes metadata
        names = [tp.name for tp in FOLLOWED]
        tps = [TopicPartition(n, p) for n in names for p in sorted(consumer.partitions_for_topic(n) or {0})]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        view.connected = True
        retried = 0.0
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200, max_records=2000)
            now = time.time()
            if view.unopened and now - retried > RETRY_ERASURES_S:
                retried = now
                await asyncio.to_thread(view.retry_erasures, now)  # may wait on the key holder: off the loop
            for tp, recs in batch.items():
                counter = M.RECORDS.labels(tp.topic)
                for rec in recs:
                    counter.inc()
                    try:
                        view.apply(tp.topic, rec.value or b"", now)
                    except MessageError as exc:
                        M.UNDECODABLE.labels(tp.topic).inc()
                        log.warning("skipping undecodable record", extra={"topic": tp.topic, "offset": rec.offset, "error": str(exc)})
    finally:
        view.connected = False
        await consumer.stop()

"""Movement tracking for consented subjects: sightings → zone visits, dwell times, transition graph.

:class:`TrajectoryStore` keeps, per subject, the time-ordered sightings still inside retention and derives
zone *visits* (consecutive sightings in one zone) from them. Each applied sighting returns a
:class:`broker.messages.TrackUpdate` whose ``plausible`` flag is False when the subject reached the zone faster
than a brisk walker could (``ZoneMap.min_transit_s``): a probable mismatch, not a sprint.

- Idempotent: ``apply`` ignores an ``event_id`` it has already applied (kept for ``dedupe_window_s``), so a
  replay after a crash or a producer retry applies nothing twice. A sighting captured before the pruned
  dedupe window is refused (counted in ``stale``): its id can no longer be checked.
- Late sightings (out of capture-time order, e.g. from another partition) are inserted in time order.
- ``prune(now)`` drops sightings older than the retention ``ttl_s``; ``erase(subject)`` drops a subject now.
- ``to_bytes``/``from_bytes`` snapshot everything, to be written with the index and the committed offsets.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
import numpy as np

from broker.messages import TrackUpdate

WALK_SPEED_MIN_MPS = 1.0
WALK_SPEED_MAX_MPS = 1.45


@dataclass(frozen=True, slots=True)
class ZoneMap:
    """Walking distances between zones (metres, symmetric) and the fastest plausible walking speed."""

    distances_m: Mapping[tuple[str, str], float]
    max_speed_mps: float = WALK_SPEED_MAX_MPS
    slack_s: float = 2.0  # clock skew between cameras and sighting-time jitter tolerated

    def __post_init__(self) -> None:
        if not self.max_speed_mps > 0:
            raise ValueError("max_speed_mps must be > 0")
        for pair, d in self.distances_m.items():
            if not (isinstance(d, (int, float)) and math.isfinite(d) and d >= 0):
                raise ValueError(f"distance for {pair} must be a finite number ≥ 0, got {d!r}")

    @classmethod
    def from_coordinates(cls, positions: Mapping[str, tuple[float, float]], detour: float = 1.3, **kw: float) -> ZoneMap:
        """Distances from zone centre coordinates (metres) times a detour factor for corridors."""
        zones = sorted(positions)
        d = {}
        for i, a in enumerate(zones):
            for b in zones[i + 1 :]:
                (xa, ya), (xb, yb) = positions[a], positions[b]
                d[(a, b)] = math.hypot(xa - xb, ya - yb) * detour
        return cls(d, **kw)

    @classmethod
    def from_routes(cls, routes: Iterable[Sequence[str]], length_m: Mapping[str, float], **kw: float) -> ZoneMap:
        """Zones laid end to end along each route (as in scenario/world.py): the distance between two zones
        is the length of the zones strictly between them (adjacent zones: 0 m), shortest over the routes.
        A step ``"a|b"`` (alternatives) counts each option at that position."""
        d: dict[tuple[str, str], float] = {}
        for route in routes:
            steps = [step.split("|") for step in route]
            for i, opts_a in enumerate(steps):
                between = 0.0
                for j in range(i + 1, len(steps)):
                    for a in opts_a:
                        for b in steps[j]:
                            if a != b:
                                key = (min(a, b), max(a, b))
                                d[key] = min(d.get(key, math.inf), between)
                    between += min(length_m[z] for z in steps[j])
        return cls(d, **kw)

    @classmethod
    def from_table(cls, rows: Mapping[str, Mapping[str, float]], **kw: float) -> ZoneMap:
        """From a nested mapping ``{zone: {other_zone: metres}}`` (e.g. a YAML block)."""
        return cls({(a, b): float(v) for a, row in rows.items() for b, v in row.items()}, **kw)

    def distance_m(self, a: str, b: str) -> float | None:
        if a == b:
            return 0.0
        d = self.distances_m.get((a, b))
        return self.distances_m.get((b, a)) if d is None else d

    def min_transit_s(self, a: str, b: str) -> float | None:
        """Shortest believable time from leaving ``a`` to arriving in ``b``; None if the pair is unknown."""
        d = self.distance_m(a, b)
        return None if d is None else d / self.max_speed_mps

    def plausible(self, a: str, b: str, elapsed_s: float) -> bool:
        """False only when the pair is known and ``elapsed_s`` is shorter than walking allows."""
        m = self.min_transit_s(a, b)
        return m is None or elapsed_s + self.slack_s >= m


class _Seen(msgspec.Struct, array_like=True):
    t: float
    zone: str
    camera_id: str
    event_id: str


@dataclass(frozen=True, slots=True)
class Visit:
    zone: str
    camera_id: str  # camera of the first sighting
    enter_at: float
    last_at: float
    sightings: int

    @property
    def dwell_s(self) -> float:
        return self.last_at - self.enter_at


@dataclass(frozen=True, slots=True)
class Transition:
    subject_id: str
    from_zone: str
    to_zone: str
    left_at: float  # last sighting in from_zone
    arrived_at: float  # first sighting in to_zone
    plausible: bool

    @property
    def transit_s(self) -> float:
        return self.arrived_at - self.left_at


@dataclass(frozen=True, slots=True)
class EdgeStats:
    count: int
    implausible: int
    median_transit_s: float


@dataclass(frozen=True, slots=True)
class DwellStats:
    visits: int
    mean_s: float
    p50_s: float
    p95_s: float


@dataclass(slots=True)
class _Track:
    seen: list[_Seen] = field(default_factory=list)  # sorted by (t, event_id)


def visits_of(seen: Iterable[_Seen]) -> list[Visit]:
    out: list[Visit] = []
    cur: list = []
    for s in seen:
        if cur and cur[0] == s.zone:
            cur[3] = s.t
            cur[4] += 1
        else:
            if cur:
                out.append(Visit(*cur))
            cur = [s.zone, s.camera_id, s.t, s.t, 1]
    if cur:
        out.append(Visit(*cur))
    return out


class TrajectoryStore:
    """Per-subject trajectories in memory. Not thread-safe: call it from one task (the consumer loop)."""

    def __init__(
        self,
        zones: ZoneMap,
        ttl_s: float = 86400.0,
        dedupe_window_s: float = 600.0,
        max_sightings_per_subject: int = 4096,
        ttl_for_zone: Callable[[str], float] | None = None,
    ) -> None:
        """``ttl_for_zone``: the retention of a point seen in a zone (its purpose's); default ``ttl_s`` for all."""
        self.zones = zones
        self.ttl_s = ttl_s
        self.ttl_for_zone = ttl_for_zone
        self.dedupe_window_s = dedupe_window_s
        self.max_sightings = max_sightings_per_subject
        self._tracks: dict[str, _Track] = {}
        self._applied: dict[str, float] = {}  # event_id -> captured_at (insertion ordered)
        self._floor = -math.inf  # events captured before this are refused: their ids may have been pruned
        self.duplicates = 0
        self.late = 0
        self.stale = 0

    # ---- updates ---------------------------------------------------------------------------------

    def seen_event(self, event_id: str) -> bool:
        return event_id in self._applied

    def apply(
        self, event_id: str, subject_id: str, camera_id: str, zone: str, captured_at: float, at: float | None = None
    ) -> TrackUpdate | None:
        """Record one matched sighting; None if ``event_id`` was already applied (idempotent)."""
        if not event_id or not subject_id:
            raise ValueError("apply needs an event_id and a subject_id")
        if not math.isfinite(captured_at):
            raise ValueError("captured_at must be finite")
        if event_id in self._applied:
            self.duplicates += 1
            return None
        if captured_at < self._floor:
            self.stale += 1
            return None
        self._applied[event_id] = captured_at
        tr = self._tracks.setdefault(subject_id, _Track())
        item = _Seen(captured_at, zone, camera_id, event_id)
        seen = tr.seen
        if not seen or (captured_at, event_id) >= (seen[-1].t, seen[-1].event_id):
            seen.append(item)
            pos = len(seen) - 1
        else:
            self.late += 1
            pos = bisect.bisect_right([(s.t, s.event_id) for s in seen], (captured_at, event_id))
            seen.insert(pos, item)
        if len(seen) > self.max_sightings:
            del seen[: len(seen) - self.max_sightings]
            pos = min(pos, len(seen) - 1)
        return self._update_for(subject_id, seen, pos, item, captured_at if at is None else at)

    def _update_for(self, subject_id: str, seen: list[_Seen], pos: int, item: _Seen, at: float) -> TrackUpdate:
        # the run of same-zone sightings around pos is the visit; the sighting before it is the previous zone
        start = pos
        while start > 0 and seen[start - 1].zone == item.zone:
            start -= 1
        prev = seen[start - 1] if start > 0 else None
        first = seen[start]
        plausible = True
        if prev is not None:
            plausible = self.zones.plausible(prev.zone, item.zone, first.t - prev.t)
        return TrackUpdate(
            event_id=item.event_id,
            subject_id=subject_id,
            camera_id=item.camera_id,
            zone=item.zone,
            prev_zone=prev.zone if prev is not None else None,
            at=at,
            captured_at=item.t,
            dwell_s=item.t - first.t,
            plausible=plausible,
        )

    def erase(self, subject_id: str) -> bool:
        """Forget a subject's trajectory now (consent withdrawn / erasure request). Event ids stay as
        bare ids for idempotency; they are not linked to the subject any more."""
        return self._tracks.pop(subject_id, None) is not None

    def prune(self, now: float) -> int:
        """Drop sightings older than ``ttl_s`` and dedupe ids older than ``dedupe_window_s``; returns sightings dropped."""
        cutoff = now - self.ttl_s
        dropped = 0
        for sid in list(self._tracks):
            seen = self._tracks[sid].seen
            k = 0
            while k < len(seen) and seen[k].t < cutoff:
                k += 1
            if k:
                del seen[:k]
                dropped += k
            if self.ttl_for_zone is not None:  # each point by its own purpose's retention
                kept = [s for s in seen if s.t >= now - self.ttl_for_zone(s.zone)]
                dropped += len(seen) - len(kept)
                seen[:] = kept
            if not seen:
                del self._tracks[sid]
        dcut = now - max(self.dedupe_window_s, 0.0)
        self._applied = {e: t for e, t in self._applied.items() if t >= dcut}
        self._floor = max(self._floor, dcut)
        return dropped

    # ---- reads -----------------------------------------------------------------------------------

    def __contains__(self, subject_id: object) -> bool:
        return subject_id in self._tracks

    def subjects(self) -> list[str]:
        return sorted(self._tracks)

    def sightings(self) -> int:
        return sum(len(t.seen) for t in self._tracks.values())

    def visits(self, subject_id: str) -> list[Visit]:
        tr = self._tracks.get(subject_id)
        return [] if tr is None else visits_of(tr.seen)

    def transitions(self, subject_id: str | None = None) -> list[Transition]:
        """Zone changes of one subject (or all), each checked against walking time."""
        out: list[Transition] = []
        ids = [subject_id] if subject_id is not None else sorted(self._tracks)
        for sid in ids:
            vs = self.visits(sid)
            for a, b in zip(vs, vs[1:]):
                gap = b.enter_at - a.last_at
                out.append(Transition(sid, a.zone, b.zone, a.last_at, b.enter_at, self.zones.plausible(a.zone, b.zone, gap)))
        return out

    def transition_graph(self) -> dict[tuple[str, str], EdgeStats]:
        """Directed zone graph over every subject: count, implausible count, median transit time."""
        acc: dict[tuple[str, str], list[Transition]] = {}
        for t in self.transitions():
            acc.setdefault((t.from_zone, t.to_zone), []).append(t)
        return {
            k: EdgeStats(len(v), sum(not t.plausible for t in v), float(np.median([t.transit_s for t in v])))
            for k, v in sorted(acc.items())
        }

    def dwell_stats(self, closed_only: bool = True) -> dict[str, DwellStats]:
        """Dwell per zone over every subject; by default only visits the subject has left (complete dwell)."""
        acc: dict[str, list[float]] = {}
        for sid in self._tracks:
            vs = self.visits(sid)
            for v in vs[:-1] if closed_only else vs:
                acc.setdefault(v.zone, []).append(v.dwell_s)
        return {
            z: DwellStats(len(d), float(np.mean(d)), float(np.percentile(d, 50)), float(np.percentile(d, 95)))
            for z, d in sorted(acc.items())
        }

    def current(self, subject_id: str) -> Visit | None:
        vs = self.visits(subject_id)
        return vs[-1] if vs else None

    # ---- snapshots -------------------------------------------------------------------------------

    def first_expiry(self) -> float | None:
        """When the first point held reaches its retention (None when nothing is held)."""
        ttl = self.ttl_for_zone or (lambda _zone: self.ttl_s)
        return min((s.t + ttl(s.zone) for tr in self._tracks.values() for s in tr.seen), default=None)

    def to_bytes(self) -> bytes:
        state = _State(
            tracks={sid: t.seen for sid, t in self._tracks.items()},
            applied=list(self._applied.items()),
            duplicates=self.duplicates,
            late=self.late,
            stale=self.stale,
            floor=self._floor,
        )
        return _ENC.encode(state)

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot from :meth:`to_bytes` (same ZoneMap and limits)."""
        try:
            st = _DEC.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"corrupt trajectory snapshot: {exc}") from None
        self._tracks = {sid: _Track(list(seen)) for sid, seen in st.tracks.items()}
        self._applied = dict(st.applied)
        self.duplicates, self.late, self.stale, self._floor = st.duplicates, st.late, st.stale, st.floor


@dataclass(frozen=True, slots=True)
class TransitionScore:
    predicted: int  # transitions the store derived
    correct: int  # of those, true (ground truth: the subject was in to_zone then, coming from from_zone)
    truth: int  # true transitions of the subjects scored
    recovered: int  # of those, found by the store

    @property
    def precision(self) -> float:
        """Share of correct zone transitions among those derived."""
        return self.correct / self.predicted if self.predicted else float("nan")

    @property
    def recall(self) -> float:
        return self.recovered / self.truth if self.truth else float("nan")


def score_transitions(
    store: TrajectoryStore,
    truth: Mapping[str, Sequence[tuple[float, float, str]]],
    tolerance_s: float = 1.0,
    subjects: Iterable[str] | None = None,
) -> TransitionScore:
    """Compare derived transitions with ground-truth itineraries ``{subject: [(enter_s, leave_s, zone), ...]}``.

    A derived transition a→b arriving at t is correct when the subject truly was in b at t (± tolerance) and
    the truly preceding zone was a. A true transition a→b is recovered when a derived a→b arrives during
    that visit of b. Pass ``subjects`` to score one demographic group. Subjects absent from ``truth``
    (mismatches onto a non-existent id) count as wrong predictions."""
    wanted = set(truth) if subjects is None else set(subjects)
    predicted = correct = n_truth = recovered = 0
    derived = [t for t in store.transitions() if t.subject_id in wanted]
    by_subject: dict[str, list[Transition]] = {}
    for t in derived:
        by_subject.setdefault(t.subject_id, []).append(t)
    for sid in wanted:
        visits = sorted(truth.get(sid, ()))
        mine = by_subject.get(sid, [])
        predicted += len(mine)
        for t in mine:
            for k, (enter, leave, zone) in enumerate(visits):
                if zone == t.to_zone and enter - tolerance_s <= t.arrived_at < leave + tolerance_s:
                    if k > 0 and visits[k - 1][2] == t.from_zone:
                        correct += 1
                    break
        for k in range(1, len(visits)):
            a, (enter, leave, b) = visits[k - 1][2], visits[k]
            if a == b:
                continue
            n_truth += 1
            if any(t.from_zone == a and t.to_zone == b and enter - tolerance_s <= t.arrived_at < leave + tolerance_s for t in mine):
                recovered += 1
    return TransitionScore(predicted, correct, n_truth, recovered)


class _State(msgspec.Struct):
    tracks: dict[str, list[_Seen]]
    applied: list[tuple[str, float]]
    duplicates: int = 0
    late: int = 0
    stale: int = 0
    floor: float = -math.inf


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(_State)


def decode_points(data: bytes) -> Iterator[tuple[str, str, str, float]]:
    """(subject reference, zone, camera, capture time) of every point in a :meth:`TrajectoryStore.to_bytes` blob."""
    if not data:
        return
    try:
        st = _DEC.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ValueError(f"corrupt trajectory snapshot: {exc}") from None
    for ref, seen in st.tracks.items():
        for s in seen:
            yield ref, s.zone, s.camera_id, s.t

"""Anonymous short-lived tracklets of unknown and non-consented faces, for flow counting only.

Off unless the policy enables ``unknown_faces.tracklets`` (privacy by default). When on, the matcher hands
every decided sighting to :meth:`TrackletStore.observe`; a sighting that was *not* identified with consent
(``unknown``, ``refused``, ``rejected``) joins the tracklet of its ``(camera, edge track id)``, created with a
random id on first sight. A tracklet keeps only its zone and capture times:

* **never** the embedding, the sealed payload, a subject id or pseudonym, a claimed identity, the box or the
  event id — :class:`Tracklet` has no field that could hold them, and ``observe`` copies four scalar fields
  out of the sighting, keeping no reference to it;
* it cannot link across cameras (the key is per camera and the edge's track id is camera-local), nor be
  re-identified later (no biometric data);
* it lives at most ``ttl_s`` from its creation, wherever it is in between: :meth:`prune` deletes it (the key
  map entry too) and a later sighting of the same edge track starts a *new* tracklet with a new random id.
  So a track longer than the TTL is counted again as a new entry: that is the price of the bound.

What survives is aggregate only (:class:`FlowCounts` and the ``paxsim_policy_tracklets_*`` metrics): entries
per zone, zone → zone transitions within a tracklet, and dwell-time histograms per zone (a zone's dwell is
recorded when the tracklet leaves the zone or expires). Single-threaded: call it from one event loop.

    tracklets = TrackletStore.for_policy(rt.holder)         # follows hot reloads; disabled = no-op
    tracklets.observe(sighting, match, now)                  # after the decision, for every decided sighting
    tracklets.prune(now)                                     # periodically (e.g. with the trajectory prune)
"""

from __future__ import annotations

import bisect
import math
import secrets
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

ANONYMOUS_DECISIONS = frozenset({"unknown", "refused", "rejected"})  # not identified with consent
DWELL_BUCKETS_S = (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
MAX_TRACKLETS = 100_000

ACTIVE = Gauge("paxsim_policy_tracklets_active", "Anonymous tracklets held in memory right now")
STARTED = Counter("paxsim_policy_tracklets_started_total", "Anonymous tracklets created")
DELETED = Counter("paxsim_policy_tracklets_deleted_total", "Anonymous tracklets deleted, by reason", ["reason"])
IGNORED = Counter("paxsim_policy_tracklets_ignored_total", "Sightings that did not join a tracklet, by reason", ["reason"])
ENTRIES = Counter("paxsim_policy_tracklets_zone_entries_total", "Tracklets entering a zone (first sight or zone change)", ["zone"])
TRANSITIONS = Counter("paxsim_policy_tracklets_transitions_total", "Zone changes within a tracklet", ["from_zone", "to_zone"])
DWELL = Histogram(
    "paxsim_policy_tracklets_dwell_seconds", "Time a tracklet was seen in a zone (first to last sight)", ["zone"], buckets=DWELL_BUCKETS_S
)


@dataclass(frozen=True, slots=True)
class TrackletConfig:
    """``enabled`` and ``ttl_s`` come from the policy (``unknown_faces.tracklets``); strict defaults."""

    enabled: bool = False
    ttl_s: float = 60.0
    max_tracklets: int = MAX_TRACKLETS


def config_from_policy(policy: Any) -> TrackletConfig:  # noqa: ANN401 - a policy model or its raw mapping
    """Read ``unknown_faces.tracklets`` from a policy object or a raw mapping; anything missing or invalid
    means off (the strict default)."""

    def get(obj: Any, key: str) -> Any:  # noqa: ANN401
        return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)

    tr = get(get(policy, "unknown_faces") or {}, "tracklets") or {}
    enabled, ttl = get(tr, "enabled"), get(tr, "ttl_s")
    max_n = get(tr, "max_tracklets")
    try:
        ttl_s = float(ttl) if ttl is not None else TrackletConfig.ttl_s
    except (TypeError, ValueError):
        return TrackletConfig()
    if enabled is not True or not (math.isfinite(ttl_s) and ttl_s > 0):
        return TrackletConfig(enabled=False)
    return TrackletConfig(True, ttl_s, int(max_n) if isinstance(max_n, int) and max_n > 0 else MAX_TRACKLETS)


@dataclass(slots=True)
class Tracklet:
    """All a tracklet holds. No identity, no biometric data: a random id, a zone and times."""

    tracklet_id: str
    created_at: float  # processing time (``now``) at creation: the TTL runs from here
    zone: str
    zone_first: float  # capture time of the first sight in the current zone
    zone_last: float  # capture time of the latest sight in the current zone
    sightings: int = 1


@dataclass
class FlowCounts:
    """Aggregates since the store was created: no tracklet id, no track id, no identity."""

    entries: Tally = field(default_factory=Tally)  # zone → entries
    transitions: Tally = field(default_factory=Tally)  # (from zone, to zone) → count
    dwell: dict[str, list[int]] = field(default_factory=dict)  # zone → counts per DWELL_BUCKETS_S bucket (+ overflow)
    started: int = 0
    deleted: int = 0

    def as_dict(self) -> dict:
        return {
            "entries": dict(self.entries),
            "transitions": {f"{a}->{b}": n for (a, b), n in self.transitions.items()},
            "dwell_buckets_s": list(DWELL_BUCKETS_S),
            "dwell": {z: list(c) for z, c in self.dwell.items()},
            "started": self.started,
            "deleted": self.deleted,
        }


class TrackletStore:
    """Anonymous tracklets keyed by ``(camera, edge track id)``; see the module docstring."""

    def __init__(self, config: TrackletConfig | Callable[[], TrackletConfig] = TrackletConfig()) -> None:
        self._config = config if callable(config) else (lambda: config)
        self._by_track: dict[tuple[str, int], Tracklet] = {}
        self.counts = FlowCounts()

    @classmethod
    def for_policy(cls, holder: Any) -> TrackletStore:  # noqa: ANN401 - policy.policyfile.PolicyHolder
        """Follow ``holder.current`` (hot reload); the config is re-read only when the policy object changes."""
        cache: list[Any] = [None, TrackletConfig()]

        def current() -> TrackletConfig:
            policy = holder.current
            if policy is not cache[0]:
                cache[0], cache[1] = policy, config_from_policy(policy)
            return cache[1]

        return cls(current)

    @property
    def config(self) -> TrackletConfig:
        return self._config()

    def __len__(self) -> int:
        return len(self._by_track)

    def observe(self, sighting: Any, decision: Any, now: float) -> str | None:  # noqa: ANN401
        """Add a decided sighting to its anonymous tracklet; returns the tracklet id, or None if it did not join.

        ``decision``: the matcher's :class:`broker.messages.Match` (its ``decision`` field), a decision string,
        or a policy ``Decision`` (``allow`` true = identified with consent). Only non-identified sightings join.
        """
        cfg = self._config()
        if not cfg.enabled:
            if self._by_track:  # switched off by a policy reload: nothing may outlive the switch
                self._delete_all("disabled")
            return None
        if not _anonymous(decision):
            IGNORED.labels("identified").inc()
            return None
        try:  # copy out four scalars; the sighting (and its payload) is never referenced afterwards
            camera, track, zone, at = str(sighting.camera_id), int(sighting.track_id), str(sighting.zone), float(sighting.captured_at)
        except (AttributeError, TypeError, ValueError):
            IGNORED.labels("malformed").inc()
            return None
        if not (camera and zone and math.isfinite(at) and math.isfinite(now)):
            IGNORED.labels("malformed").inc()
            return None
        if at <= now - cfg.ttl_s:
            IGNORED.labels("stale").inc()  # already older than a tracklet may live
            return None
        key = (camera, track)
        tr = self._by_track.get(key)
        if tr is not None and now - tr.created_at >= cfg.ttl_s:
            self._delete(key, "ttl")
            tr = None
        if tr is None:
            if len(self._by_track) >= cfg.max_tracklets:
                self._delete(min(self._by_track, key=lambda k: self._by_track[k].created_at), "capacity")
            tr = self._by_track[key] = Tracklet(secrets.token_hex(8), now, zone, at, at, 0)
            STARTED.inc()
            self.counts.started += 1
            self._enter(zone)
            ACTIVE.set(len(self._by_track))
        elif zone != tr.zone:
            self._close_zone(tr)
            TRANSITIONS.labels(tr.zone, zone).inc()
            self.counts.transitions[(tr.zone, zone)] += 1
            self._enter(zone)
            tr.zone, tr.zone_first, tr.zone_last = zone, at, at
        tr.zone_first = min(tr.zone_first, at)  # out-of-order delivery within a zone
        tr.zone_last = max(tr.zone_last, at)
        tr.sightings += 1
        return tr.tracklet_id

    def prune(self, now: float) -> int:
        """Delete every tracklet whose TTL has passed (recording its dwell). Returns how many were deleted."""
        cfg = self._config()
        if not cfg.enabled:
            return self._delete_all("disabled")
        old = [k for k, tr in self._by_track.items() if now - tr.created_at >= cfg.ttl_s]
        for k in old:
            self._delete(k, "ttl")
        return len(old)

    def snapshot(self) -> list[Tracklet]:
        """Copies of the live tracklets (for tests and debugging; never published)."""
        return [Tracklet(t.tracklet_id, t.created_at, t.zone, t.zone_first, t.zone_last, t.sightings) for t in self._by_track.values()]

    # ------------------------------------------------------------------------------------ internals

    def _enter(self, zone: str) -> None:
        ENTRIES.labels(zone).inc()
        self.counts.entries[zone] += 1

    def _close_zone(self, tr: Tracklet) -> None:
        dwell = max(0.0, tr.zone_last - tr.zone_first)
        DWELL.labels(tr.zone).observe(dwell)
        buckets = self.counts.dwell.setdefault(tr.zone, [0] * (len(DWELL_BUCKETS_S) + 1))
        buckets[bisect.bisect_left(DWELL_BUCKETS_S, dwell)] += 1

    def _delete(self, key: tuple[str, int], reason: str) -> None:
        tr = self._by_track.pop(key)
        self._close_zone(tr)
        DELETED.labels(reason).inc()
        self.counts.deleted += 1
        ACTIVE.set(len(self._by_track))

    def _delete_all(self, reason: str) -> int:
        keys = list(self._by_track)
        for k in keys:
            self._delete(k, reason)
        return len(keys)


def _anonymous(decision: Any) -> bool:  # noqa: ANN401
    """True for a decision that did not identify a consenting subject."""
    if isinstance(decision, str):
        return decision in ANONYMOUS_DECISIONS
    d = getattr(decision, "decision", None)
    if isinstance(d, str):
        return d in ANONYMOUS_DECISIONS
    allow = getattr(decision, "allow", None)
    return allow is False

"""The topic catalogue: every topic the system uses, its message type, partitioning and retention.

Topic names carry the major version of their message type. Topics are always created explicitly with the
admin client before any producer starts (auto-creation is off on Kafka and gives 4 partitions on Tansu).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker import messages as m
from core.config import Settings


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    message: type
    key: str  # what the record key is: decides partitioning and ordering
    retention: str  # what bounds its records' life: "policy:sightings", "policy:purposes" or a RetentionSettings field
    doc: str
    compacted: bool = False


SIGHTINGS = Topic("paxsim.sightings.v1", m.Sighting, "camera_id", "policy:sightings", "edge → policy gate")
ZONE_COUNTS = Topic("paxsim.zonecounts.v1", m.ZoneCount, "camera_id", "counts_s", "edge → dashboard (non-biometric zones)")
ADMITTED = Topic("paxsim.sightings.admitted.v1", m.Sighting, "camera_id", "policy:sightings", "policy gate → matcher")
MATCHES = Topic("paxsim.matches.v1", m.Match, "camera_id", "policy:purposes", "matcher → stores/dashboard; same partitioning as ADMITTED")
TRACKS = Topic("paxsim.tracks.v1", m.TrackUpdate, "subject_id", "policy:purposes", "matcher → stores/dashboard")
ALERTS = Topic("paxsim.alerts.v1", m.Alert, "zone", "policy:purposes", "matcher → dashboard")
AUDIT = Topic("paxsim.audit.v1", m.AuditRecord, "actor", "audit_s", "every stage → audit log")
ERASURES = Topic("paxsim.erasures.v1", m.ErasureRequest, "subject_id", "audit_s", "dashboard/CLI → every store")
DEADLETTER = Topic("paxsim.deadletter.v1", m.DeadLetter, "stage", "deadletter_s", "poison messages with their reason")

ALL: tuple[Topic, ...] = (SIGHTINGS, ZONE_COUNTS, ADMITTED, MATCHES, TRACKS, ALERTS, AUDIT, ERASURES, DEADLETTER)


@dataclass(frozen=True, slots=True)
class PolicyRetention:
    """The lifetimes the policy file gives the biometric topics (``Policy.topic_retention()`` computes them)."""

    sightings_s: float  # sightings and admitted sightings
    purposes_s: float  # matches, tracks and alerts: the longest purpose's retention


def retention_s(topic: Topic, settings: Settings, policy: PolicyRetention | None) -> float | None:
    """The topic's retention in seconds; None for a policy-bound topic when no policy numbers were given."""
    if topic.retention.startswith("policy:"):
        if policy is None:
            return None
        return policy.sightings_s if topic.retention == "policy:sightings" else policy.purposes_s
    return float(getattr(settings.retention, topic.retention))


def topic_configs(topic: Topic, settings: Settings, policy: PolicyRetention | None) -> dict[str, str]:
    """Kafka topic configs. Tansu accepts and ignores them: retention there is enforced by crypto-shredding."""
    cfg = {"max.message.bytes": str(settings.broker.client_tuning().max_message_bytes)}
    seconds = retention_s(topic, settings, policy)
    if seconds is not None:
        cfg["retention.ms"] = str(int(seconds * 1000))
    cfg["cleanup.policy"] = "compact" if topic.compacted else "delete"
    return cfg

"""The topic catalogue: every topic the system uses, its message type, partitioning and retention.

Topic names carry the major version of their message type. Topics are always created explicitly with the
admin client before any producer starts (auto-creation is off on Kafka and gives 4 partitions on Tansu).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker import messages as m
from paxsim.config import Settings


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    message: type
    key: str  # what the record key is: decides partitioning and ordering
    retention: str  # field of RetentionSettings that bounds its records' life
    doc: str
    compacted: bool = False


SIGHTINGS = Topic("paxsim.sightings.v1", m.Sighting, "camera_id", "sightings_s", "edge → policy gate")
ZONE_COUNTS = Topic("paxsim.zonecounts.v1", m.ZoneCount, "camera_id", "tracks_s", "edge → dashboard (non-biometric zones)")
ADMITTED = Topic("paxsim.sightings.admitted.v1", m.Sighting, "camera_id", "sightings_s", "policy gate → matcher")
MATCHES = Topic("paxsim.matches.v1", m.Match, "camera_id", "matches_s", "matcher → stores/dashboard; same partitioning as ADMITTED")
TRACKS = Topic("paxsim.tracks.v1", m.TrackUpdate, "subject_id", "tracks_s", "matcher → stores/dashboard")
ALERTS = Topic("paxsim.alerts.v1", m.Alert, "zone", "tracks_s", "matcher → dashboard")
AUDIT = Topic("paxsim.audit.v1", m.AuditRecord, "actor", "audit_s", "every stage → audit log")
ERASURES = Topic("paxsim.erasures.v1", m.ErasureRequest, "subject_id", "audit_s", "dashboard/CLI → every store")
DEADLETTER = Topic("paxsim.deadletter.v1", m.DeadLetter, "stage", "deadletter_s", "poison messages with their reason")

ALL: tuple[Topic, ...] = (SIGHTINGS, ZONE_COUNTS, ADMITTED, MATCHES, TRACKS, ALERTS, AUDIT, ERASURES, DEADLETTER)


def topic_configs(topic: Topic, settings: Settings) -> dict[str, str]:
    """Kafka topic configs. Tansu accepts and ignores them: retention there is enforced by crypto-shredding."""
    retention_ms = int(getattr(settings.retention, topic.retention) * 1000)
    cfg = {"retention.ms": str(retention_ms), "max.message.bytes": str(settings.broker.client_tuning().max_message_bytes)}
    cfg["cleanup.policy"] = "compact" if topic.compacted else "delete"
    return cfg

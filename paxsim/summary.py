"""What one pipeline run measured (``demo``, each ``load`` step): figures read back from the topics, the stages'
counters, resource use and the audit scan. Written to ``<run dir>/summary.json``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class RunSummary:
    # from the topics themselves (one record per decided event)
    produced: int = 0  # sightings on the sightings topic
    decided: int = 0
    duplicate_decisions: int = 0
    matched: int = 0
    unknown: int = 0
    refused: int = 0
    verified: int = 0  # e-gate 1:1: the live face is the claimed enrolee
    rejected: int = 0  # e-gate 1:1: it is not (or the claimed person is not enrolled)
    refused_by_rule: dict[str, int] = field(default_factory=dict)  # "post_match:<rule>" → decisions
    deadletters: int = 0
    zone_transitions: int = 0
    implausible_transitions: int = 0  # faster than walking
    latency_p50_ms: float | None = None  # capture → decision
    latency_p99_ms: float | None = None
    accuracy: dict | None = None  # against the ground truth (paxsim.accuracy), when the run has one
    # from the stages' counters
    admitted: float = 0.0
    gate_dropped_by_rule: dict[str, float] = field(default_factory=dict)  # "<stage>:<rule>" → denials
    edge_dropped: float = 0.0  # publish queue full
    frames_dropped: float = 0.0  # video cameras: pipeline full
    frames_processed: float = 0.0
    count_only_faces: float = 0.0  # non-biometric zones: counted, never embedded
    wall_s: float = 0.0
    processes: dict[str, dict[str, float]] = field(default_factory=dict)  # stage → cpu_s, rss_max_mb
    # the leak scan after the run (None: not run)
    audit_scan: dict[str, int] | None = None  # expired_readable / non_consented / audit_gaps
    audit_unlinkable: int = 0  # references to erased subjects: the success case
    audit_scan_sources: dict[str, int] = field(default_factory=dict)  # live and store sources read → items
    live_camera: dict | None = None  # the demo's rendered camera through the real edge: recall, precision, frames/s

    def as_dict(self) -> dict:
        return asdict(self)

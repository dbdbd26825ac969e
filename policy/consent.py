"""Consent registry: which enrolled subject consented to which purpose, where, until when.

A subject without an active record for a purpose is, for that purpose, an unknown face.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

PURPOSES = ("egate-verification", "boarding", "flow-analytics", "model-training")


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    subject_id: str
    purpose: str
    granted_at: float
    expires_at: float
    zones: tuple[str, ...] = ()  # empty = every zone the purpose applies to
    withdrawn_at: float | None = None

    def active(self, zone: str, at: float) -> bool:
        if self.withdrawn_at is not None and at >= self.withdrawn_at:
            return False
        if not (self.granted_at <= at < self.expires_at):
            return False
        return not self.zones or zone in self.zones


@dataclass(slots=True)
class ConsentRegistry:
    """In-memory view of consent records, persisted as JSON. ``is_allowed`` is the only question asked."""

    records: dict[str, dict[str, ConsentRecord]] = field(default_factory=dict)

    def grant(self, rec: ConsentRecord) -> None:
        self.records.setdefault(rec.subject_id, {})[rec.purpose] = rec

    def withdraw(self, subject_id: str, at: float, purpose: str | None = None) -> None:
        for p, rec in list(self.records.get(subject_id, {}).items()):
            if purpose is None or p == purpose:
                self.records[subject_id][p] = ConsentRecord(**{**asdict(rec), "withdrawn_at": at})

    def is_allowed(self, subject_id: str, purpose: str, zone: str, at: float) -> bool:
        rec = self.records.get(subject_id, {}).get(purpose)
        return rec is not None and rec.active(zone, at)

    def subjects(self) -> list[str]:
        return sorted(self.records)

    def save(self, path: Path) -> None:
        rows = [asdict(r) for recs in self.records.values() for r in recs.values()]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "ConsentRegistry":
        reg = cls()
        for row in json.loads(path.read_text()):
            row["zones"] = tuple(row.get("zones") or ())
            reg.grant(ConsentRecord(**row))
        return reg

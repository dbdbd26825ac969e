"""What a project store reports to the leak scanner: one :class:`StoredItem` per item it holds. Stores
(gallery, trajectories, exports, the consent registry, the running stages) import this, not the scanner."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One item in a project store, as a store reports it to the scanner."""

    where: str
    subject_ref: str | None  # subject id or pseudonym; None for anonymous items
    purpose: str | None  # None: needs *any* active consent (e.g. a gallery template)
    zone: str | None
    stored_at: float  # the time its TTL runs from (capture time)
    readable: bool = True  # False if sealed under a key that no longer exists
    never_allowed: str | None = None  # why no consent can cover it (a metric label): any linkable subject is a finding
    # kept for accountability, not under consent (an ended consent record): only this retention applies
    retention_s: float | None = None
    # under consent, but kept less long than its purpose allows (an export keeps the retention of the data's own
    # purpose when that is shorter than the purpose it was exported for)
    ttl_s: float | None = None


class Store(Protocol):
    """A project store the scanner reads: ``items()`` yields every item it holds."""

    name: str

    def items(self) -> Iterable[StoredItem]: ...

"""The matcher's snapshot files as the leak scanner reads them (entry point ``paxsim.stores:matcher-snapshots``).

A snapshot holds every identified subject's recent trajectory (by pseudonym, zone, camera, capture time) in
plaintext at rest: each point is one stored item, checked against consent and its purpose's retention.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from core.config import Settings
from core.paths import gallery_path
from matcher import snapshot
from matcher.trajectory import decode_points
from policy.policyfile import load_policy
from policy.stores import StoredItem


class SnapshotStore:
    def __init__(self, directory: Path, purpose_for_zone: dict[str, str | None]) -> None:
        self.directory, self.purpose_for_zone = directory, purpose_for_zone
        self.name = "store:matcher-snapshots"

    def items(self) -> Iterator[StoredItem]:
        for path in sorted(self.directory.glob("matcher-snapshot*.bin")):
            try:
                snap = snapshot.read(path)
            except snapshot.SnapshotError:
                continue  # torn: the matcher ignores it too
            if snap is None:
                continue
            try:
                points = list(decode_points(snap.trajectories))
            except ValueError:
                continue
            for ref, zone, camera_id, at in points:
                purpose = self.purpose_for_zone.get(zone)
                yield StoredItem(f"{path}#{ref}@{camera_id}:{at:.3f}", ref, purpose, zone, stored_at=at)


def snapshot_store(settings: Settings) -> SnapshotStore:
    """Entry point ``paxsim.stores:matcher-snapshots``: every replica's snapshot file in this run's state dir."""
    policy = load_policy(settings.policy.file)
    return SnapshotStore(gallery_path(settings).parent, {z: policy.purpose_for_zone(z) for z in policy.zones})

"""The matcher's snapshot files as the leak scanner reads them (entry point ``paxsim.stores:matcher-snapshots``).

A snapshot holds every identified subject's recent trajectory (by pseudonym, zone, camera, capture time): each
point is one stored item, checked against consent and its purpose's retention. With a key holder the points are
sealed under a purpose key that dies with the first point's retention (``matcher.service.trajectory_sealer``):
the scanner opens them with its own keys (:meth:`SnapshotStore.use_keys`), and a snapshot whose key is gone holds
nothing readable (counted unlinkable). A point may stay readable at most one key epoch past its retention.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from core.config import Settings
from core.paths import gallery_path
from matcher import snapshot
from matcher.trajectory import decode_points
from policy.crypto import KeySource, SealError
from policy.crypto.outputs import OutputKeys, is_sealed_blob, open_blob, purpose_epoch_s
from policy.policyfile import load_policy
from policy.stores import StoredItem


class SnapshotStore:
    def __init__(self, directory: Path, purpose_for_zone: dict[str, str | None], slack_for: dict[str, float] | None = None) -> None:
        """``slack_for``: per purpose, how long past its retention a sealed point may be readable (one epoch)."""
        self.directory, self.purpose_for_zone = directory, purpose_for_zone
        self.name = "store:matcher-snapshots"
        self.slack_for = slack_for or {}
        self.outputs: OutputKeys | None = None
        self.unlinkable = 0

    def use_keys(self, keys: KeySource | None) -> None:
        """The scanner's key source: sealed trajectories are opened with it."""
        self.outputs = OutputKeys(keys, background=False) if keys is not None else None

    def items(self) -> Iterator[StoredItem]:
        for path in sorted(self.directory.glob("matcher-snapshot*.bin")):
            try:
                snap = snapshot.read(path)
            except snapshot.SnapshotError:
                continue  # torn: the matcher ignores it too
            if snap is None:
                continue
            data, sealed = snap.trajectories, is_sealed_blob(snap.trajectories)
            if sealed:
                if self.outputs is None:  # no keys: it cannot be read here, nor checked
                    yield StoredItem(f"{path}#trajectories", None, None, None, 0.0, readable=False)
                    continue
                try:
                    opened = open_blob(self.outputs, data, snapshot.TRAJECTORIES_AAD)
                except SealError:
                    continue
                if opened is None:  # its purpose key is destroyed: retention held
                    self.unlinkable += 1
                    yield StoredItem(f"{path}#trajectories", None, None, None, 0.0, readable=False)
                    continue
                data = opened
            try:
                points = list(decode_points(data))
            except ValueError:
                continue
            for ref, zone, camera_id, at in points:
                purpose = self.purpose_for_zone.get(zone)
                ttl = None
                if sealed and purpose is not None and purpose in self.slack_for:
                    ttl = self.slack_for[purpose]
                yield StoredItem(f"{path}#{ref}@{camera_id}:{at:.3f}", ref, purpose, zone, stored_at=at, ttl_s=ttl)


def snapshot_store(settings: Settings) -> SnapshotStore:
    """Entry point ``paxsim.stores:matcher-snapshots``: every replica's snapshot file in this run's state dir."""
    policy = load_policy(settings.policy.file)
    slack = {p: r.retention_s + purpose_epoch_s(r.retention_s, policy.retention.epoch_s) for p, r in policy.purposes.items()}
    return SnapshotStore(gallery_path(settings).parent, {z: policy.purpose_for_zone(z) for z in policy.zones}, slack)

"""Crash-safe matcher snapshots: index + trajectories + committed offsets, written atomically together.

A snapshot is one file: the index bytes (:meth:`GalleryIndex.to_bytes`), the trajectory bytes
(:meth:`TrajectoryStore.to_bytes`), the next offset to consume per partition, and free-form metadata,
CRC-checked. It is written to a temporary file, fsynced, renamed over the previous one and the directory
fsynced, so after ``kill -9`` at any instant the file on disk is either the old or the new snapshot, never
a mix. Recovery: load it, seek every partition to its stored offset, replay; the trajectory store drops
event ids it already applied, so a sighting is applied exactly once.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from core.files import write_private

_MAGIC = b"PXSNAP1"
TRAJECTORIES_AAD = b"paxsim-matcher-snapshot-trajectories"  # binds sealed trajectories to what they are


class SnapshotError(ValueError):
    """The snapshot file is missing, truncated or corrupt."""


class _Body(msgspec.Struct):
    index: bytes
    trajectories: bytes
    offsets: dict[str, int]  # "topic:partition" -> next offset to consume
    meta: dict[str, str] = {}
    state: bytes = b""


@dataclass(frozen=True, slots=True)
class Snapshot:
    index: bytes
    trajectories: bytes
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    state: bytes = b""  # the owner's other state (the service: decided event ids, alert ids raised)


def encode(snap: Snapshot) -> bytes:
    body = msgspec.msgpack.encode(
        _Body(snap.index, snap.trajectories, {f"{t}:{p}": o for (t, p), o in snap.offsets.items()}, dict(snap.meta), snap.state)
    )
    return _MAGIC + struct.pack("<IQ", zlib.crc32(body), len(body)) + body


def decode(data: bytes) -> Snapshot:
    head = len(_MAGIC) + 12
    if len(data) < head or data[: len(_MAGIC)] != _MAGIC:
        raise SnapshotError("not a paxsim matcher snapshot")
    crc, size = struct.unpack_from("<IQ", data, len(_MAGIC))
    body = memoryview(data)[head:]
    if len(body) != size or zlib.crc32(body) != crc:
        raise SnapshotError("matcher snapshot is truncated or corrupt")
    b = msgspec.msgpack.decode(body, type=_Body)
    offsets = {}
    for key, off in b.offsets.items():
        topic, _, part = key.rpartition(":")
        offsets[(topic, int(part))] = off
    return Snapshot(b.index, b.trajectories, offsets, b.meta, b.state)


def write(path: str | Path, snap: Snapshot) -> int:
    """Atomically replace ``path`` with ``snap``, readable by its owner only (it holds trajectories). Returns
    bytes written."""
    return write_private(path, encode(snap))


def read(path: str | Path) -> Snapshot | None:
    """The snapshot at ``path``, or None if there is none yet; raise SnapshotError if it is corrupt."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    return decode(data)

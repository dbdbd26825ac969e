"""Per-purpose retention on the output topics: the subject reference of a match, track update or alert travels
sealed under the epoch key of its purpose's class (``purpose.<name>``, TTL = the purpose's ``retention_s``).

The key holder destroys an epoch's key once the epoch is past the purpose's TTL, so on a log that never
deletes (Tansu), or under a topic ``retention.ms`` set for the longest purpose (Kafka), a record names nobody
after its own purpose's retention plus at most one epoch: what is left in clear is camera, zone, times and
the decision. The pseudonym inside stays stable while it is readable, so trajectories link across epochs.

:class:`OutputKeys` holds one :class:`EpochKeyRing` per purpose class: the matcher seals with it, the dashboard,
the scanner and the run's tools open with it. Opening a reference whose key is gone returns the record with
``subject_id`` None (``expired``): nobody is named, the rest of the record stays usable for counts.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

import msgspec

from broker.messages import Alert, Match, TrackUpdate
from policy.crypto.errors import KeyExpired, SealError
from policy.crypto.ring import EpochKeyRing
from policy.crypto.sources import KeySource

PURPOSE_CLASS_PREFIX = "purpose."
Output = TypeVar("Output", Match, TrackUpdate, Alert)
_AT = struct.Struct("<d")


def purpose_class(purpose: str) -> str:
    """The key class of ``purpose`` (no ':' in it: key ids are ``class:chain:epoch``)."""
    return PURPOSE_CLASS_PREFIX + purpose.replace(":", "_")


def purpose_epoch_s(retention_s: float, epoch_s: float) -> float:
    """The epoch of a purpose class: the policy's epoch, or a 60th of the TTL when that is longer (a long TTL needs
    no fine epochs; a record stays readable at most one epoch past its TTL either way)."""
    return max(epoch_s, retention_s / 60.0)


def _aad(msg: Match | TrackUpdate | Alert) -> bytes:
    """Binds the sealed reference to its record: type, id, place and time (it cannot be moved to another one)."""
    if isinstance(msg, Alert):
        ident, place, at = msg.alert_id, msg.zone, msg.at
    else:
        ident, place, at = msg.event_id, f"{msg.camera_id}|{msg.zone}", msg.captured_at
    return b"|".join([b"output", type(msg).__name__.encode(), ident.encode(), place.encode(), _AT.pack(at)])


def _when(msg: Match | TrackUpdate | Alert) -> float:
    return msg.at if isinstance(msg, Alert) else msg.captured_at


def anonymous(msg: Output) -> Output:
    """``msg`` naming nobody: what a reader keeps of a record whose reference it cannot (or may no longer) open."""
    return msgspec.structs.replace(msg, subject_id="" if isinstance(msg, TrackUpdate) else None, sealed=b"", key_id="")


def _purpose_key_class(key_id: str) -> str:
    """The class named by a key id, which must be a purpose class (SealError otherwise: a forged record)."""
    cls = key_id.split(":", 1)[0]
    if not cls.startswith(PURPOSE_CLASS_PREFIX):
        raise SealError(f"sealed under {key_id[:40]!r}, not a purpose class")
    return cls


class OutputKeys:
    """The purpose rings of a run (made on first use per purpose)."""

    def __init__(self, source: KeySource, background: bool | None = None, purposes: Callable[[], Iterable[str]] | None = None) -> None:
        """``purposes``: the policy's purposes now (a hostile record naming any other class makes no ring: each
        ring is a refresh thread and key-holder traffic); None accepts every class (single-process tools)."""
        self.source, self._background, self._purposes = source, background, purposes
        self._rings: dict[str, EpochKeyRing] = {}
        self._lock = threading.Lock()

    def ring(self, cls: str) -> EpochKeyRing:
        with self._lock:
            ring = self._rings.get(cls)
            if ring is None:
                if self._purposes is not None and cls not in {purpose_class(p) for p in self._purposes()}:
                    raise SealError(f"no purpose of this policy has key class {cls[:40]!r}")
                ring = self._rings[cls] = EpochKeyRing(self.source, cls, background=self._background)
            return ring

    def warm(self, purposes_at: set[tuple[str, float]]) -> None:
        """Make sure every (purpose, time) can be sealed from here on without the key holder (the matcher calls it
        before its batch changes any state): KeyUnavailable now rather than halfway through. Times past their
        retention are skipped (those records name nobody)."""
        for purpose, at in sorted(purposes_at):
            try:
                self.ring(purpose_class(purpose)).seal(b"", at)
            except KeyExpired:
                continue

    def seal(self, msg: Output, purpose: str) -> Output:
        """``msg`` with its subject reference sealed under ``purpose``'s epoch of the record's time (unchanged when
        it names nobody). KeyExpired when that time is already past the purpose's retention."""
        if not msg.subject_id:
            return msg
        ref = msgspec.msgpack.encode(msg.subject_id)
        key_id, blob = self.ring(purpose_class(purpose)).seal(ref, _when(msg), _aad(msg))
        return msgspec.structs.replace(msg, subject_id="" if isinstance(msg, TrackUpdate) else None, sealed=blob, key_id=key_id)

    def open(self, msg: Output) -> tuple[Output, bool]:
        """(``msg`` with its subject reference restored, True), or (``msg`` naming nobody, False) when its purpose
        key is destroyed (past retention) or it does not authenticate (SealError is raised for a forged key
        class). Unsealed records are returned as they are."""
        if not msg.sealed:
            return msg, True
        if msg.subject_id:  # a hostile record: one reference in clear for the scan to miss behind a sealed one
            raise SealError("a subject reference both sealed and in clear")
        cls = _purpose_key_class(msg.key_id)
        try:  # the ring too: a class the key holder does not have (any more) opens to nobody
            ref = msgspec.msgpack.decode(self.ring(cls).open(msg.key_id, msg.sealed, _aad(msg)), type=str)
        except KeyExpired:
            return anonymous(msg), False
        except msgspec.DecodeError as exc:
            raise SealError(f"sealed subject reference is malformed: {exc}") from None
        return msgspec.structs.replace(msg, subject_id=ref, sealed=b"", key_id=""), True

    def open_all(self, msgs: list[Output]) -> list[tuple[Output, bool]]:
        """:meth:`open` for each record (a tool reading a whole topic)."""
        return [self.open(m) for m in msgs]

    def close(self) -> None:
        with self._lock:
            rings, self._rings = list(self._rings.values()), {}
        for r in rings:
            r.close()


SEALED_BLOB = b"PXSEALED1"  # a stored blob sealed under a purpose class (matcher snapshots' trajectories)


def is_sealed_blob(data: bytes) -> bool:
    return data.startswith(SEALED_BLOB)


def seal_blob(keys: OutputKeys, data: bytes, purpose: str, at: float, aad: bytes) -> bytes:
    """``data`` sealed under ``purpose``'s epoch of time ``at``: unreadable once that epoch is past the purpose's
    retention. Pick ``at`` so that it dies with the first item it holds (see matcher.service.trajectory_sealer)."""
    key_id, blob = keys.ring(purpose_class(purpose)).seal(data, at, aad)
    return SEALED_BLOB + msgspec.msgpack.encode([key_id, blob])


def open_blob(keys: OutputKeys, data: bytes, aad: bytes) -> bytes | None:
    """The plaintext of a :func:`seal_blob` blob, or None once its key is destroyed. SealError if forged."""
    try:
        key_id, blob = msgspec.msgpack.decode(data[len(SEALED_BLOB) :], type=tuple[str, bytes])
    except msgspec.DecodeError as exc:
        raise SealError(f"sealed blob is malformed: {exc}") from None
    cls = _purpose_key_class(key_id)
    try:
        return keys.ring(cls).open(key_id, blob, aad)
    except KeyExpired:
        return None

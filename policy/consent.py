"""Consent registry: which enrolled subject consented to which purpose, where, until when.

One current record per (subject, purpose): granted_at, expires_at, zone scope (empty = every zone the
purpose applies to) and withdrawn_at. Persisted in SQLite under the state dir (``consent.sqlite``), read
into memory so that ``is_allowed`` costs a dict lookup; other processes' changes are picked up
incrementally (``PRAGMA data_version`` + a change sequence), at most ``refresh_s`` late (0 = checked on
every call).

Withdrawal is final for the record: a withdrawn record never allows anything again, whatever the event
time (a later grant writes a new record starting at its own ``granted_at``). Each withdrawal also queues an
:class:`~broker.messages.ErasureRequest` in an outbox table, so the CLI can withdraw without a broker and
a service publishes the queue to the erasure topic (``pending_erasures`` / ``mark_published``).

A subject without an active record for a purpose is, for that purpose, an unknown face.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from broker.messages import ErasureRequest
from core import paths
from core.config import Settings
from core.paths import private_dir
from policy.stores import StoredItem

PURPOSES = ("egate-verification", "boarding", "flow-analytics", "model-training")
WITHDRAWN_REASON = "consent-withdrawn"
EXPIRED_REASON = "consent-expired"  # every consent of the subject ended without a withdrawal: erased all the same
ANY_ZONE = "*"  # for questions that are not about a place (exports): any zone scope matches

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consents (
    subject_id   TEXT NOT NULL,
    purpose      TEXT NOT NULL,
    granted_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    zones        TEXT NOT NULL DEFAULT '[]',
    withdrawn_at REAL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (subject_id, purpose)
);
CREATE INDEX IF NOT EXISTS consents_seq ON consents(seq);
CREATE TABLE IF NOT EXISTS erasures (
    request_id   TEXT PRIMARY KEY,
    subject_id   TEXT NOT NULL,
    requested_at REAL NOT NULL,
    reason       TEXT NOT NULL,
    published_at REAL,
    subject_ref  TEXT  -- the pseudonym named when the request was accepted; cleared once published
);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('seq', 0);
"""


def registry_path(state_dir: str | Path) -> Path:
    """Where the SQLite registry lives inside the state directory."""
    return Path(state_dir) / "consent.sqlite"


def consent_path(settings: Settings) -> Path:
    """The registry shared by every process of a run, in its state directory."""
    return registry_path(paths.state_dir(settings))


class ConsentError(ValueError):
    """A consent record that makes no sense (expires before it is granted, empty ids)."""


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    subject_id: str
    purpose: str
    granted_at: float
    expires_at: float
    zones: tuple[str, ...] = ()  # empty = every zone the purpose applies to
    withdrawn_at: float | None = None

    def active(self, zone: str, at: float) -> bool:
        """True iff never withdrawn, ``granted_at <= at < expires_at`` and ``zone`` is in scope (or ``"*"``)."""
        if self.withdrawn_at is not None:
            return False
        if not (self.granted_at <= at < self.expires_at):
            return False
        return not self.zones or zone == ANY_ZONE or zone in self.zones

    def status(self, now: float) -> str:
        if self.withdrawn_at is not None:
            return "withdrawn"
        if now < self.granted_at:
            return "pending"
        return "active" if now < self.expires_at else "expired"

    def as_row(self, now: float) -> dict:
        """The record as JSON-ready data, with its status at ``now`` (API answers, ``consent list --json``)."""
        return {
            "subject_id": self.subject_id,
            "purpose": self.purpose,
            "granted_at": self.granted_at,
            "expires_at": self.expires_at,
            "zones": list(self.zones),
            "withdrawn_at": self.withdrawn_at,
            "status": self.status(now),
        }


def _check(rec: ConsentRecord) -> None:
    if not rec.subject_id or not rec.purpose:
        raise ConsentError("consent record needs a subject_id and a purpose")
    if not rec.expires_at > rec.granted_at:
        raise ConsentError(f"{rec.subject_id}/{rec.purpose}: expires_at must be after granted_at")


class ConsentRegistry:
    """Consent records, in memory, optionally persisted in SQLite (``ConsentRegistry.open(path)``).

    ``is_allowed(subject, purpose, zone, at)`` is the one question services ask. ``records`` maps
    subject → purpose → current record.
    """

    def __init__(self, db: sqlite3.Connection | None = None, refresh_s: float = 0.0, clock: Callable[[], float] = time.time) -> None:
        self.records: dict[str, dict[str, ConsentRecord]] = {}
        self._db = db
        self._lock = threading.RLock()
        self._seq = 0
        self._data_version = -1
        self._refresh_s = refresh_s
        self._checked_at = -1e18
        self.clock = clock
        self._listeners: list[Callable[[ErasureRequest], None]] = []
        if db is not None:
            self.refresh(force=True)

    # ------------------------------------------------------------------------------------ persistence

    @classmethod
    def open(cls, path: str | Path, refresh_s: float = 0.05) -> ConsentRegistry:
        """Open (creating if needed) the SQLite registry at ``path``.

        Other processes' changes are seen at most ``refresh_s`` late (0: checked on every question).
        Changes made through this object are seen at once.
        """
        path = Path(path)
        private_dir(path.parent)
        # created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database file's mode
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        if path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
            path.chmod(0o600)
        db = sqlite3.connect(str(path), timeout=10.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA secure_delete=ON")
        db.executescript(_SCHEMA)
        if "subject_ref" not in {r[1] for r in db.execute("PRAGMA table_info(erasures)")}:  # a registry from before
            db.execute("ALTER TABLE erasures ADD COLUMN subject_ref TEXT")
        return cls(db, refresh_s=refresh_s)

    @classmethod
    def load(cls, path: str | Path) -> ConsentRegistry:
        """A ``.json`` file (rows as written by :meth:`save`) in memory only; anything else: :meth:`open`."""
        path = Path(path)
        if path.suffix != ".json":
            return cls.open(path)
        reg = cls()
        for row in json.loads(path.read_text()):
            row["zones"] = tuple(row.get("zones") or ())
            reg.grant(ConsentRecord(**row))
        return reg

    def save(self, path: str | Path) -> None:
        """Write every record to ``path``: JSON rows for ``.json``, else into the SQLite registry there."""
        path = Path(path)
        if path.suffix != ".json":
            other = ConsentRegistry.open(path)
            try:
                other.grant_many(self.all(), keep_withdrawn=True)
            finally:
                other.close()
            return
        rows = [asdict(r) for r in self.all()]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows))
        tmp.replace(path)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _next_seq(self) -> int:
        assert self._db is not None
        self._db.execute("UPDATE meta SET v = v + 1 WHERE k = 'seq'")
        return self._db.execute("SELECT v FROM meta WHERE k = 'seq'").fetchone()[0]

    def sync(self) -> int:
        """Check for other processes' changes now (one ``PRAGMA data_version``), whatever ``refresh_s`` says.

        Call it once per micro-batch and answer the batch's questions with :meth:`allows`: every change
        committed before the batch started is seen by it.
        """
        return self.refresh(check_now=True)

    def refresh(self, force: bool = False, check_now: bool = False) -> int:
        """Apply other processes' changes. Returns how many records changed."""
        db = self._db
        if db is None:
            return 0
        with self._lock:
            if not force:
                now = time.monotonic()
                if not check_now and now - self._checked_at < self._refresh_s:
                    return 0
                self._checked_at = now
                dv = db.execute("PRAGMA data_version").fetchone()[0]
                if dv == self._data_version:
                    return 0
                self._data_version = dv
            rows = db.execute(
                "SELECT subject_id, purpose, granted_at, expires_at, zones, withdrawn_at, seq FROM consents WHERE seq > ?",
                (self._seq,),
            ).fetchall()
            for sid, purpose, granted, expires, zones, withdrawn, seq in rows:
                rec = ConsentRecord(sid, purpose, granted, expires, tuple(json.loads(zones)), withdrawn)
                self.records.setdefault(sid, {})[purpose] = rec
                self._seq = max(self._seq, seq)
            if force:
                self._data_version = db.execute("PRAGMA data_version").fetchone()[0]
            return len(rows)

    def _write(self, recs: Iterable[ConsentRecord], erasure: ErasureRequest | None = None) -> None:
        """Write ``recs`` (and queue ``erasure`` in the outbox) in one transaction: a withdrawal and its erasure
        request are both on disk or neither is."""
        db = self._db
        if db is None:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            seq = self._next_seq()
            db.executemany(
                "INSERT OR REPLACE INTO consents VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(r.subject_id, r.purpose, r.granted_at, r.expires_at, json.dumps(list(r.zones)), r.withdrawn_at, seq) for r in recs],
            )
            if erasure is not None:
                self._queue(erasure)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------------------------ changes

    def grant(self, rec: ConsentRecord) -> None:
        """Record (or replace) the subject's consent for ``rec.purpose``. A withdrawn one is final: ConsentError."""
        self.grant_many([rec])

    def grant_many(self, recs: Iterable[ConsentRecord], keep_withdrawn: bool = False) -> list[ConsentRecord]:
        """Record every consent; returns those written. A withdrawal is final: granting over a withdrawn
        record raises :class:`ConsentError`, or (``keep_withdrawn``, for bulk re-enrolment) leaves it withdrawn."""
        recs = list(recs)
        for r in recs:
            _check(r)
        with self._lock:
            self.refresh(force=True)
            final = [r for r in recs if r.withdrawn_at is None and self._withdrawn(r.subject_id, r.purpose)]
            if final and not keep_withdrawn:
                raise ConsentError(f"{final[0].subject_id}/{final[0].purpose}: consent was withdrawn; a withdrawal is final")
            recs = [r for r in recs if r not in final]
            self._write(recs)
            for r in recs:
                self.records.setdefault(r.subject_id, {})[r.purpose] = r
            self.refresh(force=True)
        return recs

    def consent(
        self, subject_id: str, purpose: str, *, at: float | None = None, ttl_s: float = 365 * 86400.0, zones: Iterable[str] = ()
    ) -> ConsentRecord:
        """Convenience: grant ``purpose`` from ``at`` (now) for ``ttl_s`` seconds."""
        at = self.clock() if at is None else at
        rec = ConsentRecord(subject_id, purpose, at, at + ttl_s, tuple(zones))
        self.grant(rec)
        return rec

    def on_withdraw(self, callback: Callable[[ErasureRequest], None]) -> None:
        """Call ``callback(request)`` in this process after each withdrawal."""
        self._listeners.append(callback)

    def withdraw(
        self, subject_id: str, at: float | None = None, purpose: str | None = None, subject_ref: str = ""
    ) -> ErasureRequest | None:
        """Withdraw one purpose (or all) and queue an erasure request. None if nothing was active to withdraw.
        ``subject_ref``: the subject's pseudonym while its key lives, kept with the queued request until it is
        published (stores that hold only the pseudonym need it, and the key may be gone by then)."""
        at = self.clock() if at is None else at
        with self._lock:
            self.refresh(force=True)
            changed = [
                replace(rec, withdrawn_at=at)
                for p, rec in self.records.get(subject_id, {}).items()
                if (purpose is None or p == purpose) and rec.withdrawn_at is None
            ]
            if not changed:
                return None
            reason = WITHDRAWN_REASON if purpose is None else f"{WITHDRAWN_REASON}:{purpose}"
            req = ErasureRequest(
                request_id=uuid.uuid4().hex, subject_id=subject_id, requested_at=at, reason=reason, subject_ref=subject_ref
            )
            self._write(changed, erasure=req)
            for r in changed:
                self.records[subject_id][r.purpose] = r
            self.refresh(force=True)
        for cb in self._listeners:
            cb(req)
        return req

    def queue_erasure(self, subject_id: str, reason: str, at: float | None = None, subject_ref: str = "") -> ErasureRequest:
        """An erasure with no consent to withdraw (e.g. stored data of a subject whose consent already lapsed),
        queued in the same durable outbox as withdrawals: published at least once, even after a crash."""
        at = self.clock() if at is None else at
        req = ErasureRequest(request_id=uuid.uuid4().hex, subject_id=subject_id, requested_at=at, reason=reason, subject_ref=subject_ref)
        if self._db is not None:
            with self._lock:
                self._queue(req)
        for cb in self._listeners:
            cb(req)
        return req

    def queue_lapsed(self, now: float | None = None) -> list[ErasureRequest]:
        """Consent expiry is treated like withdrawal for the stores: every subject none of whose consents is still
        active (all expired or withdrawn) and for whom no erasure request exists yet gets one queued, reason
        ``consent-expired``, in one transaction (several publishers may run this: each subject is queued once)."""
        db = self._db
        if db is None:
            return []
        now = self.clock() if now is None else now
        out: list[ErasureRequest] = []
        with self._lock:
            db.execute("BEGIN IMMEDIATE")
            try:
                rows = db.execute(
                    "SELECT subject_id FROM consents GROUP BY subject_id "
                    "HAVING SUM(CASE WHEN withdrawn_at IS NULL AND expires_at > ? THEN 1 ELSE 0 END) = 0 "
                    "AND subject_id NOT IN (SELECT subject_id FROM erasures)",
                    (now,),
                ).fetchall()
                for (sid,) in rows:
                    req = ErasureRequest(request_id=uuid.uuid4().hex, subject_id=sid, requested_at=now, reason=EXPIRED_REASON)
                    self._queue(req)
                    out.append(req)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        for req in out:
            for cb in self._listeners:
                cb(req)
        return out

    def _queue(self, req: ErasureRequest) -> None:
        assert self._db is not None
        self._db.execute(
            "INSERT INTO erasures VALUES (?, ?, ?, ?, NULL, ?)",
            (req.request_id, req.subject_id, req.requested_at, req.reason, req.subject_ref or None),
        )

    def pending_erasures(self) -> list[ErasureRequest]:
        """Erasure requests not yet published to the erasure topic (oldest first)."""
        if self._db is None:
            return []
        rows = self._db.execute(
            "SELECT request_id, subject_id, requested_at, reason, subject_ref FROM erasures WHERE published_at IS NULL ORDER BY requested_at"
        ).fetchall()
        return [ErasureRequest(request_id=r[0], subject_id=r[1], requested_at=r[2], reason=r[3], subject_ref=r[4] or "") for r in rows]

    def mark_published(self, request_ids: Iterable[str], at: float | None = None) -> None:
        if self._db is None:
            return
        at = self.clock() if at is None else at
        # the pseudonym is kept only until the topic has the (sealed) request: no lasting link on disk
        self._db.executemany(
            "UPDATE erasures SET published_at = ?, subject_ref = NULL WHERE request_id = ?", [(at, i) for i in request_ids]
        )
        self.wipe_wal()

    def wipe_wal(self) -> bool:
        """Copy the write-ahead log into the database and truncate it to nothing, so that a cleared value (an
        erased subject's pseudonym) survives in neither (``secure_delete`` zeroes it in the database). False
        while another connection still reads an older snapshot: the next call truncates it."""
        if self._db is None:
            return True
        busy, _log, _done = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0

    def erasures(self) -> list[tuple[ErasureRequest, float | None]]:
        """Every erasure request with its publication time (None = not yet published)."""
        if self._db is None:
            return []
        rows = self._db.execute(
            "SELECT request_id, subject_id, requested_at, reason, published_at FROM erasures ORDER BY requested_at"
        ).fetchall()
        return [(ErasureRequest(request_id=r[0], subject_id=r[1], requested_at=r[2], reason=r[3]), r[4]) for r in rows]

    # ------------------------------------------------------------------------------------ questions

    def is_allowed(self, subject_id: str, purpose: str, zone: str, at: float) -> bool:
        """May ``subject_id``'s data be processed for ``purpose`` in ``zone`` for an event at time ``at``?"""
        if self._db is not None:
            self.refresh()
        rec = self.records.get(subject_id, {}).get(purpose)
        return rec is not None and rec.active(zone, at)

    def allows(self, subject_id: str, purpose: str, zone: str, at: float) -> bool:
        """:meth:`is_allowed` against the in-memory snapshot as of the last :meth:`sync` (no refresh check)."""
        rec = self.records.get(subject_id, {}).get(purpose)
        return rec is not None and rec.active(zone, at)

    def has_any(self, subject_id: str, at: float) -> bool:
        """Does the subject hold any active (unwithdrawn, unexpired) consent at ``at``, in any zone?"""
        if self._db is not None:
            self.refresh()
        return any(r.withdrawn_at is None and r.granted_at <= at < r.expires_at for r in self.records.get(subject_id, {}).values())

    def _withdrawn(self, subject_id: str, purpose: str) -> bool:
        rec = self.records.get(subject_id, {}).get(purpose)
        return rec is not None and rec.withdrawn_at is not None

    def withdrawn(self, subject_id: str) -> bool:
        """True if the subject has withdrawn every record it had (erasure is due everywhere)."""
        recs = self.records.get(subject_id, {})
        return bool(recs) and all(r.withdrawn_at is not None for r in recs.values())

    def get(self, subject_id: str, purpose: str) -> ConsentRecord | None:
        return self.records.get(subject_id, {}).get(purpose)

    def subjects(self) -> list[str]:
        return sorted(self.records)

    def all(self) -> list[ConsentRecord]:
        return [r for recs in self.records.values() for r in recs.values()]


class ConsentStore:
    """The consent registry as the leak scanner reads it (entry point ``paxsim.stores:consent``): an active
    record is the legal basis itself; an ended one (withdrawn or expired) is proof kept for ``retention_s``
    (the accountability period) and must be gone after it."""

    name = "store:consent"

    def __init__(self, registry: ConsentRegistry, retention_s: float) -> None:
        self.registry, self.retention_s = registry, retention_s

    def items(self) -> Iterator[StoredItem]:
        """Every record, timed from when it ends (withdrawal or expiry): at the scanner's clock, one still in
        force has not started its retention, an ended one is kept ``retention_s`` from its end."""
        for sid, recs in sorted(self.registry.records.items()):
            for purpose, r in sorted(recs.items()):
                ended = r.withdrawn_at if r.withdrawn_at is not None else r.expires_at
                yield StoredItem(f"consent:{sid}/{purpose}", sid, None, None, ended, retention_s=self.retention_s)


def open_consent(state_dir: Path, legacy_json: Path | None = None) -> ConsentRegistry:
    """The run's consent registry: ``consent.sqlite`` in the state dir, else a legacy JSON file, else empty."""
    sqlite = registry_path(state_dir)
    if sqlite.exists():
        return ConsentRegistry.open(sqlite, refresh_s=0.0)
    if legacy_json is not None and legacy_json.exists():
        return ConsentRegistry.load(legacy_json)
    return ConsentRegistry()


def consent_store(settings) -> ConsentStore:  # noqa: ANN001
    """Entry point ``paxsim.stores:consent``: the run's registry, ended records kept ``retention.audit_s``."""
    return ConsentStore(open_consent(Path(settings.state_dir), consent_path(settings)), settings.retention.audit_s)

"""Tamper-evident audit log: append-only JSON lines, each record chained to the previous one by hash.

``hash = sha256(canonical(record without hash))`` where the canonical form is the record's every field
(defaults included, ``hash`` excluded, ``type`` = ``audit.v1``) as JSON with sorted keys and no spaces.
``prev_hash`` is the previous record's ``hash`` (``GENESIS`` for the first) and ``seq`` counts from 1,
so :func:`verify` finds a changed record (its hash no longer matches), a removed one (a gap in ``seq``),
reordered or inserted ones (``seq`` going back, a broken ``prev_hash`` link) and a torn last line.

One chain per file, ``<state_dir>/audit/<chain>.jsonl``. Several processes may append to the same chain:
each append takes an exclusive ``flock`` and re-reads the tail if someone else wrote since. A writer that
finds a torn last line (killed mid-write) cuts it and records an ``audit.recovered`` entry saying so.

Decisions on the data path are audited per micro-batch (:meth:`AuditLog.append_batch`): one chain entry
(``decision="batch"``) whose ``object_id`` is ``batch:<n>:<sha256 hex>``, the digest of the msgpack
encoding of its ``n`` decision rows ``(object id, stage, rule, decision, policy version, subject ref)``.
The rows travel on the same line (key ``decisions``); the entry's own hash covers the digest, so changing,
removing or adding one decision inside a batch breaks the digest (``verify`` says ``changed`` or
``removed``), and re-computing the digest breaks the entry's hash and every link after it. One JSON line
and one sha256 per batch instead of one per decision: the same guarantee at a fraction of the cost.

What a hash chain cannot show on its own: a truncated *tail* (the last records removed) or a chain
rewritten from the start. Both need an anchor kept elsewhere: :mod:`policy.mirror` copies every entry to
the audit topic, and ``verify(path, anchor=...)`` / ``paxsim audit scan`` compare against it.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from prometheus_client import Counter

from broker.messages import AuditRecord
from core import faults
from policy.stores import StoredItem

GENESIS = "0" * 64
_TAG = "audit.v1"
BATCH = "batch"  # the ``decision`` of a batch entry
BATCH_PREFIX = "batch:"

# one audited decision inside a batch entry
DecisionRow = tuple[str | None, str, str, str, str, str | None]  # (object id, stage, rule, decision, version, subject ref)
ROW_FIELDS = ("object_id", "stage", "rule", "decision", "policy_version", "subject_id")

APPENDS = Counter("paxsim_audit_records_total", "Audit records appended", ["chain", "action"])

_json_enc = msgspec.json.Encoder()
_canon_enc = msgspec.json.Encoder(order="sorted")
_json_dec = msgspec.json.Decoder(AuditRecord)
_pack = msgspec.msgpack.Encoder()


class _Rows(msgspec.Struct):
    """The decision rows a batch line carries next to its record fields (other keys are ignored)."""

    decisions: list[list[str | None]] | None = None


_rows_json = msgspec.json.Decoder(_Rows)
_rows_pack = msgspec.msgpack.Decoder(_Rows)


def rows_digest(rows: list) -> str:
    """sha256 (hex) of the msgpack encoding of decision rows (tuples and lists encode alike)."""
    return hashlib.sha256(_pack.encode(rows)).hexdigest()


def batch_object_id(rows: list) -> str:
    return f"{BATCH_PREFIX}{len(rows)}:{rows_digest(rows)}"


def is_batch(rec: AuditRecord) -> bool:
    return rec.decision == BATCH and (rec.object_id or "").startswith(BATCH_PREFIX)


def check_batch(rec: AuditRecord, rows: list | None) -> tuple[str, str] | None:
    """(kind, detail) if a batch entry's rows do not match the digest it commits to, else None."""
    try:
        _p, n_s, digest = (rec.object_id or "").split(":")
        n = int(n_s)
    except ValueError:
        return "changed", f"malformed batch reference {rec.object_id!r}"
    if rows is None:
        return "removed", f"the {n} decision(s) of this batch are missing"
    if rows_digest(rows) == digest:
        return None
    if len(rows) < n:
        return "removed", f"{n - len(rows)} of the batch's {n} decisions removed (digest mismatch)"
    if len(rows) > n:
        return "inserted", f"{len(rows) - n} decision(s) added to a batch of {n} (digest mismatch)"
    return "changed", f"a decision inside the batch of {n} was changed (digest mismatch)"


def batch_rows(raw: bytes) -> list | None:
    """The decision rows of a batch line of a chain file (JSON), or None."""
    try:
        return _rows_json.decode(raw).decisions
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def batch_rows_msgpack(raw: bytes) -> list | None:
    """The decision rows of a mirrored batch record (msgpack on the audit topic), or None."""
    try:
        return _rows_pack.decode(raw).decisions
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def encode_line(rec: AuditRecord, rows: list | None = None) -> bytes:
    """One chain file line: the record as JSON, plus ``"decisions": rows`` for a batch entry."""
    data = _json_enc.encode(rec)
    if rows is None:
        return data + b"\n"
    return data[:-1] + b',"decisions":' + _json_enc.encode(rows) + b"}\n"


def encode_topic(rec: AuditRecord, rows: list | None = None) -> bytes:
    """The audit topic's copy of an entry (msgpack, like every broker message), batch rows included."""
    d = msgspec.structs.asdict(rec)
    d["type"] = _TAG
    if rows is not None:
        d["decisions"] = rows
    return _pack.encode(d)


class AuditError(Exception):
    """The audit log cannot be appended to (its tail is unreadable); the message says where."""


def canonical(rec: AuditRecord) -> bytes:
    """Every field but ``hash`` (defaults included) plus ``type``, as compact JSON with sorted keys."""
    d = msgspec.structs.asdict(rec)
    del d["hash"]
    d["type"] = _TAG
    if not math.isfinite(rec.at):
        raise AuditError("audit record time must be finite")
    return _canon_enc.encode(d)


def record_hash(rec: AuditRecord) -> str:
    return hashlib.sha256(canonical(rec)).hexdigest()


def audit_dir(state_dir: str | Path) -> Path:
    return Path(state_dir) / "audit"


def chain_path(state_dir: str | Path, chain: str) -> Path:
    return audit_dir(state_dir) / f"{chain}.jsonl"


class _FileLock:
    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


class AuditLog:
    """Appends hash-chained :class:`AuditRecord` lines to one chain file.

    ``publish`` (optional) is called with each record after it is on disk (e.g. to queue it for the audit
    topic). ``fsync=True`` makes each append durable against power loss (slower).
    """

    def __init__(
        self,
        path: str | Path,
        actor: str,
        publish: Callable[[AuditRecord], None] | None = None,
        fsync: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.actor = actor
        self.publish = publish
        self.fsync = fsync
        self.clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        self._lock = threading.Lock()
        self._seq = 0
        self._hash = GENESIS
        self._end = -1  # file size after our last write; -1 = tail unknown
        self._chain = self.path.stem
        self._counters: dict[str, Counter] = {}
        with self._locked():
            self._sync_tail()

    @classmethod
    def in_state_dir(cls, state_dir: str | Path, chain: str, **kw) -> AuditLog:
        return cls(chain_path(state_dir, chain), actor=kw.pop("actor", chain), **kw)

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record: an anchor to keep elsewhere."""
        return self._seq, self._hash

    def _locked(self) -> _FileLock:
        return _FileLock(self._fd)

    def _sync_tail(self) -> None:
        """Find the last record (under the file lock); cut a torn last line and record that we did."""
        size = os.fstat(self._fd).st_size
        if size == self._end:
            return
        if size == 0:
            self._seq, self._hash, self._end = 0, GENESIS, 0
            return
        back = min(size, 64 * 1024)
        data = os.pread(self._fd, back, size - back)
        torn = b""
        if not data.endswith(b"\n"):
            cut = data.rfind(b"\n")
            torn = data[cut + 1 :] if cut >= 0 else data
            if cut < 0 and back < size:
                raise AuditError(f"{self.path}: last line longer than 64 KiB and torn")
            os.ftruncate(self._fd, size - len(torn))
            size -= len(torn)
            data = data[: len(data) - len(torn)]
        lines = data.rstrip(b"\n").rsplit(b"\n", 1)
        last = lines[-1] if lines and lines[-1] else b""
        if last:
            try:
                rec = _json_dec.decode(last)
            except msgspec.DecodeError as exc:
                raise AuditError(f"{self.path}: last record unreadable ({exc}); run `paxsim audit verify`") from None
            self._seq, self._hash = rec.seq, rec.hash
        else:
            self._seq, self._hash = 0, GENESIS
        self._end = size
        if torn:
            self._write(
                self._make(
                    "audit.recovered", "torn-tail", rule="", object_id=f"{len(torn)} bytes cut", subject_id=None, policy_version="", at=None
                )
            )

    def _make(
        self, action: str, decision: str, *, rule: str, subject_id: str | None, object_id: str | None, policy_version: str, at: float | None
    ) -> AuditRecord:
        at = self.clock() if at is None else at
        seq, prev = self._seq + 1, self._hash
        # the same mapping canonical() builds from a record (every field but hash, plus type), built directly
        d = {
            "seq": seq,
            "at": at,
            "actor": self.actor,
            "action": action,
            "decision": decision,
            "rule": rule,
            "subject_id": subject_id,
            "object_id": object_id,
            "policy_version": policy_version,
            "prev_hash": prev,
            "type": _TAG,
        }
        if not math.isfinite(at):
            raise AuditError("audit record time must be finite")
        digest = hashlib.sha256(_canon_enc.encode(d)).hexdigest()
        return AuditRecord(
            seq=seq,
            at=at,
            actor=self.actor,
            action=action,
            decision=decision,
            rule=rule,
            subject_id=subject_id,
            object_id=object_id,
            policy_version=policy_version,
            prev_hash=prev,
            hash=digest,
        )

    def _write(self, *recs: AuditRecord, rows: list | None = None) -> None:
        data = b"".join(_json_enc.encode(r) + b"\n" for r in recs) if rows is None else encode_line(recs[0], rows)
        n = os.write(self._fd, data)
        if n != len(data):
            self._end = -1  # re-read the tail next time (the torn part will be cut and recorded)
            raise AuditError(f"{self.path}: short write")
        if self.fsync:
            os.fsync(self._fd)
        self._seq, self._hash = recs[-1].seq, recs[-1].hash
        self._end += n

    def append(
        self,
        action: str,
        decision: str,
        *,
        rule: str = "",
        subject_id: str | None = None,
        object_id: str | None = None,
        policy_version: str = "",
        at: float | None = None,
    ) -> AuditRecord:
        """Append one record and return it (with its seq and hashes)."""
        with self._lock, self._locked():
            self._sync_tail()
            rec = self._make(action, decision, rule=rule, subject_id=subject_id, object_id=object_id, policy_version=policy_version, at=at)
            self._write(rec)
        return self._appended(action, rec)

    def append_many(self, entries: list[dict]) -> list[AuditRecord]:
        """Append several records in one locked write (each dict: the keyword arguments of :meth:`append`)."""
        if not entries:
            return []
        with self._lock, self._locked():
            self._sync_tail()
            seq, head = self._seq, self._hash
            recs = []
            for e in entries:
                rec = self._make(
                    e["action"],
                    e["decision"],
                    rule=e.get("rule", ""),
                    subject_id=e.get("subject_id"),
                    object_id=e.get("object_id"),
                    policy_version=e.get("policy_version", ""),
                    at=e.get("at"),
                )
                self._seq, self._hash = rec.seq, rec.hash  # chain the next one to this one
                recs.append(rec)
            self._seq, self._hash = seq, head
            self._write(*recs)
        tally: dict[str, int] = {}
        for rec in recs:
            tally[rec.action] = tally.get(rec.action, 0) + 1
        for action, n in tally.items():
            counter = self._counters.get(action)
            if counter is None:
                counter = self._counters[action] = APPENDS.labels(self._chain, action)
            counter.inc(n)
        if self.publish is not None:
            for rec in recs:
                self.publish(rec)
        return recs

    def append_batch(
        self, action: str, rows: list[DecisionRow], *, policy_version: str | None = None, at: float | None = None
    ) -> AuditRecord | None:
        """One chain entry committing to every decision row of a micro-batch (None if ``rows`` is empty).

        Rows: ``(object id, stage, rule, "allow"|"deny", policy version, subject ref)``. The entry's
        ``policy_version`` is the rows' version when they share one (else every distinct one, sorted).
        """
        if not rows:
            return None
        if policy_version is None:
            versions = {r[4] for r in rows}
            policy_version = versions.pop() if len(versions) == 1 else ",".join(sorted(versions))
        deny = sum(1 for r in rows if r[3] != "allow")
        with self._lock, self._locked():
            self._sync_tail()
            rec = self._make(
                action,
                BATCH,
                rule=f"{len(rows) - deny} allow {deny} deny",
                subject_id=None,
                object_id=batch_object_id(rows),
                policy_version=policy_version,
                at=at,
            )
            self._write(rec, rows=rows)
        return self._appended(action, rec)

    def _appended(self, action: str, rec: AuditRecord) -> AuditRecord:
        """After a write: count it per action and hand it to ``publish``."""
        counter = self._counters.get(action)
        if counter is None:
            counter = self._counters[action] = APPENDS.labels(self._chain, action)
        counter.inc()
        if self.publish is not None:
            self.publish(rec)
        return rec

    def decision_hook(
        self,
        action: str,
        subject: Callable[[object], str | None] = lambda c: None,
        obj: Callable[[object], str | None] = lambda c: None,
        log_allows: bool | Callable[[], bool] = True,
    ):  # noqa: ANN201
        """An ``on_decision`` callback for :class:`policy.filters.Chain` that audits its results.

        Denials are always audited; allows when ``log_allows`` (a bool, or e.g.
        ``lambda: holder.current.audit.log_allows`` to follow the policy file).
        """

        def hook(ctx, d) -> None:  # noqa: ANN001
            if not d.allow or (log_allows() if callable(log_allows) else log_allows):
                self.append(
                    action,
                    "allow" if d.allow else "deny",
                    rule=d.rule,
                    subject_id=subject(ctx),
                    object_id=obj(ctx),
                    policy_version=d.policy_version,
                )

        return hook

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    seq: int | None
    kind: str  # changed | removed | reordered | inserted | unreadable | torn | anchor
    detail: str

    def __str__(self) -> str:
        at = f"line {self.line}" + (f" (seq {self.seq})" if self.seq is not None else "")
        return f"{at}: {self.kind}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    path: Path
    records: int = 0
    head: tuple[int, str] = (0, GENESIS)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_records(path: str | Path) -> Iterator[tuple[int, AuditRecord | None, bytes]]:
    """(line number, record or None if unreadable, raw line) for every line of a chain file."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                rec = _json_dec.decode(raw)
            except msgspec.DecodeError:
                rec = None
            yield lineno, rec, raw


def verify(path: str | Path, anchor: tuple[int, str] | None = None) -> VerifyReport:
    """Check one chain file. ``anchor`` = a (seq, hash) known from elsewhere that must be in the chain."""
    rep = VerifyReport(Path(path))
    expected_seq, prev_hash = 1, GENESIS
    seen: dict[int, str] = {}
    rows = list(read_records(path))
    present = {rec.seq for _l, rec, _r in rows if rec is not None}
    for lineno, rec, raw in rows:
        if not raw.endswith(b"\n"):
            rep.problems.append(Problem(lineno, None, "torn", "last line is incomplete (writer killed mid-write?)"))
            continue
        if rec is None:
            rep.problems.append(Problem(lineno, None, "unreadable", "not a valid audit record"))
            continue
        rep.records += 1
        if record_hash(rec) != rec.hash:
            rep.problems.append(Problem(lineno, rec.seq, "changed", "content does not match its hash"))
        elif is_batch(rec):
            bad = check_batch(rec, batch_rows(raw))
            if bad is not None:
                rep.problems.append(Problem(lineno, rec.seq, *bad))
        if rec.seq > expected_seq:
            gap = range(expected_seq, rec.seq)
            if all(q in present for q in gap):
                rep.problems.append(
                    Problem(
                        lineno,
                        rec.seq,
                        "reordered",
                        f"seq jumps from {expected_seq - 1} to {rec.seq}; the skipped records are elsewhere in the file",
                    )
                )
            else:
                lost = sum(1 for q in gap if q not in present)
                rep.problems.append(
                    Problem(lineno, rec.seq, "removed", f"{lost} record(s) missing before it (seq {expected_seq}..{rec.seq - 1})")
                )
        elif rec.seq < expected_seq:
            kind = "inserted" if rec.seq in seen else "reordered"
            rep.problems.append(Problem(lineno, rec.seq, kind, f"seq goes back from {expected_seq - 1} to {rec.seq}"))
        elif rec.prev_hash != prev_hash:
            rep.problems.append(Problem(lineno, rec.seq, "inserted", "prev_hash does not link to the record before (inserted or replaced)"))
        seen[rec.seq] = rec.hash
        expected_seq, prev_hash = rec.seq + 1, rec.hash
        rep.head = (rec.seq, rec.hash)
    if faults.disabled("audit.hash"):
        rep.problems = [p for p in rep.problems if p.kind == "anchor"]
    if anchor is not None and seen.get(anchor[0]) != anchor[1] and not faults.disabled("audit.anchor"):
        got = seen.get(anchor[0])
        what = "is missing (tail removed?)" if got is None else "has a different hash"
        rep.problems.append(Problem(0, anchor[0], "anchor", f"anchored record seq {anchor[0]} {what}"))
    return rep


def verify_dir(directory: str | Path) -> list[VerifyReport]:
    """Verify every ``*.jsonl`` chain in ``directory``."""
    d = Path(directory)
    return [verify(p) for p in sorted(d.glob("*.jsonl"))] if d.is_dir() else []


class AuditChainStore:
    """Every subject reference in the chain files (a record's subject, each decision row of a batch), as the
    leak scanner reads it: accountability records, kept ``retention_s`` (``retention.audit_s``) from when they
    were written whatever the consent says; an erased subject's pseudonym there is unlinkable."""

    name = "store:audit-chains"

    def __init__(self, directory: Path, retention_s: float) -> None:
        self.directory, self.retention_s = Path(directory), retention_s

    def items(self) -> Iterator[StoredItem]:
        for path in sorted(self.directory.glob("*.jsonl")) if self.directory.is_dir() else []:
            try:
                lines = list(read_records(path))
            except OSError:
                continue
            for lineno, rec, raw in lines:
                if rec is None:
                    continue  # an unreadable line is the integrity check's finding, not a subject reference
                refs = [rec.subject_id] if rec.subject_id else []
                if is_batch(rec):
                    refs += [str(row[5]) for row in batch_rows(raw) or [] if len(row) > 5 and row[5]]
                for ref in refs:
                    yield StoredItem(f"{path}:{lineno}", ref, None, None, rec.at, retention_s=self.retention_s)


def record_grants(state_dir: str | Path, grants: Iterable, via: str, policy_version: str = "") -> int:
    """One ``consent.grant`` record per granted consent (``policy.consent.ConsentRecord``) in the ``consent``
    chain, in one write; ``via`` says which tool granted it (``enrolment``, ``demo``). Returns the count."""
    entries = [
        {
            "action": "consent.grant",
            "decision": "allow",
            "rule": g.purpose,
            "subject_id": g.subject_id,
            "object_id": via,
            "policy_version": policy_version,
        }
        for g in grants
    ]
    with AuditLog.in_state_dir(state_dir, "consent") as audit:
        audit.append_many(entries)
    return len(entries)

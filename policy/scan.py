"""``paxsim audit scan``: read every store and every topic from offset 0 and report three counts.

(a) **expired-readable**: records past their TTL that can still be read: a sighting embedding in plaintext,
    or sealed under an epoch key that still exists; a match/track that links to a subject after its
    purpose's retention.
(b) **non-consented**: data about a subject who has no active consent for it (never consented, expired,
    withdrawn): matches, tracks and alerts on the broker, gallery entries in the stores.
(c) **audit**: problems in the audit hash chains, and the audit topic's copy (:mod:`policy.mirror`) checked
    against them: a mirrored entry that does not match its own hash (or, for a batch entry, whose decision
    rows do not match its digest), that is missing from the chain files (a removed tail, a chain deleted)
    or differs from the chain's entry of the same seq (a chain rewritten), and gaps in the mirrored copy
    (seqs the chain has but the topic skipped). Entries not mirrored *yet* (the tail, ~1 s) are counted
    in ``records["audit:unmirrored"]``, not reported.

Subject references are either plain subject ids or pseudonyms (``ps-…``, :meth:`SubjectVault.pseudonym`),
resolved against every live subject key (not only the registry's subjects); a pseudonym whose subject key was
destroyed is unlinkable, no longer personal data, and counted as such (``ScanReport.unlinkable``).
Sources: every topic (erasure requests and the audit copy included), every store a stage registers (gallery,
matcher snapshots, exports), the stages' logs (:class:`LogStore`) and, while the stages run, the label values
of their ``/metrics`` (:class:`MetricsStore`: no purpose covers a metric, so any linkable subject there is a
finding) and the dashboard's in-memory state through its authenticated API (:class:`DashboardStore`).
The consent registry is a store too, with its own rule: an ended consent (withdrawn or expired) is kept
as proof for the accountability period (``retention.audit_s``) and is a finding after it, whatever the
consent says; the same rule holds for every subject reference inside the audit chains
(:class:`policy.audit.AuditChainStore`). Deliberately out of scope: the erasure bookkeeping (the record of erasure itself) and the
scenario's ground-truth file (the simulated world's truth, not system data); the report lists them.

Key material: the scanner asks the run's key holder (``PAXSIM_KEYD_URL``/``PAXSIM_KEYD_TOKEN``) like any
service. Without a key holder no epoch or subject key exists anywhere, so sealed payloads are unreadable.
"""

from __future__ import annotations

import re
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Literal

from broker import messages as m
from broker.topics import ADMITTED
from core import faults
from policy.audit import AuditChainStore, audit_dir, batch_rows_msgpack, check_batch, is_batch, read_records, record_hash, verify_dir
from policy.consent import ConsentRegistry, open_consent
from policy.crypto import CryptoError, EpochKeyRing, KeySource, SubjectVault
from policy.crypto.outputs import PURPOSE_CLASS_PREFIX, OutputKeys, purpose_epoch_s
from policy.policyfile import Policy
from policy.stores import Store, StoredItem

Kind = Literal["expired-readable", "non-consented", "audit"]
EXCLUDED = (
    "erasure bookkeeping (the record of erasure itself)",
    "scenario ground truth (simulation truth, not system data)",
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: Kind
    where: str  # topic/partition/offset, or store path
    detail: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.where}: {self.detail}"


@dataclass(slots=True)
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    records: Tally = field(default_factory=Tally)  # topic or store → items read
    undecodable: Tally = field(default_factory=Tally)
    scanned_at: float = 0.0
    excluded: tuple[str, ...] = EXCLUDED
    # admitted events vs decisions on the topics: decided, in flight, lost, decided twice, dead-lettered per stage
    delivery: dict = field(default_factory=dict)
    unlinkable: int = 0  # references to erased subjects (their key is destroyed): the success case, not a finding

    def count(self, kind: Kind) -> int:
        return sum(1 for f in self.findings if f.kind == kind)

    @property
    def counts(self) -> tuple[int, int, int]:
        return self.count("expired-readable"), self.count("non-consented"), self.count("audit")

    @property
    def clean(self) -> bool:
        return not self.findings


STORE_PLUGINS = "paxsim.stores"


def registered_stores(settings) -> list[Store]:  # noqa: ANN001
    """Every store a stage registered under the ``paxsim.stores`` entry point (pyproject.toml), opened for
    ``settings``: the stages own their file formats, the scanner reads them all through ``Store``."""
    return [ep.load()(settings) for ep in sorted(entry_points(group=STORE_PLUGINS), key=lambda ep: ep.name)]


def state_stores(settings, consent: ConsentRegistry) -> list[Store]:  # noqa: ANN001
    """Every store at rest under the run's state dir: the stages' registered stores, their logs (every subject
    the registry ever knew) and the subject references inside the audit chains."""
    state = Path(settings.state_dir)
    return [
        *registered_stores(settings),
        LogStore(state, consent.subjects()),
        AuditChainStore(audit_dir(state), settings.retention.audit_s),
    ]


PSEUDONYM = re.compile(r"\bps-[0-9a-f]{24}\b")
TOKEN = re.compile(r"[A-Za-z0-9_.:-]+")


class LogStore:
    """Every ``*.log`` under the state dir (the stages' logs), as a store: each mention of a subject (a known
    subject id or a pseudonym) is one item. A log line is kept as long as the file; it needs the subject's
    consent like a gallery template (any purpose), so a logged id of a withdrawn or never-consented subject is
    a finding, and a pseudonym is resolved like any other."""

    name = "logs"

    def __init__(self, state_dir: Path, subject_ids: Iterable[str]) -> None:
        self.state_dir, self.subject_ids = Path(state_dir), set(subject_ids)

    def items(self) -> Iterable[StoredItem]:
        for path in sorted(self.state_dir.rglob("*.log")):
            try:
                text = path.read_text(errors="replace")
                mtime = path.stat().st_mtime
            except OSError:
                continue
            for n, line in enumerate(text.splitlines(), 1):
                refs = set(PSEUDONYM.findall(line))
                if self.subject_ids:
                    refs |= {tok for tok in TOKEN.findall(line) if tok in self.subject_ids}
                for ref in sorted(refs):
                    yield StoredItem(f"{path}:{n}", ref, None, None, mtime)


@dataclass(slots=True)
class _Pending:
    where: str
    subject_ref: str
    purpose: str | None
    zone: str | None
    at: float
    ttl: float | None  # None: no TTL check (e.g. gallery templates live as long as consent)
    what: str
    never_allowed: str | None = None
    consent_exempt: bool = False  # kept for accountability: only its retention is checked


class Scanner:
    """Feed it raw topic records and store items, then call :meth:`finish` for the report."""

    def __init__(
        self, policy: Policy, consent: ConsentRegistry, keys: KeySource | None, now: float | None = None, grace_s: float = 0.25
    ) -> None:
        self.policy, self.consent, self.grace_s = policy, consent, grace_s
        self.now = time.time() if now is None else now
        self.ring = EpochKeyRing(keys, "sightings") if keys is not None else None
        self.vault = SubjectVault(keys) if keys is not None else None
        self.outputs = OutputKeys(keys, background=False, purposes=lambda: self.policy.purposes) if keys is not None else None
        self.keys = keys
        self.report = ScanReport(scanned_at=self.now)
        self._subject_refs: list[_Pending] = []
        self._audit_topic: list[tuple[str, m.AuditRecord, bytes]] = []
        self._seen_subjects: set[str] = set()
        self._admitted: dict[str, float] = {}  # event id → captured_at, from the admitted topic
        self._admitted_at: dict[tuple[int, int], str] = {}  # (partition, offset) on the admitted topic → event id
        self._dead_admitted: set[tuple[int, int]] = set()  # admitted records a matcher dead-lettered (with a reason)
        self._decisions: Tally[str] = Tally()  # event id → decisions on the matches topic
        self._dead: Tally[str] = Tally()  # stage → dead letters
        self._audit_dir: Path | None = None
        self._checkpoints: dict | None = None  # the key holder's, when pinned (pin_checkpoints)

    # ------------------------------------------------------------------------------------ topics

    def add_record(self, topic: str, partition: int, offset: int, value: bytes | None) -> None:
        where = f"{topic}/{partition}@{offset}"
        self.report.records[topic] += 1
        try:
            msg = m.decode(value or b"", m.Message)
        except m.MessageError:
            self.report.undecodable[topic] += 1
            return
        if isinstance(msg, m.AuditRecord):
            self._audit_topic.append((where, msg, value or b""))
            return
        if isinstance(msg, m.Sighting) and topic == ADMITTED.name:
            self._admitted[msg.event_id] = msg.captured_at
            self._admitted_at[(partition, offset)] = msg.event_id
        elif isinstance(msg, m.Match):
            self._decisions[msg.event_id] += 1
        elif isinstance(msg, m.DeadLetter):
            self._dead[msg.stage] += 1
            if msg.source_topic == ADMITTED.name:
                self._dead_admitted.add((msg.source_partition, msg.source_offset))
        self._add_message(where, msg)

    def _check_delivery(self) -> None:
        """What the gate admitted against what the matchers decided. An admitted event older than the policy's
        ``max_event_age_s`` with no decision is lost (a finding: a run that loses events is not clean);
        younger ones may still be in flight. Decided twice: at-least-once duplicates, reported, not a leak."""
        if (not self._admitted and not self._decisions) or faults.disabled("scan.delivery"):
            return
        horizon = self.now - self.policy.max_event_age_s
        # a record written straight onto the admitted topic that a matcher dead-lettered is accounted for, not lost
        refused = {self._admitted_at[po] for po in self._dead_admitted if po in self._admitted_at}
        undecided = [e for e in self._admitted if e not in self._decisions and e not in refused]
        lost = [e for e in undecided if self._admitted[e] < horizon]
        self.report.delivery = {
            "admitted": len(self._admitted),
            "decided": sum(1 for e in self._admitted if e in self._decisions),
            "in_flight": len(undecided) - len(lost),
            "dead_lettered_admitted": len(refused - set(self._decisions)),
            "lost": len(lost),
            "decided_twice": sum(1 for n in self._decisions.values() if n > 1),
            "dead_lettered": dict(self._dead),
        }
        if lost:
            self._find(
                "audit",
                ADMITTED.name,
                f"{len(lost)} admitted event(s) older than {self.policy.max_event_age_s:g}s were never decided (lost), e.g. {sorted(lost)[0]}",
            )

    def _open_output(self, where: str, msg: m.Match | m.TrackUpdate | m.Alert) -> m.Match | m.TrackUpdate | m.Alert | None:
        """A sealed subject reference opened (then judged like any other), or None: its purpose key is destroyed
        (unlinkable: retention held) or it does not open at all (counted undecodable)."""
        if self.outputs is None:
            self.report.undecodable["sealed-without-keys"] += 1
            return None
        try:
            opened, readable = self.outputs.open(msg)  # type: ignore[type-var]
        except CryptoError:  # forged, or not openable now: counted, never taken for a retention that held
            self.report.undecodable["sealed-reference"] += 1
            return None
        if not readable:
            self.report.unlinkable += 1  # past its purpose's retention: the key holder destroyed the key
            return None
        return opened

    def _epoch_of_key(self, key_id: str) -> float:
        purpose = key_id.split(":", 1)[0].removeprefix(PURPOSE_CLASS_PREFIX)
        return purpose_epoch_s(self.policy.retention_for(purpose), self.policy.retention.epoch_s)

    def _expired(self, at: float, ttl: float) -> bool:
        return not (self.now - at <= ttl + self.grace_s)  # NaN times count as expired

    def _add_message(self, where: str, msg: m.Message) -> None:
        if faults.disabled("scan.topics"):
            return
        slack = 0.0  # a sealed reference's key may live one epoch of its class past the TTL (the retention bound)
        if isinstance(msg, m.Match | m.TrackUpdate | m.Alert) and msg.sealed:
            opened = self._open_output(where, msg)
            if opened is None:
                return
            msg, slack = opened, self._epoch_of_key(msg.key_id)
        pol = self.policy
        if isinstance(msg, m.Sighting):
            ttl = pol.retention.sightings_s
            if msg.claimed_subject:  # an e-gate claim names a subject (by pseudonym)
                purpose = pol.purpose_for_zone(msg.zone)
                self._subject_refs.append(
                    _Pending(
                        where,
                        msg.claimed_subject,
                        purpose or f"<none for zone {msg.zone}>",
                        msg.zone,
                        msg.captured_at,
                        pol.retention_for(purpose or ""),
                        "e-gate claim",
                    )
                )
            if not self._expired(msg.captured_at, ttl):
                return
            age = self.now - msg.captured_at
            if msg.embedding:
                self._find("expired-readable", where, f"plaintext embedding {age:.1f}s old (TTL {ttl:g}s)")
            elif msg.sealed and self.ring is not None and self.ring.can_open(msg.key_id):
                self._find("expired-readable", where, f"sealed embedding {age:.1f}s old (TTL {ttl:g}s) but key {msg.key_id} still exists")
        elif isinstance(msg, m.Match):
            if msg.subject_id:
                self._subject_refs.append(
                    _Pending(
                        where,
                        msg.subject_id,
                        msg.purpose,
                        msg.zone,
                        msg.captured_at,
                        pol.retention_for(msg.purpose) + slack,
                        f"match ({msg.decision})",
                    )
                )
        elif isinstance(msg, m.TrackUpdate):
            purpose = pol.purpose_for_zone(msg.zone)
            self._subject_refs.append(
                _Pending(
                    where,
                    msg.subject_id,
                    purpose or f"<none for zone {msg.zone}>",
                    msg.zone,
                    msg.captured_at,
                    pol.retention_for(purpose or "") + slack,
                    "track update",
                )
            )
        elif isinstance(msg, m.Alert):
            if msg.subject_id:
                self._subject_refs.append(
                    _Pending(
                        where,
                        msg.subject_id,
                        None,
                        None,
                        msg.at,
                        (max(p.retention_s for p in pol.purposes.values()) if pol.purposes else 0.0) + slack,
                        f"alert {msg.kind}",
                    )
                )
        elif isinstance(msg, m.AuditRecord):
            self._audit_topic.append((where, msg, b""))
        elif isinstance(msg, m.DeadLetter):
            if msg.payload:
                try:
                    inner = m.decode(msg.payload, m.Message)
                except m.MessageError:
                    self.report.undecodable["deadletter-payload"] += 1
                    return
                if not isinstance(inner, m.DeadLetter):
                    self._add_message(f"{where}→{msg.source_topic}", inner)
        elif isinstance(msg, m.ErasureRequest):
            # with a key holder, requests travel sealed: one naming its subject (and pseudonym) in clear lets any
            # broker reader re-link the erased person to the pseudonymous matches and tracks left on the broker
            if self.vault is not None and not msg.sealed:
                self._find(
                    "non-consented",
                    where,
                    f"erasure request {msg.request_id} names {msg.subject_id}"
                    + (f" and its pseudonym {msg.subject_ref}" if msg.subject_ref else "")
                    + " in clear (unsealed)",
                )
        # ZoneCount: aggregate, no person

    # ------------------------------------------------------------------------------------ stores

    def add_store(self, store: Store) -> None:
        self.report.records[store.name] += 0  # listed as read even when it holds nothing
        if faults.disabled("scan.stores"):
            return
        use_keys = getattr(store, "use_keys", None)
        if use_keys is not None:  # a store that holds sealed items opens them with the scanner's keys
            use_keys(self.keys)
        for item in store.items():
            self.report.records[store.name] += 1
            if item.subject_ref is None or not item.readable:
                continue
            ttl = item.retention_s if item.retention_s is not None else self.policy.retention_for(item.purpose) if item.purpose else None
            if item.ttl_s is not None:
                ttl = item.ttl_s if ttl is None else min(ttl, item.ttl_s)
            self._subject_refs.append(
                _Pending(
                    item.where,
                    item.subject_ref,
                    item.purpose,
                    item.zone,
                    item.stored_at,
                    ttl,
                    f"stored item in {store.name}",
                    item.never_allowed,
                    item.retention_s is not None,
                )
            )

    # ------------------------------------------------------------------------------------ audit

    def add_audit_chains(self, directory: Path) -> None:
        self._audit_dir = directory

    def pin_checkpoints(self) -> None:
        """Take the key holder's checkpoints now. Call it before reading the audit topic: a stage checkpoints only
        what its mirror already had acknowledged, so every entry checkpointed by then is on the topic. Checkpoints
        fetched later also cover entries mirrored after the topic was read (the scan's own audited reads)."""
        if self.keys is not None:
            self._checkpoints = self.keys.checkpoints()

    def _check_audit(self) -> None:
        directory = self._audit_dir
        local: dict[tuple[str, int], str] = {}  # (actor, seq) → hash, from the chain files
        checkpointed: dict[str, set[tuple[str, int]]] = {}  # chain → its (actor, seq) up to the key holder's checkpoint
        if directory is not None:
            reports, anchors = self._verify_chains(directory)
            for rep in reports:
                self.report.records[f"audit:{rep.path.name}"] += rep.records
                for p in rep.problems:
                    self._find("audit", f"{rep.path}:{p.line}", f"{p.kind}: {p.detail}")
                for _n, rec, _r in read_records(rep.path):
                    if rec is not None:
                        local.setdefault((rec.actor, rec.seq), rec.hash)
                        if rec.seq <= anchors.get(rep.path.stem, 0):
                            checkpointed.setdefault(rep.path.stem, set()).add((rec.actor, rec.seq))
        mirrored: dict[str, set[int]] = {}
        for where, rec, raw in self._audit_topic:
            name = f"{rec.actor}#{rec.seq}"
            if record_hash(rec) != rec.hash:
                self._find("audit", where, f"published audit record {name} does not match its hash")
                continue
            if is_batch(rec) and raw:
                bad = check_batch(rec, batch_rows_msgpack(raw))
                if bad is not None:
                    self._find("audit", where, f"published audit record {name}: {bad[0]}: {bad[1]}")
                    continue
            mine = local.get((rec.actor, rec.seq))
            if mine is None:
                self._find("audit", where, f"published audit record {name} is missing from the chain files")
            elif mine != rec.hash:
                self._find(
                    "audit",
                    where,
                    f"published audit record {name} is missing from the chain files: "
                    "the chain's entry with that seq has another hash (chain rewritten?)",
                )
            mirrored.setdefault(rec.actor, set()).add(rec.seq)
        for actor, seqs in sorted(mirrored.items()):
            top = max(seqs)
            gaps = [q for q in range(1, top) if q not in seqs and (actor, q) in local]
            for lo, hi in _ranges(gaps):
                self._find(
                    "audit", f"{self.audit_topic_name}:{actor}", f"audit topic copy of {actor} has a gap: seq {lo}..{hi} never reached it"
                )
            self.report.records["audit:unmirrored"] += sum(1 for (a, q) in local if a == actor and q > top)
        for actor in {a for a, _q in local} - set(mirrored):
            self.report.records["audit:unmirrored"] += sum(1 for (a, _q) in local if a == actor)
        on_topic = {(a, q) for a, seqs in mirrored.items() for q in seqs}
        for chain, entries in sorted(checkpointed.items()):
            if not entries & on_topic:  # the key holder signed these as mirrored: the topic lost or dropped them
                self._find(
                    "audit",
                    f"{self.audit_topic_name}:{chain}",
                    f"audit topic holds none of the {len(entries)} entries of chain {chain} the key holder checkpointed (topic emptied?)",
                )

    def _verify_chains(self, directory: Path) -> tuple[list, dict[str, int]]:
        """Every chain file's report, against the key holder's signed checkpoints when there is a key holder
        (policy.notary: a cut tail, a rewrite, a deleted chain file); the checkpointed seq per chain."""
        if self.keys is None:
            return verify_dir(directory), {}
        from policy.notary import verify_anchored

        pinned = self._checkpoints if self._checkpoints is not None else self.keys.checkpoints()
        reports, problems, anchors = verify_anchored(directory, pinned)
        for p in problems:
            self._find("audit", f"{directory}/{p.chain}.jsonl", f"{p.kind}: {p.detail}")
        return reports, {chain: seq for chain, (seq, _hash) in anchors.items()}

    audit_topic_name = "audit-topic"

    # ------------------------------------------------------------------------------------ finish

    def _find(self, kind: Kind, where: str, detail: str) -> None:
        self.report.findings.append(Finding(kind, where, detail))

    def _identities(self) -> dict[str, str]:
        refs = {p.subject_ref for p in self._subject_refs}
        ids = {r: r for r in refs if not r.startswith("ps-")}
        pseudonyms = refs - set(ids)
        if pseudonyms and self.vault is not None:
            # every live subject key, not only the registry's subjects: a pseudonym minted for somebody who never
            # consented (or is missing from this registry) is exactly the leak this scan exists to find
            ids.update(self.vault.resolve_all(pseudonyms))
        return ids

    def finish(self) -> ScanReport:
        self._check_delivery()
        identities = self._identities()
        for p in self._subject_refs:
            sid = identities.get(p.subject_ref)
            if sid is None:
                self.report.unlinkable += 1  # a pseudonym whose key is destroyed
                continue
            shown = sid if sid == p.subject_ref else f"{sid} (as {p.subject_ref})"
            if p.never_allowed:
                self._find("non-consented", p.where, f"{p.what} names {shown}: {p.never_allowed}")
                continue
            if p.ttl is not None and self._expired(p.at, p.ttl):
                self._find(
                    "expired-readable",
                    p.where,
                    f"{p.what} about {shown} is {self.now - p.at:.0f}s old, past the {p.ttl:g}s retention of {p.purpose or 'its kind'}",
                )
            if p.consent_exempt:
                continue
            if p.purpose is None:
                ok = self.consent.has_any(sid, self.now)
            else:
                zone = p.zone or "*"  # consent must have covered the event and must still hold now
                ok = self.consent.is_allowed(sid, p.purpose, zone, p.at) and self.consent.is_allowed(sid, p.purpose, zone, self.now)
            if not ok:
                rec = self.consent.get(sid, p.purpose) if p.purpose else None
                why = "withdrawn" if self.consent.withdrawn(sid) or (rec and rec.withdrawn_at is not None) else "no active consent"
                self._find("non-consented", p.where, f"{p.what} about {shown}: {why} for {p.purpose or 'any purpose'}")
        self._check_audit()
        return self.report


def _ranges(xs: list[int]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted ints as (first, last)."""
    out: list[tuple[int, int]] = []
    for x in xs:
        if out and x == out[-1][1] + 1:
            out[-1] = (out[-1][0], x)
        else:
            out.append((x, x))
    return out


async def run_scan(
    settings,
    policy: Policy,
    keys: KeySource | None,
    *,
    stores: Iterable[Store] | None = None,  # noqa: ANN001
    consent: ConsentRegistry | None = None,
    now: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> ScanReport:
    """Read every topic of the catalogue from offset 0 (broker at ``settings.broker.bootstrap``) and every store."""
    from broker import topics as t
    from broker.reader import read_all
    from policy.consent import consent_path

    state = Path(settings.state_dir)
    consent = consent if consent is not None else open_consent(state, consent_path(settings))
    scanner = Scanner(policy, consent, keys, now=now)
    scanner.pin_checkpoints()
    for topic in t.ALL:
        if progress:
            progress(topic.name)
        for rec in await read_all(settings, topic.name):
            scanner.add_record(topic.name, rec.partition, rec.offset, rec.value)
    if stores is None:
        stores = state_stores(settings, consent)
    for store in stores:
        if progress:
            progress(store.name)
        scanner.add_store(store)
    scanner.add_audit_chains(audit_dir(state))
    return scanner.finish()

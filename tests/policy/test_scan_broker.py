"""End to end on the real embedded broker: the scanner finds planted violations; retention (2 s TTL)
holds in the append-only log by crypto-shredding; erasure propagates over the erasure topic."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec
import numpy as np
import pytest

from broker import topics as t
from broker.clients import start_producer
from broker.messages import Match, Sighting, decode, embedding_to_bytes, encode
from broker.reader import read_all
from policy.audit import AuditLog
from policy.consent import ConsentRecord, ConsentRegistry, registry_path
from policy.crypto import CONTROL_CLASS, EpochKeyRing, KeyExpired, KeyHolder, LocalKeySource, SubjectVault, open_sighting, seal_sighting
from policy.erasure import ErasureWorker, publish_pending
from policy.policyfile import parse_policy
from policy.scan import run_scan
from policy.stores import StoredItem

POLICY = parse_policy("""
label: scan-test
zones:
  egate: {biometric: true, purpose: egate-verification}
  gate: {biometric: true, purpose: boarding}
purposes:
  egate-verification: {retention_s: 600}
  boarding: {retention_s: 600}
retention: {sightings_s: 2, epoch_s: 0.25}
""")


def sighting(eid: str, at: float) -> Sighting:
    vec = np.random.default_rng(abs(hash(eid)) % 2**32).standard_normal(128).astype(np.float32)
    return Sighting(
        event_id=eid,
        camera_id="cam-1",
        zone="egate",
        captured_at=at,
        track_id=1,
        box=(0, 0, 60, 60),
        quality=0.9,
        embedding=embedding_to_bytes(vec),
    )


def match(eid: str, subject: str | None, at: float, zone: str = "egate", purpose: str = "egate-verification") -> Match:
    return Match(
        event_id=eid,
        camera_id="cam-1",
        zone=zone,
        purpose=purpose,
        captured_at=at,
        matched_at=at,
        decision="match" if subject else "unknown",
        subject_id=subject,
        distance=0.3 if subject else None,
    )


async def produce(settings, items: Iterable[tuple[str, bytes]]) -> None:  # noqa: ANN001
    producer = await start_producer(settings)
    try:
        futs = [await producer.send(topic, value, key=b"k") for topic, value in items]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


@dataclass
class ListStore:
    name: str = "store:test"
    rows: list[StoredItem] = field(default_factory=list)

    def items(self) -> Iterable[StoredItem]:
        return list(self.rows)


def test_scanner_finds_every_planted_violation_and_nothing_else(client_settings):
    now = time.time()
    state = client_settings.state_dir
    consent = ConsentRegistry.open(registry_path(state))
    consent.grant_many(
        [
            ConsentRecord("pax-ok", "egate-verification", now - 100, now + 100),
            ConsentRecord("pax-gone", "egate-verification", now - 100, now + 100),
        ]
    )
    consent.withdraw("pax-gone", at=now - 1)
    short = KeyHolder({"sightings": (0.25, 2.0)})
    long = KeyHolder({"sightings": (0.25, 60.0)})  # a service that kept its key too long
    ring_short, ring_long = EpochKeyRing(LocalKeySource(short)), EpochKeyRing(LocalKeySource(long))
    audit = AuditLog.in_state_dir(state, "matcher")
    published = [audit.append("match.decision", "allow", subject_id="pax-ok", object_id=f"e{i}") for i in range(3)]
    rogue = AuditLog(state / "elsewhere" / "matcher.jsonl", actor="matcher").append("export", "allow")
    store = ListStore(
        rows=[
            StoredItem("row-ok", "pax-ok", None, None, now),
            StoredItem("row-gone", "pax-gone", None, None, now),  # (b) withdrawn, still stored
            StoredItem("row-shredded", "pax-gone", None, None, now, readable=False),
        ]
    )

    planted = [
        (t.SIGHTINGS.name, encode(seal_sighting(ring_short, sighting("fresh-sealed", now)))),
        (t.SIGHTINGS.name, encode(sighting("old-plain", now - 10))),  # (a) plaintext past TTL
        (t.ADMITTED.name, encode(seal_sighting(ring_long, sighting("old-sealed", now - 10)))),  # (a) key still alive
        (t.MATCHES.name, encode(match("m-ok", "pax-ok", now))),
        (t.MATCHES.name, encode(match("m-unknown", None, now))),
        (t.MATCHES.name, encode(match("m-withdrawn", "pax-gone", now - 50))),  # (b) withdrawn
        (t.MATCHES.name, encode(match("m-stranger", "pax-never", now))),  # (b) never consented
        # (b) never consented, named the way production names everybody: by a pseudonym the matcher minted
        (t.MATCHES.name, encode(match("m-stranger-ps", SubjectVault(LocalKeySource(long)).pseudonym("pax-never-ps"), now))),
        (t.MATCHES.name, encode(match("m-old", "pax-ok", now - 601))),  # (a) past 600 s, (b) before the grant
        *[(t.AUDIT.name, encode(r)) for r in published],
        (t.AUDIT.name, encode(rogue)),  # (c) not in the chain files
    ]
    asyncio.run(produce(client_settings, planted))
    lines = audit.path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace("match.decision", "match.decisioN")  # (c) altered entry
    audit.path.write_text("".join(lines))

    # the scanner sees keys as the long-lived holder does (the one that still holds the old epoch)
    report = asyncio.run(run_scan(client_settings, POLICY, LocalKeySource(long), stores=[store], consent=consent))
    details = "\n".join(map(str, report.findings))
    assert report.records[t.SIGHTINGS.name] == 2 and report.records[t.MATCHES.name] == 6, details
    a, b, c = report.counts
    assert a == 3, details  # old-plain, old-sealed, m-old
    assert "plaintext embedding" in details and "still exists" in details and "past the 600s retention" in details
    assert b == 5, details  # m-withdrawn, m-stranger, m-stranger-ps, m-old (granted after its event), row-gone
    assert "pax-never-ps (as ps-" in details, "a pseudonymised leak of a never-consented subject went unseen"
    assert "pax-never" in details and "withdrawn" in details and "row-gone" in details and "row-shredded" not in details
    assert c == 2, details  # altered line, rogue published record
    assert "changed" in details and "missing from the chain files" in details


def test_retention_holds_in_the_append_only_log_with_a_2s_ttl(client_settings):
    """Tansu ignores retention.ms: the record stays, but after its TTL nobody can open it."""
    holder = KeyHolder({"sightings": (0.25, 2.0)})
    edge_ring = EpochKeyRing(LocalKeySource(holder))
    original = sighting("ret-1", time.time())
    asyncio.run(produce(client_settings, [(t.SIGHTINGS.name, encode(seal_sighting(edge_ring, original)))]))

    async def read_back() -> Sighting:
        recs = await read_all(client_settings, t.SIGHTINGS.name)
        return decode(recs[0].value, Sighting)

    stored = asyncio.run(read_back())
    matcher_ring = EpochKeyRing(LocalKeySource(holder))  # a different service
    assert open_sighting(matcher_ring, stored).embedding == original.embedding
    assert asyncio.run(run_scan(client_settings, POLICY, LocalKeySource(holder), stores=[])).counts == (0, 0, 0)
    time.sleep(max(0.0, original.captured_at + 2.05 - time.time()))
    stored = asyncio.run(read_back())  # still in the log...
    assert stored.sealed and not stored.embedding
    for ring in (matcher_ring, edge_ring, EpochKeyRing(LocalKeySource(holder))):  # ...but unreadable for everyone
        with pytest.raises(KeyExpired):
            open_sighting(ring, stored)
    assert asyncio.run(run_scan(client_settings, POLICY, LocalKeySource(holder), stores=[])).counts == (0, 0, 0)


def test_withdrawal_propagates_over_the_erasure_topic_and_the_scan_comes_back_clean(client_settings):
    now = time.time()
    state = client_settings.state_dir
    consent = ConsentRegistry.open(registry_path(state))
    consent.grant(ConsentRecord("pax-7", "boarding", now - 10, now + 1000, ("gate",)))
    holder = KeyHolder({"sightings": (0.25, 2.0), CONTROL_CLASS: (86_400.0, 30 * 86_400.0)})
    vault = SubjectVault(LocalKeySource(holder))
    control = EpochKeyRing(LocalKeySource(holder), CONTROL_CLASS)  # requests travel sealed, as in every keyed run
    store = ListStore(rows=[StoredItem("gallery#pax-7", "pax-7", None, None, now)])
    vault_ps = vault.pseudonym("pax-7")
    asyncio.run(produce(client_settings, [(t.MATCHES.name, encode(match("m1", vault_ps, now, "gate", "boarding")))]))

    def scan():  # noqa: ANN202
        return asyncio.run(run_scan(client_settings, POLICY, LocalKeySource(holder), stores=[store], consent=consent))

    assert scan().counts == (0, 0, 0)
    req = consent.withdraw("pax-7")
    assert scan().counts == (0, 2, 0)  # withdrawn, but the gallery row and the (linkable) match are still there

    def drop_from_store(r) -> None:  # noqa: ANN001
        store.rows = [i for i in store.rows if i.subject_ref != r.subject_id]

    worker = ErasureWorker(
        "matcher", [drop_from_store, lambda r: vault.erase(r.subject_id)], audit=AuditLog.in_state_dir(state, "matcher"), control=control
    )

    async def propagate() -> None:
        # the stage is running when the withdrawal is published, as in production (a worker started later
        # catches the request up as "replayed", untimed: tests/policy/test_erasure_replicas.py)
        stop = asyncio.Event()
        task = asyncio.create_task(worker.run(client_settings, stop))
        await asyncio.sleep(0.5)
        producer = await start_producer(client_settings)
        try:
            assert await publish_pending(consent, producer, vault, control) == 1
        finally:
            await producer.stop()
        for _ in range(300):
            if worker.latencies:
                break
            await asyncio.sleep(0.05)
        stop.set()
        await task

    asyncio.run(propagate())
    assert consent.pending_erasures() == []
    assert len(worker.latencies) == 1 and 0 < worker.latencies[0] < 30
    report = scan()
    assert report.counts == (0, 0, 0), [str(f) for f in report.findings]  # the match on the broker is now unlinkable
    recs = asyncio.run(read_all(client_settings, t.ERASURES.name))
    assert decode(recs[0].value).request_id == req.request_id

    # the same request unsealed (as it travelled before requests were sealed): subject and pseudonym in clear
    # re-link the erased subject to the match left on the broker, and the scan says so
    plain = msgspec.structs.replace(req, subject_ref=vault_ps)
    asyncio.run(produce(client_settings, [(t.ERASURES.name, encode(plain))]))
    found = [str(f) for f in scan().findings]
    assert len(found) == 1 and f"names pax-7 and its pseudonym {vault_ps} in clear" in found[0], found


def test_training_export_from_the_broker_refuses_and_audits_subjects_without_that_consent(client_settings, tmp_path):
    from broker.messages import TrackUpdate
    from policy.audit import read_records, verify
    from policy.export import export_tracks
    from policy.policyfile import load_policy

    policy = load_policy()  # the packaged default: model-training is exportable
    now = time.time()
    consent = ConsentRegistry.open(registry_path(client_settings.state_dir))
    consent.grant_many(
        [
            ConsentRecord("pax-a", "boarding", now - 10, now + 100),
            ConsentRecord("pax-a", "model-training", now - 10, now + 100),
            ConsentRecord("pax-b", "boarding", now - 10, now + 100),
        ]
    )
    vault = SubjectVault(LocalKeySource(KeyHolder({})))
    tracks = [
        TrackUpdate(
            event_id=f"t{i}", subject_id=vault.pseudonym(sid), camera_id="cam-1", zone="gate", prev_zone=None, at=now, captured_at=now
        )
        for i, sid in enumerate(["pax-a", "pax-b", "pax-a"])
    ]
    asyncio.run(produce(client_settings, [(t.TRACKS.name, encode(x)) for x in tracks]))
    audit = AuditLog.in_state_dir(client_settings.state_dir, "export")
    out = tmp_path / "training.jsonl"
    res = asyncio.run(export_tracks(client_settings, policy, consent, vault, "model-training", out, audit))
    assert (res.exported, res.refused, res.unlinkable) == (2, 1, 0)
    lines = out.read_text().splitlines()
    assert len(lines) == 2 and "pax-" not in out.read_text()  # pseudonyms only
    refusals = [r for _n, r, _raw in read_records(audit.path) if r.decision == "deny"]
    assert [(r.subject_id, r.rule, r.object_id) for r in refusals] == [("pax-b", "purpose_binding", "t1")]
    assert verify(audit.path).ok
    res = asyncio.run(export_tracks(client_settings, policy, consent, vault, "boarding", tmp_path / "b.jsonl", audit))
    assert (res.exported, res.refused) == (0, 3)  # boarding is not an exportable purpose at all


def test_the_runtime_mirrors_its_chain_to_the_audit_topic_and_the_scan_checks_the_copy(client_settings):
    """PolicyRuntime.background copies new chain entries (batch entries with their rows) to the audit topic,
    acknowledged, resuming after the last mirrored seq; the scanner then finds a removed tail, a rewritten
    entry, a tampered batch on the topic and a gap in the copy."""
    from policy.audit import batch_rows, read_records
    from policy.filters import PostMatchContext
    from policy.mirror import AuditMirror
    from policy.policyfile import PolicyHolder
    from policy.runtime import PolicyRuntime

    state = client_settings.state_dir
    consent = ConsentRegistry.open(registry_path(state))
    now = time.time()
    consent.grant(ConsentRecord("pax-1", "boarding", now - 10, now + 100))
    keys = LocalKeySource(KeyHolder({"sightings": (0.25, 2.0)}))

    def runtime() -> PolicyRuntime:
        return PolicyRuntime(
            "matcher",
            state,
            PolicyHolder(policy=POLICY),
            ConsentRegistry.open(registry_path(state)),
            keys,
            AuditLog.in_state_dir(state, "matcher"),
            settings=client_settings,
        )

    async def run_batches(rt: PolicyRuntime, first: int, batches: int) -> None:
        stop = asyncio.Event()
        bg = asyncio.create_task(rt.background(stop, reload_s=0.05))
        post = rt.post_match_chain()
        for b in range(first, first + batches):
            for i in range(3):
                post(PostMatchContext("pax-1" if i else None, "boarding", "gate", time.time(), f"e{b}-{i}"))
            rt.flush_audit()
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        stop.set()
        await bg

    rt = runtime()
    asyncio.run(run_batches(rt, 0, 4))
    rt.close()
    chain = rt.audit.path
    assert [r.seq for _n, r, _raw in read_records(chain)] == [1, 2, 3, 4]
    assert AuditMirror(chain).cursor.seq == 4  # acknowledged up to the end

    rt = runtime()  # a restarted service resumes after seq 4: no duplicates, no hole
    asyncio.run(run_batches(rt, 4, 2))
    rt.close()

    async def topic() -> list:
        return [decode(r.value) for r in await read_all(client_settings, t.AUDIT.name)]

    copy = asyncio.run(topic())
    assert [(r.actor, r.seq) for r in copy] == [("matcher", q) for q in range(1, 7)]
    local = {r.seq: (r, batch_rows(raw)) for _n, r, raw in read_records(chain)}
    assert all(r.hash == local[r.seq][0].hash for r in copy)

    def scan():  # noqa: ANN202
        return asyncio.run(run_scan(client_settings, POLICY, keys, stores=[], consent=consent))

    report = scan()
    assert report.counts == (0, 0, 0), [str(f) for f in report.findings]
    assert report.records["audit:unmirrored"] == 0

    lines = chain.read_bytes().splitlines(keepends=True)
    chain.write_bytes(b"".join(lines[:-2]))  # the last two entries removed: invisible to verify alone
    found = [str(f) for f in scan().findings]
    # the topic copy names the two lost entries; the key holder's signed checkpoint (seq 6) is gone from the chain
    topic_side = [f for f in found if "missing from the chain files" in f]
    assert len(topic_side) == 2 and all("matcher#5" in f or "matcher#6" in f for f in topic_side), found
    assert [f for f in found if f not in topic_side] == [f for f in found if "anchored record seq 6 is missing" in f] != [], found

    # a forger rewrites the chain from seq 3 on with a changed decision, re-hashing everything after it
    chain.write_bytes(b"".join(lines[:2]))
    with AuditLog(chain, actor="matcher") as log:
        for q in range(3, 7):
            rows = [list(r) for r in local[q][1]]
            rows[0][3] = "allow"
            log.append_batch("post_match.decisions", [tuple(r) for r in rows])
    found = [str(f) for f in scan().findings]
    # verify alone sees nothing; the topic copy and the key holder's checkpoint both do
    assert len([f for f in found if "another hash" in f]) == 4, found
    assert len(found) == 5 and any("anchored record seq 6 has a different hash" in f for f in found), found

    # tampering on the topic itself: a batch whose rows no longer match its digest, and a gap in the copy
    chain.write_bytes(b"".join(lines))

    async def plant() -> None:
        from policy.audit import encode_topic

        rec, rows = local[2]
        bad = [list(r) for r in rows]
        bad[1][3] = "deny"
        producer = await start_producer(client_settings)
        try:
            await (await producer.send(t.AUDIT.name, encode_topic(rec, bad), key=b"matcher"))
        finally:
            await producer.stop()

    asyncio.run(plant())
    found = [str(f) for f in scan().findings]
    assert len(found) == 1 and "matcher#2" in found[0] and "changed" in found[0], found

    scanner_report = None
    from policy.scan import Scanner

    sc = Scanner(POLICY, consent, keys)
    for r in asyncio.run(read_all(client_settings, t.AUDIT.name)):
        if decode(r.value).seq != 3:  # the copy of seq 3 never arrived
            sc.add_record(t.AUDIT.name, r.partition, r.offset, r.value)
    sc.add_audit_chains(state / "audit")
    scanner_report = sc.finish()
    gaps = [str(f) for f in scanner_report.findings if "gap" in f.detail]
    assert gaps and "seq 3..3" in gaps[0], [str(f) for f in scanner_report.findings]


def test_the_scan_reads_every_matcher_snapshot_and_finds_a_withdrawn_subjects_trajectory(client_settings):
    """A replica that missed an erasure keeps the subject's trajectory in its snapshot file (plaintext at rest):
    the scan must read the snapshots the stages register, by pseudonym, not only the topics."""
    import time as _time

    from matcher import snapshot
    from matcher.service import MatcherState, snapshot_path
    from matcher.trajectory import ZoneMap

    now = _time.time()
    state_dir = client_settings.state_dir
    consent = ConsentRegistry.open(registry_path(state_dir))
    consent.grant(ConsentRecord("pax-9", "flow-analytics", now - 100, now + 1000))
    consent.grant(ConsentRecord("pax-10", "flow-analytics", now - 100, now + 1000))
    holder = KeyHolder({"sightings": (0.25, 60.0)})
    vault = SubjectVault(LocalKeySource(holder))
    gone, kept = vault.pseudonym("pax-9"), vault.pseudonym("pax-10")
    consent.withdraw("pax-9")  # ...and the replica below never heard of it

    state = MatcherState(600.0, ZoneMap.from_table({"security": {"gate": 100.0}}), 3600.0)
    for i, (ref, zone) in enumerate([(gone, "security"), (gone, "gate"), (kept, "security")]):
        state.apply(match(f"s{i}", ref, now - 1 + i * 0.2, zone, "flow-analytics"))  # within every TTL
    snapshot.write(snapshot_path(client_settings, "matcher-2"), state.to_snapshot([0]))

    report = asyncio.run(run_scan(client_settings, POLICY, LocalKeySource(holder), consent=consent))
    details = "\n".join(map(str, report.findings))
    snap = [f for f in report.findings if "matcher-snapshot-matcher-2.bin" in f.where]
    assert len(snap) == 2 and all(f.kind == "non-consented" and "pax-9" in str(f) and "withdrawn" in str(f) for f in snap), details
    assert report.records.get("store:matcher-snapshots") == 3, dict(report.records)


def test_the_scan_reads_the_stages_logs_and_resolves_pseudonyms_in_them(tmp_path):
    from policy.scan import LogStore, Scanner

    holder = KeyHolder({"sightings": (0.25, 2.0)})
    keys = LocalKeySource(holder)
    vault = SubjectVault(keys)
    now = time.time()
    consent = ConsentRegistry()
    consent.grant(ConsentRecord("pax-ok", "boarding", granted_at=now - 10, expires_at=now + 600))
    consent.grant(ConsentRecord("pax-gone", "boarding", granted_at=now - 10, expires_at=now + 600))
    consent.withdraw("pax-gone")
    never = vault.pseudonym("pax-never")  # a key minted for somebody who never consented: as the matcher would log it
    ok = vault.pseudonym("pax-ok")
    logs = tmp_path / "state"
    (logs / "sub").mkdir(parents=True)
    lines = [{"msg": "decided", "subject": ok}, {"msg": "decided", "subject": never}, {"msg": "idle"}]
    (logs / "matcher.log").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (logs / "sub" / "dashboard.log").write_text("erasure done for pax-gone\nserved pax-ok\n")
    scanner = Scanner(POLICY, consent, keys, now=now)
    scanner.add_store(LogStore(logs, consent.subjects()))
    found = [f for f in scanner.finish().findings if f.kind == "non-consented"]
    assert sorted((f.where.rsplit("/", 1)[-1], f.detail.split(":")[0]) for f in found) == [
        ("dashboard.log:1", "stored item in logs about pax-gone"),
        ("matcher.log:2", f"stored item in logs about pax-never (as {never})"),
    ]


def test_the_scan_reads_subject_references_in_the_audit_chains(tmp_path):
    """Chains are accountability records: the subjects in their decision rows and records are kept for
    retention.audit_s whatever the consent says, then they are data held past their time (nothing cuts an
    append-only chain, so a long run produces exactly this); an erased subject's pseudonym there is unlinkable."""
    from policy.audit import AuditChainStore
    from policy.scan import Scanner

    keys = LocalKeySource(KeyHolder({"sightings": (0.25, 2.0)}))
    vault = SubjectVault(keys)
    now, keep = time.time(), 3600.0
    never, erased, old = vault.pseudonym("pax-never"), vault.pseudonym("pax-erased"), vault.pseudonym("pax-old")
    vault.erase("pax-erased")
    audit = AuditLog.in_state_dir(tmp_path, "matcher")
    v = POLICY.version
    audit.append_batch(
        "post_match.decisions",
        [("e1", "post_match", "consent", "deny", v, never), ("e2", "post_match", "", "allow", v, erased)],
        at=now - 5,
    )
    audit.append_batch("post_match.decisions", [("e0", "post_match", "", "allow", v, old)], at=now - keep - 60)
    AuditLog.in_state_dir(tmp_path, "consent").append("consent.grant", "allow", rule="boarding", subject_id="pax-plain", at=now - keep - 1)
    scanner = Scanner(POLICY, ConsentRegistry(), keys, now=now)
    scanner.add_store(AuditChainStore(tmp_path / "audit", keep))
    report = scanner.finish()
    found = sorted((f.kind, f.where.rsplit("/", 1)[-1], f.detail.split(" is ")[0]) for f in report.findings)
    assert found == [
        ("expired-readable", "consent.jsonl:1", "stored item in store:audit-chains about pax-plain"),
        ("expired-readable", "matcher.jsonl:2", f"stored item in store:audit-chains about pax-old (as {old})"),
    ], [str(f) for f in report.findings]  # the refusal of a never-consented subject is proof, not a leak, while kept
    assert report.records["store:audit-chains"] == 4 and report.unlinkable == 1


def test_the_scan_accounts_for_delivery_and_an_event_lost_between_gate_and_matcher_is_not_clean(client_settings):
    """Admitted events against decisions, from the topics: decided, in flight (younger than max_event_age_s),
    lost (older and undecided: a finding), decided twice, dead-lettered per stage."""
    from broker.messages import DeadLetter

    now = time.time()
    holder = KeyHolder({"sightings": (0.25, 2.0)})
    old, recent = now - POLICY.max_event_age_s - 5, now - 1
    admitted = [("e-done", recent), ("e-twice", recent), ("e-flight", recent), ("e-lost", old)]
    # the embeddings do not matter here (and the old one's key is long destroyed): sightings without them
    items = [(t.ADMITTED.name, encode(msgspec.structs.replace(sighting(e, at), embedding=b""))) for e, at in admitted]
    items += [(t.MATCHES.name, encode(match(e, None, recent))) for e in ("e-done", "e-twice", "e-twice")]
    dl = DeadLetter(source_topic=t.ADMITTED.name, source_partition=0, source_offset=9, stage="matcher", reason="undecodable: x", at=now)
    items.append((t.DEADLETTER.name, encode(dl)))
    asyncio.run(produce(client_settings, items))
    # a hostile record written straight onto the admitted topic that the matcher dead-lettered is accounted for
    poison = msgspec.structs.replace(sighting("e-poison", old), embedding=b"", dim=64)
    asyncio.run(produce(client_settings, [(t.ADMITTED.name, encode(poison))]))
    rec = next(r for r in asyncio.run(read_all(client_settings, t.ADMITTED.name)) if b"e-poison" in r.value)
    refused = msgspec.structs.replace(dl, source_partition=rec.partition, source_offset=rec.offset, reason="dim 64", payload=rec.value)
    asyncio.run(produce(client_settings, [(t.DEADLETTER.name, encode(refused))]))
    report = asyncio.run(run_scan(client_settings, POLICY, LocalKeySource(holder), stores=[], consent=ConsentRegistry()))
    assert report.delivery == {
        "admitted": 5,
        "decided": 2,
        "in_flight": 1,
        "dead_lettered_admitted": 1,
        "lost": 1,
        "decided_twice": 1,
        "dead_lettered": {"matcher": 2},
    }
    found = [str(f) for f in report.findings]
    assert len(found) == 1 and "1 admitted event(s) older than" in found[0] and "e-lost" in found[0], found


def test_the_scan_reads_metric_label_values_and_any_linkable_subject_there_is_a_finding():
    """A stage that puts a subject reference into a metric label (as a per-subject counter would) exposes it to
    every scraper with no purpose and no audit: a pseudonym of a never-consented subject and a consented
    subject's plain id are both findings; an erased subject's pseudonym is unlinkable; camera ids are not ids."""
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    from policy.livestores import MetricsStore
    from policy.scan import Scanner

    keys = LocalKeySource(KeyHolder({"sightings": (0.25, 2.0)}))
    vault = SubjectVault(keys)
    now = time.time()
    consent = ConsentRegistry()
    consent.grant(ConsentRecord("pax-ok", "boarding", granted_at=now - 10, expires_at=now + 600))
    never, gone = vault.pseudonym("pax-never"), vault.pseudonym("pax-erased")
    vault.erase("pax-erased")
    registry = CollectorRegistry()
    decided = Counter("paxsim_matcher_decided_by_subject_total", "a leak", ["subject", "camera"], registry=registry)
    for ref in (never, "pax-ok", gone):
        decided.labels(ref, "cam-001").inc()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        store = MetricsStore.fetch({"matcher": url}, consent.subjects(), now)
    finally:
        server.shutdown()
        thread.join(5)
    scanner = Scanner(POLICY, consent, keys, now=now)
    scanner.add_store(store)
    report = scanner.finish()
    found = sorted(f.detail.split(": a metric label")[0] for f in report.findings)
    assert found == [
        "stored item in live:metrics names pax-never (as " + never + ")",
        "stored item in live:metrics names pax-ok",
    ], [str(f) for f in report.findings]
    assert all(
        f.kind == "non-consented" and f.where.startswith("matcher paxsim_matcher_decided_by_subject{subject=") for f in report.findings
    )
    assert report.unlinkable == 1 and report.records["live:metrics"] == 3


def test_the_scan_reads_exported_files_under_the_state_dir(client_settings):
    """An export is personal data at rest: the scanner reads <state>/exports, a line whose subject withdrew the
    exported purpose is a finding, and once the subject is erased the same line is unlinkable."""
    from broker.messages import TrackUpdate
    from policy.export import ExportStore, export_tracks, exports_dir
    from policy.policyfile import load_policy
    from policy.scan import Scanner

    policy = load_policy()
    now = time.time()
    consent = ConsentRegistry.open(registry_path(client_settings.state_dir))
    consent.grant_many([ConsentRecord("pax-x", p, now - 10, now + 100) for p in ("boarding", "model-training")])
    keys = LocalKeySource(KeyHolder({}))
    vault = SubjectVault(keys)
    ps = vault.pseudonym("pax-x")
    track = TrackUpdate(event_id="tx", subject_id=ps, camera_id="cam-1", zone="gate", prev_zone=None, at=now - 1, captured_at=now - 1)
    asyncio.run(produce(client_settings, [(t.TRACKS.name, encode(track))]))
    out = exports_dir(client_settings.state_dir) / "model-training-1.jsonl"
    audit = AuditLog.in_state_dir(client_settings.state_dir, "export")
    assert asyncio.run(export_tracks(client_settings, policy, consent, vault, "model-training", out, audit)).exported == 1

    def scan() -> tuple[list[str], int]:
        scanner = Scanner(policy, consent, keys, now=time.time())
        scanner.add_store(ExportStore(exports_dir(client_settings.state_dir), {}))
        report = scanner.finish()
        assert report.records["store:exports"] == 1
        return [f"{f.kind} {f.detail}" for f in report.findings], report.unlinkable

    assert scan() == ([], 0)
    consent.withdraw("pax-x", purpose="model-training")
    found, _ = scan()
    assert len(found) == 1 and found[0].startswith("non-consented stored item in store:exports about pax-x") and "withdrawn" in found[0]
    vault.erase("pax-x")
    assert scan() == ([], 1)


def test_the_consent_registry_keeps_ended_consents_only_for_the_accountability_period():
    """Withdrawn and expired consents stay as proof for retention.audit_s, then are data held past their time."""
    from policy.consent import ConsentStore
    from policy.scan import Scanner

    now = time.time()
    consent = ConsentRegistry()
    consent.grant(ConsentRecord("pax-active", "boarding", now - 10, now + 600))
    consent.grant(ConsentRecord("pax-recent", "boarding", now - 100, now + 600))
    consent.withdraw("pax-recent", at=now - 50)  # withdrawn 50 s ago: proof of the withdrawal, kept
    consent.grant(ConsentRecord("pax-old", "boarding", now - 5000, now - 4000))  # expired 4000 s ago

    def findings(at: float) -> list[tuple[str, str]]:
        scanner = Scanner(POLICY, consent, None, now=at)
        scanner.add_store(ConsentStore(consent, retention_s=3600.0))
        report = scanner.finish()
        assert report.records["store:consent"] == 3
        return [(f.kind, f.where) for f in report.findings]

    # the active record is the basis of processing, not a finding
    assert findings(now) == [("expired-readable", "consent:pax-old/boarding")]
    # at the scanner's clock, not the wall clock: an hour and more after it expires, the active one is due too
    later = findings(now + 600 + 3600 + 60)
    assert ("expired-readable", "consent:pax-active/boarding") in later and ("expired-readable", "consent:pax-recent/boarding") in later


def test_an_audited_read_by_the_scan_itself_is_not_an_emptied_audit_topic(client_settings):
    """Reading the dashboard is an audited access: the dashboard writes an entry, mirrors it to the audit topic and
    has it checkpointed while the scan goes on. The scan reads the audit topic before the stores, so it must judge
    the topic against the checkpoints taken before it read the topic, not the later ones."""
    import threading

    from policy.audit import audit_dir
    from policy.mirror import AuditMirror

    state = client_settings.state_dir
    keys = LocalKeySource(KeyHolder({"sightings": (0.25, 2.0)}))

    def audited_read() -> None:  # what the dashboard does for one authenticated request, from its own thread
        with AuditLog.in_state_dir(state, "dashboard-api", actor="dashboard-api") as log:
            log.append("api.read", "allow", object_id="/api/scan/state")

        async def mirror() -> None:
            producer = await start_producer(client_settings)
            try:
                await AuditMirror(audit_dir(state) / "dashboard-api.jsonl", notary=keys).mirror_once(producer)
            finally:
                await producer.stop()

        worker = threading.Thread(target=asyncio.run, args=(mirror(),))
        worker.start()
        worker.join(60)

    @dataclass
    class AuditedStore:
        name: str = "live:dashboard"

        def items(self) -> Iterable[StoredItem]:
            audited_read()
            return []

    report = asyncio.run(run_scan(client_settings, POLICY, keys, stores=[AuditedStore()], consent=ConsentRegistry()))
    assert keys.checkpoints()["checkpoints"], "the read was not checkpointed: the test planted nothing"
    assert report.counts == (0, 0, 0), [str(f) for f in report.findings]
    assert report.records["audit:unmirrored"] == 1  # it reached the topic after the scan had read the topic

    later = asyncio.run(run_scan(client_settings, POLICY, keys, stores=[], consent=ConsentRegistry()))
    assert later.counts == (0, 0, 0) and later.records["paxsim.audit.v1"] == 1, [str(f) for f in later.findings]


def test_an_export_keeps_the_retention_of_the_data_s_own_purpose(client_settings, tmp_path):
    """Tracks seen for boarding and exported for model-training (a longer TTL) leave no later than boarding's
    retention allows (the `store` rule, audited), and the scanner judges the exported line by the shorter TTL."""
    from broker.messages import TrackUpdate
    from policy.audit import read_records
    from policy.export import ExportStore, export_tracks, exports_dir
    from policy.policyfile import load_policy
    from policy.scan import Scanner

    policy = load_policy()
    boarding, training = policy.retention_for("boarding"), policy.retention_for("model-training")
    assert boarding < training and policy.purpose_for_zone("gate") == "boarding"
    now = time.time()
    consent = ConsentRegistry.open(registry_path(client_settings.state_dir))
    consent.grant_many([ConsentRecord("pax-x", p, now - 2 * training, now + training) for p in ("boarding", "model-training")])
    keys = LocalKeySource(KeyHolder({}))
    vault = SubjectVault(keys)
    ps = vault.pseudonym("pax-x")
    old, fresh = now - boarding - 60, now - 5
    tracks = [
        TrackUpdate(event_id=e, subject_id=ps, camera_id="cam-1", zone="gate", prev_zone=None, at=at, captured_at=at)
        for e, at in (("t-old", old), ("t-fresh", fresh))
    ]
    asyncio.run(produce(client_settings, [(t.TRACKS.name, encode(x)) for x in tracks]))
    out = exports_dir(client_settings.state_dir) / "model-training-1.jsonl"
    audit = AuditLog.in_state_dir(client_settings.state_dir, "export")
    res = asyncio.run(export_tracks(client_settings, policy, consent, vault, "model-training", out, audit, now=now))
    assert (res.exported, res.refused) == (1, 1)
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["source_purpose"] == "boarding" and row["expires_at"] == pytest.approx(fresh + boarding)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    denied = [(r.action, r.rule, r.object_id) for _n, r, _raw in read_records(audit.path) if r.decision == "deny"]
    assert denied == [("store", "retention", "t-old")]

    def findings(at: float) -> list[str]:
        scanner = Scanner(policy, consent, keys, now=at)
        scanner.add_store(ExportStore(exports_dir(client_settings.state_dir), {}, policy.retention_for))
        return [f"{f.kind} {f.detail}" for f in scanner.finish().findings]

    assert findings(fresh + boarding - 10) == []
    late = findings(fresh + boarding + 10)  # within model-training's TTL, past boarding's: held too long
    assert len(late) == 1 and late[0].startswith("expired-readable") and f"past the {boarding:g}s retention" in late[0], late

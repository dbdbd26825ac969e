"""The audit hash chain: any changed, removed, reordered or inserted record is found."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.audit import GENESIS, AuditLog, record_hash, verify, verify_dir
from broker.messages import AuditRecord


def write_chain(path: Path, n: int) -> list[bytes]:
    with AuditLog(path, actor="gate", clock=lambda: 1.0) as log:
        for i in range(n):
            log.append("gate.decision", "allow" if i % 3 else "deny", rule="fresh", object_id=f"ev-{i}",
                       subject_id=None if i % 2 else f"pax-{i}", policy_version="p@abc")
    return path.read_bytes().splitlines(keepends=True)


def test_an_untouched_chain_verifies_and_links_from_genesis(tmp_path: Path):
    lines = write_chain(tmp_path / "gate.jsonl", 5)
    rep = verify(tmp_path / "gate.jsonl")
    assert rep.ok and rep.records == 5 and rep.head[0] == 5
    first = json.loads(lines[0])
    assert first["prev_hash"] == GENESIS and first["seq"] == 1


mutations = st.sampled_from(["change", "delete", "swap", "duplicate", "insert_forged"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=mutations, n=st.integers(min_value=3, max_value=12), data=st.data())
def test_every_single_tampering_is_found(tmp_path: Path, mutation: str, n: int, data):
    path = tmp_path / f"chain-{mutation}-{n}.jsonl"
    path.unlink(missing_ok=True)
    lines = write_chain(path, n)
    i = data.draw(st.integers(min_value=0, max_value=n - 2))
    if mutation == "change":
        rec = json.loads(lines[i])
        rec["decision"] = "allow" if rec["decision"] == "deny" else "deny"
        lines[i] = (json.dumps(rec) + "\n").encode()
    elif mutation == "delete":
        del lines[i]
    elif mutation == "swap":
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif mutation == "duplicate":
        lines.insert(i + 1, lines[i])
    else:  # a forged record with a correct hash of its own, slipped in between
        prev = json.loads(lines[i])
        forged = AuditRecord(seq=prev["seq"] + 1, at=1.0, actor="gate", action="export", decision="allow",
                             subject_id="pax-x", prev_hash=prev["hash"])
        forged = __import__("msgspec").structs.replace(forged, hash=record_hash(forged))
        lines.insert(i + 1, __import__("msgspec").json.encode(forged) + b"\n")
    path.write_bytes(b"".join(lines))
    rep = verify(path)
    assert not rep.ok
    kinds = {p.kind for p in rep.problems}
    expected = {"change": {"changed"}, "delete": {"removed"}, "swap": {"reordered"},
                "duplicate": {"inserted"}, "insert_forged": {"inserted"}}[mutation]
    assert kinds & expected, rep.problems


def test_removing_the_tail_needs_the_anchor(tmp_path: Path):
    path = tmp_path / "gate.jsonl"
    lines = write_chain(path, 6)
    anchor = (6, json.loads(lines[-1])["hash"])
    path.write_bytes(b"".join(lines[:-2]))
    assert verify(path).ok  # a bare hash chain cannot see this
    rep = verify(path, anchor=anchor)
    assert [p.kind for p in rep.problems] == ["anchor"]


def test_a_torn_last_line_is_reported_then_cut_and_recorded_by_the_next_writer(tmp_path: Path):
    path = tmp_path / "gate.jsonl"
    lines = write_chain(path, 4)
    path.write_bytes(b"".join(lines) + lines[0][:30])  # killed mid-write
    assert [p.kind for p in verify(path).problems] == ["torn"]
    with AuditLog(path, actor="gate") as log:
        rec = log.append("gate.decision", "allow")
    rep = verify(path)
    assert rep.ok and rep.records == 6 and rec.seq == 6
    recovered = json.loads(path.read_bytes().splitlines()[4])
    assert recovered["action"] == "audit.recovered" and recovered["object_id"] == "30 bytes cut"


def test_two_writers_on_one_chain_interleave_without_breaking_it(tmp_path: Path):
    path = tmp_path / "consent.jsonl"
    a, b = AuditLog(path, actor="cli-1"), AuditLog(path, actor="cli-2")
    for i in range(10):
        (a if i % 3 else b).append("consent.grant", "allow", subject_id=f"s{i}")
    a.close(), b.close()
    rep = verify(path)
    assert rep.ok and rep.records == 10
    assert [r.path.name for r in verify_dir(tmp_path)] == ["consent.jsonl"]


def test_garbage_lines_are_reported_not_fatal(tmp_path: Path):
    path = tmp_path / "gate.jsonl"
    lines = write_chain(path, 3)
    path.write_bytes(lines[0] + b"{not json\n" + b"".join(lines[1:]))
    assert [p.kind for p in verify(path).problems] == ["unreadable"]


def test_batched_appends_chain_like_single_ones(tmp_path: Path):
    path = tmp_path / "m.jsonl"
    with AuditLog(path, actor="m") as log:
        log.append("a", "allow")
        recs = log.append_many([{"action": "b", "decision": "deny", "subject_id": f"s{i}"} for i in range(5)])
        log.append("c", "allow")
    assert [r.seq for r in recs] == [2, 3, 4, 5, 6] and recs[0].prev_hash != recs[1].prev_hash
    rep = verify(path)
    assert rep.ok and rep.records == 7

"""The audit hash chain: any changed, removed, reordered or inserted record is found."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.messages import AuditRecord
from policy.audit import GENESIS, AuditLog, batch_object_id, batch_rows, record_hash, verify, verify_dir


def write_chain(path: Path, n: int) -> list[bytes]:
    with AuditLog(path, actor="gate", clock=lambda: 1.0) as log:
        for i in range(n):
            log.append(
                "gate.decision",
                "allow" if i % 3 else "deny",
                rule="fresh",
                object_id=f"ev-{i}",
                subject_id=None if i % 2 else f"pax-{i}",
                policy_version="p@abc",
            )
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
        forged = AuditRecord(
            seq=prev["seq"] + 1, at=1.0, actor="gate", action="export", decision="allow", subject_id="pax-x", prev_hash=prev["hash"]
        )
        forged = __import__("msgspec").structs.replace(forged, hash=record_hash(forged))
        lines.insert(i + 1, __import__("msgspec").json.encode(forged) + b"\n")
    path.write_bytes(b"".join(lines))
    rep = verify(path)
    assert not rep.ok
    kinds = {p.kind for p in rep.problems}
    expected = {
        "change": {"changed"},
        "delete": {"removed"},
        "swap": {"reordered"},
        "duplicate": {"inserted"},
        "insert_forged": {"inserted"},
    }[mutation]
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


def write_batches(path: Path, batches: int, size: int) -> list[bytes]:
    with AuditLog(path, actor="matcher", clock=lambda: 1.0) as log:
        for b in range(batches):
            rows = [
                (
                    f"ev-{b}-{i}",
                    "post_match",
                    "" if i % 3 else "consent",
                    "allow" if i % 3 else "deny",
                    "p@abc",
                    f"ps-{i:024x}" if i % 2 else None,
                )
                for i in range(size)
            ]
            log.append_batch("post_match.decisions", rows)
    return path.read_bytes().splitlines(keepends=True)


def test_a_batch_entry_commits_to_every_decision_in_it(tmp_path: Path):
    path = tmp_path / "matcher.jsonl"
    lines = write_batches(path, 3, 4)
    assert len(lines) == 3 and verify(path).ok
    first = json.loads(lines[0])
    assert first["decision"] == "batch" and first["object_id"].startswith("batch:4:") and first["rule"] == "2 allow 2 deny"
    assert batch_rows(lines[0]) == [
        list(r)
        for r in [
            ("ev-0-0", "post_match", "consent", "deny", "p@abc", None),
            ("ev-0-1", "post_match", "", "allow", "p@abc", f"ps-{1:024x}"),
            ("ev-0-2", "post_match", "", "allow", "p@abc", None),
            ("ev-0-3", "post_match", "consent", "deny", "p@abc", f"ps-{3:024x}"),
        ]
    ]


batch_mutations = st.sampled_from(["flip", "rule", "subject", "version", "event", "remove", "add", "swap", "drop_rows", "redigest"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=batch_mutations, size=st.integers(min_value=2, max_value=6), data=st.data())
def test_any_single_tampering_inside_a_batch_is_found(tmp_path: Path, mutation: str, size: int, data):
    path = tmp_path / f"batch-{mutation}-{size}.jsonl"
    path.unlink(missing_ok=True)
    lines = write_batches(path, 3, size)
    b = data.draw(st.integers(min_value=0, max_value=1), label="batch")  # not the last: its successor links to it
    i = data.draw(st.integers(min_value=0, max_value=size - 1), label="row")
    rec = json.loads(lines[b])
    rows = rec["decisions"]
    if mutation == "flip":
        rows[i][3] = "allow" if rows[i][3] == "deny" else "deny"
    elif mutation == "rule":
        rows[i][2] = "" if rows[i][2] else "consent"
    elif mutation == "subject":
        rows[i][5] = "ps-" + "f" * 24
    elif mutation == "version":
        rows[i][4] = "p@forged"
    elif mutation == "event":
        rows[i][0] = "ev-forged"
    elif mutation == "remove":
        del rows[i]
    elif mutation == "add":
        rows.insert(i, ["ev-forged", "post_match", "", "allow", "p@abc", None])
    elif mutation == "swap":
        j = (i + 1) % size
        if rows[i] == rows[j]:
            rows[i][0] = "ev-forged"
        rows[i], rows[j] = rows[j], rows[i]
    elif mutation == "drop_rows":
        del rec["decisions"]
    else:  # a forger who also re-computes the digest and the entry's own hash: the next entry's link breaks
        del rows[i]
        forged = AuditRecord(**{k: v for k, v in rec.items() if k not in ("decisions", "type")})
        forged = msgspec.structs.replace(forged, object_id=batch_object_id(rows))
        forged = msgspec.structs.replace(forged, hash=record_hash(forged))
        rec = {**json.loads(msgspec.json.encode(forged)), "decisions": rows}
    lines[b] = (json.dumps(rec) + "\n").encode()
    path.write_bytes(b"".join(lines))
    rep = verify(path)
    assert not rep.ok, mutation
    kinds = {p.kind for p in rep.problems}
    expected = {"remove": {"removed"}, "drop_rows": {"removed"}, "add": {"inserted"}, "redigest": {"inserted"}}.get(mutation, {"changed"})
    assert kinds & expected, rep.problems
    assert {p.seq for p in rep.problems} <= {b + 1, b + 2}


def test_a_batch_written_whole_verifies_after_a_single_record_and_before_one(tmp_path: Path):
    path = tmp_path / "gate.jsonl"
    with AuditLog(path, actor="gate") as log:
        log.append("a", "allow")
        rec = log.append_batch("gate.decisions", [("e1", "gate", "", "allow", "p@1", None), ("e2", "gate", "fresh", "deny", "p@2", None)])
        assert log.append_batch("gate.decisions", []) is None
        log.append("c", "deny")
    assert rec.seq == 2 and rec.policy_version == "p@1,p@2"
    rep = verify(path)
    assert rep.ok and rep.records == 3

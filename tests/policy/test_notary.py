"""Anchored audit: the key holder countersigns each chain's head (Ed25519), and the verifiers find what a hash
chain alone cannot: a cut tail, a chain rewritten from the start, a deleted chain file, an emptied audit topic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from policy.audit import AuditLog, audit_dir, chain_path
from policy.consent import ConsentRegistry
from policy.crypto import HttpKeySource, KeyHolder, LocalKeySource
from policy.keyd import spawn_keyd
from policy.notary import CheckpointRefused, Notary, signature_ok
from policy.scan import Scanner
from tests.policy.test_scan_broker import POLICY

ROOT = Path(__file__).resolve().parents[2]


def write_chain(state: Path, name: str, n: int, decision: str = "allow") -> tuple[int, str]:
    with AuditLog.in_state_dir(state, name, actor=name) as log:
        for i in range(n):
            log.append("test.event", decision, object_id=f"obj-{i}")
        return log.head


def test_the_notary_refuses_a_head_that_goes_back_or_changes_and_its_signatures_bind_every_field():
    n = Notary()
    cp = n.checkpoint("gate", 5, "a" * 64, at=100.0)
    assert signature_ok(n.public_key, cp)
    for field, value in (("seq", 6), ("hash", "b" * 64), ("chain", "matcher"), ("at", 101.0)):
        assert not signature_ok(n.public_key, {**cp, field: value}), field
    assert not signature_ok(Notary().public_key, cp)  # another holder's key
    with pytest.raises(CheckpointRefused, match="goes back"):
        n.checkpoint("gate", 4, "c" * 64)
    with pytest.raises(CheckpointRefused, match="another hash"):
        n.checkpoint("gate", 5, "d" * 64)
    assert n.checkpoint("gate", 9, "e" * 64)["seq"] == 9


def audit_verify(state: Path, keyd) -> subprocess.CompletedProcess[str]:  # noqa: ANN001
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("PAXSIM")}, **keyd.env, "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "paxsim.cli", "audit", "verify", "--state-dir", str(state)]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_audit_verify_against_the_key_holders_checkpoints_finds_a_cut_tail_a_rewrite_and_a_deleted_chain(tmp_path: Path):
    state = tmp_path / "state"
    keyd = spawn_keyd()
    try:
        keys = HttpKeySource(keyd.url, keyd.token)
        for name in ("gate", "matcher"):
            keys.checkpoint(name, *write_chain(state, name, 6))  # what each stage's mirror does after an ack
        ok = audit_verify(state, keyd)
        assert ok.returncode == 0 and "checked against the key holder's signed checkpoints" in ok.stdout, ok.stdout + ok.stderr

        gate = chain_path(state, "gate")
        original = gate.read_bytes()
        gate.write_bytes(b"".join(original.splitlines(keepends=True)[:4]))  # the last two records cut: a valid chain
        cut = audit_verify(state, keyd)
        assert cut.returncode == 1 and "anchored record seq 6 is missing" in cut.stdout, cut.stdout

        gate.unlink()
        write_chain(state, "gate", 6, decision="deny")  # rewritten from the start, as long as before
        rewritten = audit_verify(state, keyd)
        assert rewritten.returncode == 1 and "anchored record seq 6 has a different hash" in rewritten.stdout, rewritten.stdout
        with pytest.raises(CheckpointRefused):  # and the forger cannot move the anchor
            keys.checkpoint("gate", 6, AuditLog.in_state_dir(state, "gate", actor="gate").head[1])

        gate.write_bytes(original)
        chain_path(state, "matcher").unlink()
        deleted = audit_verify(state, keyd)
        assert deleted.returncode == 1 and "matcher: deleted: checkpointed at seq 6" in deleted.stdout, deleted.stdout
    finally:
        keyd.stop()


def test_the_scan_finds_an_emptied_audit_topic_from_the_checkpoints(tmp_path: Path):
    state = tmp_path / "state"
    keys = LocalKeySource(KeyHolder({"sightings": (0.25, 2.0)}))
    keys.checkpoint("gate", *write_chain(state, "gate", 4))  # the mirror had these acknowledged on the topic
    scanner = Scanner(POLICY, ConsentRegistry(), keys)
    scanner.add_audit_chains(audit_dir(state))
    report = scanner.finish()  # not one audit record came from the topic
    found = [str(f) for f in report.findings]
    assert any("audit topic holds none of the 4 entries of chain gate the key holder checkpointed" in f for f in found), found

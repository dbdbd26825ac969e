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
    with pytest.raises(CheckpointRefused, match="show its hash at seq 5") as refused:
        n.checkpoint("gate", 9, "e" * 64)  # further on, but without showing that it extends seq 5
    assert refused.value.need_seq == 5
    with pytest.raises(CheckpointRefused, match="cut and regrown"):
        n.checkpoint("gate", 9, "e" * 64, prev=(5, "f" * 64))
    assert n.checkpoint("gate", 9, "e" * 64, prev=(5, "a" * 64))["seq"] == 9


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
            keys.checkpoint(name, *write_chain(state, name, 6))  # what each stage's mirror does after an ack (the first)
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


def test_a_tail_cut_and_regrown_by_its_writer_is_refused_by_the_notary_and_found_by_verify(client_settings, keys):
    """The attack: cut a chain's tail and let the honest writer regrow it past the checkpoint. The mirror must
    show the notary the chain's hash at the checkpointed seq as the file holds it now, so the regrown chain is
    refused and ``audit verify`` still reports the cut (it used to be clean one tick later)."""
    import asyncio

    from broker.clients import start_producer
    from policy.mirror import AuditMirror

    state = Path(client_settings.state_dir)
    source = HttpKeySource.from_env(keys.stage_env()["policy"])  # the gate's own credential

    async def mirror_and_anchor() -> int:
        producer = await start_producer(client_settings)
        try:
            m = AuditMirror(chain_path(state, "gate"), notary=source)
            await m.mirror_once(producer)
            m.close()
            return m.cursor.seq
        finally:
            await producer.stop()

    log = AuditLog.in_state_dir(state, "gate", actor="gate")
    for i in range(6):
        log.append("test.event", "allow", object_id=f"obj-{i}")
    assert asyncio.run(mirror_and_anchor()) == 6
    for i in range(3):  # honest growth after the checkpoint: accepted, each tick showing the link
        log.append("test.event", "allow", object_id=f"more-{i}")
        asyncio.run(mirror_and_anchor())
    anchored = {c["chain"]: c["seq"] for c in HttpKeySource(keys.url, keys.token).checkpoints()["checkpoints"]}
    assert anchored == {"gate": 9}
    assert audit_verify(state, keys).returncode == 0

    path = chain_path(state, "gate")
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:5]))  # the tail cut to seq 5
    log.close()
    regrow = AuditLog.in_state_dir(state, "gate", actor="gate")  # the writer carries on from what the file holds
    for i in range(8):
        regrow.append("test.event", "allow", object_id=f"regrown-{i}")
    regrow.close()
    asyncio.run(mirror_and_anchor())  # what one tick of the stage's mirror does
    anchored = {c["chain"]: c["seq"] for c in HttpKeySource(keys.url, keys.token).checkpoints()["checkpoints"]}
    assert anchored == {"gate": 9}, "the notary moved its anchor onto a regrown chain"
    verify = audit_verify(state, keys)
    assert verify.returncode == 1 and "anchored record seq 9 has a different hash" in verify.stdout, verify.stdout


def test_a_stage_credential_anchors_only_its_own_chain():
    """An edge credential checkpointing ("matcher", 10**9) used to lock every honest matcher checkpoint out."""
    from policy.crypto import KeyForbidden

    keyd = spawn_keyd()
    try:
        env = keyd.stage_env()
        edge, gate, matcher = (HttpKeySource.from_env(env[c]) for c in ("edge", "policy", "matcher"))
        for src, chain in ((edge, "matcher"), (edge, "gate"), (edge, "consent"), (gate, "matcher"), (matcher, "edge")):
            with pytest.raises(KeyForbidden, match="may not checkpoint"):
                src.checkpoint(chain, 10**9, "f" * 64)
        assert matcher.checkpoint("matcher", 3, "a" * 64)["seq"] == 3  # honest checkpoints still go through
        assert edge.checkpoint("edge", 2, "b" * 64)["seq"] == 2
        assert gate.checkpoint("consent", 1, "c" * 64)["seq"] == 1  # tools' chains: mirrored by any stage but the edge
    finally:
        keyd.stop()

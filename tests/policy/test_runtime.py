"""PolicyRuntime: one object wiring policy, consent, keys and batched audit for a stage."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from broker.messages import Sighting, embedding_to_bytes
from policy.audit import batch_rows, read_records, verify
from policy.consent import ConsentRecord, ConsentRegistry, registry_path
from policy.crypto import KeyExpired, KeyHolder, KeyUnavailable, LocalKeySource
from policy.filters import EdgeContext, GateContext, PostMatchContext
from policy.policyfile import UNSAFE_ENV, PolicyError
from policy.runtime import PolicyRuntime


class S:  # the two settings fields the runtime reads
    def __init__(self, state_dir) -> None:  # noqa: ANN001
        self.state_dir = state_dir


def test_a_stage_seals_decides_audits_in_batches_and_pseudonymises(tmp_path, monkeypatch):
    monkeypatch.delenv("PAXSIM_KEYD_URL", raising=False)
    keys = LocalKeySource(KeyHolder({"sightings": (1.0, 10.0)}))
    rt = PolicyRuntime.for_stage(S(tmp_path), "matcher", keys=keys)
    now = time.time()
    rt.consent.grant(ConsentRecord("pax-1", "boarding", now - 10, now + 100))
    s = Sighting(
        event_id="e1",
        camera_id="c",
        zone="gate",
        captured_at=now,
        track_id=1,
        box=(0, 0, 80, 80),
        quality=0.9,
        embedding=embedding_to_bytes(np.ones(128)),
    )
    sealed = rt.seal(s)
    assert not sealed.embedding and rt.unseal(sealed) == s
    gate, post = rt.gate_chain(), rt.post_match_chain()
    assert gate(GateContext(sealed, now)).allow
    assert post(PostMatchContext("pax-1", "boarding", "gate", now, "e1")).allow
    assert post(PostMatchContext("pax-1", "egate-verification", "egate", now, "e2")).rule == "consent"
    assert post(PostMatchContext(None, "boarding", "gate", now, "e3")).rule == "known_face"
    assert not rt.audit.path.exists() or rt.audit.path.read_text() == ""  # nothing written before the flush
    assert rt.flush_audit() == 4
    lines = list(read_records(rt.audit.path))
    recs = [r for _n, r, _raw in lines]
    # one chain entry per stage and batch, committing to every decision in it
    assert [(r.action, r.decision, r.rule) for r in recs] == [
        ("gate.decisions", "batch", "1 allow 0 deny"),
        ("post_match.decisions", "batch", "1 allow 2 deny"),
    ]
    ps = rt.vault.pseudonym("pax-1")
    assert batch_rows(lines[0][2]) == [["e1", "gate", "", "allow", rt.holder.version, None]]
    # no subject in the rows: the audit chain outlives every purpose's retention, and the sealed match (same event
    # id) carries who it was for as long as that purpose allows
    assert batch_rows(lines[1][2]) == [
        ["e1", "post_match", "", "allow", rt.holder.version, None],
        ["e2", "post_match", "consent", "deny", rt.holder.version, None],
        ["e3", "post_match", "known_face", "deny", rt.holder.version, None],
    ]
    text = rt.audit.path.read_text()
    assert "pax-1" not in text and ps not in text
    assert all(r.policy_version == rt.holder.version for r in recs) and verify(rt.audit.path).ok
    assert rt.flush_audit() == 0 and len(list(read_records(rt.audit.path))) == 2  # an empty batch writes nothing
    rt.close()


def test_a_withdrawal_is_seen_by_the_next_batch(tmp_path, monkeypatch):
    """Consent is answered from memory; another process's withdrawal is seen from the next batch on."""
    monkeypatch.delenv("PAXSIM_KEYD_URL", raising=False)
    rt = PolicyRuntime.for_stage(S(tmp_path), "matcher", keys=LocalKeySource(KeyHolder({"sightings": (1.0, 10.0)})))
    now = time.time()
    other = ConsentRegistry.open(registry_path(tmp_path))  # the CLI, another process
    other.grant(ConsentRecord("pax-1", "boarding", now - 10, now + 100))
    post = rt.post_match_chain()
    ctx = PostMatchContext("pax-1", "boarding", "gate", now, "e1")
    assert post(ctx).allow  # granted before this batch started
    rt.flush_audit()
    assert post(ctx).allow
    other.withdraw("pax-1")
    rt.flush_audit()  # batch boundary
    d = post(ctx)
    assert not d.allow and d.rule == "consent"
    rt.flush_audit()
    rows = [row for _n, r, raw in read_records(rt.audit.path) if r.action == "post_match.decisions" for row in batch_rows(raw)]
    assert [r[3] for r in rows] == ["allow", "allow", "deny"]
    other.close()
    rt.close()


def test_enforcement_off_is_refused_without_acknowledgement_and_is_pass_through_with_it(tmp_path, monkeypatch):
    monkeypatch.delenv("PAXSIM_KEYD_URL", raising=False)
    monkeypatch.delenv("PAXSIM_KEYD_TOKEN", raising=False)
    monkeypatch.delenv(UNSAFE_ENV, raising=False)
    pfile = tmp_path / "off.yaml"
    pfile.write_text("label: measure\nzones: {gate: {biometric: true, purpose: boarding}}\npurposes: {boarding: {}}\nenforcement: off\n")
    with pytest.raises(PolicyError, match="off.yaml:4:14: enforcement: .*unsafe-no-policy"):
        PolicyRuntime.for_stage(S(tmp_path), "edge", policy_path=pfile, require_keys=True)
    monkeypatch.setenv(UNSAFE_ENV, "1")
    rt = PolicyRuntime.for_stage(S(tmp_path), "edge", policy_path=pfile, require_keys=True)  # no key holder needed
    assert not rt.enforcing
    s = Sighting(
        event_id="e1",
        camera_id="c",
        zone="nowhere",
        captured_at=0.0,
        track_id=1,
        box=(0, 0, 8, 8),
        quality=0.0,
        embedding=embedding_to_bytes(np.ones(128)),
    )
    assert rt.seal(s) is s  # nothing sealed
    for d in (
        rt.edge_chain()(EdgeContext("nowhere", 0.0, (0, 0, 8, 8))),
        rt.gate_chain()(GateContext(s, 1e9)),
        rt.post_match_chain()(PostMatchContext("pax-x", "boarding", "gate", 0.0, "e1")),
    ):
        assert d.allow and d.rule == "enforcement_off" and d.policy_version == rt.holder.version
    unknown = rt.post_match_chain()(PostMatchContext(None, "boarding", "gate", 0.0, "e2"))
    assert not unknown.allow and unknown.rule == "known_face"  # not a privacy control: there is no subject
    assert rt.reference("pax-x") == "pax-x" and rt.flush_audit() == 0
    recs = [r for _n, r, _raw in read_records(rt.audit.path)]  # the trail says the controls were off
    assert [(r.action, r.decision) for r in recs] == [("policy.enforcement", "off")]
    rt.close()


def test_without_a_key_holder_sealing_fails_closed(tmp_path, monkeypatch):
    monkeypatch.delenv("PAXSIM_KEYD_URL", raising=False)
    monkeypatch.delenv("PAXSIM_KEYD_TOKEN", raising=False)
    rt = PolicyRuntime.for_stage(S(tmp_path), "edge")
    s = Sighting(
        event_id="e1",
        camera_id="c",
        zone="gate",
        captured_at=time.time(),
        track_id=1,
        box=(0, 0, 80, 80),
        quality=0.9,
        embedding=embedding_to_bytes(np.ones(128)),
    )
    with pytest.raises(KeyUnavailable):
        rt.seal(s)
    with pytest.raises(KeyUnavailable):
        PolicyRuntime.for_stage(S(tmp_path), "edge", require_keys=True)


async def test_background_wipes_expired_keys(tmp_path):
    t = [1000.0]
    holder = KeyHolder({"sightings": (0.5, 2.0)}, clock=lambda: t[0])
    rt = PolicyRuntime.for_stage(S(tmp_path), "gate", keys=LocalKeySource(holder))
    rt.ring.clock = lambda: t[0]
    s = Sighting(
        event_id="e1",
        camera_id="c",
        zone="gate",
        captured_at=t[0],
        track_id=1,
        box=(0, 0, 80, 80),
        quality=0.9,
        embedding=embedding_to_bytes(np.ones(128)),
    )
    sealed = rt.seal(s)
    rt.unseal(sealed)
    t[0] += 3
    stop = asyncio.Event()
    task = asyncio.create_task(rt.background(stop, reload_s=0.01))
    await asyncio.sleep(0.05)
    stop.set()
    await task
    assert rt.ring._open_hot == {} and rt.ring._seal_hot is None
    with pytest.raises(KeyExpired):
        rt.unseal(sealed)


def test_a_stage_starting_while_its_key_holder_restarts_waits_for_it_and_never_runs_keyless(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from policy import runtime
    from policy.crypto import KeyHolderUnreachable
    from policy.keyd import spawn_keyd

    k = spawn_keyd()
    try:
        for name, value in k.env.items():
            monkeypatch.setenv(name, value)
        k.stop()  # down, as while `paxsim up` restarts it beside a restarted stage
        with pytest.raises(KeyHolderUnreachable):  # still down after the wait: fail closed, the supervisor retries
            runtime.run_key_source(require_keys=False, enforcing=True, wait_s=0.5)
        with ThreadPoolExecutor(1) as pool:  # the stage starts; the holder comes back 1 s later
            t0 = time.monotonic()
            starting = pool.submit(PolicyRuntime.for_stage, S(tmp_path), "matcher")
            time.sleep(1.0)
            assert not starting.done()
            k.restart()  # same address, token and credentials (from this thread: the child dies with its parent thread)
            rt = starting.result(timeout=30)
        assert time.monotonic() - t0 >= 1.0  # it waited for the holder rather than starting without keys
        assert rt.keys is not None and rt.ring is not None and rt.vault is not None
        assert rt.vault.pseudonym("pax-1").startswith("ps-")
        rt.close()
    finally:
        k.stop()

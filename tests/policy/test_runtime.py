"""PolicyRuntime: one object wiring policy, consent, keys and batched audit for a stage."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from broker.messages import Sighting, embedding_to_bytes
from policy.audit import read_records, verify
from policy.consent import ConsentRecord
from policy.crypto import KeyExpired, KeyHolder, KeyUnavailable, LocalKeySource
from policy.filters import GateContext, PostMatchContext
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
    s = Sighting(event_id="e1", camera_id="c", zone="gate", captured_at=now, track_id=1, box=(0, 0, 80, 80),
                 quality=0.9, embedding=embedding_to_bytes(np.ones(128)))
    sealed = rt.seal(s)
    assert not sealed.embedding and rt.unseal(sealed) == s
    gate, post = rt.gate_chain(), rt.post_match_chain()
    assert gate(GateContext(sealed, now)).allow
    assert post(PostMatchContext("pax-1", "boarding", "gate", now)).allow
    assert post(PostMatchContext("pax-1", "egate-verification", "egate", now)).rule == "consent"
    assert post(PostMatchContext(None, "boarding", "gate", now)).rule == "known_face"
    assert not rt.audit.path.exists() or rt.audit.path.read_text() == ""  # nothing written before the flush
    assert rt.flush_audit() == 4
    recs = [r for _n, r, _raw in read_records(rt.audit.path)]
    assert [(r.action, r.decision, r.rule) for r in recs] == [
        ("gate.decision", "allow", ""), ("post_match.decision", "allow", ""),
        ("post_match.decision", "deny", "consent"), ("post_match.decision", "deny", "known_face")]
    assert recs[1].subject_id == rt.vault.pseudonym("pax-1") and "pax-1" not in rt.audit.path.read_text()
    assert all(r.policy_version == rt.holder.version for r in recs) and verify(rt.audit.path).ok
    rt.close()


def test_without_a_key_holder_sealing_fails_closed(tmp_path, monkeypatch):
    monkeypatch.delenv("PAXSIM_KEYD_URL", raising=False)
    monkeypatch.delenv("PAXSIM_KEYD_TOKEN", raising=False)
    rt = PolicyRuntime.for_stage(S(tmp_path), "edge")
    s = Sighting(event_id="e1", camera_id="c", zone="gate", captured_at=time.time(), track_id=1, box=(0, 0, 80, 80),
                 quality=0.9, embedding=embedding_to_bytes(np.ones(128)))
    with pytest.raises(KeyUnavailable):
        rt.seal(s)
    with pytest.raises(KeyUnavailable):
        PolicyRuntime.for_stage(S(tmp_path), "edge", require_keys=True)


async def test_background_wipes_expired_keys(tmp_path):
    t = [1000.0]
    holder = KeyHolder({"sightings": (0.5, 2.0)}, clock=lambda: t[0])
    rt = PolicyRuntime.for_stage(S(tmp_path), "gate", keys=LocalKeySource(holder))
    rt.ring.clock = lambda: t[0]
    s = Sighting(event_id="e1", camera_id="c", zone="gate", captured_at=t[0], track_id=1, box=(0, 0, 80, 80),
                 quality=0.9, embedding=embedding_to_bytes(np.ones(128)))
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

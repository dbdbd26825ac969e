"""MatcherState: decisions → trajectories → alerts, each alert id once per run, also across a read-back."""

from __future__ import annotations

import pytest

from broker import topics as t
from broker.messages import Match
from matcher.alerts import DWELL, IMPLAUSIBLE, AlertPolicy, AlertPolicyError
from matcher.service import MatcherState
from matcher.trajectory import ZoneMap

ZONES = ZoneMap.from_table({"security": {"egate": 100.0}, "egate": {"security": 100.0}})
POLICY = AlertPolicy(enabled=True, allowed_purposes=frozenset({"flow-analytics", "egate-verification"}), dwell_limits_s={"egate": 30.0})


def _m(eid: str, zone: str, t: float, decision: str = "match", subject: str | None = "ps-a", purpose: str = "flow-analytics") -> Match:
    return Match(
        event_id=eid,
        camera_id=f"cam-{zone}",
        zone=zone,
        purpose=purpose,
        captured_at=t,
        matched_at=t + 0.1,
        decision=decision,
        subject_id=subject if decision in ("match", "verified") else None,
    )


def _run(state: MatcherState, matches: list[Match]) -> list:
    return [a for m in matches for a in state.apply(m)[1]]


STREAM = [
    _m("e1", "security", 0.0),
    _m("e2", "egate", 5.0, "verified", purpose="egate-verification"),  # 100 m in 5 s: faster than walking
    _m("e3", "egate", 20.0, "verified", purpose="egate-verification"),
    _m("e4", "egate", 50.0, "verified", purpose="egate-verification"),  # dwell 45 s > 30 s
    _m("e5", "egate", 60.0, "verified", purpose="egate-verification"),  # same visit: same dwell alert id
    _m("e6", "egate", 70.0, "rejected", purpose="egate-verification"),  # names nobody: no trajectory, no alert
]


def test_alerts_once_per_id_and_only_for_identified_permitted_purposes():
    state = MatcherState(600.0, ZONES, 3600.0, POLICY)
    alerts = _run(state, STREAM)
    assert [a.kind for a in alerts] == [IMPLAUSIBLE, DWELL]
    assert len({a.alert_id for a in alerts}) == 2 and all(a.subject_id == "ps-a" for a in alerts)
    # alerts are gated by the sighting's purpose and off by default
    assert (
        _run(
            MatcherState(
                600.0, ZONES, 3600.0, AlertPolicy(enabled=True, allowed_purposes=frozenset({"boarding"}), dwell_limits_s={"egate": 30.0})
            ),
            STREAM,
        )
        == []
    )
    assert _run(MatcherState(600.0, ZONES, 3600.0), STREAM) == []


def test_read_back_after_a_crash_raises_nothing_twice():
    state = MatcherState(600.0, ZONES, 3600.0, POLICY)
    first = _run(state, STREAM[:4])
    restarted = MatcherState(600.0, ZONES, 3600.0, POLICY)
    for m in STREAM[:4]:  # what read_back_matches replays from the matches topic
        restarted.apply(m)
    assert _run(restarted, STREAM[4:]) == [] and len(first) == 2


def test_alert_rules_file_is_validated(tmp_path):
    assert not AlertPolicy.load().enabled  # packaged default: off
    good = tmp_path / "a.yaml"
    good.write_text("enabled: true\npurposes: [flow-analytics]\ndwell_limits_s: {egate: 60}\n")
    assert AlertPolicy.load(good).permits("flow-analytics") and not AlertPolicy.load(good).permits("boarding")
    bad = tmp_path / "b.yaml"
    bad.write_text("enabled: true\ndwell_limit: {egate: 60}\n")
    with pytest.raises(AlertPolicyError, match="unknown keys"):
        AlertPolicy.load(bad)
    bad.write_text("dwell_limits_s: {egate: -1}\n")
    with pytest.raises(AlertPolicyError, match="positive"):
        AlertPolicy.load(bad)


def test_snapshot_roundtrip_restores_state_and_drops_erased_subjects(tmp_path):
    from matcher import snapshot

    state = MatcherState(600.0, ZONES, 3600.0, POLICY)
    _run(state, STREAM[:4] + [_m("b1", "security", 1.0, subject="ps-b")])
    state.next_input, state.next_match = {0: 17, 1: 4}, {0: 9}
    snapshot.write(tmp_path / "s.bin", state.to_snapshot([0, 1]))
    fresh = MatcherState(600.0, ZONES, 3600.0, POLICY)
    fresh.restore(snapshot.read(tmp_path / "s.bin"), known={"ps-a"})  # ps-b was erased after the snapshot
    assert fresh.trajectories.subjects() == ["ps-a"]
    assert all(fresh.seen(m.event_id) for m in STREAM[:4]) and fresh.seen("b1")
    assert fresh.base == {(t.ADMITTED.name, 0): 17, (t.ADMITTED.name, 1): 4, (t.MATCHES.name, 0): 9}
    assert _run(fresh, STREAM[4:]) == []  # the dwell alert of this visit was raised before the snapshot


def test_a_reference_erased_before_the_replica_restores_or_reads_back_never_comes_back(tmp_path):
    """A restarted replica's erasure worker can catch up before the replica joins its group: the snapshot it
    then restores and the matches it reads back still name the erased pseudonym."""
    from matcher import snapshot

    old = MatcherState(600.0, ZONES, 3600.0, POLICY)
    _run(old, [_m("a1", "security", 1.0), _m("b1", "security", 1.0, subject="ps-b")])
    snapshot.write(tmp_path / "s.bin", old.to_snapshot([0]))
    fresh = MatcherState(600.0, ZONES, 3600.0, POLICY)
    fresh.forgotten.add("ps-b")  # what Matcher.erase records
    fresh.restore(snapshot.read(tmp_path / "s.bin"), known=None)
    _run(fresh, [_m("b2", "egate", 200.0, subject="ps-b")])  # read back from the matches topic
    assert fresh.trajectories.subjects() == ["ps-a"] and fresh.seen("b2")


def test_every_replica_has_its_own_snapshot_file(settings, monkeypatch):
    from matcher.service import snapshot_path

    assert snapshot_path(settings, "matcher") != snapshot_path(settings, "matcher-2")
    monkeypatch.setenv("PAXSIM_INSTANCE", "matcher-3")
    assert snapshot_path(settings).name == "matcher-snapshot-matcher-3.bin"


def test_sealed_snapshot_trajectories_are_written_near_their_first_expiry_and_die_with_it(tmp_path):
    """The trajectories of a snapshot are sealed under the shortest-lived purpose so that they die with their first
    point. A point close to its retention must not make the sealing fail (an epoch's key dies up to one epoch
    before times in it reach the TTL), and a snapshot whose key is gone restores to no trajectories, no error."""
    import math
    import time

    import yaml

    from matcher import snapshot
    from matcher.service import trajectory_sealer, write_snapshot
    from policy.crypto import KeyHolder, LocalKeySource
    from policy.crypto.outputs import OutputKeys
    from policy.keyd import key_classes
    from policy.policyfile import DEFAULT_POLICY_PATH, parse_policy

    doc = yaml.safe_load(open(DEFAULT_POLICY_PATH).read())
    for rule in doc["purposes"].values():
        rule["retention_s"] = 3.0
    doc["retention"]["epoch_s"] = 1.0
    policy = parse_policy(yaml.safe_dump(doc))
    outputs = OutputKeys(LocalKeySource(KeyHolder(key_classes(policy))), background=False)
    state = MatcherState(600.0, ZONES, 3600.0)
    state.trajectories.ttl_for_zone = lambda _zone: 3.0
    while time.time() % 1.0 > 0.5:  # start in the first half of a second: the arithmetic below then holds
        time.sleep(0.05)
    now = time.time()
    # captured 2.001 s before this second began: within its 3 s retention, but the key of its own epoch died at
    # the start of this second (epoch start + 3 s), so sealing "at its first expiry - TTL" would fail
    state.apply(_m("old", "security", math.floor(now) - 2.001))
    state.apply(_m("new", "security", now - 0.1, subject="ps-b"))
    seal = trajectory_sealer(state, outputs, policy)

    import asyncio

    from core.config import load_settings

    settings = load_settings(environ={}).model_copy(update={"state_dir": tmp_path})
    asyncio.run(write_snapshot(settings, state, [0], seal))  # used to raise KeyExpired here
    from matcher.service import snapshot_path

    snap = snapshot.read(snapshot_path(settings))
    assert snap is not None and snap.trajectories.startswith(b"PXSEALED1")
    fresh = MatcherState(600.0, ZONES, 3600.0)
    fresh.restore(snap, None, outputs)
    assert set(fresh.trajectories.subjects()) == {"ps-a", "ps-b"}
    time.sleep(max(0.0, now + 3.0 + 2 * 1.0 + 0.2 - time.time()))  # past the first point's retention and an epoch
    later = MatcherState(600.0, ZONES, 3600.0)
    later.restore(snap, None, OutputKeys(outputs.source, background=False))  # no error: just nothing to restore
    assert later.trajectories.subjects() == [] and later.decided  # the decided ids are still there

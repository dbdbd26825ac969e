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

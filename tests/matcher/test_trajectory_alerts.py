import pytest

from broker.messages import TrackUpdate
from matcher.alerts import DWELL, IMPLAUSIBLE, AlertPolicy, evaluate, flag_rates
from matcher.trajectory import TrajectoryStore, ZoneMap

ZONES = ZoneMap.from_table({"checkin": {"security": 145.0, "gate": 725.0}, "security": {"gate": 580.0}})


def store(**kw):
    return TrajectoryStore(ZONES, **kw)


def test_zone_map():
    assert ZONES.distance_m("security", "checkin") == 145.0
    assert ZONES.min_transit_s("checkin", "security") == pytest.approx(100.0)
    assert ZONES.plausible("checkin", "security", 99.0)  # within slack
    assert not ZONES.plausible("checkin", "security", 50.0)
    assert ZONES.plausible("checkin", "nowhere", 0.0)  # unknown pair: no evidence
    zm = ZoneMap.from_coordinates({"a": (0, 0), "b": (30, 40)}, detour=1.0)
    assert zm.distance_m("b", "a") == 50.0
    with pytest.raises(ValueError):
        ZoneMap({("a", "b"): float("nan")})


def test_visits_dwell_and_transitions():
    s = store()
    s.apply("e1", "p", "cam-1", "checkin", 0.0)
    s.apply("e2", "p", "cam-1", "checkin", 60.0)
    u = s.apply("e3", "p", "cam-2", "security", 200.0)
    assert u.prev_zone == "checkin" and u.plausible and u.dwell_s == 0.0
    u = s.apply("e4", "p", "cam-2", "security", 260.0)
    assert u.dwell_s == 60.0 and u.prev_zone == "checkin"
    vs = s.visits("p")
    assert [(v.zone, v.dwell_s, v.sightings) for v in vs] == [("checkin", 60.0, 2), ("security", 60.0, 2)]
    (t,) = s.transitions("p")
    assert (t.from_zone, t.to_zone, t.transit_s, t.plausible) == ("checkin", "security", 140.0, True)
    assert s.transition_graph()[("checkin", "security")].count == 1
    assert s.dwell_stats()["checkin"].mean_s == 60.0
    assert "security" not in s.dwell_stats()  # still there: dwell not complete


def test_too_fast_transition_is_flagged():
    s = store()
    s.apply("e1", "p", "cam-1", "checkin", 0.0)
    u = s.apply("e2", "p", "cam-9", "gate", 30.0)  # 725 m in 30 s
    assert not u.plausible
    assert s.transition_graph()[("checkin", "gate")].implausible == 1


def test_apply_is_idempotent_by_event_id():
    s = store()
    assert s.apply("e1", "p", "c", "checkin", 0.0) is not None
    assert s.apply("e1", "p", "c", "checkin", 0.0) is None
    assert s.apply("e1", "q", "c", "gate", 5.0) is None  # same event id, whatever it carries
    assert s.sightings() == 1 and s.duplicates == 2


def test_late_sighting_is_inserted_in_time_order():
    s = store()
    s.apply("e1", "p", "c1", "checkin", 0.0)
    s.apply("e3", "p", "c2", "security", 300.0)
    u = s.apply("e2", "p", "c1", "checkin", 100.0)  # arrives late
    assert u.zone == "checkin" and u.dwell_s == 100.0 and s.late == 1
    assert [(v.zone, v.enter_at, v.last_at) for v in s.visits("p")] == [("checkin", 0.0, 100.0), ("security", 300.0, 300.0)]


def test_prune_erase_and_snapshot():
    s = store(ttl_s=1000.0, dedupe_window_s=500.0)
    s.apply("e1", "p", "c", "checkin", 0.0)
    s.apply("e2", "p", "c", "security", 900.0)
    s.apply("e3", "q", "c", "gate", 950.0)
    blob = s.to_bytes()
    assert s.prune(now=1300.0) == 1
    assert [v.zone for v in s.visits("p")] == ["security"]
    assert not s.seen_event("e1") and s.seen_event("e2")
    # older than the dedupe window: cannot be checked for duplicates any more, so it is refused
    assert s.apply("e0", "p", "c", "checkin", 700.0) is None and s.stale == 1
    assert s.erase("q") and "q" not in s and not s.erase("q")
    r = store(ttl_s=1000.0, dedupe_window_s=500.0)
    r.restore(blob)
    assert r.subjects() == ["p", "q"] and r.seen_event("e1")
    assert r.apply("e2", "p", "c", "security", 900.0) is None  # replay after restore applies nothing twice
    with pytest.raises(ValueError):
        r.restore(b"\x00garbage")


def test_bad_input():
    s = store()
    with pytest.raises(ValueError):
        s.apply("", "p", "c", "checkin", 0.0)
    with pytest.raises(ValueError):
        s.apply("e", "p", "c", "checkin", float("nan"))
    assert s.sightings() == 0


def _update(**kw):
    base = dict(event_id="e", subject_id="p", camera_id="c", zone="egate", prev_zone="security", at=10.0, captured_at=1000.0)
    base.update(kw)
    return TrackUpdate(**base)


POLICY = AlertPolicy(enabled=True, allowed_purposes=frozenset({"egate-verification"}), dwell_limits_s={"egate": 120.0})


def test_dwell_and_implausible_alerts():
    assert evaluate(_update(dwell_s=100.0), POLICY, "egate-verification") == []
    (a,) = evaluate(_update(dwell_s=130.0), POLICY, "egate-verification")
    assert a.kind == DWELL and a.subject_id == "p" and a.zone == "egate"
    (b,) = evaluate(_update(event_id="e2", dwell_s=140.0, captured_at=1010.0), POLICY, "egate-verification")
    assert b.alert_id == a.alert_id  # same visit, same alert
    kinds = [x.kind for x in evaluate(_update(dwell_s=200.0, plausible=False), POLICY, "egate-verification")]
    assert kinds == [IMPLAUSIBLE, DWELL]


def test_alerts_are_gated_by_policy():
    u = _update(dwell_s=500.0, plausible=False)
    assert evaluate(u, POLICY, "boarding") == []  # purpose not allowed to alert
    assert evaluate(u, AlertPolicy(), "egate-verification") == []  # off by default
    assert evaluate(u, AlertPolicy(enabled=True, allowed_purposes=frozenset({"boarding"}), implausible_transitions=False), "boarding") == []


def test_flag_rates():
    a = evaluate(_update(dwell_s=500.0), POLICY, "egate-verification")
    r = flag_rates(a + a, ["p", "q", "r", "s"], transitions=10, implausible=1)
    assert r.alerts == 1 and r.subject_flag_rate == 0.25 and r.transition_flag_rate == 0.1


def test_score_transitions_against_ground_truth():
    from matcher.trajectory import score_transitions

    truth = {"p": [(0.0, 100.0, "checkin"), (200.0, 400.0, "security"), (500.0, 900.0, "gate")], "q": [(0.0, 50.0, "checkin")]}
    s = store()
    s.apply("e1", "p", "c", "checkin", 10.0)
    s.apply("e2", "p", "c", "security", 250.0)  # right
    s.apply("e3", "p", "c", "checkin", 300.0)  # mismatch: p was in security
    s.apply("e4", "p", "c", "gate", 600.0)  # checkin -> gate: not a true transition
    s.apply("e5", "q", "c", "checkin", 10.0)
    r = score_transitions(s, truth)
    assert (r.predicted, r.correct, r.truth, r.recovered) == (3, 1, 2, 1)
    assert r.precision == pytest.approx(1 / 3) and r.recall == 0.5
    assert score_transitions(s, truth, subjects=["q"]).predicted == 0


def test_zone_map_from_routes():
    lengths = {"checkin": 20.0, "security": 15.0, "immigration": 10.0, "egate": 8.0, "gate": 30.0}
    zm = ZoneMap.from_routes([["checkin", "security", "immigration|egate", "gate"]], lengths)
    assert zm.distance_m("checkin", "security") == 0.0  # adjacent
    assert zm.distance_m("checkin", "gate") == 15.0 + 8.0  # shortest option in between
    assert zm.distance_m("security", "egate") == 0.0
    assert zm.distance_m("immigration", "egate") is None  # alternatives: never one after the other
    assert not zm.plausible("checkin", "gate", 5.0) and zm.plausible("checkin", "gate", 14.0)


def test_packaged_site_is_the_default_airport_and_a_scenario_file_is_a_site():
    from matcher.site import DEFAULT_SITE, load_site
    from scenario.world import DEFAULT_SCENARIO, load_spec

    spec = load_spec()
    site, as_site = load_site(DEFAULT_SITE), load_site(DEFAULT_SCENARIO)
    assert {z.name: z.length_m for z in site.zones} == {z.name: z.length_m for z in spec.zones}
    assert [r.path for r in site.routes] == [r.path for r in spec.routes]
    assert site.zone_map().distance_m("curb", "gate") == as_site.zone_map().distance_m("curb", "gate") > 0

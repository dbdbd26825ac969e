"""Filter units and chains: deny dominates, version recorded, per-stage rules, metrics, audited refusals."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from broker.messages import Sighting
from policy.audit import AuditLog, verify
from policy.consent import ConsentRecord, ConsentRegistry
from policy.filters import (
    Chain,
    EdgeContext,
    ExportContext,
    GateContext,
    PostMatchContext,
    Rule,
    StoreContext,
    edge_chain,
    export_chain,
    gate_chain,
    post_match_chain,
    store_chain,
)
from policy.policyfile import PolicyHolder, load_policy, parse_policy

POLICY = load_policy()  # the packaged default
NOW = 1_800_000_000.0


def sighting(zone: str = "egate", age: float = 1.0, quality: float = 0.9) -> Sighting:
    return Sighting(event_id="e1", camera_id="c1", zone=zone, captured_at=NOW - age, track_id=1, box=(0, 0, 80, 80), quality=quality)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@settings(max_examples=150, deadline=None)
@given(st.lists(st.booleans(), min_size=0, max_size=8))
def test_deny_dominates_and_the_first_deny_is_reported(allows):
    rules = [Rule.simple(f"r{i}", (lambda ok: lambda ctx, p: None if ok else "no")(ok)) for i, ok in enumerate(allows)]  # noqa: B023 (bound by the outer lambda)
    d = Chain("prop", rules, POLICY)(object())
    assert d.allow == all(allows)
    if not all(allows):
        assert d.rule == f"r{allows.index(False)}" and d.reason == "no"
    assert d.policy_version == POLICY.version and d.stage == "prop"


@settings(max_examples=100, deadline=None)
@given(
    zone=st.sampled_from(["egate", "gate", "security", "retail", "nowhere", ""]),
    age=st.floats(allow_nan=True, allow_infinity=True, width=32),
    quality=st.floats(allow_nan=True, width=32),
)
def test_gate_admits_only_fresh_sightings_from_biometric_zones_with_a_purpose(zone, age, quality):
    d = gate_chain(policy=POLICY)(GateContext(sighting(zone, age, quality), NOW))
    expected = (
        POLICY.purpose_for_zone(zone) is not None and math.isfinite(age) and -POLICY.max_clock_skew_s <= age <= POLICY.max_event_age_s
    )
    assert d.allow == expected
    assert d.policy_version == POLICY.version


def test_gate_rule_names_and_reasons():
    g = gate_chain(policy=POLICY)
    assert g(GateContext(sighting("retail"), NOW)).rule == "biometric_zone"
    stale = g(GateContext(sighting(age=31), NOW))
    assert stale.rule == "fresh" and "stale" in stale.reason
    assert "future" in g(GateContext(sighting(age=-6), NOW)).reason


def test_legacy_positional_gate_chain_still_works():
    g = gate_chain({"egate"}, {"egate": "egate-verification"}, 10.0)
    assert g(GateContext(sighting("egate", 5), NOW)).allow
    assert g(GateContext(sighting("egate", 11), NOW)).rule == "fresh"
    assert g(GateContext(sighting("gate", 1), NOW)).rule == "biometric_zone"


def test_edge_chain_counts_only_outside_biometric_zones_and_never_ships_images():
    e = edge_chain(POLICY)
    assert e(EdgeContext("egate", 0.9, (0, 0, 80, 80))).allow
    assert e(EdgeContext("retail", 0.9, (0, 0, 80, 80))).rule == "biometric_zone"
    assert e(EdgeContext("egate", 0.9, (0, 0, 80, 80), image_bytes=1000)).rule == "no_image_bytes"
    assert e(EdgeContext("egate", 0.2, (0, 0, 80, 80))).rule == "quality"
    assert e(EdgeContext("egate", float("nan"), (0, 0, 80, 80))).rule == "quality"
    assert e(EdgeContext("egate", 0.9, (0, 0, 80, 20))).rule == "quality"


def registry(*recs: ConsentRecord) -> ConsentRegistry:
    reg = ConsentRegistry()
    reg.grant_many(recs)
    return reg


def test_post_match_unknown_and_non_consented_are_denied_with_distinct_rules():
    reg = registry(ConsentRecord("pax-1", "boarding", NOW - 100, NOW + 100, ("gate",)))
    c = post_match_chain(reg.is_allowed, POLICY)
    assert c(PostMatchContext(None, "boarding", "gate", NOW)).rule == "known_face"
    assert c(PostMatchContext("pax-1", "boarding", "gate", NOW)).allow
    assert c(PostMatchContext("pax-1", "egate-verification", "egate", NOW)).rule == "consent"
    assert c(PostMatchContext("pax-1", "boarding", "egate", NOW)).rule == "consent"  # zone scope
    assert c(PostMatchContext("pax-1", "boarding", "gate", NOW + 100)).rule == "consent"  # expired at event time
    reg.withdraw("pax-1", at=NOW - 50)
    assert c(PostMatchContext("pax-1", "boarding", "gate", NOW - 60)).rule == "consent"  # withdrawal is final


def test_store_retention_refuses_items_already_past_their_purpose_ttl():
    s = store_chain(POLICY)
    ttl = POLICY.purposes["egate-verification"].retention_s
    assert s(StoreContext("egate-verification", NOW - ttl + 1, NOW)).allow
    assert s(StoreContext("egate-verification", NOW - ttl, NOW)).rule == "retention"
    assert s(StoreContext("unknown-purpose", NOW - 10_000, NOW)).rule == "retention"


def test_training_export_is_refused_without_consent_and_the_refusal_is_audited(tmp_path):
    """The seed case: data leaves for model-training only with the subject's consent to it."""
    reg = registry(ConsentRecord("pax-1", "model-training", NOW - 10, NOW + 10), ConsentRecord("pax-2", "boarding", NOW - 10, NOW + 10))
    audit = AuditLog.in_state_dir(tmp_path, "export")
    before = metric("paxsim_policy_decisions_total", stage="export", rule="purpose_binding", decision="deny")
    ex = export_chain(
        reg.is_allowed,
        POLICY,
        on_decision=audit.decision_hook("export", subject=lambda c: c.subject_id, obj=lambda c: c.object_id, log_allows=False),
    )
    assert ex(ExportContext("pax-1", "model-training", NOW, "track-1")).allow
    refused = ex(ExportContext("pax-2", "model-training", NOW, "track-2"))
    assert not refused.allow and refused.rule == "purpose_binding"
    assert ex(ExportContext("pax-2", "boarding", NOW, "track-3")).rule == "export_purpose"
    after = metric("paxsim_policy_decisions_total", stage="export", rule="purpose_binding", decision="deny")
    assert after == before + 1
    lines = [rec for _n, rec, _r in __import__("policy.audit", fromlist=["read_records"]).read_records(audit.path)]
    assert [(r.subject_id, r.decision, r.rule, r.object_id) for r in lines] == [
        ("pax-2", "deny", "purpose_binding", "track-2"),
        ("pax-2", "deny", "export_purpose", "track-3"),
    ]
    assert all(r.policy_version == POLICY.version for r in lines)
    assert verify(audit.path).ok


def test_each_rule_is_counted_and_timed_per_stage():
    g = gate_chain(policy=POLICY, time_every=1)
    b_allow = metric("paxsim_policy_decisions_total", stage="gate", rule="fresh", decision="allow")
    b_count = metric("paxsim_policy_decision_seconds_count", stage="gate", rule="fresh")
    for _ in range(5):
        g(GateContext(sighting(), NOW))
    assert metric("paxsim_policy_decisions_total", stage="gate", rule="fresh", decision="allow") == b_allow + 5
    assert metric("paxsim_policy_decision_seconds_count", stage="gate", rule="fresh") == b_count + 5
    assert metric("paxsim_policy_decision_seconds_bucket", stage="gate", rule="fresh", le="0.001") >= b_count + 5


def test_sampled_timing_keeps_exact_counts():
    g = gate_chain(policy=POLICY)  # default: time one decision in 16
    b_deny = metric("paxsim_policy_decisions_total", stage="gate", rule="biometric_zone", decision="deny")
    b_allow = metric("paxsim_policy_decisions_total", stage="gate", rule="biometric_zone", decision="allow")
    b_fresh = metric("paxsim_policy_decisions_total", stage="gate", rule="fresh", decision="allow")
    b_count = metric("paxsim_policy_decision_seconds_count", stage="gate", rule="biometric_zone")
    for _ in range(32):
        g(GateContext(sighting("retail"), NOW))
    for _ in range(3):
        g(GateContext(sighting("gate"), NOW))
    assert metric("paxsim_policy_decisions_total", stage="gate", rule="biometric_zone", decision="deny") == b_deny + 32
    assert metric("paxsim_policy_decisions_total", stage="gate", rule="biometric_zone", decision="allow") == b_allow + 3
    assert metric("paxsim_policy_decisions_total", stage="gate", rule="fresh", decision="allow") == b_fresh + 3
    assert metric("paxsim_policy_decision_seconds_count", stage="gate", rule="biometric_zone") == b_count + 2
    del g  # a collected chain's counts are folded in: the counters never go down
    import gc

    gc.collect()
    assert metric("paxsim_policy_decisions_total", stage="gate", rule="biometric_zone", decision="deny") == b_deny + 32
    assert metric("paxsim_policy_decisions_total", stage="gate", rule="fresh", decision="allow") == b_fresh + 3


def test_a_reloaded_policy_applies_to_the_next_decision_and_is_recorded(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("label: a\nzones: {egate: {biometric: true, purpose: p}}\npurposes: {p: {}}\n")
    holder = PolicyHolder(f)
    g = gate_chain(policy=holder)
    d1 = g(GateContext(sighting("egate"), NOW))
    holder.current = parse_policy("label: b\nzones: {egate: {biometric: false}}\n")
    d2 = g(GateContext(sighting("egate"), NOW))
    assert d1.allow and d1.policy_version.startswith("a@")
    assert not d2.allow and d2.policy_version.startswith("b@")


def test_chains_compose_as_units():
    inner = Chain("inner", [Rule.simple("no", lambda c, p: "nope")], POLICY)
    outer = Chain("outer", [Rule.simple("yes", lambda c, p: None), inner], POLICY)
    d = outer(object())
    assert not d.allow and d.rule == "no" and d.stage == "outer"


def _spec(kind: str, ctx, reg: ConsentRegistry) -> tuple[bool, str]:  # noqa: ANN001
    """What the policy file says, read straight from the model at each call: the oracle for the compiled rules."""
    p = POLICY
    if kind == "edge":
        z = p.zones.get(ctx.zone)
        if not (z is not None and z.biometric):
            return False, "biometric_zone"
        if ctx.image_bytes and not p.edge.allow_image_bytes:
            return False, "no_image_bytes"
        if not ctx.quality >= p.quality.min_quality or min(ctx.box[2], ctx.box[3]) < p.quality.min_face_px:
            return False, "quality"
        return True, ""
    if kind == "gate":
        z = p.zones.get(ctx.sighting.zone)
        if not (z is not None and z.biometric):
            return False, "biometric_zone"
        purpose = p.purpose_for_zone(ctx.sighting.zone)
        if purpose is None or purpose not in p.purposes:
            return False, "purpose"
        age = ctx.now - ctx.sighting.captured_at
        if not (age <= p.max_event_age_s) or age < -p.max_clock_skew_s:
            return False, "fresh"
        return True, ""
    if ctx.subject_id is None:
        return False, "known_face"
    rule = p.purposes.get(ctx.purpose)
    if (rule is None or rule.requires_consent) and not reg.is_allowed(ctx.subject_id, ctx.purpose, ctx.zone, ctx.at):
        return False, "consent"
    return True, ""


ZONES = st.sampled_from(["egate", "gate", "security", "landside", "retail", "nowhere", ""])
NUM = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=300, deadline=None)
@given(
    zone=ZONES,
    quality=st.one_of(NUM, st.floats(0, 1)),
    w=st.integers(0, 200),
    h=st.integers(0, 200),
    image=st.integers(0, 3),
    age=st.one_of(NUM, st.floats(-60, 60)),  # around the policy's limits (30 s stale, 5 s skew) as well
    subject=st.sampled_from([None, "pax-1", "pax-2"]),
    purpose=st.sampled_from(["boarding", "flow-analytics", "x"]),
)
def test_compiled_rules_decide_what_the_policy_file_says(zone, quality, w, h, image, age, subject, purpose):
    reg = ConsentRegistry()
    reg.grant(ConsentRecord("pax-1", "boarding", NOW - 100, NOW + 100, ("gate",)))
    s = Sighting(
        event_id="e1",
        camera_id="c1",
        zone=zone,
        captured_at=NOW - age if math.isfinite(age) else age,
        track_id=1,
        box=(0, 0, w, h),
        quality=quality,
    )
    cases = [
        ("edge", edge_chain(POLICY), EdgeContext(zone, quality, (0, 0, w, h), image)),
        ("gate", gate_chain(policy=POLICY), GateContext(s, NOW)),
        ("post_match", post_match_chain(reg.is_allowed, POLICY), PostMatchContext(subject, purpose, zone, NOW, "e1")),
    ]
    for kind, chain, ctx in cases:
        got = chain(ctx)
        assert (got.allow, "" if got.allow else got.rule) == _spec(kind, ctx, reg), (kind, ctx, got)

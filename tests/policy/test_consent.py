"""Consent registry: withdrawal is final, expiry and zone scope hold, SQLite shared between processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.consent import ConsentError, ConsentRecord, ConsentRegistry, registry_path

ZONES = ["egate", "gate", "security"]
PURPOSES = ["boarding", "egate-verification", "model-training"]

times = st.floats(min_value=0, max_value=1000, allow_nan=False)
records = st.builds(
    lambda sid, p, g, d, zones: ConsentRecord(sid, p, g, g + d, tuple(zones)),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(PURPOSES),
    times,
    st.floats(min_value=0.001, max_value=500),
    st.lists(st.sampled_from(ZONES), max_size=2, unique=True),
)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("grant"), records),
        st.tuples(st.just("withdraw"), st.sampled_from(["a", "b", "c"]), st.one_of(st.none(), st.sampled_from(PURPOSES)), times),
    ),
    max_size=12,
)
question = st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(PURPOSES), st.sampled_from(ZONES), times)


@settings(max_examples=150, deadline=None)
@given(ops, question)
def test_is_allowed_matches_the_definition(history, q):
    """Allowed iff the current record is unwithdrawn, granted <= at < expires, and the zone is in scope; a
    withdrawn record is never granted again."""
    reg = ConsentRegistry()
    current: dict[tuple[str, str], ConsentRecord] = {}
    withdrawn: set[tuple[str, str]] = set()
    for op in history:
        if op[0] == "grant":
            rec = op[1]
            if (rec.subject_id, rec.purpose) in withdrawn:  # a withdrawal is final: refused, nothing changes
                with pytest.raises(ConsentError):
                    reg.grant(rec)
                continue
            reg.grant(rec)
            current[(rec.subject_id, rec.purpose)] = rec
        else:
            _, sid, purpose, at = op
            reg.withdraw(sid, at=at, purpose=purpose)
            withdrawn |= {k for k in current if k[0] == sid and (purpose is None or k[1] == purpose)}
    sid, purpose, zone, at = q
    rec = current.get((sid, purpose))
    expected = (
        rec is not None
        and (sid, purpose) not in withdrawn
        and rec.granted_at <= at < rec.expires_at
        and (not rec.zones or zone in rec.zones)
    )
    assert reg.is_allowed(sid, purpose, zone, at) == expected


@settings(max_examples=100, deadline=None)
@given(records, times, times, st.sampled_from(ZONES))
def test_withdrawn_consent_never_allows_at_any_time(rec, withdraw_at, at, zone):
    reg = ConsentRegistry()
    reg.grant(rec)
    req = reg.withdraw(rec.subject_id, at=withdraw_at)
    assert req is not None and req.subject_id == rec.subject_id
    assert not reg.is_allowed(rec.subject_id, rec.purpose, zone, at)
    assert reg.withdrawn(rec.subject_id)


@settings(max_examples=100, deadline=None)
@given(records)
def test_expiry_and_start_are_respected(rec):
    reg = ConsentRegistry()
    reg.grant(rec)
    zone = rec.zones[0] if rec.zones else "gate"
    assert reg.is_allowed(rec.subject_id, rec.purpose, zone, rec.granted_at)
    assert not reg.is_allowed(rec.subject_id, rec.purpose, zone, rec.expires_at)
    assert not reg.is_allowed(rec.subject_id, rec.purpose, zone, rec.granted_at - 0.001)


def test_sqlite_registry_persists_and_another_process_sees_withdrawal_at_once(tmp_path: Path):
    path = registry_path(tmp_path)
    writer = ConsentRegistry.open(path)
    reader = ConsentRegistry.open(path, refresh_s=0.0)  # a second connection, as another process would have
    writer.grant(ConsentRecord("pax-1", "boarding", 0, 100))
    assert reader.is_allowed("pax-1", "boarding", "gate", 50)
    req = writer.withdraw("pax-1", at=60)
    assert not reader.is_allowed("pax-1", "boarding", "gate", 50)
    assert [r.request_id for r in reader.pending_erasures()] == [req.request_id]
    reader.mark_published([req.request_id], at=61)
    assert writer.pending_erasures() == []
    assert writer.erasures()[0][1] == 61
    writer.close()
    reopened = ConsentRegistry.open(path)
    assert reopened.get("pax-1", "boarding").withdrawn_at == 60
    assert reopened.withdraw("pax-1") is None  # nothing left to withdraw


def test_purpose_scoped_withdrawal_keeps_other_purposes(tmp_path: Path):
    reg = ConsentRegistry.open(registry_path(tmp_path))
    reg.grant_many([ConsentRecord("s", "boarding", 0, 100), ConsentRecord("s", "model-training", 0, 100)])
    seen = []
    reg.on_withdraw(seen.append)
    req = reg.withdraw("s", at=10, purpose="model-training")
    assert req.reason == "consent-withdrawn:model-training" and seen == [req]
    assert reg.is_allowed("s", "boarding", "gate", 20) and not reg.is_allowed("s", "model-training", "gate", 20)
    assert reg.has_any("s", 20) and not reg.withdrawn("s")


def test_json_export_and_sqlite_save_round_trip(tmp_path: Path):
    reg = ConsentRegistry()
    reg.grant(ConsentRecord("s", "boarding", 0, 100, ("gate",)))
    reg.save(tmp_path / "c.json")
    reg.save(tmp_path / "c.sqlite")
    for p in ("c.json", "c.sqlite"):
        back = ConsentRegistry.load(tmp_path / p)
        assert back.is_allowed("s", "boarding", "gate", 1) and not back.is_allowed("s", "boarding", "egate", 1)


def test_nonsense_records_are_refused():
    import pytest

    from policy.consent import ConsentError

    with pytest.raises(ConsentError):
        ConsentRegistry().grant(ConsentRecord("s", "boarding", 10, 10))
    with pytest.raises(ConsentError):
        ConsentRegistry().grant(ConsentRecord("", "boarding", 0, 10))


def test_default_refresh_bound_is_honoured(tmp_path: Path):
    import time

    writer = ConsentRegistry.open(registry_path(tmp_path))
    reader = ConsentRegistry.open(registry_path(tmp_path))  # default: at most 50 ms stale
    writer.grant(ConsentRecord("s", "boarding", 0, 100))
    time.sleep(0.06)
    assert reader.is_allowed("s", "boarding", "gate", 1)
    writer.withdraw("s", at=2)
    time.sleep(0.06)
    assert not reader.is_allowed("s", "boarding", "gate", 1)


def test_a_withdrawal_is_final_and_re_enrolment_keeps_it(tmp_path, settings):  # noqa: F811 (the fixture)
    """Re-running the enrolment (compose's one-shot does, at every start) must not re-grant a withdrawn consent,
    nor put the subject back in the gallery, and with a key holder the gallery is sealed, never plaintext."""
    import numpy as np

    from core.paths import gallery_path
    from matcher.gallery import Gallery
    from paxsim.infra import enrol_scenario
    from policy.consent import consent_path
    from policy.crypto import KeyHolder, LocalKeySource, SubjectVault

    vault = SubjectVault(LocalKeySource(KeyHolder({})))
    n, _ = enrol_scenario(settings, 5.0, vault=vault)
    reg = ConsentRegistry.open(consent_path(settings))
    victim = reg.subjects()[0]
    purpose = next(iter(reg.records[victim]))
    assert reg.withdraw(victim) is not None
    with pytest.raises(ConsentError, match="withdrawal is final"):
        reg.grant(ConsentRecord(victim, purpose, time.time() - 1, time.time() + 100))
    reg.close()

    again, _ = enrol_scenario(settings, 5.0, vault=vault)
    reg = ConsentRegistry.open(consent_path(settings))
    assert reg.withdrawn(victim) and not reg.has_any(victim, time.time()), "enrolment re-granted a withdrawn consent"
    assert again == n - 1
    g = Gallery.load(gallery_path(settings))
    assert victim not in g.subjects() and len(g.subjects()) == n - 1
    assert g.is_sealed and "vectors" not in np.load(gallery_path(settings), allow_pickle=False).files, "templates at rest in plaintext"

"""E-gate claims in the virtual scenario: who presents which passport (scenario time 40–70 s has e-gate visits)."""

from __future__ import annotations

from core.config import ScenarioSettings
from scenario.virtual import EGATE_PURPOSE, EGATE_ZONE, VirtualAirport

CFG = ScenarioSettings(seed=4, cameras=12, travellers=120, events_per_second=400)


def _run(impostors: float) -> list:
    a = VirtualAirport(CFG, duration_s=70, impostor_claims=impostors)
    return a, [s for k in range(400, 700) for s in a.sightings(k * 0.1, (k + 1) * 0.1)]


def test_claims_only_at_egates_by_eligible_travellers_for_themselves():
    a, sights = _run(0.0)
    at_gate = [s for s in sights if s.camera.zone == EGATE_ZONE]
    assert at_gate, "no e-gate sightings in this scenario window"
    assert all(s.claimed_subject is None for s in sights if s.camera.zone != EGATE_ZONE)
    for s in at_gate:
        eligible = EGATE_PURPOSE in a.traveller(s.traveller_id).purposes
        assert s.claimed_subject == (s.traveller_id if eligible else None)


def test_impostor_claims_name_someone_else_and_leave_the_load_unchanged():
    _a, honest = _run(0.0)
    a, borrowed = _run(1.0)
    assert [(s.camera.camera_id, s.traveller_id, s.t) for s in honest] == [(s.camera.camera_id, s.traveller_id, s.t) for s in borrowed]
    claims = [s for s in borrowed if s.claimed_subject is not None]
    assert claims and all(s.claimed_subject != s.traveller_id and s.claimed_subject in a.egate_eligible for s in claims)

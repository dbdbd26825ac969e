import json as _json
from pathlib import Path

from broker.messages import Match, Sighting, TrackUpdate
from paxsim.accuracy import RenderTruth, Replica, link_sightings, score, transition_share

ALLOWED = {("alice", "boarding"), ("bob", "boarding")}


def allowed(subject, purpose, zone, at):
    return (subject, purpose) in ALLOWED


def m(eid, decision, subject=None, purpose="boarding"):
    return Match(
        event_id=eid,
        camera_id="c",
        zone="gate",
        purpose=purpose,
        captured_at=0,
        matched_at=0,
        decision=decision,
        subject_id=subject,
        distance=0.3 if subject else None,
    )


def test_score_counts_each_outcome():
    truth = {"1": "alice", "2": "alice", "3": "bob", "4": "carol", "5": "carol", "6": "alice"}
    matches = [
        m("1", "match", "alice"),  # correct
        m("2", "unknown"),  # false reject
        m("3", "match", "alice"),  # wrong subject
        m("4", "unknown"),  # correct reject of a non-consented traveller
        m("5", "match", "bob"),  # false accept (carol taken for bob)
        m("6", "refused", purpose="egate-verification"),  # alice has no egate consent: not genuine, refused
    ]
    a = score(matches, truth, allowed)
    assert (a.events, a.genuine) == (6, 3)
    assert a.rank1 == 1 / 3 and a.frr == 1 / 3 and a.wrong_subject == 1
    assert a.far == 1 / 3 and a.leaks == 0


def test_leak_is_a_match_naming_a_non_consented_subject():
    a = score([m("1", "match", "carol")], {"1": "carol"}, allowed)
    assert a.leaks == 1 and a.far == 1.0


# ---- video mode: sightings linked to rendered ground truth


def _render(tmp: Path) -> RenderTruth:
    """A two-frame, one-camera render folder written by hand (same layout as `paxsim scenario render`)."""
    cam = tmp / "cam-gate-1"
    (cam / "gt").mkdir(parents=True)
    (cam / "seqinfo.ini").write_text("[Sequence]\nname=cam-gate-1\nframeRate=10\nseqLength=4\nimWidth=640\nimHeight=480\n")
    # frame 2 (1-based): traveller 7 at (101,51) 1-based = (100,50) 0-based, traveller 9 far to the right
    (cam / "gt" / "gt.txt").write_text("2,7,101,51,80,90,1,1,1.0\n2,9,401,51,80,90,1,1,1.0\n4,9,11,11,60,60,1,1,1.0\n")
    (cam / "gt" / "details.csv").write_text(
        "frame,id,traveller_id,yaw,pitch,face_px\n2,7,T00007,0,0,80\n2,9,T00009,0,0,80\n4,9,T00009,0,0,60\n"
    )
    ident = lambda i, zones: {
        "id": i,
        "demographics": {"sex": "female", "age_band": "30-44", "nationality_group": "eu"},
        "itinerary": [{"zone": z} for z in zones],
    }
    (tmp / "manifest.json").write_text(
        _json.dumps(
            {
                "seed": 3,
                "cameras": [{"id": "cam-gate-1", "zone": "gate"}],
                "identities": [ident("T00007", ["egate", "gate"]), ident("T00009", ["gate", "arrivals"])],
            }
        )
    )
    return RenderTruth.load(tmp)


def _s(eid, cam, t, track, box):
    return Sighting(event_id=eid, camera_id=cam, zone="gate", captured_at=t, track_id=track, box=box, quality=1.0)


def test_sightings_link_through_the_track_log_and_the_replica_offset(tmp_path):
    truth = _render(tmp_path)
    reps = {"cam-gate-1": Replica("cam-gate-1", "cam-gate-1", 0), "cam-gate-1-r1": Replica("cam-gate-1-r1", "cam-gate-1", 3)}
    log = [
        {"c": "cam-gate-1", "i": 1, "t": 10.5, "k": 1, "b": [102, 52, 78, 88]},  # frame position 1 → traveller 7
        {"c": "cam-gate-1", "i": 5, "t": 11.0, "k": 2, "b": [400, 50, 80, 90]},  # second loop: position 1 → traveller 9
        {"c": "cam-gate-1-r1", "i": 2, "t": 10.5, "k": 1, "b": [400, 50, 80, 90]},  # (2 + 3) mod 4 = 1 → traveller 9
        {"c": "cam-gate-1", "i": 3, "t": 12.0, "k": 3, "b": [300, 300, 50, 50]},  # nobody there
    ]
    sightings = [
        _s("a", "cam-gate-1", 10.5, 1, (102, 52, 78, 88)),
        _s("b", "cam-gate-1", 11.0, 2, (400, 50, 80, 90)),
        _s("c", "cam-gate-1-r1", 10.5, 1, (400, 50, 80, 90)),
        _s("d", "cam-gate-1", 12.0, 3, (300, 300, 50, 50)),
        _s("e", "cam-gate-1", 99.0, 4, (100, 50, 80, 90)),  # not in the log
    ]
    events, stats = link_sightings(sightings, log, truth, reps)
    assert events == {"a": "T00007", "b": "T00009", "c": "T00009"}
    assert stats == {"sightings": 5, "linked": 3, "no_frame": 1, "no_truth": 1}


def test_a_transition_is_correct_only_for_the_right_traveller_in_itinerary_order(tmp_path):
    truth = _render(tmp_path)
    u = lambda eid, who, prev, zone: TrackUpdate(
        event_id=eid, subject_id=who, camera_id="c", zone=zone, prev_zone=prev, at=0, captured_at=0
    )
    updates = [
        u("a", "T00007", "egate", "gate"),
        u("b", "T00007", "egate", "gate"),
        u("c", "T00009", "arrivals", "gate"),
        u("d", "T00009", None, "gate"),
    ]
    share = transition_share(updates, {"a": "T00007", "b": "T00009", "c": "T00009", "d": "T00009"}, truth)
    assert share == {"transitions": 3, "correct": 1, "share": 1 / 3}  # b names the wrong person, c goes backwards

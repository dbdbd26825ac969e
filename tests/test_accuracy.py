from broker.messages import Match
from paxsim.accuracy import score

ALLOWED = {("alice", "boarding"), ("bob", "boarding")}


def allowed(subject, purpose, zone, at):
    return (subject, purpose) in ALLOWED


def m(eid, decision, subject=None, purpose="boarding"):
    return Match(event_id=eid, camera_id="c", zone="gate", purpose=purpose, captured_at=0, matched_at=0, decision=decision,
                 subject_id=subject, distance=0.3 if subject else None)


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

"""E-gate 1:1 verification on the real embedded broker: sealed sightings with a passport claim go through the
policy gate and the matcher (separate processes); genuine claims are verified, impostors rejected."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from broker import topics as t
from broker.clients import start_producer
from broker.messages import Match, Sighting, TrackUpdate, decode, embedding_to_bytes, encode
from broker.reader import read_all
from core.config import Settings
from core.stack import Stack, total
from paxsim.infra import child_env, enrol_scenario
from policy.crypto import HttpKeySource, SubjectVault
from policy.crypto.outputs import OutputKeys
from policy.runtime import PolicyRuntime
from scenario.virtual import EGATE_PURPOSE, VirtualAirport

SMALL = dict(cameras=8, travellers=150, events_per_second=120.0)


def _sighting(eid: str, face: np.ndarray, claim: str) -> Sighting:
    return Sighting(
        event_id=eid,
        camera_id="cam-egate-1",
        zone="egate",
        captured_at=time.time(),
        track_id=1,
        box=(0, 0, 120, 120),
        quality=1.0,
        embedding=embedding_to_bytes(face),
        claimed_subject=claim,
    )


def _matches(cs: Settings, want: int, timeout: float = 40.0) -> list[Match]:
    deadline = time.monotonic() + timeout
    while True:
        got = [decode(r.value, Match) for r in asyncio.run(read_all(cs, t.MATCHES.name))]
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_egate_claims_are_verified_one_to_one_and_impostors_rejected(client_settings: Settings, broker, keys):
    cs = client_settings.model_copy(update={"scenario": client_settings.scenario.model_copy(update=SMALL)})
    enrol_scenario(cs, 3.0)
    airport = VirtualAirport(cs.scenario, 3.0)
    threshold = cs.matcher.threshold
    eligible = [tr for tr in airport.travellers if EGATE_PURPOSE in tr.purposes]
    no_egate = [tr for tr in airport.travellers if tr.enrolled and EGATE_PURPOSE not in tr.purposes]
    outsider = next(tr for tr in airport.travellers if not tr.enrolled)
    a = eligible[0]
    b = next(tr for tr in eligible[1:] if np.linalg.norm(tr.base - a.base) > 1.5 * threshold)  # clearly someone else
    rng = np.random.default_rng(0)

    def live(tr) -> np.ndarray:  # a fresh capture of this traveller, well within the threshold
        return (tr.base + rng.normal(0.0, 0.005, tr.base.shape)).astype(np.float32)

    edge = PolicyRuntime.for_stage(cs, "test-edge", keys=HttpKeySource.from_env(keys.stage_env()["edge"]), sighting_keys="seal")
    admin = SubjectVault(HttpKeySource(keys.url, keys.token))
    ps = admin.pseudonym  # how the matcher names a verified subject on its output
    cases = {  # the claim is the subject on the passport, sealed with the face: never on the topic in clear
        "genuine-a": (live(a), a.traveller_id, "verified", ""),
        "genuine-b": (live(b), b.traveller_id, "verified", ""),
        "impostor": (live(b), a.traveller_id, "rejected", "verification"),  # b presents a's passport
        "not-enrolled": (live(outsider), outsider.traveller_id, "rejected", "unknown-subject"),
    }
    if no_egate:  # enrolled, but never consented to e-gate verification
        cases["no-consent"] = (live(no_egate[0]), no_egate[0].traveller_id, "refused", "consent")
    one_to_n = {"no-claim": (live(a), "", "match", "")}  # same zone, no passport read: 1:N as before

    async def inject() -> None:
        p = await start_producer(cs)
        for eid, (face, claim, _d, _r) in {**cases, **one_to_n}.items():
            await p.send_and_wait(t.SIGHTINGS.name, encode(edge.seal(_sighting(eid, face, claim))), key=b"cam-egate-1")
        await p.stop()

    stack = Stack(Path(cs.state_dir), child_env(cs, broker.bootstrap, True, keys))
    try:
        stack.spawn("policy", ["policy"])
        stack.spawn("matcher", ["matcher"])
        assert stack.wait_ready("matcher")
        asyncio.run(inject())
        got = _matches(cs, len(cases) + 1)
        time.sleep(1.0)  # nothing decided twice shows up late
        got = _matches(cs, len(cases) + 1, timeout=0)
        metrics = stack.scrape("matcher")
    finally:
        stack.stop()
        edge.close()
    outputs = OutputKeys(HttpKeySource(keys.url, keys.token), background=False)
    assert not any(m.subject_id for m in got), "a subject reference in clear on the matches topic"
    got = [outputs.open(m)[0] for m in got]  # the purpose key of a match a moment old lives: every one opens
    by_id = {m.event_id: m for m in got}
    assert len(got) == len(by_id) == len(cases) + 1, [m.event_id for m in got]
    assert by_id["no-claim"].decision == "match" and by_id["no-claim"].subject_id == ps(a.traveller_id)
    for eid, (_face, claim, decision, rule) in cases.items():
        m = by_id[eid]
        assert (m.decision, m.rule) == (decision, rule), (eid, m)
        assert m.purpose == "egate-verification"
        if decision == "verified":
            assert m.subject_id == ps(claim) and m.distance is not None and m.distance < threshold
        else:
            assert m.subject_id is None and m.distance is None, f"{eid}: a {decision} claim leaked identity data"
    assert total(metrics, "paxsim_matcher_verifications_total") == len(cases)
    assert total(metrics, "paxsim_matcher_verifications_total", outcome="reject") == 1
    assert total(metrics, "paxsim_matcher_verifications_total", outcome="unknown-subject") == 1
    assert total(metrics, "paxsim_matcher_batch_size_events_sum") == 1, "a claimed sighting went through a 1:N search"
    assert total(metrics, "paxsim_matcher_events_total", decision="rejected") == 2
    tracks = [decode(r.value, TrackUpdate) for r in asyncio.run(read_all(cs, t.TRACKS.name))]
    assert sorted(u.event_id for u in tracks) == ["genuine-a", "genuine-b", "no-claim"]
    # nothing names a claimed traveller on either sightings topic: not the id, not the pseudonym
    for topic_name in (t.SIGHTINGS.name, t.ADMITTED.name):
        wire = [decode(r.value, Sighting) for r in asyncio.run(read_all(cs, topic_name))]
        assert wire and not any(x.claimed_subject for x in wire), topic_name
        blob = b"".join(r.value for r in asyncio.run(read_all(cs, topic_name)))
        for tr in (a, b, outsider):
            assert tr.traveller_id.encode() not in blob and ps(tr.traveller_id).encode() not in blob, (topic_name, tr.traveller_id)


def test_alerts_reach_the_alerts_topic_once_per_id_and_only_for_permitted_purposes(client_settings: Settings, broker, keys, tmp_path):
    """A dwell limit far below the scenario's dwell times makes every security visit an alert (the default
    rules are off): alerts are published, named by pseudonym, each id once, only for the permitted purpose."""
    import json

    from broker.messages import Alert
    from core.paths import ground_truth_path
    from matcher.alerts import ALERTS_ENV, DWELL
    from paxsim.demo import resolve_pseudonyms, start_pipeline
    from tests.pipeline.test_pipeline import wait_drained

    cs = client_settings.model_copy(update={"scenario": client_settings.scenario.model_copy(update=SMALL)})
    enrol_scenario(cs, 6.0)
    rules = tmp_path / "alerts.yaml"
    rules.write_text(json.dumps({"enabled": True, "purposes": ["flow-analytics"], "dwell_limits_s": {"security": 0.5, "gate": 0.5}}))
    stack = Stack(Path(cs.state_dir), {**child_env(cs, broker.bootstrap, True, keys), ALERTS_ENV: str(rules)})
    try:
        start_pipeline(stack, 6.0, ground_truth_path(cs))
        wait_drained(stack)
        published = total(stack.scrape("matcher"), "paxsim_matcher_alerts_total")
    finally:
        stack.stop()
    alerts = [decode(r.value, Alert) for r in asyncio.run(read_all(cs, t.ALERTS.name))]
    assert alerts and published == len(alerts)
    assert len({a.alert_id for a in alerts}) == len(alerts), "an alert id was published twice"
    assert all(a.kind == DWELL and a.zone == "security" for a in alerts), "an alert for a purpose the rules do not permit"
    # the subject reference travels sealed under the purpose's epoch key; opened, it is a pseudonym
    assert all(a.sealed and a.key_id.startswith("purpose.flow-analytics:") and not a.subject_id for a in alerts)
    outputs = OutputKeys(HttpKeySource(keys.url, keys.token), background=False)
    opened = [outputs.open(a) for a in alerts]
    assert all(ok and a.subject_id and a.subject_id.startswith("ps-") for a, ok in opened), "a plain subject id in an alert"
    alerts = [a for a, _ok in opened]
    named = resolve_pseudonyms(alerts, cs, HttpKeySource(keys.url, keys.token))
    assert all(not a.subject_id.startswith("ps-") for a in named)  # every alert names an enrolled subject

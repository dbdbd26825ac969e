"""End to end on the real embedded broker: edge → policy gate → matcher, each a separate process."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import msgspec
import numpy as np

from broker import topics as t
from broker.clients import start_producer
from broker.messages import DeadLetter, Match, Sighting, decode, embedding_to_bytes, encode
from broker.reader import read_all
from core.config import Settings
from core.paths import ground_truth_path
from core.stack import Stack, total
from paxsim.demo import drain_marker, resolve_pseudonyms, start_pipeline
from paxsim.infra import child_env, enrol_scenario
from policy.consent import ConsentRegistry, consent_path
from policy.crypto import EpochKeyRing, HttpKeySource, seal_sighting
from policy.policyfile import load_policy
from policy.scan import run_scan
from scenario.virtual import VirtualAirport

SMALL = dict(cameras=8, travellers=150, events_per_second=120.0)
MAX_FALSE_MATCH = 0.05  # synthetic faces at the calibrated threshold: FMR ≈ 2 % (docs/scenario.md)


def small(settings: Settings) -> Settings:
    return settings.model_copy(update={"scenario": settings.scenario.model_copy(update=SMALL)})


def wait_drained(stack: Stack, timeout: float = 40.0) -> None:
    """Wait for the edge to finish and for gate and matcher to have nothing left to read."""
    deadline = time.monotonic() + timeout
    while stack.children["edge"].alive():
        assert time.monotonic() < deadline, "edge did not finish"
        time.sleep(0.2)
    assert stack.children["edge"].proc.returncode == 0
    marker, stable = None, 0
    while time.monotonic() < deadline:
        current = drain_marker(stack)
        stable = stable + 1 if current is not None and current == marker else 0
        marker = current
        if stable >= 2:
            return
        time.sleep(1.0)
    raise AssertionError("pipeline did not drain")


def run_to_end(cs: Settings, broker, keys, seconds: float) -> None:  # noqa: ANN001
    """Edge, gate and matcher as separate processes over ``seconds`` of the scenario, until drained."""
    stack = Stack(Path(cs.state_dir), child_env(cs, broker.bootstrap, True, keys))
    try:
        start_pipeline(stack, seconds, ground_truth_path(cs))
        wait_drained(stack)
    finally:
        stack.stop()


def topic(settings: Settings, name: str) -> list:
    return asyncio.run(read_all(settings, name))


def check_exactly_once_and_consent(cs: Settings, keys) -> list[Match]:
    admitted = [decode(r.value, Sighting).event_id for r in topic(cs, t.ADMITTED.name)]
    published = [decode(r.value, Match) for r in topic(cs, t.MATCHES.name)]
    assert all(m.subject_id is None or m.subject_id.startswith("ps-") for m in published), "a plain subject id left the matcher"
    matches = resolve_pseudonyms(published, cs, HttpKeySource(keys.url, keys.token))
    decided = [m.event_id for m in matches]
    assert admitted, "nothing was admitted"
    twice = {e for e in decided if decided.count(e) > 1}
    assert not twice, f"decided twice: {sorted(twice)[:5]} (admitted copies: {[admitted.count(e) for e in sorted(twice)[:5]]})"
    assert set(decided) == set(admitted), "an admitted event was lost"
    truth = {row["event_id"]: row["traveller_id"] for row in map(json.loads, ground_truth_path(cs).read_text().splitlines())}
    consent = ConsentRegistry.load(consent_path(cs))
    identified = [m for m in matches if m.decision in ("match", "verified")]
    for m in identified:
        # whoever the matcher named, that subject had active consent for this purpose here and now
        assert consent.is_allowed(m.subject_id, m.purpose, m.zone, m.captured_at), "non-consented subject in the output"
    for m in matches:
        if m.decision not in ("match", "verified"):
            assert m.subject_id is None and m.distance is None, "an unknown/refused decision leaked identity data"
    wrong = [m for m in identified if m.subject_id != truth[m.event_id]]
    assert len(wrong) <= MAX_FALSE_MATCH * max(1, len(identified)), f"{len(wrong)} of {len(identified)} identified as somebody else"
    # sightings of travellers without consent for that purpose are kept out of the output (up to false matches)
    refused = [m for m in matches if not consent.is_allowed(truth[m.event_id], m.purpose, m.zone, m.captured_at)]
    assert refused and sum(m.decision in ("match", "verified") for m in refused) <= MAX_FALSE_MATCH * len(refused)
    return matches


def test_pipeline_end_to_end_exactly_once_and_consent(settings: Settings, client_settings: Settings, broker, keys):
    cs = small(client_settings)
    # the first five travellers seen at a biometric camera are withheld from the gallery: strangers the ground
    # truth knows are there, whatever the consent draw gave this seed
    biometric = {name for name, zone in load_policy(cs.policy.file).zones.items() if zone.biometric}
    early = VirtualAirport(cs.scenario, 6.0).sightings(0.0, 2.0)
    strangers_planted = list(dict.fromkeys(vs.traveller_id for vs in early if vs.camera.zone in biometric))[:5]
    assert len(strangers_planted) == 5
    enrol_scenario(cs, 6.0, withheld=strangers_planted)
    run_to_end(cs, broker, keys, 6.0)
    matches = check_exactly_once_and_consent(cs, keys)
    assert sum(m.decision == "match" for m in matches) > 0
    # travellers the ground truth says were never enrolled are decided unknown (up to false matches)
    truth = {row["event_id"]: row["traveller_id"] for row in map(json.loads, ground_truth_path(cs).read_text().splitlines())}
    enrolled = set(ConsentRegistry.load(consent_path(cs)).subjects())
    strangers = [m for m in matches if truth[m.event_id] not in enrolled]
    assert strangers, "the withheld travellers were seen at face cameras, so their sightings must reach the matcher"
    assert sum(m.decision in ("match", "verified") for m in strangers) <= MAX_FALSE_MATCH * len(strangers)
    searched = [m for m in strangers if m.zone != "egate"]  # an e-gate verifies a claim 1:1 and rejects it instead
    assert searched and sum(m.decision != "unknown" for m in searched) <= MAX_FALSE_MATCH * len(searched)
    sightings = [decode(r.value, Sighting) for r in topic(cs, t.SIGHTINGS.name)]
    assert sightings and all(s.sealed and not s.embedding and s.key_id for s in sightings), "an embedding left the edge unsealed"


def test_matcher_kill_9_and_restart_loses_and_doubles_nothing(settings: Settings, client_settings: Settings, broker, keys):
    cs = small(client_settings)
    enrol_scenario(cs, 10.0)
    stack = Stack(Path(cs.state_dir), child_env(cs, broker.bootstrap, True, keys))
    try:
        start_pipeline(stack, 10.0, ground_truth_path(cs))
        # kill once the matcher has decided something and written a snapshot, mid-stream
        deadline = time.monotonic() + 20
        while True:
            m = stack.scrape("matcher")
            if total(m, "paxsim_matcher_events_total") >= 100 and total(m, "paxsim_matcher_snapshots_total") >= 1:
                break
            assert time.monotonic() < deadline
            time.sleep(0.1)
        stack.kill("matcher")  # SIGKILL: no chance to commit or flush
        # what it had published before it died (decisions counted but not yet acknowledged are not among them)
        published_before = len(topic(cs, t.MATCHES.name))
        time.sleep(1.5)  # sightings keep arriving while it is down
        stack.restart("matcher")
        wait_drained(stack)
        m = stack.scrape("matcher")
        recovered = total(m, "paxsim_matcher_recovered_decisions_total")
        restored = total(m, "paxsim_matcher_snapshot_restored_decisions_total")
    finally:
        stack.stop()
    check_exactly_once_and_consent(cs, keys)
    assert restored > 0, "the restarted matcher did not start from its snapshot"
    # its own snapshot file, named for the replica: a second matcher would write (and restore) another one
    snaps = sorted(p.name for p in Path(cs.state_dir).glob("matcher-snapshot*"))
    assert snaps == ["matcher-snapshot-matcher.bin"], snaps
    assert published_before >= 50 and recovered + restored >= published_before, (
        f"the restarted matcher recovered {recovered + restored:.0f} of the {published_before} decisions published before the kill"
    )
    # and the kill left nothing behind that the privacy scan objects to (expired-readable / non-consented / audit gaps)
    report = asyncio.run(run_scan(cs, load_policy(), HttpKeySource(keys.url, keys.token)))
    assert report.counts == (0, 0, 0), [f.__dict__ if hasattr(f, "__dict__") else f for f in report.findings[:5]]
    assert sum(report.records.values()) > 0


def test_a_margin_wider_than_any_gap_between_subjects_names_nobody(settings: Settings, client_settings: Settings, broker, keys):
    """``matcher.margin``: the real matcher searches the two nearest subjects and names the nearest only when the
    second is that much farther. Wider than any gap between two subjects, it leaves every sighting unknown; the
    same run without it names travellers (the first pipeline test)."""
    cs = small(client_settings)
    cs = cs.model_copy(update={"matcher": cs.matcher.model_copy(update={"margin": 0.99})})
    enrol_scenario(cs, 3.0)
    run_to_end(cs, broker, keys, 3.0)
    decisions = [decode(r.value, Match).decision for r in topic(cs, t.MATCHES.name)]
    assert decisions.count("unknown") > 0 and "match" not in decisions, sorted(set(decisions))


def test_garbage_goes_to_dead_letter_and_matcher_keeps_running(settings: Settings, client_settings: Settings, broker, keys):
    cs = small(client_settings)
    enrol_scenario(cs, 3.0)
    stack = Stack(Path(cs.state_dir), child_env(cs, broker.bootstrap, True, keys))
    nan = np.zeros(128, np.float32)
    nan[0] = np.nan
    poison = Sighting(
        event_id="poison-nan",
        camera_id="cam-001",
        zone="security",
        captured_at=time.time(),
        track_id=1,
        box=(0, 0, 1, 1),
        quality=1.0,
        embedding=embedding_to_bytes(nan),
    )
    # well-formed records a hostile producer can write: a 64-D embedding whose bytes match its dim (once through
    # the gate, once straight onto the admitted topic) and a 900 kB "sealed" payload; each used to kill the matcher
    short = msgspec.structs.replace(poison, event_id="poison-dim64", embedding=embedding_to_bytes(np.ones(64, np.float32)), dim=64)
    huge = msgspec.structs.replace(poison, event_id="poison-huge", embedding=b"", sealed=b"\x01" * 900_000, key_id="sightings:1")
    # a valid-looking plaintext embedding while the run seals everything: refused at the gate and at the matcher
    plain = msgspec.structs.replace(poison, event_id="poison-plain", embedding=embedding_to_bytes(np.full(128, 0.05, np.float32)))
    # no embedding at all, and a 4096-D one, straight onto the admitted topic
    dim0 = msgspec.structs.replace(poison, event_id="poison-dim0", embedding=b"", dim=0)
    dim4096 = msgspec.structs.replace(poison, event_id="poison-dim4096", embedding=embedding_to_bytes(np.ones(4096, np.float32)), dim=4096)
    # a message of a version this contract does not know
    unknown = msgspec.msgpack.encode({**msgspec.to_builtins(plain), "type": "sighting.v9", "event_id": "poison-v9"})
    # properly sealed under the run's key, with a key id 10^9 epochs ahead: refused without deriving a single key
    ring = EpochKeyRing(HttpKeySource(keys.url, keys.token), "sightings", background=False)
    good = seal_sighting(ring, msgspec.structs.replace(plain, event_id="poison-future"))
    cls, chain, epoch = good.key_id.split(":")
    future = msgspec.structs.replace(good, key_id=f"{cls}:{chain}:{int(epoch) + 10**9}")
    # "1²".isdigit() is True and int("1²") raises: one such record used to stop the gate at every restart
    digit = msgspec.structs.replace(good, event_id="poison-superscript", key_id=f"{cls}:{chain}:{epoch}²")

    async def inject() -> None:
        p = await start_producer(cs)
        await p.send_and_wait(t.SIGHTINGS.name, b"\x00not msgpack at all", key=b"cam-001")
        await p.send_and_wait(t.SIGHTINGS.name, encode(poison), key=b"cam-001")
        await p.send_and_wait(t.ADMITTED.name, b"\xc1garbage straight to the matcher", key=b"cam-002")
        await p.send_and_wait(t.SIGHTINGS.name, encode(short), key=b"cam-001")
        await p.send_and_wait(t.ADMITTED.name, encode(msgspec.structs.replace(short, event_id="poison-dim64-admitted")), key=b"cam-002")
        await p.send_and_wait(t.ADMITTED.name, encode(huge), key=b"cam-002")
        await p.send_and_wait(t.SIGHTINGS.name, encode(plain), key=b"cam-001")
        await p.send_and_wait(t.ADMITTED.name, encode(msgspec.structs.replace(plain, event_id="poison-plain-admitted")), key=b"cam-002")
        await p.send_and_wait(t.ADMITTED.name, encode(dim0), key=b"cam-002")
        await p.send_and_wait(t.ADMITTED.name, encode(dim4096), key=b"cam-002")
        await p.send_and_wait(t.ADMITTED.name, unknown, key=b"cam-002")
        await p.send_and_wait(t.ADMITTED.name, encode(future), key=b"cam-002")
        await p.send_and_wait(t.SIGHTINGS.name, encode(msgspec.structs.replace(future, event_id="poison-future-gate")), key=b"cam-001")
        await p.send_and_wait(t.SIGHTINGS.name, encode(digit), key=b"cam-001")
        await p.send_and_wait(
            t.ADMITTED.name, encode(msgspec.structs.replace(digit, event_id="poison-superscript-admitted")), key=b"cam-002"
        )
        await p.stop()

    try:
        stack.spawn("policy", ["policy"])
        stack.spawn("matcher", ["matcher"])
        asyncio.run(inject())
        start_edge = ["edge", "--virtual", "--duration", "3", "--ground-truth", str(ground_truth_path(cs))]
        stack.spawn("edge", start_edge)
        wait_drained(stack)
        assert stack.children["matcher"].alive() and stack.children["policy"].alive()
        first = len(topic(cs, t.DEADLETTER.name))
        # a restart resumes after the poison (its offsets were committed with the batch): nothing is read again
        log = stack.children["matcher"].log_path
        assigned = log.read_text().count("partition assigned")
        for name in ("policy", "matcher"):
            stack.kill(name, signal.SIGTERM)
            stack.restart(name)
        assert stack.wait_ready("matcher", 30) and stack.wait_ready("policy", 30)
        deadline = time.monotonic() + 30
        while log.read_text().count("partition assigned") <= assigned:
            assert time.monotonic() < deadline, "the restarted matcher did not get its partitions"
            time.sleep(0.2)
        time.sleep(3.0)  # a re-read would have dead-lettered again by now
        assert stack.children["matcher"].alive() and stack.children["policy"].alive()
    finally:
        stack.stop()
    dead = [decode(r.value, DeadLetter) for r in topic(cs, t.DEADLETTER.name)]
    assert len(dead) == first == 15, [(d.stage, d.reason) for d in dead]
    superscript = sorted(d.stage for d in dead if "²" in d.reason)
    assert superscript == ["gate", "matcher"], [(d.stage, d.reason) for d in dead]
    plaintext = [d.stage for d in dead if "plaintext embedding refused" in d.reason]
    assert sorted(plaintext) == ["gate", "matcher"], "a plaintext embedding went on to the admitted topic or was matched"
    forwarded = [decode(r.value, Sighting) for r in topic(cs, t.ADMITTED.name) if r.value[:1] != b"\xc1" and r.value != unknown]
    written = {
        "poison-dim64-admitted",
        "poison-plain-admitted",
        "poison-dim0",
        "poison-dim4096",
        "poison-future",
        "poison-superscript-admitted",
    }
    forwarded = [s for s in forwarded if s.event_id not in written]  # not those the test wrote there itself
    assert forwarded and not any(s.embedding for s in forwarded), "the gate forwarded a plaintext embedding"
    assert any(d.reason.startswith("undecodable") for d in dead if (d.stage, d.source_topic) == ("matcher", t.ADMITTED.name))
    assert any("NaN" in d.reason for d in dead if d.stage == "gate")
    assert any("dim 64" in d.reason for d in dead if d.stage == "gate")
    matcher_reasons = [d.reason for d in dead if d.stage == "matcher"]
    assert any("dim 64" in r for r in matcher_reasons) and any("900000 bytes" in r for r in matcher_reasons), matcher_reasons
    assert any("dim 0" in r for r in matcher_reasons) and any("dim 4096" in r for r in matcher_reasons), matcher_reasons
    assert any("ahead of the current" in r for r in matcher_reasons), matcher_reasons
    assert any("ahead of the current" in d.reason for d in dead if d.stage == "gate"), "the gate forwarded a far-future key id"
    assert any(d.payload == unknown and d.reason.startswith("undecodable") for d in dead), matcher_reasons
    assert any(d.payload == b"\x00not msgpack at all" for d in dead)
    # and the real traffic behind the poison was still decided
    assert sum(decode(r.value, Match).decision == "match" for r in topic(cs, t.MATCHES.name)) > 0


def test_unreachable_broker_is_a_clear_error_not_a_hang(tmp_path: Path):
    import subprocess
    import sys

    env_cfg = tmp_path / "c.yaml"
    env_cfg.write_text("broker:\n  bootstrap: 127.0.0.1:1\n  connect_timeout_s: 3\n")
    proc = subprocess.run(
        [sys.executable, "-m", "paxsim.cli", "matcher", "--config", str(env_cfg)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3
    assert "cannot reach a Kafka broker at 127.0.0.1:1" in proc.stderr


def test_a_key_holder_outage_pauses_the_matcher_instead_of_killing_it(settings: Settings, client_settings: Settings, broker, keys):
    """The key holder goes away; a sighting of an enrolled traveller then needs the subject's key (for its
    pseudonym): the matcher must wait and keep the batch, not die on KeyUnavailable."""
    from policy.crypto import EpochKeyRing

    cs = small(client_settings)
    enrol_scenario(cs, 3.0)
    ids, vecs, _ = VirtualAirport(cs.scenario, 3.0).enrolment()
    policy = load_policy(cs.policy.file)
    zone = next(z for z, r in policy.zones.items() if r.biometric and r.purpose and z != "egate")
    ring = EpochKeyRing(HttpKeySource(keys.url, keys.token), "sightings", background=False)
    face = Sighting(
        event_id="outage-1",
        camera_id="cam-x",
        zone=zone,
        captured_at=time.time(),
        track_id=1,
        box=(0, 0, 80, 80),
        quality=1.0,
        embedding=embedding_to_bytes(vecs[0]),
    )
    sealed = seal_sighting(ring, face)
    stack = Stack(Path(cs.state_dir), child_env(cs, broker.bootstrap, True, keys))
    try:
        stack.spawn("matcher", ["matcher"])
        assert stack.wait_ready("matcher", 30), "matcher did not start"
        log = stack.children["matcher"].log_path
        deadline = time.monotonic() + 30
        while "partition assigned" not in log.read_text():  # keys warmed, consuming: now the holder goes away
            assert time.monotonic() < deadline, "matcher did not get its partitions"
            time.sleep(0.2)
        keys.stop()  # the key holder is gone; the matcher's cached subject keys expire within cache_s
        time.sleep(6.5)

        async def inject() -> None:
            p = await start_producer(cs)
            await p.send_and_wait(t.ADMITTED.name, encode(sealed), key=b"cam-x")
            await p.stop()

        asyncio.run(inject())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and total(stack.scrape("matcher"), "paxsim_matcher_keyholder_waits_total") < 1:
            assert stack.children["matcher"].alive(), "the matcher died when the key holder went away"
            time.sleep(0.5)
        assert total(stack.scrape("matcher"), "paxsim_matcher_keyholder_waits_total") >= 1
        time.sleep(2.0)
        assert stack.children["matcher"].alive(), "the matcher died when the key holder went away"
        assert topic(cs, t.MATCHES.name) == [], "decided without the subject's key"
    finally:
        stack.stop()

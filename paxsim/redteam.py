"""``paxsim redteam``: plant leaks and attacks against a real stack and check that each defence holds.

It starts the embedded broker, the key holder and the policy gate, matcher and dashboard as processes (as
``paxsim demo`` does), enrols the synthetic airport, then runs each attack of :data:`CATALOGUE` in turn as a
hostile producer, API client or file writer would, and observes the defence from outside: the dead-letter
topic, the matches topic, the key holder, the dashboard's answers, the audit scan. It prints
attack → expected defence → observed → pass/fail, ends with ``redteam: N passed, M failed`` and exits 1 on
any failure. Every face is synthetic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import numpy as np
from rich.console import Console
from rich.table import Table

from broker import topics as t
from broker.clients import start_producer
from broker.embedded import EmbeddedBroker
from broker.messages import DeadLetter, ErasureRequest, Match, Sighting, decode, embedding_to_bytes, encode
from broker.reader import read_all
from core.config import Settings
from core.paths import gallery_path
from core.stack import Stack
from dashboard.auth import TokenStore
from dashboard.services import tokens_path
from matcher.gallery import Gallery
from paxsim.demo import start_consumers
from paxsim.infra import child_env, enrol_scenario, policy_file
from policy.audit import audit_dir, verify
from policy.consent import ConsentRegistry, consent_path
from policy.crypto import EpochKeyRing, HttpKeySource, SubjectVault, seal_sighting
from policy.keyd import KeydProcess, spawn_keyd
from policy.policyfile import Policy, load_policy
from policy.scan import ScanReport, run_scan
from policy.stores import Store
from scenario.virtual import VirtualAirport

WAIT_S = 20.0  # how long a defence may take to show (dead letter, decision, erasure)
PLANTED_CHAIN = "redteam-archive"  # the audit chain the red team writes its old subject reference to


@dataclass
class Context:
    settings: Settings
    stack: Stack
    keys: KeydProcess
    ring: EpochKeyRing  # seals like an honest edge
    vault: SubjectVault
    enrolled: list[str]
    faces: np.ndarray  # the enrolled travellers' enrolment embeddings (synthetic)
    zone: str  # a biometric 1:N zone
    policy: Policy  # the run's policy file, loaded once
    dashboard: str  # base URL
    wait_s: float = WAIT_S

    def sighting(self, event_id: str, vec: np.ndarray, **kw: object) -> Sighting:
        fields: dict = dict(event_id=event_id, camera_id="cam-redteam", zone=self.zone, captured_at=time.time(), track_id=1)
        fields.update(box=(0, 0, 80, 80), quality=1.0, embedding=embedding_to_bytes(vec))
        fields.update(kw)
        return Sighting(**fields)


@dataclass(frozen=True)
class Result:
    attack: str
    defence: str
    observed: str
    passed: bool


async def _produce(settings: Settings, topic: str, *values: bytes, key: bytes = b"cam-redteam") -> list[str]:
    """Write ``values`` to ``topic``; returns where each landed, as the scan names records (``topic/p@offset``)."""
    producer = await start_producer(settings)
    try:
        return [f"{topic}/{md.partition}@{md.offset}" for md in [await producer.send_and_wait(topic, v, key=key) for v in values]]
    finally:
        await producer.stop()


def _dead_letter(ctx: Context, event_id: str) -> DeadLetter | None:
    """The dead letter whose original record is the sighting (or erasure request) ``event_id``, waiting up to WAIT_S."""
    deadline = time.monotonic() + ctx.wait_s
    while time.monotonic() < deadline:
        for rec in asyncio.run(read_all(ctx.settings, t.DEADLETTER.name)):
            d: DeadLetter = decode(rec.value, DeadLetter)
            with contextlib.suppress(Exception):
                inner: Sighting | ErasureRequest = decode(d.payload, Sighting | ErasureRequest)
                if getattr(inner, "event_id", getattr(inner, "request_id", None)) == event_id:
                    return d
        time.sleep(0.5)
    return None


def _decided(ctx: Context, event_id: str, timeout: float | None = None) -> Match | None:
    deadline = time.monotonic() + (ctx.wait_s if timeout is None else timeout)
    while time.monotonic() < deadline:
        for rec in asyncio.run(read_all(ctx.settings, t.MATCHES.name)):
            m: Match = decode(rec.value, Match)
            if m.event_id == event_id:
                return m
        time.sleep(0.5)
    return None


def _poison(name: str, topic: str, make: Callable[[Context], Sighting], expect: str) -> Callable[[Context], Result]:
    """A hostile record on ``topic``: the stage reading that topic (the gate for sightings, the matcher for admitted
    ones) must dead-letter it with ``expect`` in the reason, decide nothing, and stay up."""
    stage = "gate" if topic == t.SIGHTINGS.name else "matcher"

    def attack(ctx: Context) -> Result:
        s = make(ctx)
        asyncio.run(_produce(ctx.settings, topic, encode(s)))
        d = _dead_letter(ctx, s.event_id)
        decided = _decided(ctx, s.event_id, timeout=1.0)
        alive = all(ctx.stack.children[n].alive() for n in ("policy", "matcher"))
        ok = d is not None and d.stage == stage and expect in d.reason and decided is None and alive
        seen = f"dead letter by {d.stage}: {d.reason[:60]}" if d else "no dead letter"
        return Result(
            name,
            f"dead letter by the {stage} ({expect}), nothing decided, stages alive",
            f"{seen}; decided={decided is not None}; alive={alive}",
            ok,
        )

    return attack


def plaintext(ctx: Context) -> Sighting:
    return ctx.sighting("rt-plaintext", ctx.faces[0])


def wrong_dim(ctx: Context) -> Sighting:
    return ctx.sighting("rt-dim64", np.ones(64, np.float32), dim=64)


def wrong_dim_at_gate(ctx: Context) -> Sighting:
    return ctx.sighting("rt-dim64-gate", np.ones(64, np.float32), dim=64)


def far_future(ctx: Context) -> Sighting:
    """Sealed properly, with a key id 10^5 epochs ahead (deriving it would cost a hash per epoch)."""
    s = seal_sighting(ctx.ring, ctx.sighting("rt-future", ctx.faces[0]))
    name, chain, epoch = s.key_id.split(":")
    return msgspec.structs.replace(s, key_id=f"{name}:{chain}:{int(epoch) + 10**5}")


def unicode_digit_epoch(ctx: Context) -> Sighting:
    """A key id whose epoch ends in "²": str.isdigit() says yes and int() raises (it used to stop the gate)."""
    s = seal_sighting(ctx.ring, ctx.sighting("rt-superscript", ctx.faces[0]))
    return msgspec.structs.replace(s, key_id=s.key_id + "²")


def oversized(ctx: Context) -> Sighting:
    return msgspec.structs.replace(ctx.sighting("rt-huge", ctx.faces[0]), embedding=b"", sealed=b"\x01" * 900_000, key_id="sightings:x:1")


def forged_erasure(ctx: Context) -> Result:
    """Two forged erasure requests for an enrolled traveller: one unsigned, one sealed under the control key (as
    any holder of that key, a matcher included, could) and carrying a made-up signature in the dashboard's name."""
    from policy.crypto import EpochKeyRing as Ring
    from policy.crypto import KeyForbidden, seal_erasure

    victim = ctx.enrolled[1]
    now = time.time()
    unsigned = ErasureRequest(request_id="rt-forged-unsigned", subject_id=victim, requested_at=now)
    matcher_keys = HttpKeySource(ctx.keys.url, ctx.keys.stage_token("matcher"))
    sealed = seal_erasure(Ring(matcher_keys, "control", background=False), msgspec.structs.replace(unsigned, request_id="rt-forged-signed"))
    badly_signed = msgspec.structs.replace(sealed, issuer="dashboard", signature=bytes(64))
    try:  # the matcher holds the control key but may not issue: the key holder will not sign for it
        matcher_keys.sign_control(b"x")
        matcher_may_sign = True
    except KeyForbidden:
        matcher_may_sign = False
    asyncio.run(_produce(ctx.settings, t.ERASURES.name, encode(unsigned), encode(badly_signed)))
    dead = {rid: _dead_letter(ctx, rid) for rid in ("rt-forged-unsigned", "rt-forged-signed")}
    key_alive = ctx.vault.existing_pseudonym(victim) is not None
    in_gallery = victim in Gallery.load(gallery_path(ctx.settings)).subjects()
    lettered = sorted(rid for rid, d in dead.items() if d is not None and "forged" in d.reason)
    return Result(
        "forged erasure requests on the topic (unsigned; sealed with a made-up signature)",
        "refused and dead-lettered by every worker; key and templates stay; the key holder signs for no matcher",
        f"key alive={key_alive}, in gallery={in_gallery}, dead letters {len(lettered)}/2, matcher may sign={matcher_may_sign}",
        key_alive and in_gallery and len(lettered) == 2 and not matcher_may_sign,
    )


def _scan(ctx: Context) -> ScanReport:
    """The audit scan of the run, as `paxsim audit scan` runs it: every topic and every store at rest."""
    keys = HttpKeySource(ctx.keys.url, ctx.keys.token)
    return asyncio.run(run_scan(ctx.settings, ctx.policy, keys))


def _scan_live(ctx: Context, store: Store) -> ScanReport:
    """The scan of one store of the running stack (their /metrics, the dashboard's memory), as `up --audit-scan`
    reads them before the stages stop."""
    from policy.scan import Scanner

    consent = ConsentRegistry.open(consent_path(ctx.settings))
    scanner = Scanner(ctx.policy, consent, HttpKeySource(ctx.keys.url, ctx.keys.token))
    scanner.add_store(store)
    return scanner.finish()


def _reported(attack: str, report: ScanReport, kind: str, where: str, about: str = "") -> Result:
    """Pass when the scan reports a ``kind`` finding at a place containing ``where`` (and naming ``about``)."""
    found = [f for f in report.findings if f.kind == kind and where in f.where and about in f.detail]
    seen = f"{len(found)} finding(s)" + (f": {found[0].detail[:70]}" if found else "")
    return Result(attack, f"the audit scan reports it ({kind})", seen, bool(found))


def _stranger(ctx: Context, name: str) -> str:
    """A never-consented subject's pseudonym, minted the way the matcher names everybody (a live subject key)."""
    return ctx.vault.pseudonym(f"pax-redteam-{name}")


def pseudonymised_leak(ctx: Context) -> Result:
    ps, now = _stranger(ctx, "never-consented"), time.time()
    leak = Match(
        event_id="rt-leak",
        camera_id="cam-redteam",
        zone=ctx.zone,
        purpose="flow-analytics",
        captured_at=now,
        matched_at=now,
        decision="match",
        subject_id=ps,
        distance=0.3,
    )
    (where,) = asyncio.run(_produce(ctx.settings, t.MATCHES.name, encode(leak)))
    return _reported("match of a never-consented subject on the matches topic, by pseudonym", _scan(ctx), "non-consented", where)


def expired_embedding(ctx: Context) -> Result:
    """A producer that skips sealing: a plaintext embedding stays readable on the append-only sightings topic
    after its retention (the gate refuses it, but the log keeps it)."""
    age = ctx.policy.retention.sightings_s + 30
    s = ctx.sighting("rt-expired", ctx.faces[0], captured_at=time.time() - age)
    (where,) = asyncio.run(_produce(ctx.settings, t.SIGHTINGS.name, encode(s)))
    return _reported("plaintext embedding past its retention on the sightings topic", _scan(ctx), "expired-readable", where)


def stalled_matcher(ctx: Context) -> Result:
    """An admitted event the matcher never decides (the matcher is frozen): the scan's delivery accounting
    reports it lost once it is older than max_event_age_s; thawed, the matcher goes on deciding."""
    proc = ctx.stack.children["matcher"].proc
    if proc is None:
        return Result("admitted event never decided (matcher frozen)", "-", "no matcher process", False)
    age = ctx.policy.max_event_age_s + 5
    s = seal_sighting(ctx.ring, ctx.sighting("rt-lost", ctx.faces[3], captured_at=time.time() - age))
    proc.send_signal(signal.SIGSTOP)
    try:
        asyncio.run(_produce(ctx.settings, t.ADMITTED.name, encode(s)))
        report = _scan(ctx)
    finally:
        proc.send_signal(signal.SIGCONT)
    return _reported("admitted event never decided (matcher frozen)", report, "audit", t.ADMITTED.name, "rt-lost")


def unsealed_erasure(ctx: Context) -> Result:
    """An erasure request written in clear: it names its subject on the broker, where any reader can join the
    erased person to the pseudonymous records left there (the workers refuse it as unsigned)."""
    req = ErasureRequest(request_id="rt-unsealed", subject_id="pax-redteam-unsealed", requested_at=time.time())
    (where,) = asyncio.run(_produce(ctx.settings, t.ERASURES.name, encode(req)))
    return _reported("erasure request in clear on the erasure topic", _scan(ctx), "non-consented", where, "pax-redteam-unsealed")


def gallery_template(ctx: Context) -> Result:
    """A template of a never-consented person written into the gallery file past the consent check (a restored
    backup, a bulk import)."""
    path, subject = gallery_path(ctx.settings), "pax-redteam-gallery"
    g = Gallery.load(path, ctx.vault)
    g.subject_ids.append(subject)
    g.vectors = np.vstack([g.vectors, ctx.faces[4:5]])
    g.save(path, ctx.vault)
    return _reported("template of a never-consented person in the gallery file", _scan(ctx), "non-consented", "gallery", subject)


def stale_snapshot(ctx: Context) -> Result:
    """A matcher replica's snapshot that holds a never-consented subject's trajectory (a replica that was down
    when the erasure went by), by pseudonym."""
    from matcher import snapshot
    from matcher.service import MatcherState, snapshot_path, zone_map

    ps, now = _stranger(ctx, "snapshot"), time.time()
    state = MatcherState(600.0, zone_map(ctx.settings), 3600.0)
    m = Match(
        event_id="rt-snap",
        camera_id="cam-redteam",
        zone=ctx.zone,
        purpose=ctx.policy.purpose_for_zone(ctx.zone) or "",
        captured_at=now,
        matched_at=now,
        decision="match",
        subject_id=ps,
        distance=0.3,
    )
    state.apply(m)
    snapshot.write(snapshot_path(ctx.settings, "matcher-redteam"), state.to_snapshot([0]))
    return _reported("a replica's snapshot holding a never-consented trajectory", _scan(ctx), "non-consented", "matcher-redteam", ps)


def stray_export(ctx: Context) -> Result:
    """An export file under the state dir naming a never-consented subject (written past `audit export`'s check)."""
    from policy.export import exports_dir

    ps, out = _stranger(ctx, "export"), exports_dir(ctx.settings.state_dir) / "model-training-redteam.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"subject": ps, "captured_at": time.time(), "zone": ctx.zone, "purpose": "model-training"}) + "\n")
    return _reported("export file naming a never-consented subject", _scan(ctx), "non-consented", out.name, ps)


def logged_pseudonym(ctx: Context) -> Result:
    """A stage that logs the subject it decided: a never-consented subject's pseudonym in the matcher's log."""
    ps, log = _stranger(ctx, "log"), ctx.stack.children["matcher"].log_path
    with log.open("a") as f:
        f.write(json.dumps({"msg": "decided", "subject": ps}) + "\n")
    return _reported("never-consented subject's pseudonym in a stage's log", _scan(ctx), "non-consented", log.name, ps)


def stale_consent(ctx: Context) -> Result:
    """An ended consent kept past the accountability period (a registry nobody prunes)."""
    from policy.consent import ConsentRecord

    keep, now, subject = ctx.settings.retention.audit_s, time.time(), "pax-redteam-old-consent"
    reg = ConsentRegistry.open(consent_path(ctx.settings))
    reg.grant(ConsentRecord(subject, "flow-analytics", now - keep - 200, now - keep - 100))
    reg.close()
    return _reported("consent record ended longer ago than retention.audit_s", _scan(ctx), "expired-readable", f"consent:{subject}")


def stale_audit_reference(ctx: Context) -> Result:
    """A subject reference in an audit chain older than retention.audit_s, its key still alive (nothing cuts
    an append-only chain)."""
    from policy.audit import AuditLog

    ps, at = _stranger(ctx, "audit"), time.time() - ctx.settings.retention.audit_s - 60
    with AuditLog.in_state_dir(ctx.settings.state_dir, PLANTED_CHAIN) as audit:
        audit.append("identify", "allow", rule="purpose:any", subject_id=ps, at=at)
    return _reported("subject reference in an audit chain past retention.audit_s", _scan(ctx), "expired-readable", PLANTED_CHAIN, ps)


def metric_label(ctx: Context) -> Result:
    """A per-subject metric: a never-consented subject's pseudonym as a label value on a /metrics endpoint of
    the run, scanned with every stage's endpoint as `up --audit-scan` does."""
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    from policy.livestores import MetricsStore

    ps, registry = _stranger(ctx, "metric"), CollectorRegistry()
    Counter("paxsim_matcher_decided_by_subject_total", "per-subject", ["subject"], registry=registry).labels(ps).inc()
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    urls = {c.name: c.metrics_url for c in ctx.stack.children.values()}
    urls["matcher-redteam"] = f"http://127.0.0.1:{server.server_port}/metrics"
    try:
        subjects = ConsentRegistry.open(consent_path(ctx.settings)).subjects()
        report = _scan_live(ctx, MetricsStore.fetch(urls, subjects, time.time()))
    finally:
        server.shutdown()
        thread.join(5)
    return _reported("never-consented subject's pseudonym as a metric label", report, "non-consented", "matcher-redteam", ps)


def revoked_token(ctx: Context) -> Result:
    store = TokenStore(tokens_path(ctx.settings))
    token = store.issue("redteam-operator", "operator")
    with httpx.Client(base_url=ctx.dashboard, timeout=5) as api:
        before = api.get("/api/trajectories", headers={"Authorization": f"Bearer {token}"}).status_code
        TokenStore(tokens_path(ctx.settings)).revoke("redteam-operator")
        time.sleep(1.0)
        after = api.get("/api/trajectories", headers={"Authorization": f"Bearer {token}"}).status_code
    return Result(
        "revoked dashboard token, no restart", "refused within 1 s", f"{before} before, {after} after", before == 200 and after == 401
    )


def revoked_env_token(ctx: Context) -> Result:
    """A dashboard token from the environment (``PAXSIM_DASHBOARD_TOKENS``) is revoked through the token file,
    then its name is issued a new, smaller token: the environment token must stay dead."""
    name, token = ENV_TOKEN
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=ctx.dashboard, timeout=5) as api:
        before = api.get("/api/trajectories", headers=headers).status_code
        TokenStore(tokens_path(ctx.settings)).revoke(name)
        time.sleep(1.0)
        revoked = api.get("/api/trajectories", headers=headers).status_code
        TokenStore(tokens_path(ctx.settings)).issue(name, "auditor")
        time.sleep(1.0)
        reissued = api.get("/api/trajectories", headers=headers).status_code
    return Result(
        "environment dashboard token revoked, then its name issued again",
        "refused within 1 s, and still refused after the re-issue",
        f"{before} before, {revoked} revoked, {reissued} after the re-issue",
        (before, revoked, reissued) == (200, 401, 401),
    )


def re_roled_token(ctx: Context) -> Result:
    """An operator's token is re-issued under the same name as auditor: the old secret is dead at once and the
    new one has the auditor's rights only (no trajectories)."""
    store = TokenStore(tokens_path(ctx.settings))
    old = store.issue("redteam-reroled", "operator")
    new = store.issue("redteam-reroled", "auditor")
    time.sleep(1.0)
    with httpx.Client(base_url=ctx.dashboard, timeout=5) as api:
        codes = [api.get("/api/trajectories", headers={"Authorization": f"Bearer {tok}"}).status_code for tok in (old, new)]
    store.revoke("redteam-reroled")
    return Result(
        "dashboard token re-issued with another role",
        "old secret 401, new one 403 on trajectories",
        f"old {codes[0]}, new {codes[1]}",
        codes == [401, 403],
    )


def dashboard_memory_leak(ctx: Context) -> Result:
    """A track update for a never-consented subject's pseudonym reaches the dashboard, which keeps it in memory:
    the scanner reads the dashboard's state through its API and names the subject there."""
    from broker.messages import TrackUpdate
    from policy.livestores import DashboardStore

    stranger = "pax-redteam-in-dashboard"
    ps = ctx.vault.pseudonym(stranger)
    now = time.time()
    tu = TrackUpdate(event_id="rt-dash", subject_id=ps, camera_id="cam-redteam", zone=ctx.zone, prev_zone=None, at=now, captured_at=now)
    asyncio.run(_produce(ctx.settings, t.TRACKS.name, encode(tu)))
    store = TokenStore(tokens_path(ctx.settings))
    token = store.issue("redteam-scanner", "auditor")
    found: list = []
    deadline = time.monotonic() + ctx.wait_s
    try:
        while not found and time.monotonic() < deadline:
            time.sleep(0.5)
            report = _scan_live(ctx, DashboardStore.fetch(ctx.dashboard, token))
            found = [f for f in report.findings if stranger in f.detail and f.where.startswith("dashboard ")]
    finally:
        store.revoke("redteam-scanner")
    return Result(
        "trajectory of a never-consented subject held in the dashboard's memory (by pseudonym)",
        "the scan of the dashboard's state reports it",
        f"{len(found)} finding(s)",
        bool(found),
    )


def altered_audit(ctx: Context) -> Result:
    """One decision in the middle of a chain changed: audit verify must report that chain, at that record."""
    chains = sorted(audit_dir(ctx.settings.state_dir).glob("*.jsonl"))
    target = next((p for p in chains if p.stem != PLANTED_CHAIN and len(p.read_text().splitlines()) >= 2), None)
    if target is None:
        return Result("altered audit entry", "audit verify reports it", "no chain with 2 entries to alter", False)
    clean_before = verify(target).ok
    lines = target.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace('"allow"', '"deny"', 1) if '"allow"' in lines[0] else lines[0].replace('"deny"', '"allow"', 1)
    target.write_text("".join(lines))
    found = [p for p in verify(target).problems if p.kind == "changed" and p.line == 1]
    return Result(
        f"altered audit entry ({target.name}, line 1)",
        "audit verify reports that chain changed at that line",
        f"clean before={clean_before}; " + (str(found[0])[:90] if found else "not seen"),
        clean_before and bool(found),
    )


def edge_destroys_keys(ctx: Context) -> Result:
    """The edge's own credential asks the key holder, on every route there is, to destroy a subject key (POST, and
    the DELETE route that once took any credential), for raw subject keys, to resolve a pseudonym and to anchor
    the matcher's audit chain far ahead (which would lock every honest matcher checkpoint out)."""
    from urllib.parse import urlsplit

    from policy.crypto import KeyForbidden
    from policy.notary import CheckpointRefused

    edge = HttpKeySource(ctx.keys.url, ctx.keys.stage_token("edge"))
    subject = ctx.enrolled[0]
    refused = []
    for what, call in (
        ("destroy", lambda: edge.destroy_subject(subject)),
        ("keys", lambda: edge.subject_keys([subject], False)),
        ("resolve", lambda: edge.resolve_pseudonyms(["ps-x"])),
        ("checkpoint", lambda: edge.checkpoint("matcher", 10**9, "f" * 64)),
    ):
        try:
            call()
        except KeyForbidden:
            refused.append(what)
        except CheckpointRefused:  # past the credential check, stopped by the notary's own rules only
            pass
    u = urlsplit(ctx.keys.url)
    with httpx.Client(base_url=f"http://{u.hostname}:{u.port}", timeout=5) as c:
        code = c.delete(f"/v1/subject/{subject}", headers={"Authorization": f"Bearer {ctx.keys.stage_token('edge')}"}).status_code
    if code in (403, 405):
        refused.append("DELETE")
    alive = HttpKeySource(ctx.keys.url, ctx.keys.token).subject_keys([subject], create=False)
    return Result(
        "edge credential asks to destroy a subject key (POST, DELETE), for raw keys, to resolve, to anchor another chain",
        "refused by the key holder on every route; the key lives on",
        f"refused: {', '.join(refused) or 'nothing'} (DELETE {code}); key {'kept' if alive else 'GONE'}",
        refused == ["destroy", "keys", "resolve", "checkpoint", "DELETE"] and bool(alive),
    )


def replayed_sighting(ctx: Context) -> Result:
    """A sealed sighting that was decided is produced again, byte for byte."""
    s = seal_sighting(ctx.ring, ctx.sighting("rt-replay", ctx.faces[1]))
    asyncio.run(_produce(ctx.settings, t.SIGHTINGS.name, encode(s)))
    first = _decided(ctx, "rt-replay")
    asyncio.run(_produce(ctx.settings, t.SIGHTINGS.name, encode(s)))
    time.sleep(min(ctx.wait_s, 3.0))
    n = sum(1 for rec in asyncio.run(read_all(ctx.settings, t.MATCHES.name)) if decode(rec.value, Match).event_id == "rt-replay")
    return Result(
        "replayed sighting (same bytes again)", "decided once; the replay is skipped", f"{n} decision(s)", first is not None and n == 1
    )


def _checkpointed(ctx: Context) -> list[tuple[Path, int]]:
    """The stages' chain files with a key-holder checkpoint (their mirror had entries acknowledged), and that seq."""
    keys = HttpKeySource(ctx.keys.url, ctx.keys.token)
    deadline = time.monotonic() + ctx.wait_s
    while True:
        cps = {cp["chain"]: int(cp["seq"]) for cp in keys.checkpoints()["checkpoints"]}
        chains = sorted(p for p in audit_dir(ctx.settings.state_dir).glob("*.jsonl") if p.stem != PLANTED_CHAIN)
        found = [(p, cps[p.stem]) for p in chains if cps.get(p.stem, 0) >= 1]
        if len(found) >= 2 or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _anchored_problems(ctx: Context) -> list[str]:
    from policy.notary import verify_with

    reports, problems, _ = verify_with(audit_dir(ctx.settings.state_dir), HttpKeySource(ctx.keys.url, ctx.keys.token))
    return [f"{r.path.stem}: {p}" for r in reports for p in r.problems if p.kind == "anchor"] + [str(p) for p in problems]


def _head_seq(path: Path) -> int:
    from policy.audit import read_records

    return max((rec.seq for _n, rec, _raw in read_records(path) if rec is not None), default=0)


def cut_audit_tail(ctx: Context) -> Result:
    """The tail of a stage's chain is cut below its checkpoint, and the stage (honest, still running) regrows the
    chain past it with new decisions and mirrors it: the key holder must not move its anchor onto the regrown
    chain, and audit verify must still report the chain at the checkpointed seq."""
    chains = [(p, s) for p, s in _checkpointed(ctx) if p.stem in ("gate", "matcher")]
    if not chains:
        return Result("audit chain tail cut", "the key holder's checkpoint shows it", "no checkpointed stage chain", False)
    path, seq = chains[0]
    lines = path.read_bytes().splitlines(keepends=True)
    keep = [ln for ln in lines if b'"seq":' in ln and int(ln.split(b'"seq":', 1)[1].split(b",", 1)[0]) < seq]
    path.write_bytes(b"".join(keep))  # a valid, shorter chain: its hashes alone cannot show the cut
    deadline, n = time.monotonic() + ctx.wait_s, 0
    while _head_seq(path) <= seq + 1 and time.monotonic() < deadline:  # honest traffic: the writer regrows the chain
        n += 1
        s = seal_sighting(ctx.ring, ctx.sighting(f"rt-regrow-{n}", ctx.faces[n % len(ctx.faces)]))
        asyncio.run(_produce(ctx.settings, t.SIGHTINGS.name, encode(s)))
        time.sleep(0.3)
    time.sleep(2.5)  # two mirror ticks: the stage asks the key holder to countersign its regrown head
    regrown = _head_seq(path)
    found = [p for p in _anchored_problems(ctx) if p.startswith(f"{path.stem}: ") and f"anchored record seq {seq} " in p]
    return Result(
        f"audit chain tail cut before seq {seq} ({path.name}), regrown by its writer to seq {regrown}",
        "the key holder's checkpoint still shows it",
        "; ".join(found)[:120] or f"not seen (regrown to {regrown})",
        regrown > seq and bool(found),
    )


def deleted_audit_chain(ctx: Context) -> Result:
    chains = _checkpointed(ctx)
    if len(chains) < 2:
        return Result("audit chain file deleted", "the key holder's checkpoint shows it", "fewer than 2 checkpointed chains", False)
    path, _seq = chains[-1]
    path.unlink()
    found = [p for p in _anchored_problems(ctx) if f"{path.stem}: deleted" in p]
    return Result(
        f"audit chain file deleted ({path.name})", "the key holder's checkpoint shows it", "; ".join(found)[:120] or "not seen", bool(found)
    )


def still_deciding(ctx: Context) -> Result:
    s = seal_sighting(ctx.ring, ctx.sighting("rt-honest", ctx.faces[2]))
    asyncio.run(_produce(ctx.settings, t.SIGHTINGS.name, encode(s)))
    m = _decided(ctx, "rt-honest")
    ok = m is not None and all(ctx.stack.children[n].alive() for n in ("policy", "matcher", "dashboard"))
    return Result("an honest sealed sighting after every attack", "decided; every stage alive", m.decision if m else "not decided", ok)


@dataclass(frozen=True)
class Attack:
    """One check of the catalogue: what it runs, the defences (:data:`core.faults.DEFENCES`) it tests, and whether,
    with those defences off, it may stop a stage (such checks run last in a defences-off run)."""

    run: Callable[[Context], Result]
    defences: tuple[str, ...]
    stops_a_stage: bool = False


CATALOGUE: list[Attack] = [
    Attack(
        _poison("plaintext embedding on the sightings topic", t.SIGHTINGS.name, plaintext, "plaintext embedding refused"),
        ("gate.unsealed",),
    ),
    Attack(_poison("64-D embedding on the sightings topic", t.SIGHTINGS.name, wrong_dim_at_gate, "dim 64"), ("message.checks",), True),
    Attack(_poison("64-D embedding straight onto the admitted topic", t.ADMITTED.name, wrong_dim, "dim 64"), ("message.checks",), True),
    Attack(
        _poison("sealed sighting with a key id 10^5 epochs ahead", t.ADMITTED.name, far_future, "ahead of the current"), ("key-id.epoch",)
    ),
    Attack(
        _poison("key id whose epoch is a unicode digit (1²), through the gate", t.SIGHTINGS.name, unicode_digit_epoch, "malformed key id"),
        ("key-id.epoch", "record.isolation"),
        True,
    ),
    Attack(_poison("900 kB sealed payload", t.ADMITTED.name, oversized, "sealed payload"), ("message.checks",), True),
    Attack(forged_erasure, ("erasure.signature",)),
    Attack(pseudonymised_leak, ("scan.topics",)),
    Attack(expired_embedding, ("scan.topics",)),
    Attack(stalled_matcher, ("scan.delivery",)),
    Attack(unsealed_erasure, ("scan.topics",)),
    Attack(gallery_template, ("scan.stores",)),
    Attack(stale_snapshot, ("scan.stores",)),
    Attack(stray_export, ("scan.stores",)),
    Attack(logged_pseudonym, ("scan.stores",)),
    Attack(stale_consent, ("scan.stores",)),
    Attack(stale_audit_reference, ("scan.stores",)),
    Attack(metric_label, ("scan.stores",)),
    Attack(dashboard_memory_leak, ("scan.stores",)),
    Attack(revoked_token, ("dashboard.revocation",)),
    Attack(revoked_env_token, ("dashboard.revocation",)),
    Attack(re_roled_token, ("dashboard.revocation",)),
    Attack(edge_destroys_keys, ("keyd.permissions",)),
    Attack(replayed_sighting, ("matcher.dedupe",)),
    Attack(altered_audit, ("audit.hash",)),
    Attack(cut_audit_tail, ("audit.anchor",)),
    Attack(deleted_audit_chain, ("audit.anchor",)),
    # the stages alive and deciding after every attack: without record isolation, the unicode-digit key id stops the gate
    Attack(still_deciding, ("record.isolation", "key-id.epoch"), True),
]
ENV_TOKEN = ("redteam-env-operator", "rt-env-" + "0123456789abcdef" * 2)  # a dashboard token from the environment


def _start(settings: Settings, console: Console) -> tuple[EmbeddedBroker, KeydProcess, Context]:
    """On the caller's thread: children die with the thread that spawned them (PR_SET_PDEATHSIG)."""
    broker = asyncio.run(EmbeddedBroker(settings).start())
    tuned = settings.broker.model_copy(update={"bootstrap": broker.bootstrap, "profile": "embedded"})
    settings = settings.model_copy(update={"broker": tuned})  # the harness is a client of this broker too
    keys = spawn_keyd(policy_file(settings))
    source = HttpKeySource(keys.url, keys.token)
    vault = SubjectVault(source)
    enrol_scenario(settings, 10.0, vault=vault)
    ids, vecs, _purposes = VirtualAirport(settings.scenario, 10.0).enrolment()
    reg = ConsentRegistry.open(consent_path(settings))
    active = [(sid, v) for sid, v in zip(ids, vecs) if reg.has_any(sid, time.time())]
    reg.close()
    logs = Path(settings.state_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**child_env(settings, broker.bootstrap, True, keys), "PAXSIM_DASHBOARD_TOKENS": f"operator:{ENV_TOKEN[0]}:{ENV_TOKEN[1]}"}
    stack = Stack(logs, env, stage_env=keys.stage_env())
    start_consumers(stack, 60.0)
    dash = stack.children["dashboard"]
    if not stack.wait_ready("dashboard", 30):
        raise RuntimeError("the dashboard did not start")
    policy = load_policy(policy_file(settings))
    zone = next(z for z, r in policy.zones.items() if r.biometric and r.purpose and z != "egate")
    ring = EpochKeyRing(source, "sightings")
    ctx = Context(
        settings,
        stack,
        keys,
        ring,
        vault,
        [s for s, _ in active],
        np.stack([v for _, v in active]),
        zone,
        policy,
        f"http://127.0.0.1:{dash.metrics_port}",
    )
    console.print(f"stack up: broker {broker.bootstrap}, key holder, policy, matcher, dashboard; {len(active)} enrolled")
    return broker, keys, ctx


@contextlib.contextmanager
def _defences_off(names: set[str]) -> Iterator[None]:
    """Every process of the run (this one, the key holder, the stages) without the defences ``names``."""
    from core import faults

    saved = {k: os.environ.get(k) for k in (faults.ENV, faults.UNSAFE_ENV)}
    if names:
        os.environ[faults.ENV], os.environ[faults.UNSAFE_ENV] = ",".join(sorted(names)), "1"
    faults.reset()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        faults.reset()


def run_redteam(
    settings: Settings, console: Console, attacks: list[Attack] | None = None, wait_s: float = WAIT_S, defences_off: bool = False
) -> list[Result]:
    """Start the stack in ``settings.state_dir`` (emptied first), run ``attacks`` (default: the catalogue), stop.
    ``defences_off``: the same run with every defence these attacks test switched off (:mod:`core.faults`): a
    check that still passes then does not test its defence. Checks that may stop a stage without their defence
    run last, so that the others meet a live stack."""
    chosen = list(CATALOGUE if attacks is None else attacks)
    if defences_off:
        chosen.sort(key=lambda a: a.stops_a_stage)
    state = Path(settings.state_dir)
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    results: list[Result] = []
    with _defences_off({d for a in chosen for d in a.defences} if defences_off else set()):
        broker, keys, ctx = _start(settings, console)
        ctx.wait_s = wait_s
        try:
            for attack in chosen:
                try:
                    r = attack.run(ctx)
                except Exception as exc:  # noqa: BLE001  the harness failed (a stage down, an answer missing): that attack fails
                    r = Result(getattr(attack.run, "__name__", "attack"), "-", f"error: {exc!r}"[:120], False)
                results.append(r)
                console.print(f"{'[green]pass[/]' if r.passed else '[red]FAIL[/]'} {r.attack}")
        finally:
            ctx.stack.stop()
            keys.stop()
            asyncio.run(broker.stop())
    return results


def results_table(results: list[Result]) -> Table:
    table = Table("attack", "expected defence", "observed", "result", title="paxsim redteam")
    for r in results:
        table.add_row(r.attack, r.defence, r.observed, "[green]pass[/]" if r.passed else "[red]FAIL[/]")
    return table

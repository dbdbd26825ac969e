"""The dashboard API: tokens and roles guard identity data, every access is audited, erasure and TTL delete."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from broker import topics as t
from broker.messages import ErasureRequest, Match, TrackUpdate, encode
from core.config import Settings
from core.paths import gallery_path
from dashboard.app import create_app
from dashboard.auth import Role, TokenError, TokenStore
from matcher.gallery import Gallery
from policy.audit import audit_dir, read_records, verify
from policy.consent import ConsentRegistry, registry_path
from tests.dashboard.conftest import ADMIN, AUDITOR, OPERATOR, TOKENS

H = {role: {"Authorization": f"Bearer {tok}"} for role, tok in (("admin", ADMIN), ("operator", OPERATOR), ("auditor", AUDITOR))}
BAD = {"Authorization": "Bearer not-a-token-" + "x" * 20}

# endpoint → roles allowed (identity data or changes)
MATRIX = [
    ("GET", "/api/consent", None, {"admin", "auditor"}),
    ("GET", "/api/consent/pax-00001", None, {"admin", "auditor"}),
    ("POST", "/api/consent", {"subject_id": "pax-09999", "purpose": "boarding"}, {"admin"}),
    ("DELETE", "/api/consent/pax-00002", None, {"admin"}),
    ("GET", "/api/gallery/subjects", None, {"admin"}),
    ("DELETE", "/api/gallery/pax-00003", None, {"admin"}),
    ("POST", "/api/erasures", {"subject_id": "pax-00004"}, {"admin"}),
    ("GET", "/api/erasures", None, {"admin", "auditor"}),
    ("GET", "/api/trajectories", None, {"admin", "operator"}),
    ("GET", "/api/trajectories/pax-00001", None, {"admin", "operator"}),
    ("GET", "/api/audit", None, {"admin", "auditor"}),
    ("GET", "/api/audit/verify", None, {"admin", "auditor"}),
    ("POST", "/api/policy/validate", {"text": "label: x"}, {"admin", "operator"}),
    ("GET", "/api/policy", None, {"admin", "operator", "auditor"}),
    ("GET", "/api/gallery", None, {"admin", "operator", "auditor"}),
    ("GET", "/api/state/refs", None, {"admin", "auditor"}),
]


def _seed(settings: Settings) -> None:
    """Consent + gallery for pax-00001..4 (no real faces: random unit vectors)."""
    sd = Path(settings.state_dir)
    sd.mkdir(parents=True, exist_ok=True)
    reg = ConsentRegistry.open(registry_path(sd))
    rng = np.random.default_rng(1)
    g = Gallery()
    for i in range(1, 5):
        sid = f"pax-{i:05d}"
        reg.consent(sid, "flow-analytics")
        reg.consent(sid, "boarding")
        v = rng.normal(size=128).astype(np.float32)
        g.enrol(sid, v / np.linalg.norm(v), reg)
    g.save(gallery_path(settings))
    reg.close()


def _track(sid: str, zone: str, prev: str | None, at: float, n: int) -> bytes:
    return encode(
        TrackUpdate(event_id=f"ev-{sid}-{n}", subject_id=sid, camera_id="cam-001", zone=zone, prev_zone=prev, at=at, captured_at=at)
    )


@pytest.fixture
def client(settings: Settings):
    _seed(settings)
    app = create_app(settings, {"PAXSIM_DASHBOARD_TOKENS": TOKENS}, background=False)
    with TestClient(app) as c:
        view = app.state.services.view
        now = time.time()
        view.apply(t.TRACKS.name, _track("pax-00001", "security", None, now - 5, 1), now)
        view.apply(t.TRACKS.name, _track("pax-00001", "gate", "security", now - 2, 2), now)
        view.apply(
            t.MATCHES.name,
            encode(
                Match(
                    event_id="ev-pax-00001-2",
                    camera_id="cam-001",
                    zone="gate",
                    purpose="boarding",
                    captured_at=now - 2,
                    matched_at=now - 1.9,
                    decision="match",
                    subject_id="pax-00001",
                )
            ),
            now,
        )
        yield c


@pytest.mark.parametrize("method,path,body,allowed", MATRIX, ids=[f"{m} {p}" for m, p, _b, _a in MATRIX])
def test_identity_endpoints_need_a_token_and_the_right_role(client: TestClient, method: str, path: str, body, allowed: set[str]):
    kw = {"json": body} if body is not None else {}
    assert client.request(method, path, **kw).status_code == 401
    assert client.request(method, path, headers=BAD, **kw).status_code == 401
    for role in ("admin", "operator", "auditor"):
        r = client.request(method, path, headers=H[role], **kw)
        if role in allowed:
            assert r.status_code < 400 or r.status_code == 404, (role, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code, r.text)
            assert "pax-" not in r.text  # a refusal never carries identity data


def test_every_identity_access_and_refusal_is_audited(client: TestClient, settings: Settings):
    assert client.get("/api/trajectories/pax-00001", headers=H["operator"]).status_code == 200
    assert client.get("/api/trajectories/pax-00001", headers=H["auditor"]).status_code == 403
    assert client.get("/api/trajectories/pax-00001").status_code == 401
    assert client.get("/api/consent/pax-00001", headers=H["auditor"]).status_code == 200
    path = audit_dir(settings.state_dir) / "dashboard-api.jsonl"
    recs = [r for _l, r, _raw in read_records(path)]
    got = [(r.actor, r.action, r.decision, r.subject_id) for r in recs]
    assert ("api:olga", "api.trajectories.read", "allow", "pax-00001") in got
    assert ("api:aude", "api.trajectories.read", "deny", None) in got
    assert ("api:anonymous", "api.trajectories.read", "deny", None) in got
    assert ("api:aude", "api.consent.read", "allow", "pax-00001") in got
    assert verify(path).ok
    # the auditor can read the chain back through the API, and that read is audited too
    body = client.get("/api/audit", headers=H["auditor"]).json()
    assert body["tail"][-1]["action"] == "api.audit.read" and body["tail"][-1]["actor"] == "api:aude"


def test_aggregates_carry_no_identity(client: TestClient):
    ps = "ps-" + "ab" * 12  # a keyed run stores trajectories under pseudonyms: they must not surface either
    now = time.time()
    client.app.state.services.view.apply(t.TRACKS.name, _track(ps, "gate", "security", now, 9), now)  # type: ignore[attr-defined]
    for path in ("/api/summary", "/api/panels", "/healthz", "/metrics"):
        r = client.get(path)
        assert r.status_code == 200
        assert "pax-" not in r.text and ps not in r.text, path
    panels = client.get("/api/panels").json()
    assert panels["decisions"] == {"match": 1}
    assert panels["zones"]["flows"] == [{"from": "security", "to": "gate", "n": 2}]
    stream = client.get("/api/stream?count=1").text
    assert "pax-" not in stream and ps not in stream


def test_trajectory_read_then_erasure_deletes_it_everywhere_we_hold_it(client: TestClient, settings: Settings):
    traj = client.get("/api/trajectories/pax-00001", headers=H["operator"]).json()
    assert [v["zone"] for v in traj] == ["security", "gate"]
    assert [v["purpose"] for v in traj] == ["flow-analytics", "boarding"]
    r = client.post("/api/erasures", json={"subject_id": "pax-00001"}, headers=H["admin"])
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["templates_removed"] == 1 and out["dashboard_points_removed"] == 2
    assert client.get("/api/trajectories/pax-00001", headers=H["operator"]).status_code == 404
    assert "pax-00001" not in Gallery.load(gallery_path(settings)).subjects()
    reg = ConsentRegistry.open(registry_path(settings.state_dir))
    assert not reg.has_any("pax-00001", time.time())
    assert [e.request_id for e in reg.pending_erasures()] == [out["request_id"]]  # queued for the erasure topic
    reg.close()
    listed = client.get("/api/erasures", headers=H["auditor"]).json()
    assert listed[0]["subject_id"] == "pax-00001" and listed[0]["applied_in_dashboard_s"] is not None
    # a stale track update (captured before the erasure) arriving later is not stored again
    view = client.app.state.services.view
    view.apply(t.TRACKS.name, _track("pax-00001", "egate", "gate", time.time() - 1, 3))
    assert view.trajectory("pax-00001") == []
    # the same request read back from the erasure topic is applied once
    view.apply(
        t.ERASURES.name, encode(ErasureRequest(request_id=out["request_id"], subject_id="pax-00001", requested_at=out["requested_at"]))
    )
    assert client.get("/api/panels").json()["erasure"]["applied"] == 1


def test_points_past_their_purpose_ttl_are_deleted(client: TestClient):
    view = client.app.state.services.view
    now = time.time()
    view.apply(t.TRACKS.name, _track("pax-00002", "egate", None, now - 601, 1), now)  # egate-verification TTL is 600 s
    view.apply(t.TRACKS.name, _track("pax-00002", "gate", "egate", now - 10, 2), now)
    ret = view.expire(now)
    assert [v.zone for v in view.trajectory("pax-00002")] == ["gate"]
    assert ret["egate-verification"]["points"] == 0
    assert ret["boarding"]["oldest_age_s"] == pytest.approx(10, abs=0.5)
    assert ret["boarding"]["ttl_s"] == 3600


def test_consent_grant_is_validated_against_the_policy(client: TestClient):
    r = client.post("/api/consent", json={"subject_id": "pax-00009", "purpose": "boardng"}, headers=H["admin"])
    assert r.status_code == 422 and "boarding" in r.text
    r = client.post("/api/consent", json={"subject_id": "pax-00009", "purpose": "boarding", "zones": ["mars"]}, headers=H["admin"])
    assert r.status_code == 422
    r = client.post("/api/consent", json={"subject_id": "pax-00009", "purpose": "boarding", "ttl_s": 60}, headers=H["admin"])
    assert r.status_code == 201 and r.json()["status"] == "active"
    assert client.delete("/api/consent/pax-00009", headers=H["admin"]).status_code == 200
    assert client.delete("/api/consent/pax-00009", headers=H["admin"]).status_code == 404  # nothing left to withdraw


def test_policy_validation_reports_lines(client: TestClient):
    r = client.post(
        "/api/policy/validate", json={"text": "label: ok\nzones:\n  egate: {biometric: true, purpose: nope}\n"}, headers=H["operator"]
    )
    body = r.json()
    assert body["valid"] is False and body["issues"][0]["line"] == 3
    ok = client.post("/api/policy/validate", json={"text": "label: fine\n"}, headers=H["operator"]).json()
    assert ok["valid"] and ok["version"].startswith("fine@")


def test_token_store_keeps_only_scrypt_hashes_and_tokens_expire(tmp_path: Path):
    clock = [1_000_000.0]
    store = TokenStore(tmp_path / "tokens.json", clock=lambda: clock[0])
    tok = store.issue("carol", Role.auditor)
    text = (tmp_path / "tokens.json").read_text()
    tid, secret = tok.split(".")
    (row,) = json.loads(text)
    assert secret not in text and "carol" in text and row["id"] == tid and len(row["scrypt"]) == 64 and len(row["salt"]) == 32
    assert "sha256" not in row and (tmp_path / "tokens.json").stat().st_mode & 0o077 == 0
    assert row["expires_at"] == clock[0] + 90 * 86_400  # every issued token has a lifetime
    assert store.authenticate(tok).role is Role.auditor
    assert store.authenticate(f"{tid}.{'x' * len(secret)}") is None  # the right id, a wrong secret
    clock[0] += 90 * 86_400 + 1
    assert store.authenticate(tok) is None, "an expired token still authenticates"
    assert store.principals() == []
    short = store.issue("dora", "operator", ttl_s=60.0)
    assert store.authenticate(short).name == "dora"
    clock[0] += 61
    assert store.authenticate(short) is None
    clock[0] = time.time()  # the stores below run on the real clock
    tok = store.issue("carol", Role.auditor)
    again = TokenStore(tmp_path / "tokens.json")
    assert again.authenticate(tok).role is Role.auditor
    assert again.authenticate(tok + "x") is None
    assert again.revoke("carol") == 1 and TokenStore(tmp_path / "tokens.json").authenticate(tok) is None
    with pytest.raises(TokenError):
        TokenStore.from_env(None, {"PAXSIM_DASHBOARD_TOKENS": "root:eve:" + "z" * 20})
    env_store = TokenStore.from_env(tmp_path / "t2.json", {"PAXSIM_DASHBOARD_TOKENS": "admin:dan:" + "d" * 20})
    env_store.issue("erin", "operator")
    assert "dan" not in (tmp_path / "t2.json").read_text()  # tokens from the environment are never written down
    assert json.loads((tmp_path / "t2.json").read_text())[0]["name"] == "erin"


def test_a_bare_sha256_row_in_the_token_file_is_no_credential(tmp_path: Path):
    """Anybody who can write the token file could add an unsalted sha256 row of a token of their own choosing:
    such rows are ignored (issued tokens are scrypt rows), so writing the file is not being admin."""
    import hashlib

    path = tmp_path / "tokens.json"
    store = TokenStore(path)
    store.issue("carol", Role.auditor)
    forged = "f" * 40
    rows = json.loads(path.read_text()) + [{"name": "mallory", "role": "admin", "sha256": hashlib.sha256(forged.encode()).hexdigest()}]
    path.write_text(json.dumps(rows))
    assert store.authenticate(forged) is None and TokenStore(path).authenticate(forged) is None
    assert "mallory" not in {p.name for p in TokenStore(path).principals()}


def test_issuing_a_revoked_name_again_does_not_revive_its_environment_token(tmp_path: Path):
    env_token = "e" * 24
    store = TokenStore.from_env(tmp_path / "tokens.json", {"PAXSIM_DASHBOARD_TOKENS": f"admin:erin:{env_token}"})
    assert store.authenticate(env_token).role is Role.admin
    assert store.revoke("erin") == 1 and store.authenticate(env_token) is None
    new = store.issue("erin", Role.operator)  # the name again, with a smaller role
    assert store.authenticate(new).role is Role.operator
    assert store.authenticate(env_token) is None, "the revoked environment token (admin) came back with the name"
    # and after a restart, which reads the environment again
    again = TokenStore.from_env(tmp_path / "tokens.json", {"PAXSIM_DASHBOARD_TOKENS": f"admin:erin:{env_token}"})
    assert again.authenticate(env_token) is None and again.authenticate(new).role is Role.operator
    # revoked and re-issued by another process (the CLI) that never saw the environment: the dashboard still refuses
    served = TokenStore.from_env(tmp_path / "t2.json", {"PAXSIM_DASHBOARD_TOKENS": f"admin:finn:{env_token}"})
    assert served.authenticate(env_token).role is Role.admin
    TokenStore(tmp_path / "t2.json").revoke("finn")
    newer = TokenStore(tmp_path / "t2.json").issue("finn", Role.auditor)
    assert served.authenticate(env_token) is None and served.authenticate(newer).role is Role.auditor


def test_an_erasure_through_the_api_removes_trajectories_stored_under_the_pseudonym(settings: Settings, keys, monkeypatch):
    """With a key holder the matcher names subjects by pseudonym: the API's erasure must find those points, and the
    topic's later copy of the same request (which carries the pseudonym) must not be skipped as a duplicate."""
    from policy.crypto import HttpKeySource, SubjectVault

    _seed(settings)
    for k, v in keys.env.items():
        monkeypatch.setenv(k, v)
    ps = SubjectVault(HttpKeySource(keys.url, keys.token)).pseudonym("pax-00001")
    app = create_app(settings, {"PAXSIM_DASHBOARD_TOKENS": TOKENS}, background=False)
    with TestClient(app) as c:
        view = app.state.services.view
        now = time.time()
        view.apply(t.TRACKS.name, _track(ps, "security", None, now - 5, 1), now)
        view.apply(t.TRACKS.name, _track(ps, "gate", "security", now - 2, 2), now)
        assert len(c.get(f"/api/trajectories/{ps}", headers=H["operator"]).json()) == 2
        r = c.post("/api/erasures", json={"subject_id": "pax-00001"}, headers=H["admin"])
        assert r.status_code == 202, r.text
        assert c.get(f"/api/trajectories/{ps}", headers=H["operator"]).status_code == 404, "the pseudonymised points survived"
        # a point under the pseudonym captured before the erasure, arriving late from the topic, is not stored again
        view.apply(t.TRACKS.name, _track(ps, "concourse", "gate", now - 1, 3), now)
        assert c.get(f"/api/trajectories/{ps}", headers=H["operator"]).status_code == 404


def test_an_erasure_without_consent_to_withdraw_is_durable_before_the_202(settings: Settings):
    """Accepted means on disk: a dashboard killed right after the 202 still publishes it on its next start."""
    _seed(settings)
    app = create_app(settings, {"PAXSIM_DASHBOARD_TOKENS": TOKENS}, background=False)
    with TestClient(app) as c:
        r = c.post("/api/erasures", json={"subject_id": "pax-07777"}, headers=H["admin"])  # never consented
        assert r.status_code == 202, r.text
    # another process (the gate's publisher, or the restarted dashboard) sees it in the registry's outbox
    reg = ConsentRegistry.open(registry_path(settings.state_dir))
    assert [e.subject_id for e in reg.pending_erasures()] == ["pax-07777"]


def test_tokens_issued_revoked_or_re_roled_elsewhere_take_effect_without_a_restart(settings: Settings, tmp_path: Path):
    """``paxsim dashboard-token`` runs in another process and writes the file; the running dashboard follows it."""
    from dashboard.services import tokens_path

    _seed(settings)
    app = create_app(settings, {"PAXSIM_DASHBOARD_TOKENS": "admin:env-admin:" + "e" * 24}, background=False)
    with TestClient(app) as c:
        cli = TokenStore(tokens_path(settings))  # what the CLI does, in its own process
        tok = cli.issue("carol", "operator")
        assert c.get("/api/trajectories", headers={"Authorization": f"Bearer {tok}"}).status_code == 200
        assert c.get("/api/audit", headers={"Authorization": f"Bearer {tok}"}).status_code == 403
        new = TokenStore(tokens_path(settings)).issue("carol", "auditor")  # re-roled: the old token is gone
        assert c.get("/api/trajectories", headers={"Authorization": f"Bearer {tok}"}).status_code == 401
        assert c.get("/api/audit", headers={"Authorization": f"Bearer {new}"}).status_code == 200
        assert TokenStore(tokens_path(settings)).revoke("carol") == 1
        assert c.get("/api/audit", headers={"Authorization": f"Bearer {new}"}).status_code == 401
        # an environment token can be revoked too (the file keeps the revocation)
        env = {"Authorization": "Bearer " + "e" * 24}
        assert c.get("/api/audit", headers=env).status_code == 200
        TokenStore(tokens_path(settings)).revoke("env-admin")
        assert c.get("/api/audit", headers=env).status_code == 401


# bad-token requests from one client (about 4-9 ms each through the test client); PAXSIM_TEST_FLOOD=10000 for the full flood
FLOOD = int(os.environ.get("PAXSIM_TEST_FLOOD", "200"))


def test_a_flood_of_bad_tokens_is_throttled_and_leaves_the_audit_bounded(settings: Settings):
    _seed(settings)
    app = create_app(settings, {"PAXSIM_DASHBOARD_TOKENS": TOKENS}, background=False)
    with TestClient(app) as c:
        services = app.state.services
        bucket = services.failed_auth
        now = [1000.0]
        bucket.clock = lambda: now[0]  # the bucket's own clock: what it refills does not depend on the host's speed
        codes = Counter(c.get("/api/trajectories", headers=BAD).status_code for _ in range(FLOOD))
        assert codes == {401: bucket.burst, 429: FLOOD - bucket.burst}, codes  # the burst, then 429 for the rest
        # a valid token still works from the same client: throttling costs only failed attempts
        assert c.get("/api/trajectories", headers=H["operator"]).status_code == 200
        r = c.get("/api/audit", headers=BAD)
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        now[0] += 2 / bucket.rate + 0.01  # time for two more failures
        assert [c.get("/api/audit", headers=BAD).status_code for _ in range(3)] == [401, 401, 429]
    records = [rec for _n, rec, _raw in read_records(audit_dir(settings.state_dir) / "dashboard-api.jsonl") if rec is not None]
    denials = [rec for rec in records if rec.decision == "deny" and rec.rule.startswith("unauthenticated")]
    # one audit record per client per window, whatever the rate: the flood and what followed fit in one window
    assert now[0] - 1000.0 < bucket.audit_every_s and len(denials) == 1, [rec.rule for rec in denials]
    assert (audit_dir(settings.state_dir) / "dashboard-api.jsonl").stat().st_size < 20_000  # the disk: a few lines
    assert len(services.audit_out) <= 4, "every refusal queued a Kafka audit message"


def test_guesses_at_a_stored_token_id_stop_costing_scrypt_once_the_client_is_throttled(settings: Settings, monkeypatch):
    """Stored tokens are checked with scrypt (tens of ms): a flood of wrong secrets for a real token id must not
    buy that many scrypt runs; the holder's own, already verified token keeps working meanwhile."""
    import dashboard.auth as auth

    _seed(settings)
    app = create_app(settings, {"PAXSIM_DASHBOARD_TOKENS": TOKENS}, background=False)
    runs = [0]
    real = auth._scrypt

    def counted(secret: str, salt: bytes) -> str:
        runs[0] += 1
        return real(secret, salt)

    monkeypatch.setattr(auth, "_scrypt", counted)
    with TestClient(app) as c:
        services = app.state.services
        token = services.tokens.issue("gina", "operator")  # scrypt once to store it
        assert c.get("/api/trajectories", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        tid = token.split(".")[0]
        before = runs[0]
        guess = {"Authorization": f"Bearer {tid}.{'g' * 32}"}
        codes = Counter(c.get("/api/trajectories", headers=guess).status_code for _ in range(300))
        assert c.get("/api/trajectories", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert set(codes) == {401, 429} and codes[429] > 250, codes
    assert runs[0] - before <= services.failed_auth.burst + 5, f"{runs[0] - before} scrypt runs for 300 guesses"


def test_the_scanner_reads_the_dashboards_memory_and_resolves_its_pseudonyms(settings: Settings, keys, monkeypatch):
    """The dashboard keeps trajectories in memory, under pseudonyms when the run has keys. A withdrawn subject's
    points that arrived from the tracks topic are found through the authenticated state endpoint; an erased
    subject's pseudonym counts as unlinkable, not as a finding."""
    from policy.crypto import HttpKeySource, SubjectVault
    from policy.livestores import DashboardStore
    from policy.policyfile import load_policy
    from policy.scan import Scanner

    _seed(settings)
    for k, v in keys.env.items():
        monkeypatch.setenv(k, v)
    source = HttpKeySource(keys.url, keys.token)
    vault = SubjectVault(source)
    kept, withdrawn, erased = (vault.pseudonym(f"pax-{i:05d}") for i in (1, 2, 3))
    app = create_app(settings, {"PAXSIM_DASHBOARD_TOKENS": TOKENS}, background=False)
    with TestClient(app) as c:
        view = app.state.services.view
        now = time.time()
        for n, ps in enumerate((kept, withdrawn, erased)):  # captured now: after the consent _seed granted
            view.apply(t.TRACKS.name, _track(ps, "security", None, now, n), now)
        reg = ConsentRegistry.open(registry_path(settings.state_dir))
        reg.withdraw("pax-00002")  # its points are still in the dashboard's memory: the leak to find
        vault.erase("pax-00003")  # key destroyed: the points left name nobody any more
        assert c.get("/api/state/refs", headers=H["operator"]).status_code == 403  # operators read trajectories, not this
        store = DashboardStore.fetch("", AUDITOR, http=c)
        scanner = Scanner(load_policy(), ConsentRegistry.open(registry_path(settings.state_dir)), source)
        scanner.add_store(store)
        report = scanner.finish()
    found = [f for f in report.findings if f.kind == "non-consented"]
    assert len(found) == 1 and "pax-00002" in found[0].detail and withdrawn in found[0].where, [f.detail[:90] for f in found]
    assert report.records["live:dashboard"] == 3 and report.unlinkable == 1


def test_trajectory_reads_while_the_feed_writes_never_answer_500(client: TestClient):
    """API endpoints run in the thread pool while the feed folds records in on the event loop: reads must see a
    consistent view (no 'dictionary changed size during iteration')."""
    import threading

    view = client.app.state.services.view  # type: ignore[attr-defined]
    stop = threading.Event()

    def feed() -> None:
        n = 0
        while not stop.is_set():
            now = time.time()
            view.apply(t.TRACKS.name, _track(f"pax-{10000 + n % 3000:05d}", "gate", "security", now - 1, n), now)
            if n % 3000 == 2999:
                view.expire(now + 1e6)  # drops every point: the dict shrinks under the readers
            n += 1
            time.sleep(0.0002)  # leave the readers the GIL now and then

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        codes = Counter(client.get("/api/trajectories", headers=H["operator"]).status_code for _ in range(60))
        codes += Counter(client.get("/api/state/refs", headers=H["auditor"]).status_code for _ in range(30))
    finally:
        stop.set()
        writer.join()
    assert set(codes) == {200}, codes

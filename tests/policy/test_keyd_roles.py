"""Least privilege at the key holder: each stage has its own credential, and each credential only what that
stage needs (policy.keyd.PERMISSIONS). An edge credential seals to public keys and can open no sighting, nor
destroy keys, resolve pseudonyms or reach the control class; a stranger's token gets nothing."""

from __future__ import annotations

import os
import stat
import time

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from policy.crypto import (
    EpochKeyRing,
    HttpKeySource,
    KeyForbidden,
    KeyUnavailable,
    PublicKeyRing,
    SubjectVault,
    open_sighting,
    seal_sighting,
)
from policy.keyd import STAGE_ROLES, TOKEN_ENV, TOKEN_FILE_ENV, spawn_keyd
from tests.policy.test_crypto import sighting


def test_each_stage_credential_gets_only_what_its_stage_needs():
    keyd = spawn_keyd()
    try:
        admin = HttpKeySource(keyd.url, keyd.token)
        ps = SubjectVault(admin).pseudonym("pax-1")  # enrolment (admin) made the subject's key
        envs = keyd.stage_env()
        assert set(envs) == set(STAGE_ROLES) and len({keyd.stage_token(c) for c in STAGE_ROLES} | {keyd.token}) == 5
        # each stage's credential is a 0600 file its environment names: never the token itself (/proc/PID/environ)
        for env in envs.values():
            assert TOKEN_ENV not in env and stat.S_IMODE(os.stat(env[TOKEN_FILE_ENV]).st_mode) == 0o600
        edge = HttpKeySource.from_env(envs["edge"])
        matcher = HttpKeySource.from_env(envs["matcher"])
        dashboard = HttpKeySource.from_env(envs["dashboard"])

        sealed = seal_sighting(PublicKeyRing(edge), sighting(time.time()))  # the edge seals, to public keys only
        assert sealed.sealed and open_sighting(EpochKeyRing(matcher), sealed).vector().shape == (128,)  # the matcher opens
        gate = HttpKeySource.from_env(envs["policy"])
        kid, template = SubjectVault(matcher).seal("pax-1", b"template")  # a gallery template, sealed per subject
        for namer in (gate, dashboard):  # pseudonym keys: the same pseudonyms, and not one template opened
            named = SubjectVault(namer, pseudonyms_only=True)
            assert named.pseudonym("pax-1") == ps and named.existing_pseudonym("pax-9") is None
            with pytest.raises(KeyForbidden):
                named.open("pax-1", kid, template)
            ((_kid, pkey),) = namer.pseudonym_keys(["pax-1"], False).values()
            with pytest.raises(InvalidTag):  # nor by using the pseudonym key as if it were the subject key
                AESGCM(pkey).decrypt(template[:12], template[12:], kid.encode())
        assert SubjectVault(matcher).open("pax-1", kid, template) == b"template"
        for call in (
            lambda: edge.subject_keys(["pax-1"], False),  # e-gate claims are sealed with the face: no subject key
            lambda: edge.pseudonym_keys(["pax-1"], False),
            lambda: gate.subject_keys(["pax-1"], False),
            lambda: dashboard.subject_keys(["pax-1"], False),
            lambda: edge.chain("sightings"),  # so it cannot open a sighting, its own included
            lambda: edge.destroy_subject("pax-1"),
            lambda: edge.resolve_pseudonyms([ps]),
            lambda: edge.chain("control"),
            lambda: edge.chain("tracklets"),
            lambda: edge.checkpoints(),
            lambda: dashboard.destroy_subject("pax-1"),
            lambda: dashboard.chain("sightings"),
            lambda: matcher.resolve_pseudonyms([ps]),
        ):
            with pytest.raises(KeyForbidden, match="may not"):
                call()
        assert admin.resolve_pseudonyms([ps]) == {ps: "pax-1"}  # nothing was destroyed by the refused calls
        assert matcher.destroy_subject("pax-1")  # the matcher applies erasures
        with pytest.raises(KeyUnavailable, match="401"):
            HttpKeySource(keyd.url, "x" * 43).chain("sightings")
    finally:
        keyd.stop()


def test_the_key_holder_reads_one_credential_file_per_role_as_compose_mounts_them(tmp_path):
    """deploy/docker-compose.yml: the admin token and each role's in its own file (PAXSIM_KEYD_TOKEN_FILE,
    PAXSIM_KEYD_ROLE_TOKEN_FILES), nothing in the environment."""
    import json
    import secrets
    import subprocess
    import sys

    from policy.keyd import PERMISSIONS, ROLE_TOKEN_FILES_ENV

    tokens = {role: secrets.token_urlsafe(32) for role in PERMISSIONS}
    for role, token in tokens.items():
        (tmp_path / role).write_text(token + "\n")
    roles = ",".join(f"{r}:{tmp_path / r}" for r in PERMISSIONS if r != "admin")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAXSIM_KEYD")}
    env |= {TOKEN_FILE_ENV: str(tmp_path / "admin"), ROLE_TOKEN_FILES_ENV: roles}
    proc = subprocess.Popen([sys.executable, "-m", "policy.keyd"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]  # type: ignore[union-attr]
        assert {role: HttpKeySource(url, token).whoami() for role, token in tokens.items()} == {r: r for r in PERMISSIONS}
    finally:
        proc.terminate()
        proc.wait(10)


def test_erasure_requests_are_signed_for_the_issuing_role_and_nothing_else_verifies():
    """Only the roles that publish the consent outbox (gate, dashboard) get a signature, in their own name; a
    matcher holds the control key but cannot issue; a request altered after signing, unsigned, or carrying a
    signature made for another request is refused by every verifier."""
    import msgspec

    from broker.messages import ErasureRequest
    from policy.crypto import SealError
    from policy.erasure import for_the_topic, open_request

    keyd = spawn_keyd()
    try:
        envs = keyd.stage_env()
        gate = HttpKeySource.from_env(envs["policy"])
        matcher = HttpKeySource.from_env(envs["matcher"])
        req = ErasureRequest(request_id="r-1", subject_id="pax-1", requested_at=time.time())
        wire = for_the_topic(req, None, EpochKeyRing(gate, "control", background=False))
        assert wire.issuer == "gate" and len(wire.signature) == 64 and wire.sealed and not wire.subject_id
        verifier = EpochKeyRing(matcher, "control", background=False)
        assert open_request(wire, verifier).subject_id == "pax-1"  # the matcher verifies and opens
        with pytest.raises(KeyForbidden, match="may not issue"):
            matcher.sign_control(b"anything")
        other = for_the_topic(msgspec.structs.replace(req, request_id="r-2"), None, EpochKeyRing(gate, "control", background=False))
        for forged in (
            msgspec.structs.replace(wire, reason="altered"),  # changed after signing
            msgspec.structs.replace(wire, issuer="admin"),  # claims another issuer
            msgspec.structs.replace(wire, issuer="", signature=b""),  # unsigned
            msgspec.structs.replace(wire, signature=other.signature),  # a real signature, of another request
        ):
            with pytest.raises(SealError):
                open_request(forged, verifier)
    finally:
        keyd.stop()


def test_no_route_but_the_guarded_one_destroys_a_key():
    """A subject key is destroyed only through POST /v1/subjects/destroy with the ``destroy`` right: every other
    method on any path (the old DELETE /v1/subject/<id> took any valid credential) is 405 and changes nothing."""
    import http.client
    from urllib.parse import urlsplit

    keyd = spawn_keyd()
    try:
        admin = HttpKeySource(keyd.url, keyd.token)
        ps = SubjectVault(admin).pseudonym("pax-1")
        edge_token = keyd.stage_token("edge")
        u = urlsplit(keyd.url)
        for method in ("DELETE", "PUT", "PATCH", "OPTIONS"):
            for path in ("/v1/subject/pax-1", "/v1/subject/pax-never-enrolled", "/v1/subjects/destroy"):
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
                conn.request(method, path, body=b'{"id": "pax-1"}', headers={"Authorization": f"Bearer {edge_token}"})
                status = conn.getresponse().status
                conn.close()
                assert status == 405, (method, path, status)
        assert admin.resolve_pseudonyms([ps]) == {ps: "pax-1"}, "a key was destroyed by an unguarded route"
        # an id that never had a key was not tombstoned either: it can still be enrolled
        assert SubjectVault(admin).pseudonym("pax-never-enrolled").startswith("ps-")
        edge = HttpKeySource.from_env(keyd.stage_env()["edge"])
        with pytest.raises(KeyForbidden, match="may not destroy"):
            edge.destroy_subject("pax-1")
    finally:
        keyd.stop()

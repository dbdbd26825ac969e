"""Hostile requests as a class against the key holder: any method, path, header and body, with any credential
or none, gets an answer below 500 (or a closed connection for a body it will not read), changes no key it
may not change, and the holder keeps serving. ``PAXSIM_HYPOTHESIS_EXAMPLES`` runs longer on demand."""

from __future__ import annotations

import http.client
import json
import os
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy.crypto import KeyHolder, LocalKeySource, SubjectVault, new_token
from policy.keyd import PERMISSIONS, KeyServer, key_classes
from policy.policyfile import load_policy

PATHS = [
    "/healthz",
    "/metrics",
    "/v1/whoami",
    "/v1/chain/sightings",
    "/v1/chain/sightings/public",
    "/v1/chain/control",
    "/v1/control/key",
    "/v1/control/sign",
    "/v1/subjects",
    "/v1/subjects/pseudonym-keys",
    "/v1/subjects/destroy",
    "/v1/subject/pax-1",
    "/v1/pseudonyms/resolve",
    "/v1/audit/checkpoint",
    "/v1/audit/checkpoints",
]
POSTS = [p for p in PATHS if p.startswith(("/v1/subjects", "/v1/control/sign", "/v1/pseudonyms", "/v1/audit/checkpoint"))]
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_body = st.one_of(
    _json.map(lambda v: json.dumps(v).encode()),
    st.lists(_json, max_size=3).map(lambda v: json.dumps(v).encode()),  # a JSON document that is not an object
    st.fixed_dictionaries(
        {},
        optional={
            "ids": st.lists(st.text(max_size=20), max_size=3) | _json,
            "id": _json,
            "create": _json,
            "chain": _json,
            "seq": _json,
            "hash": _json,
            "prev": _json,
            "payload": _json,
            "pseudonyms": _json,
        },
    ).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=300),
)


def test_any_request_gets_an_answer_below_500_and_changes_nothing_it_may_not(tmp_path):
    holder = KeyHolder(key_classes(load_policy()))
    roles = {new_token(): role for role in PERMISSIONS if role != "admin"}
    server = KeyServer(holder, new_token(), role_tokens=roles).start()
    host, port = server.server_address[:2]
    vault = SubjectVault(LocalKeySource(holder))
    ps = vault.pseudonym("pax-1")  # a subject whose key no request below may destroy (no destroy right but the matcher's)
    tokens = [None, "x" * 43, *(t for t, r in roles.items() if r != "matcher")]

    @settings(
        max_examples=int(os.environ.get("PAXSIM_HYPOTHESIS_EXAMPLES", "150")),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        database=None,
    )
    @given(
        method=st.sampled_from(["GET", "POST", "POST", "POST", "DELETE", "PUT", "PATCH", "OPTIONS"]),
        path=st.sampled_from(PATHS) | st.sampled_from(POSTS) | st.text(max_size=40).map(lambda p: "/" + quote(p, safe="/:%")),
        body=_body,
        token=st.sampled_from(tokens) | st.sampled_from(tokens[2:]),
        length=st.sampled_from([None, None, None, None, "-1", "abc", "99999999", "0"]),
    )
    def check(method: str, path: str, body: bytes, token: str | None, length: str | None) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=5)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if length is not None:
            headers["Content-Length"] = length
        try:
            conn.putrequest(method, path, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            if length is None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if length in (None, "0") else body[:64])
            status = conn.getresponse().status
        except (ConnectionError, http.client.RemoteDisconnected, TimeoutError):
            # only a request whose body it will not read (a bad or huge Content-Length) may lose its connection
            assert length not in (None, "0"), (method, path, "connection dropped: the handler raised?")
            status = 0
        finally:
            conn.close()
        assert status < 500, (method, path, status)
        probe = http.client.HTTPConnection(host, port, timeout=5)
        probe.request("GET", "/healthz")
        assert probe.getresponse().status == 200, "the key holder stopped serving"
        probe.close()

    try:
        check()
        assert holder.resolve_pseudonyms([ps]) == {ps: "pax-1"}, "a credential without the destroy right destroyed a key"
    finally:
        server.stop()

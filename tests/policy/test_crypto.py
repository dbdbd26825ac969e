"""Crypto-shredding: epoch keys die with their TTL, ratchets only go forward, erasure destroys subject keys."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.messages import Sighting, decode, embedding_to_bytes, encode
from policy.crypto import (
    EpochKeyRing,
    HttpKeySource,
    KeyExpired,
    KeyHolder,
    KeyUnavailable,
    LocalKeySource,
    SealError,
    SubjectVault,
    open_sighting,
    seal_sighting,
)
from policy.keyd import spawn_keyd

T0 = 1_800_000_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def setup(ttl: float = 2.0, epoch: float = 0.25):
    clock = Clock()
    holder = KeyHolder({"sightings": (epoch, ttl)}, clock=clock)
    return clock, holder, EpochKeyRing(LocalKeySource(holder), clock=clock)


def sighting(at: float, vec: np.ndarray | None = None) -> Sighting:
    vec = np.linspace(-1, 1, 128, dtype=np.float32) if vec is None else vec
    return Sighting(
        event_id="e1",
        camera_id="cam-1",
        zone="egate",
        captured_at=at,
        track_id=3,
        box=(1, 2, 60, 60),
        quality=0.8,
        embedding=embedding_to_bytes(vec),
    )


def test_sealed_sighting_round_trips_and_carries_no_plaintext():
    clock, _h, ring = setup()
    s = sighting(clock.t)
    sealed = seal_sighting(ring, s)
    wire = encode(sealed)
    assert sealed.embedding == b"" and sealed.key_id.startswith("sightings:")
    assert s.embedding not in wire and s.embedding[:64] not in wire
    assert open_sighting(ring, decode(wire, Sighting)) == s


@settings(max_examples=60, deadline=None)
@given(
    age=st.floats(min_value=0, max_value=10), ttl=st.floats(min_value=0.5, max_value=5), epoch_frac=st.floats(min_value=0.01, max_value=0.9)
)
def test_nothing_is_readable_past_its_ttl_and_everything_is_for_ttl_minus_epoch(age, ttl, epoch_frac):
    epoch = ttl * epoch_frac
    clock, _h, ring = setup(ttl, epoch)
    s = seal_sighting(ring, sighting(clock.t))
    captured = clock.t
    clock.t = captured + age
    try:
        open_sighting(ring, s)
        readable = True
    except KeyExpired:
        readable = False
    if age >= ttl:
        assert not readable
    if age < ttl - epoch:
        assert readable


def test_a_ring_synced_later_cannot_derive_earlier_epochs():
    """A service restarted mid-run gets the current chain state: expired payloads stay unreadable for it."""
    clock, holder, ring = setup(ttl=2.0, epoch=0.25)
    old = seal_sighting(ring, sighting(clock.t))
    clock.t += 1.0
    mid = seal_sighting(ring, sighting(clock.t))
    clock.t += 1.5  # `old` is past its TTL, `mid` is not
    restarted = EpochKeyRing(LocalKeySource(holder), clock=clock)
    with pytest.raises(KeyExpired):
        open_sighting(restarted, old)
    assert open_sighting(restarted, mid).embedding
    state = holder.chain("sightings")
    assert state.epoch > int(old.key_id.rsplit(":", 1)[1])


def test_sealing_a_sighting_older_than_its_ttl_is_refused():
    clock, _h, ring = setup()
    with pytest.raises(KeyExpired):
        seal_sighting(ring, sighting(clock.t - 5))


def test_tampering_or_moving_a_payload_to_another_event_is_detected():
    clock, _h, ring = setup()
    s = seal_sighting(ring, sighting(clock.t))
    flipped = bytearray(s.sealed)
    flipped[20] ^= 1
    import msgspec

    with pytest.raises(SealError):
        open_sighting(ring, msgspec.structs.replace(s, sealed=bytes(flipped)))
    with pytest.raises(SealError):
        open_sighting(ring, msgspec.structs.replace(s, event_id="e2"))
    with pytest.raises(SealError):
        open_sighting(ring, msgspec.structs.replace(s, key_id="nonsense"))


def test_key_holder_restart_makes_old_payloads_unreadable_and_sealing_moves_to_the_new_chain():
    clock, holder, ring = setup()
    s = seal_sighting(ring, sighting(clock.t))
    new_holder = KeyHolder({"sightings": (0.25, 2.0)}, clock=clock)  # the holder died and came back empty
    ring2 = EpochKeyRing(LocalKeySource(new_holder), clock=clock)
    with pytest.raises(KeyExpired):
        open_sighting(ring2, s)
    s2 = seal_sighting(ring2, sighting(clock.t))
    assert s2.key_id.split(":")[1] != s.key_id.split(":")[1]


def test_shorter_ttl_at_the_holder_destroys_at_once():
    clock, holder, ring = setup(ttl=10.0, epoch=1.0)
    s = seal_sighting(ring, sighting(clock.t))
    clock.t += 3
    holder.set_ttl("sightings", 2.0)
    fresh = EpochKeyRing(LocalKeySource(holder), clock=clock)
    with pytest.raises(KeyExpired):
        open_sighting(fresh, s)


def test_subject_vault_erasure_destroys_every_copy():
    holder = KeyHolder({})
    a, b = SubjectVault(LocalKeySource(holder)), SubjectVault(LocalKeySource(holder))
    kid, blob = a.seal("pax-7", b"trajectory", aad=b"tracks")
    assert b.open("pax-7", kid, blob, aad=b"tracks") == b"trajectory"
    with pytest.raises(SealError):
        b.open("pax-7", kid, blob, aad=b"gallery")
    assert a.erase("pax-7")
    b.forget("pax-7")  # what an erasure message does in every other process
    for v in (a, b):
        with pytest.raises(KeyExpired):
            v.open("pax-7", kid, blob, aad=b"tracks")
        assert not v.can_open("pax-7", kid)
    with pytest.raises(KeyExpired):  # and no new key: an erased subject comes back only as a new enrolment id
        a.seal("pax-7", b"again")


def test_subject_key_cache_expires_even_without_an_erasure_message():
    t = Clock(0.0)
    holder = KeyHolder({})
    a, b = SubjectVault(LocalKeySource(holder), clock=t, cache_s=5), SubjectVault(LocalKeySource(holder), clock=t, cache_s=5)
    kid, blob = a.seal("s", b"x")
    assert b.open("s", kid, blob) == b"x"
    a.erase("s")
    t.t = 5.1
    with pytest.raises(KeyExpired):
        b.open("s", kid, blob)


def test_keyd_process_serves_keys_only_with_the_token():
    keyd = spawn_keyd()
    try:
        src = HttpKeySource(keyd.url, keyd.token)
        ring, other = EpochKeyRing(src), EpochKeyRing(HttpKeySource(keyd.url, keyd.token))
        s = seal_sighting(ring, sighting(__import__("time").time()))
        assert open_sighting(other, s).embedding  # another process opens it through the same holder
        vault = SubjectVault(src)
        kid, blob = vault.seal("pax-1", b"g")
        assert SubjectVault(HttpKeySource(keyd.url, keyd.token)).open("pax-1", kid, blob) == b"g"
        assert vault.erase("pax-1")
        with pytest.raises(KeyExpired):
            SubjectVault(HttpKeySource(keyd.url, keyd.token)).open("pax-1", kid, blob)
        with pytest.raises(KeyUnavailable, match="401"):
            HttpKeySource(keyd.url, "wrong-token").chain("sightings")
    finally:
        keyd.stop()
    with pytest.raises(KeyUnavailable):
        EpochKeyRing(HttpKeySource(keyd.url, keyd.token)).seal(b"x", __import__("time").time())


def test_pseudonyms_are_stable_while_the_key_lives_and_unlinkable_after_erasure():
    holder = KeyHolder({})
    a, scanner = SubjectVault(LocalKeySource(holder)), SubjectVault(LocalKeySource(holder))
    ps = a.pseudonym("pax-1")
    assert ps == a.pseudonym("pax-1") != a.pseudonym("pax-2") and ps.startswith("ps-") and "pax" not in ps
    assert scanner.resolve({ps}, ["pax-1", "pax-2", "pax-3"]) == {ps: "pax-1"}
    a.erase("pax-1")
    assert scanner.resolve({ps}, ["pax-1", "pax-2"]) == {}


class RecordingSource:
    """A LocalKeySource that records which thread made each call (to prove callers never wait on the holder)."""

    def __init__(self, holder: KeyHolder, on_subjects=None) -> None:
        self.inner, self.calls, self.on_subjects = LocalKeySource(holder), [], on_subjects

    def chain(self, name):
        self.calls.append(("chain", __import__("threading").current_thread().name))
        return self.inner.chain(name)

    def subject_keys(self, ids, create):
        self.calls.append(("subjects", __import__("threading").current_thread().name, tuple(ids), create))
        if self.on_subjects:
            self.on_subjects(ids)
        return self.inner.subject_keys(ids, create)

    def destroy_subject(self, sid):
        return self.inner.destroy_subject(sid)


def _wait(cond, timeout=5.0):
    deadline = __import__("time").monotonic() + timeout
    while not cond():
        assert __import__("time").monotonic() < deadline, "background refresh did not happen"
        __import__("time").sleep(0.005)


def test_background_ring_never_fetches_on_the_callers_thread_and_derives_the_next_epoch_ahead():
    clock = Clock()
    holder = KeyHolder({"sightings": (0.25, 2.0)}, clock=clock)
    src = RecordingSource(holder)
    ring = EpochKeyRing(src, clock=clock, background=True)
    try:
        _wait(lambda: ring._current is not None)
        r = ring._current
        e = int(clock.t // 0.25)
        assert {e, e + 1} <= set(r._keys)  # this epoch's and the next epoch's keys derived before any seal
        blobs = []
        for _ in range(12):  # across several epoch boundaries and resync periods
            blobs.append(seal_sighting(ring, sighting(clock.t)))
            clock.t += 0.1
        assert all(open_sighting(ring, b).embedding for b in blobs[-5:])
        assert [c for c in src.calls if c[1] == "MainThread"] == []
        clock.t += 2.5  # past the TTL: the background ring destroys keys like any other
        with pytest.raises(KeyExpired):
            open_sighting(ring, blobs[0])
    finally:
        ring.close()


def test_unknown_chain_ids_force_at_most_one_fetch_per_interval():
    clock, holder, _ = setup()
    src = RecordingSource(holder)
    ring = EpochKeyRing(src, clock=clock, force_min_s=1.0)
    ring.key_id(clock.t)
    n = len(src.calls)
    for _ in range(50):
        assert not ring.can_open(f"sightings:ffffffff:{int(clock.t // 0.25)}")
    assert len(src.calls) - n == 1


def test_background_vault_reconfirms_aging_keys_without_creating_and_drops_destroyed_ones():
    t = Clock(0.0)
    holder = KeyHolder({})
    src = RecordingSource(holder)
    vault = SubjectVault(src, clock=t, cache_s=5, background=False)
    vault.warm(["a", "b"])
    ps_a = vault.pseudonym("a")
    t.t = 2.5  # aging (≥ 0.4 × cache_s)
    holder.destroy_subject("b")  # destroyed elsewhere; this process missed the erasure message
    assert vault.refresh() == 2
    assert src.calls[-1][2:] == (("a", "b"), False)  # one round trip, never creating a key
    t.t = 6.0  # past the first fetch's cache_s: "a" was re-confirmed at 2.5 and is still served from memory
    n = len(src.calls)
    assert vault.pseudonym("a") == ps_a and len(src.calls) == n
    assert not vault.can_open("b", f"subject:b:{holder.instance}.1")
    assert holder.subject_keys(["b"], False) == {}  # the refresh did not bring the destroyed key back


def test_a_fetch_in_flight_during_an_erasure_does_not_resurrect_the_key():
    holder = KeyHolder({})
    vault: list[SubjectVault] = []
    src = RecordingSource(holder, on_subjects=lambda ids: vault[0].forget("a") if "a" in ids else None)
    vault.append(SubjectVault(src, background=False))
    vault[0].warm(["a"])  # the erasure arrives while the keys are on their way
    assert "a" not in vault[0]._cache


def test_background_vault_thread_runs_refresh():
    holder = KeyHolder({})
    src = RecordingSource(holder)
    t = Clock(0.0)
    vault = SubjectVault(src, clock=t, cache_s=5, background=True)
    try:
        vault.warm(["a"])
        t.t = 3.0
        vault.close()
        vault.start(interval_s=0.01)
        _wait(lambda: any(c[0] == "subjects" and c[1] == "subject-vault" and c[3] is False for c in src.calls))
    finally:
        vault.close()


def test_a_key_id_far_in_the_future_is_refused_at_once_and_caches_nothing():
    import msgspec

    clock, _h, ring = setup()
    s = seal_sighting(ring, sighting(clock.t))
    name, chain, epoch = s.key_id.split(":")
    for ahead in (50, 99_999, 10**9):
        with pytest.raises(SealError, match="ahead of the current"):
            open_sighting(ring, msgspec.structs.replace(s, key_id=f"{name}:{chain}:{int(epoch) + ahead}"))
    r = ring._chains[chain]
    assert max(r._boxes) <= int(epoch) + 1, "keys of future epochs were derived and cached"
    # one epoch ahead is clock skew between an edge and this stage: still opens (with the right ciphertext)
    clock.t -= 0.25
    assert open_sighting(ring, s).vector().shape == (128,)


def test_an_erased_subject_never_gets_a_key_again_from_any_stage():
    """The erasure races a match (the matcher asks for the pseudonym with creation on) and an e-gate claim (the edge
    does too): the key holder must refuse both, for good, through its HTTP API as in production."""
    keyd = spawn_keyd()
    try:
        matcher, edge = (SubjectVault(HttpKeySource(keyd.url, keyd.token)) for _ in range(2))
        ps = matcher.pseudonym("pax-7")
        matcher.pseudonym("pax-8")
        assert matcher.erase("pax-7")
        for vault in (SubjectVault(HttpKeySource(keyd.url, keyd.token)), edge):
            with pytest.raises(KeyExpired):
                vault.pseudonym("pax-7")
            with pytest.raises(KeyExpired):
                vault.seal("pax-7", b"template")
            assert vault.existing_pseudonym("pax-7") is None
        assert HttpKeySource(keyd.url, keyd.token).subject_keys(["pax-7", "pax-8"], True).keys() == {"pax-8"}
        assert SubjectVault(HttpKeySource(keyd.url, keyd.token)).resolve({ps}, ["pax-7", "pax-8"]) == {}
        # the auditor resolves any pseudonym against every live key (not only the registry's subjects)
        ps8 = matcher.pseudonym("pax-8")
        assert SubjectVault(HttpKeySource(keyd.url, keyd.token)).resolve_all({ps, ps8, "ps-forged"}) == {ps8: "pax-8"}
    finally:
        keyd.stop()


def test_tombstones_name_nobody():
    holder = KeyHolder({})
    SubjectVault(LocalKeySource(holder)).pseudonym("pax-secret-id")
    holder.destroy_subject("pax-secret-id")
    assert holder._tombstones and not any(b"pax-secret-id" in tomb for tomb in holder._tombstones)


def test_sealed_erasure_requests_round_trip_and_resist_tampering():
    import msgspec

    from broker.messages import ErasureRequest
    from policy.crypto import CONTROL_CLASS, open_erasure, seal_erasure

    clock = Clock()
    holder = KeyHolder({CONTROL_CLASS: (86_400.0, 30 * 86_400.0)}, clock=clock)
    ring = EpochKeyRing(LocalKeySource(holder), CONTROL_CLASS, clock=clock)
    req = ErasureRequest(request_id="r1", subject_id="pax-9", requested_at=T0, subject_ref="ps-abc")
    wire = seal_erasure(ring, req)
    assert wire.subject_id == wire.subject_ref == "" and b"pax-9" not in encode(wire) and b"ps-abc" not in encode(wire)
    assert open_erasure(ring, wire) == req
    for forged in (
        msgspec.structs.replace(wire, request_id="r2"),
        msgspec.structs.replace(wire, reason="x"),
        msgspec.structs.replace(wire, requested_at=T0 + 1),
    ):
        with pytest.raises(SealError):
            open_erasure(ring, forged)


def test_a_stage_whose_clock_is_60_s_behind_cannot_open_a_payload_past_its_ttl():
    """Expiry is the key holder's clock, not the stage's: a matcher 60 s behind used to open a 125 s-old
    payload under a 120 s TTL."""
    holder_clock = Clock()
    holder = KeyHolder({"sightings": (10.0, 120.0)}, clock=holder_clock)
    edge = EpochKeyRing(LocalKeySource(holder), clock=holder_clock)  # the edge's clock agrees with the holder
    s = seal_sighting(edge, sighting(holder_clock.t))
    holder_clock.t += 125.0  # the payload is now 125 s old by the holder's clock
    behind = Clock(holder_clock.t - 60.0)  # ...and 65 s old by this stage's
    matcher = EpochKeyRing(LocalKeySource(holder), clock=behind)
    with pytest.raises(KeyExpired):
        open_sighting(matcher, s)
    # the same stage still opens a payload that is within its TTL by the holder's clock
    fresh = seal_sighting(edge, sighting(holder_clock.t - 50.0))
    assert open_sighting(matcher, fresh).vector().shape == (128,)
    # and keeps following the holder's clock as both advance (no re-sync needed within the period)
    holder_clock.t += 80.0
    behind.t += 80.0
    with pytest.raises(KeyExpired):
        open_sighting(matcher, fresh)


def test_key_holder_refuses_weak_tokens_and_hostile_requests():
    import http.client
    import socket
    import subprocess
    import sys
    import time as _time

    from policy.keyd import MAX_BODY_BYTES, REQUEST_TIMEOUT_S, TOKEN_ENV

    for weak in ("short", "change-me-to-a-long-random-token"):  # the second is deploy/.env.example's placeholder
        r = subprocess.run(
            [sys.executable, "-m", "policy.keyd"], env={**__import__("os").environ, TOKEN_ENV: weak}, capture_output=True, text=True
        )
        assert r.returncode == 2 and "at least 32 characters" in r.stderr
    keyd = spawn_keyd()
    try:
        host, port = keyd.url.removeprefix("http://").split(":")
        auth = {"Authorization": f"Bearer {keyd.token}", "Content-Type": "application/json"}

        def post(headers: dict, body: bytes = b"") -> int:
            c = http.client.HTTPConnection(host, int(port), timeout=5)
            c.putrequest("POST", "/v1/subjects")
            for k, v in headers.items():
                c.putheader(k, v)
            c.endheaders(body)
            code = c.getresponse().status
            c.close()
            return code

        assert post({**auth, "Content-Length": str(MAX_BODY_BYTES + 1)}) == 413  # refused before reading it
        assert post({**auth, "Content-Length": "-1"}) == 400  # once a read to EOF: a thread held for ever
        assert post({**auth, "Content-Length": "x"}) == 400
        # a client that announces a body and goes silent loses its connection after the timeout
        s = socket.create_connection((host, int(port)))
        s.sendall(f"POST /v1/subjects HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keyd.token}\r\nContent-Length: 10\r\n\r\n".encode())
        t0 = _time.monotonic()
        s.settimeout(REQUEST_TIMEOUT_S + 10)  # recv raises if the server still holds the connection by then
        assert s.recv(1024) == b""  # the server closed it
        assert REQUEST_TIMEOUT_S - 1 <= _time.monotonic() - t0
        s.close()
        assert HttpKeySource(keyd.url, keyd.token).subject_keys(["pax-1"], True)  # still serving
    finally:
        keyd.stop()


def test_a_sealer_with_public_keys_only_cannot_open_and_the_box_dies_with_its_epoch():
    """The edge's ring holds the public halves of the epoch keys: what it seals opens at the matcher's ring, not
    with anything the edge has; a flipped byte does not authenticate; the epoch's expiry destroys the box's key."""
    from policy.crypto import PublicKeyRing

    clock, holder, ring = setup()
    edge = PublicKeyRing(LocalKeySource(holder), background=False)
    s = sighting(clock.t)
    sealed = seal_sighting(edge, s)
    assert sealed.embedding == b"" and s.embedding not in sealed.sealed
    assert not hasattr(edge, "open_box") and not hasattr(edge, "open")  # nothing to open with
    assert open_sighting(ring, sealed).embedding == s.embedding
    again = seal_sighting(edge, s)
    assert again.sealed != sealed.sealed  # a fresh nonce per box
    tampered = msgspec.structs.replace(sealed, sealed=sealed.sealed[:-1] + bytes([sealed.sealed[-1] ^ 1]))
    with pytest.raises(SealError):
        open_sighting(ring, tampered)
    clock.t += 60.0  # past the TTL of every epoch involved
    with pytest.raises(KeyExpired):
        open_sighting(ring, sealed)

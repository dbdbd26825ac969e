"""Hostile input as a class: whatever bytes or field values a producer writes, the gate's and the matcher's
per-record paths answer with a decision or a dead-letter reason, never an exception out of the stage.

``PAXSIM_HYPOTHESIS_EXAMPLES=5000`` runs a longer profile on demand (CI runs 150 examples per test)."""

from __future__ import annotations

import os
import time

import msgspec
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.messages import MessageError, Sighting, check_sighting, decode, embedding_to_bytes, encode
from policy.crypto import KeyExpired, KeyHolder, KeyUnavailable, LocalKeySource, SealError
from policy.gate import screen
from policy.runtime import PolicyRuntime


class S:
    def __init__(self, state_dir) -> None:  # noqa: ANN001
        self.state_dir = state_dir


_NOW = time.time()  # strategies must not read the clock (hypothesis replays them)
_text = st.text(max_size=60)  # every unicode category, surrogates excluded (msgpack strings are UTF-8)
_int = st.integers(-(2**63), 2**64 - 1)  # everything MessagePack can carry
_num = st.one_of(st.floats(allow_nan=True, allow_infinity=True), _int)
_epoch = st.one_of(st.integers(-(2**70), 2**70).map(str), st.text(max_size=12), st.sampled_from(["1²", "٣", "9" * 40, "+1", " 1", "1_0"]))


@st.composite
def sighting_fields(draw: st.DrawFn, sealed_only: bool = False) -> dict:
    """A sighting's fields: each of the right type with a hostile value (unicode, huge, non-finite, out of range),
    and now and then of a wrong type or another message's tag. ``sealed_only``: a well-formed sealed sighting whose
    key id, payload, zone, time and claim are hostile (what passes decoding and reaches the key and policy checks)."""

    def field(right: st.SearchStrategy, wrong: st.SearchStrategy = _text | _num) -> object:
        return draw(wrong) if not sealed_only and draw(st.integers(0, 19)) == 0 else draw(right)

    sealed = sealed_only or draw(st.booleans())
    cls = draw(st.sampled_from(["sightings", "sightings", "control", "tracklets", "", "x" * 300]))
    fields = {
        "type": field(st.just("sighting.v1"), st.sampled_from(["sighting.v2", "match.v1", "erasure.v1", "deadletter.v1", ""])),
        "event_id": field(_text),
        "camera_id": field(_text),
        "zone": field(_text | st.sampled_from(["security", "egate", "gate", "lobby", "boarding"])),
        "captured_at": field(st.floats() | st.floats(-3600, 3600).map(lambda d: _NOW + d)),
        "track_id": field(_int),
        "box": field(st.tuples(_int, _int, _int, _int), st.lists(_num, max_size=6) | _text),
        "quality": field(st.floats()),
        "dim": field(st.sampled_from([0, 64, 128, 128, 4096]) | _int),
        "embedding": b"" if sealed else field(st.binary(max_size=600) | st.just(embedding_to_bytes(np.ones(128, np.float32)))),
        "sealed": field(st.binary(min_size=1, max_size=700)) if sealed else b"",
        "key_id": f"{cls}:{draw(_text)}:{draw(_epoch)}" if sealed else field(st.just("") | _text),
        "claimed_subject": field(st.just("") | _text),
    }
    if sealed_only:
        fields.update(event_id="e" + str(fields["event_id"]), camera_id="c", track_id=1, box=(0, 0, 40, 40), quality=0.9, dim=128)
    return fields


def _runtime(tmp_path, stage: str) -> PolicyRuntime:  # noqa: ANN001
    return PolicyRuntime.for_stage(S(tmp_path), stage, keys=LocalKeySource(KeyHolder({"sightings": (10.0, 120.0)})))


# one runtime per test, many records through it (a runtime per example would cost seconds of set-up each)
EXAMPLES = settings(
    max_examples=int(os.environ.get("PAXSIM_HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)


def test_the_gate_decides_or_dead_letters_any_record(tmp_path):
    rt = _runtime(tmp_path, "gate")
    chain = rt.gate_chain()

    @EXAMPLES
    @given(fields=sighting_fields() | sighting_fields(sealed_only=True))
    def check(fields: dict) -> None:
        for value in (msgspec.msgpack.encode(fields), msgspec.msgpack.encode(list(fields.values()))):
            outcome, reason = screen(rt, chain, value, time.time())
            assert outcome in ("admitted", "denied", "undecodable", "unsealed", "key id"), (outcome, reason)
            assert outcome in ("admitted", "denied") or reason, "a dead letter without its reason"
        rt.flush_audit()

    try:
        check()
    finally:
        rt.close()


def test_the_gate_decides_or_dead_letters_any_bytes(tmp_path):
    rt = _runtime(tmp_path, "gate")
    chain = rt.gate_chain()

    @EXAMPLES
    @given(value=st.binary(max_size=2000))
    def check(value: bytes) -> None:
        outcome, reason = screen(rt, chain, value, time.time())
        assert outcome != "internal" and (outcome in ("admitted", "denied") or reason)

    try:
        check()
    finally:
        rt.close()


def test_the_matcher_opens_or_refuses_any_sealed_record_with_a_reason(tmp_path):
    """The matcher's per-record path (decode, check, unseal) raises only the errors it dead-letters by name."""
    rt = _runtime(tmp_path, "matcher")

    @EXAMPLES
    @given(fields=sighting_fields() | sighting_fields(sealed_only=True))
    def check(fields: dict) -> None:
        try:
            s = decode(msgspec.msgpack.encode(fields), Sighting)
            check_sighting(s)
            rt.unseal(s).vector()
        except (MessageError, SealError, KeyExpired, KeyUnavailable):
            pass

    try:
        check()
    finally:
        rt.close()


def test_a_key_id_epoch_with_a_unicode_digit_is_refused_not_raised(tmp_path):
    """`"1²".isdigit()` is True and `int("1²")` raises: the gate's key-id check must refuse it as malformed."""
    rt = _runtime(tmp_path, "gate")
    try:
        s = Sighting(event_id="e", camera_id="c", zone="security", captured_at=time.time(), track_id=1, box=(0, 0, 9, 9), quality=1.0)
        for epoch in ("1²", "٣", "9" * 40):
            hostile = msgspec.structs.replace(s, sealed=b"\x01" * 80, key_id=f"sightings:abc:{epoch}")
            outcome, reason = screen(rt, rt.gate_chain(), encode(hostile), time.time())
            assert outcome == "key id", (epoch, outcome, reason)
    finally:
        rt.close()

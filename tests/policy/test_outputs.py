"""The per-purpose sealing of subject references (policy.crypto.outputs) refuses what a hostile producer can
write, and the sealed sighting payload shows nothing of an e-gate claim by its length."""

from __future__ import annotations

import time

import msgspec
import numpy as np
import pytest

from broker.messages import Match, Sighting, embedding_to_bytes
from policy.crypto import EpochKeyRing, KeyHolder, LocalKeySource, SealError, open_sighting, seal_sighting
from policy.crypto.outputs import OutputKeys, purpose_class
from policy.keyd import key_classes
from policy.policyfile import load_policy

POLICY = load_policy()


def _match(subject: str | None = "ps-0123456789abcdef01234567") -> Match:
    now = time.time()
    return Match(
        event_id="e1", camera_id="c", zone="gate", purpose="boarding", captured_at=now, matched_at=now, decision="match", subject_id=subject
    )


def test_a_reference_sealed_and_in_clear_at_once_is_refused():
    """A producer adds a clear pseudonym beside a sealed one: the scan would count the record unlinkable and never
    judge the clear reference."""
    keys = OutputKeys(LocalKeySource(KeyHolder(key_classes(POLICY))), background=False, purposes=lambda: POLICY.purposes)
    sealed = keys.seal(_match(), "boarding")
    assert keys.open(sealed)[1]
    with pytest.raises(SealError, match="both sealed and in clear"):
        keys.open(msgspec.structs.replace(sealed, subject_id="ps-ffffffffffffffffffffffff"))


def test_a_class_that_is_no_purpose_of_the_policy_is_refused_without_a_key_ring():
    """Each ring is a refresh thread and key-holder traffic: a forged class name must not make one."""
    keys = OutputKeys(LocalKeySource(KeyHolder(key_classes(POLICY))), background=False, purposes=lambda: POLICY.purposes)
    sealed = keys.seal(_match(), "boarding")
    for cls in ("purpose.made-up", "sightings"):
        forged = msgspec.structs.replace(sealed, key_id=cls + sealed.key_id[sealed.key_id.index(":") :])
        with pytest.raises(SealError):
            keys.open(forged)
    assert set(keys._rings) == {purpose_class("boarding")}


def test_a_purpose_class_the_key_holder_does_not_have_opens_to_nobody():
    """A policy purpose whose class the key holder lacks (gone, or not yet reloaded): nobody named, no error."""
    full = OutputKeys(LocalKeySource(KeyHolder(key_classes(POLICY))), background=False)
    sealed = full.seal(_match(), "boarding")
    bare = OutputKeys(LocalKeySource(KeyHolder({"sightings": (10.0, 120.0)})), background=False)
    opened, readable = bare.open(sealed)
    assert not readable and opened.subject_id is None and not opened.sealed


def test_the_sealed_payload_has_one_length_with_or_without_a_claim():
    ring = EpochKeyRing(LocalKeySource(KeyHolder({"sightings": (10.0, 120.0)})), "sightings", background=False)
    base = Sighting(
        event_id="e", camera_id="c", zone="egate", captured_at=time.time(), track_id=1, box=(0, 0, 9, 9), quality=1.0,
        embedding=embedding_to_bytes(np.ones(128, np.float32)),
    )  # fmt: skip
    lengths = set()
    for claim in ("", "T00001", "x" * 63, "x" * 64):
        sealed = seal_sighting(ring, msgspec.structs.replace(base, claimed_subject=claim))
        lengths.add(len(sealed.sealed))
        assert not sealed.claimed_subject and open_sighting(ring, sealed).claimed_subject == claim
    assert len(lengths) == 1, lengths

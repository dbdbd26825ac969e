"""Sealing and signing messages: sighting embeddings under the epoch keys, erasure requests under the control class,
and their signatures."""

from __future__ import annotations

import struct

import msgspec

from broker.messages import ErasureRequest, Sighting
from policy.crypto.errors import SealError
from policy.crypto.holder import ISSUERS
from policy.crypto.ring import EpochKeyRing, PublicKeyRing
from policy.crypto.sources import KeySource

_AAD_TAIL = struct.Struct("<dI")


CLAIM_PAD = 64  # bytes: e-gate claims (subject ids) are padded to a multiple of this inside the sealed payload


def _sighting_aad(s: Sighting) -> bytes:
    """Binds a sealed payload to its event: id, camera, zone, capture time and dimension."""
    return b"|".join([b"sighting", s.event_id.encode(), s.camera_id.encode(), s.zone.encode(), _AAD_TAIL.pack(s.captured_at, s.dim)])


def seal_sighting(ring: EpochKeyRing | PublicKeyRing, s: Sighting) -> Sighting:
    """Move the embedding, and any e-gate claim (the subject on the presented passport), into ``sealed``: a
    sealed box to the epoch's public key bound to the event's identity fields. The edge that sealed it cannot
    open it, and the claim dies with the epoch key like the face (nothing about the traveller is left in
    clear on the sightings topics). Raises KeyExpired if stale."""
    claim = s.claimed_subject.encode()
    # padded to a multiple of CLAIM_PAD (an empty claim too): the length on the topic shows no claim, nor its size
    padded = claim + b"\0" * (CLAIM_PAD - len(claim) % CLAIM_PAD if len(claim) % CLAIM_PAD or not claim else 0)
    key_id, blob = ring.seal_box(s.embedding + padded, s.captured_at, _sighting_aad(s))
    return msgspec.structs.replace(s, embedding=b"", claimed_subject="", sealed=blob, key_id=key_id)


def open_sighting(ring: EpochKeyRing, s: Sighting) -> Sighting:
    """The same sighting with ``embedding`` and ``claimed_subject`` restored. Plain (unsealed) sightings are
    returned unchanged; a claim in clear beside a sealed payload is refused (honest edges seal it)."""
    if not s.sealed:
        return s
    if s.claimed_subject:
        raise SealError("an e-gate claim in clear beside a sealed payload: claims travel sealed")
    plain = ring.open_box(s.key_id, s.sealed, _sighting_aad(s))
    size = 4 * s.dim  # float32 embedding first, then the claim's UTF-8 bytes
    if len(plain) < size:
        raise SealError(f"sealed payload of {len(plain)} bytes holds no {s.dim}-D embedding")
    try:
        claim = plain[size:].rstrip(b"\0").decode()
    except UnicodeDecodeError:
        raise SealError("sealed e-gate claim is not UTF-8") from None
    return msgspec.structs.replace(s, embedding=plain[:size], claimed_subject=claim, sealed=b"", key_id="")


CONTROL_CLASS = "control"  # key class of control messages (erasure requests): see policy.keyd.key_classes


def _erasure_aad(req: ErasureRequest) -> bytes:
    return b"|".join([b"erasure", req.request_id.encode(), _AAD_TAIL.pack(req.requested_at, 0), req.reason.encode()])


def seal_erasure(ring: EpochKeyRing, req: ErasureRequest) -> ErasureRequest:
    """The request with its subject id and pseudonym moved into ``sealed`` (bound to the request's id and time)."""
    if req.sealed:
        return req
    plain = msgspec.msgpack.encode([req.subject_id, req.subject_ref])
    key_id, blob = ring.seal(plain, req.requested_at, _erasure_aad(req))
    return msgspec.structs.replace(req, subject_id="", subject_ref="", sealed=blob, key_id=key_id)


def open_erasure(ring: EpochKeyRing, req: ErasureRequest) -> ErasureRequest:
    """The request with its subject id and pseudonym restored; unsealed requests are returned unchanged."""
    if not req.sealed:
        return req
    plain = ring.open(req.key_id, req.sealed, _erasure_aad(req))
    try:
        subject_id, subject_ref = msgspec.msgpack.decode(plain, type=tuple[str, str])
    except msgspec.DecodeError as exc:  # authenticated but malformed: only a holder of the key could make it
        raise SealError(f"sealed erasure request {req.request_id} is malformed: {exc}") from None
    return msgspec.structs.replace(req, subject_id=subject_id, subject_ref=subject_ref, sealed=b"", key_id="")


def _unsigned(req: ErasureRequest) -> bytes:
    return msgspec.msgpack.encode(msgspec.structs.replace(req, issuer="", signature=b""))


def sign_erasure(source: KeySource, req: ErasureRequest) -> ErasureRequest:
    """The request with the key holder's signature for this stage's role (call it after sealing)."""
    issuer, sig = source.sign_control(_unsigned(req))
    return msgspec.structs.replace(req, issuer=issuer, signature=sig)


def verify_erasure(source: KeySource, req: ErasureRequest) -> None:
    """SealError unless ``req`` carries a valid key-holder signature for an issuing role: a producer that can
    only write to the topic (or a stage whose role may not issue, such as a matcher) cannot make one."""
    from policy.notary import control_signature_ok

    if not req.signature:
        raise SealError(f"erasure request {req.request_id[:40]} is not signed: forged or from outside the run")
    if req.issuer not in ISSUERS:
        raise SealError(f"erasure request {req.request_id[:40]} names issuer {req.issuer[:20]!r}, which may not issue")
    if not control_signature_ok(source.control_key(), req.issuer, _unsigned(req), req.signature):
        raise SealError(f"erasure request {req.request_id[:40]} has a bad signature: forged or altered")

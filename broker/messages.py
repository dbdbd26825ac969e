"""Typed, versioned messages that travel on the broker.

Every message is a ``msgspec.Struct`` with a tag naming its type and major version (``"sighting.v1"``),
encoded as MessagePack. Embeddings travel as raw little-endian float32 bytes (512 bytes for 128-D),
never as lists of floats. ``paxsim schema`` writes the JSON Schema of all of them, with the topic catalogue, to
``broker/schema.json`` for other tools (see broker/schema.py).

Adding a field with a default is a compatible change (old readers ignore it, new readers fill the default);
anything else is a new tag (``.v2``) on a new topic.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, TypeVar

import msgspec

from core import faults

if TYPE_CHECKING:  # numpy is imported by the two functions that need it: the CLI starts without it
    import numpy as np

EMBEDDING_DTYPE = "<f4"  # little-endian float32 (numpy dtype string)
EMBEDDING_ITEMSIZE = 4
EMBEDDING_DIM = 128  # the one embedding size of this contract (dlib's ResNet face descriptor)
MAX_SEALED_BYTES = 1024  # a sealed 128-D embedding is 512 bytes + nonce + tag; anything far larger is hostile


class _Msg(msgspec.Struct, kw_only=True, frozen=True, tag_field="type", omit_defaults=True):
    pass


class Sighting(_Msg, tag="sighting.v1", frozen=True):  # frozen repeated for type checkers (msgspec inherits it)
    """One face seen by one camera: the edge's output. Carries no image bytes by default."""

    event_id: str
    camera_id: str
    zone: str
    captured_at: float  # epoch seconds at frame capture
    track_id: int
    box: tuple[int, int, int, int]  # x, y, w, h in pixels
    quality: float
    embedding: bytes = b""  # raw float32; empty when sealed
    dim: int = EMBEDDING_DIM
    sealed: bytes = b""  # AES-GCM ciphertext of ``embedding`` under an epoch key (policy/crypto)
    key_id: str = ""  # which epoch key sealed it
    # e-gate: the identity the traveller claims (passport / boarding pass read at the gate). The subject's
    # pseudonym (``ps-…``) when the run has a key holder, else its id; empty = no claim (1:N identification)
    claimed_subject: str = ""

    def vector(self) -> np.ndarray:
        return embedding_from_bytes(self.embedding, self.dim)


class ZoneCount(_Msg, tag="zonecount.v1", frozen=True):  # frozen repeated for type checkers (msgspec inherits it)
    """Aggregate from a camera in a non-biometric zone: how many faces, no identities, no embeddings."""

    camera_id: str
    zone: str
    window_start: float
    window_end: float
    faces: int


Decision = Literal["match", "unknown", "refused", "verified", "rejected"]


class Match(_Msg, tag="match.v1", frozen=True):  # frozen repeated for type checkers (msgspec inherits it)
    """The matcher's decision on one admitted sighting. Unknown faces carry no subject and no embedding.

    1:N identification gives ``match`` / ``unknown``; a sighting with a ``claimed_subject`` is verified 1:1
    against that subject only and gives ``verified`` (subject and distance set) / ``rejected`` (no subject,
    no distance: the live face is not the claimed person, or the claimed person is not enrolled; ``rule``
    says which). ``refused``: the policy stopped it. ``verified`` and ``rejected`` were added to match.v1
    as new values: readers with a closed list of decisions must accept them (see broker/schema.json).
    """

    event_id: str
    camera_id: str
    zone: str
    purpose: str
    captured_at: float
    matched_at: float
    decision: Decision
    subject_id: str | None = None
    distance: float | None = None
    rule: str = ""  # policy rule that refused it ("refused"), or why a claim was "rejected"
    source_partition: int = -1
    source_offset: int = -1
    # with a key holder the subject reference travels sealed under its purpose's epoch key (policy.crypto.outputs):
    # ``subject_id`` is then empty here, and the record names nobody once the key holder destroyed that key at TTL
    sealed: bytes = b""
    key_id: str = ""


class TrackUpdate(_Msg, tag="trackupdate.v1", frozen=True):  # frozen repeated for type checkers (msgspec inherits it)
    """A consented subject's trajectory moved: seen at a camera, possibly in a new zone."""

    event_id: str
    subject_id: str
    camera_id: str
    zone: str
    prev_zone: str | None
    at: float
    captured_at: float
    dwell_s: float = 0.0
    plausible: bool = True  # False when the transition is faster than walking
    sealed: bytes = b""  # the subject reference, sealed under its purpose's epoch key (as on Match)
    key_id: str = ""


class Alert(_Msg, tag="alert.v1", frozen=True):  # frozen repeated for type checkers (msgspec inherits it)
    alert_id: str
    kind: str
    at: float
    zone: str
    subject_id: str | None = None
    detail: str = ""
    sealed: bytes = b""  # the subject reference, sealed under its purpose's epoch key (as on Match)
    key_id: str = ""


class AuditRecord(_Msg, tag="audit.v1", frozen=True):  # frozen repeated for type checkers (msgspec inherits it)
    """One decision, access, export or erasure, chained to the previous record by hash."""

    seq: int
    at: float
    actor: str
    action: str
    decision: str
    rule: str = ""
    subject_id: str | None = None
    object_id: str | None = None
    policy_version: str = ""
    prev_hash: str = ""
    hash: str = ""


class ErasureRequest(_Msg, tag="erasure.v1", frozen=True):  # frozen repeated for type checkers (msgspec inherits it)
    request_id: str
    subject_id: str
    requested_at: float
    reason: str = "consent-withdrawn"
    subject_ref: str = ""  # the subject's pseudonym on the output topics, attached while its key still existed
    # with a key holder, subject_id and subject_ref travel only inside ``sealed`` (AES-GCM under the ``control``
    # key class): a broker reader cannot join an erased subject to its pseudonymous matches and tracks
    sealed: bytes = b""
    key_id: str = ""
    # with a key holder: who issued it (the key-holder role that asked for the signature) and the key holder's
    # Ed25519 signature over the rest of the request; a request without a valid one changes nothing anywhere
    issuer: str = ""
    signature: bytes = b""


class DeadLetter(_Msg, tag="deadletter.v1", frozen=True):  # frozen repeated for type checkers (msgspec inherits it)
    """A message a stage could not process, with why. The original bytes are kept as they came."""

    source_topic: str
    source_partition: int
    source_offset: int
    stage: str
    reason: str
    at: float
    payload: bytes = b""


Message = Sighting | ZoneCount | Match | TrackUpdate | Alert | AuditRecord | ErasureRequest | DeadLetter
ALL_TYPES: tuple[type[_Msg], ...] = (Sighting, ZoneCount, Match, TrackUpdate, Alert, AuditRecord, ErasureRequest, DeadLetter)

M = TypeVar("M", bound=_Msg)

_encoder = msgspec.msgpack.Encoder()
_decoders: dict[object, msgspec.msgpack.Decoder] = {}


class MessageError(ValueError):
    """The bytes are not a valid message of the expected type; the text says why."""


def encode(msg: _Msg) -> bytes:
    return _encoder.encode(msg)


def decode(data: bytes, kind: type[M] | object = Message) -> M:
    """Decode ``data`` as ``kind`` (a message type or a Union of them); raise MessageError if it is not."""
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    try:
        return dec.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MessageError(f"undecodable message: {exc}") from None


def embedding_to_bytes(vec: np.ndarray) -> bytes:
    import numpy as np

    return np.ascontiguousarray(vec, dtype=EMBEDDING_DTYPE).tobytes()


def embedding_from_bytes(data: bytes, dim: int) -> np.ndarray:
    """Return the float32 vector; raise MessageError on a wrong length or a non-finite value."""
    import numpy as np

    if len(data) != dim * EMBEDDING_ITEMSIZE:
        raise MessageError(f"embedding has {len(data)} bytes, expected {dim * EMBEDDING_ITEMSIZE} for dim {dim}")
    vec = np.frombuffer(data, dtype=EMBEDDING_DTYPE)
    if not np.isfinite(vec).all():
        raise MessageError("embedding contains NaN or infinity")
    return vec


def check_sighting(s: Sighting) -> None:
    """Field-level sanity a schema cannot express. Raises MessageError with the reason."""
    if faults.disabled("message.checks"):
        return
    if not s.event_id or not s.camera_id:
        raise MessageError("sighting without event_id or camera_id")
    if not math.isfinite(s.captured_at) or not math.isfinite(s.quality):
        raise MessageError("sighting with a non-finite time or quality")
    if s.box[2] < 0 or s.box[3] < 0:
        raise MessageError("sighting with a negative box size")
    if s.dim != EMBEDDING_DIM:  # the matcher's index has one dimension: anything else is poison, not a face
        raise MessageError(f"sighting with dim {s.dim}; this contract carries {EMBEDDING_DIM}-D embeddings only")
    if len(s.sealed) > MAX_SEALED_BYTES:
        raise MessageError(f"sealed payload of {len(s.sealed)} bytes (at most {MAX_SEALED_BYTES})")
    if not s.sealed:
        embedding_from_bytes(s.embedding, s.dim)

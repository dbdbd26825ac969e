"""Anchors for the audit chains: the key holder countersigns each chain's head (Ed25519) and keeps the latest.

A hash chain shows a changed or removed record in its middle, but not a cut tail, a chain rewritten from the
start, or a deleted file. Each stage's audit mirror (:mod:`policy.mirror`) therefore sends the head it has
just copied to the audit topic, ``(chain, seq, hash)``, to the key holder, a process with its own state the
stages cannot write. The holder refuses a head that goes back (seq lower than its checkpoint: a truncated
chain) or names another hash at the same seq (rewritten), and otherwise keeps it and signs
``chain, seq, hash, time`` with its Ed25519 key. The verifier (:func:`verify_anchored`, used by ``paxsim audit
verify``, ``/api/audit/verify`` and the scan) checks every signature and that every checkpointed chain still
holds its checkpointed record: a cut tail, a rewrite and a deleted chain file are found. The latest
checkpoint per chain is enough: the chain's hashes link every earlier record to it.

A stage could still hide records it writes *after* its last checkpoint (about one mirror tick, ~1 s); the
key holder's checkpoints survive its restart only with ``--state`` (:mod:`policy.keystore`).
"""

from __future__ import annotations

import base64
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from core import faults

_LABEL = b"paxsim-audit-checkpoint-v1"
_CONTROL_LABEL = b"paxsim-control-message-v1"  # the same key signs control messages: a separate domain


class CheckpointRefused(Exception):
    """The head goes back, contradicts the chain's checkpoint (truncated or rewritten), or does not show that it
    extends it. ``need_seq``: the checkpointed seq whose hash, as the chain now holds it, the caller must show."""

    def __init__(self, detail: str, need_seq: int | None = None) -> None:
        super().__init__(detail)
        self.need_seq = need_seq


# The chain each stage's runtime writes, anchored by that stage's credential alone. Every other chain (consent,
# export, dashboard-api, offline tools) is written by tools and mirrored by whichever stage runs: any stage
# credential but the edge's may anchor those. An edge credential anchors the edge's chain and nothing else.
OWNED_CHAINS = {"edge": "edge", "gate": "gate", "matcher": "matcher"}


def may_checkpoint(role: str, chain: str) -> bool:
    """May a credential of ``role`` have ``chain``'s head countersigned?"""
    if role == "admin":
        return True
    owner = next((r for r, name in OWNED_CHAINS.items() if chain == name), None)
    if owner is not None:
        return owner == role
    return role in ("gate", "matcher", "dashboard")


def _message(chain: str, seq: int, head: str, at: float) -> bytes:
    return b"\n".join([_LABEL, chain.encode(), str(seq).encode(), head.encode(), f"{at:.6f}".encode()])


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


class Notary:
    """The key holder's half: latest checkpoint per chain, signed."""

    def __init__(self, private_key: bytes | None = None, checkpoints: dict[str, dict] | None = None) -> None:
        self._sk = Ed25519PrivateKey.from_private_bytes(private_key) if private_key else Ed25519PrivateKey.generate()
        self._lock = threading.Lock()
        self.checkpoints: dict[str, dict] = dict(checkpoints or {})

    def private_bytes(self) -> bytes:
        return self._sk.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())

    @property
    def public_key(self) -> str:
        return _b64(self._sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))

    def checkpoint(self, chain: str, seq: int, head: str, at: float | None = None, prev: tuple[int, str] | None = None) -> dict:
        """Keep and sign ``(chain, seq, head)``; CheckpointRefused when it contradicts the last one. A head past
        the last checkpoint needs ``prev``, the chain's ``(seq, hash)`` at that checkpoint as the chain holds it
        now: a tail cut and regrown by the writer has another hash there, and is refused."""
        at = time.time() if at is None else at
        with self._lock:
            last = self.checkpoints.get(chain)
            if last is not None:
                if seq < last["seq"]:
                    raise CheckpointRefused(f"chain {chain} was checkpointed at seq {last['seq']}; seq {seq} goes back (truncated?)")
                if seq == last["seq"] and head != last["hash"]:
                    raise CheckpointRefused(f"chain {chain} seq {seq} was checkpointed with another hash (rewritten?)")
                if seq == last["seq"]:
                    return last
                if prev is None or prev[0] != last["seq"]:
                    raise CheckpointRefused(f"chain {chain}: show its hash at seq {last['seq']}", need_seq=int(last["seq"]))
                if prev[1] != last["hash"]:
                    raise CheckpointRefused(f"chain {chain} holds another record at its checkpointed seq {last['seq']} (cut and regrown?)")
            cp = {"chain": chain, "seq": seq, "hash": head, "at": at, "sig": _b64(self._sk.sign(_message(chain, seq, head, at)))}
            self.checkpoints[chain] = cp
            return cp

    def sign_control(self, issuer: str, payload: bytes) -> str:
        """Sign a control message (an erasure request) on behalf of ``issuer``, the role of the credential that
        asked: the issuer cannot claim another name, and a stage without the right cannot get a signature."""
        return _b64(self._sk.sign(_CONTROL_LABEL + b"\n" + issuer.encode() + b"\n" + payload))

    def signed(self) -> dict:
        with self._lock:
            return {"public_key": self.public_key, "checkpoints": sorted(self.checkpoints.values(), key=lambda c: c["chain"])}


def control_signature_ok(public_key: str, issuer: str, payload: bytes, signature: bytes) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(signature, _CONTROL_LABEL + b"\n" + issuer.encode() + b"\n" + payload)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def signature_ok(public_key: str, cp: dict) -> bool:
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key))
        key.verify(base64.b64decode(cp["sig"]), _message(cp["chain"], int(cp["seq"]), cp["hash"], float(cp["at"])))
    except (InvalidSignature, ValueError, KeyError, TypeError):
        return False
    return True


@dataclass(frozen=True, slots=True)
class AnchorProblem:
    chain: str
    kind: str  # forged | deleted | anchor (truncated or rewritten: from policy.audit.verify)
    detail: str

    def __str__(self) -> str:
        return f"{self.chain}: {self.kind}: {self.detail}"


def verify_anchored(
    directory: Path, signed: dict, known_key: str | None = None
) -> tuple[list, list[AnchorProblem], dict[str, tuple[int, str]]]:
    """Verify every chain file in ``directory`` against the key holder's checkpoints. Returns the per-file
    reports (:func:`policy.audit.verify`, with the checkpoint as anchor), the problems only the anchors
    show (a bad signature, a checkpointed chain whose file is gone), and the anchors whose signature holds,
    chain → (seq, hash). ``known_key``: the public key to insist on (else the one the checkpoints came with)."""
    from policy.audit import verify

    key = known_key or signed["public_key"]
    problems: list[AnchorProblem] = []
    anchors: dict[str, tuple[int, str]] = {}
    for cp in signed.get("checkpoints", []):
        if not signature_ok(key, cp):
            problems.append(AnchorProblem(cp.get("chain", "?"), "forged", "checkpoint signature does not verify"))
            continue
        anchors[cp["chain"]] = (int(cp["seq"]), cp["hash"])
    files = {p.stem: p for p in sorted(Path(directory).glob("*.jsonl"))} if Path(directory).is_dir() else {}
    for chain, (seq, _h) in sorted(anchors.items()):
        if chain not in files:
            problems.append(AnchorProblem(chain, "deleted", f"checkpointed at seq {seq}, and its chain file is gone"))
    reports = [verify(p, anchor=anchors.get(name)) for name, p in files.items()]
    if faults.disabled("audit.anchor"):
        problems = []
    return reports, problems, anchors


def verify_with(directory: Path, keys: object | None) -> tuple[list, list[AnchorProblem], bool]:
    """:func:`verify_anchored` with the checkpoints of ``keys`` (a key source), or the plain chain check when
    there is no key holder; the last value says whether the chains were checked against anchors."""
    from policy.audit import verify_dir

    if keys is None:
        return verify_dir(directory), [], False
    reports, problems, _anchors = verify_anchored(directory, keys.checkpoints())  # type: ignore[attr-defined]
    return reports, problems, True

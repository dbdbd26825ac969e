"""Crypto-shredding: retention and erasure that hold even in an append-only log.

Two kinds of keys, both held only in memory (never written to the broker or to disk):

* **Epoch keys** seal sighting embeddings on the broker. Time is cut into epochs of ``epoch_s``; the keys
  of epoch *e* come from a forward hash ratchet (``C[e+1] = HMAC(C[e], "next")``, ``K[e] = HMAC(C[e],
  "enc")`` for AES-256-GCM, ``X[e] = X25519(HMAC(C[e], "x25519"))`` for sealed boxes: an edge gets only the
  public half of ``X[e]`` (:class:`PublicKeyRing`), so it seals sightings it cannot open). Whoever holds ``C[e]`` can derive every *later* key but never an earlier
  one, so destroying old keys is just advancing the chain. The key of epoch *e* is destroyed once
  ``e * epoch_s + ttl_s <= now``: a payload sealed at time *t* is unreadable by ``t + ttl_s`` at the
  latest and readable for at least ``ttl_s - epoch_s``.
* **Subject keys** (one random AES key per subject) seal stored trajectories and gallery entries;
  erasure destroys the key, which makes every copy of that subject's data unreadable wherever it is.

Distribution: one :class:`KeyHolder` per run (``policy.keyd``, a loopback HTTP process authenticated by
a per-run bearer token) owns the chains and the subject keys. Services use an :class:`EpochKeyRing` and
a :class:`SubjectVault` over a :class:`KeySource` (in-process :class:`LocalKeySource` or
:class:`HttpKeySource`); they fetch the chain state once, ratchet locally, and re-sync every epoch. Over
HTTP every fetch runs in a background thread (ring: re-sync every half epoch, next epoch's key derived
ahead; vault: aging subject keys re-confirmed before they expire), so no key-holder round trip ever runs
on a service's event loop once it is warm. Each round trip is timed in
``paxsim_crypto_keyd_call_seconds{op,where}`` (``where="loop"`` = it blocked an event loop). A
service restarted mid-run fetches the *current* state and so cannot read anything already expired. If
the key holder itself dies, all sealed data becomes unreadable (fail closed). See docs/privacy.md.

One module per role: ``ratchet`` (epochs and derived keys), ``holder`` (the key holder), ``sources`` (how a
service reaches it), ``ring`` (a service's key rings), ``boxes`` (sealed boxes), ``payloads`` (sealing and
signing messages), ``vault`` (subject keys), ``tokens``, ``errors``, ``metrics``.
"""

from __future__ import annotations

from policy.crypto.errors import CryptoError, KeyExpired, KeyForbidden, KeyHolderUnreachable, KeyUnavailable, SealError
from policy.crypto.holder import ISSUERS, LOCAL_ISSUER, KeyHolder
from policy.crypto.payloads import CONTROL_CLASS, open_erasure, open_sighting, seal_erasure, seal_sighting, sign_erasure, verify_erasure
from policy.crypto.ratchet import MAX_FUTURE_EPOCHS, ChainState, Ratchet, epoch_of, min_live_epoch
from policy.crypto.ring import EpochKeyRing, PublicKeyRing
from policy.crypto.sources import HttpKeySource, KeySource, LocalKeySource
from policy.crypto.tokens import new_token, token_matches
from policy.crypto.vault import SubjectVault

__all__ = [
    "CONTROL_CLASS",
    "ChainState",
    "CryptoError",
    "EpochKeyRing",
    "HttpKeySource",
    "ISSUERS",
    "KeyExpired",
    "KeyForbidden",
    "KeyHolder",
    "KeySource",
    "KeyHolderUnreachable",
    "KeyUnavailable",
    "LOCAL_ISSUER",
    "LocalKeySource",
    "MAX_FUTURE_EPOCHS",
    "PublicKeyRing",
    "Ratchet",
    "SealError",
    "SubjectVault",
    "epoch_of",
    "min_live_epoch",
    "new_token",
    "open_erasure",
    "open_sighting",
    "seal_erasure",
    "seal_sighting",
    "sign_erasure",
    "token_matches",
    "verify_erasure",
]

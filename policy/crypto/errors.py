"""Errors of the key code; every one fails closed (the caller drops or dead-letters, never guesses)."""

from __future__ import annotations


class CryptoError(Exception):
    """Base of the errors below."""


class KeyExpired(CryptoError):
    """The key for this payload is destroyed (past its TTL, erased) or was never known here."""


class KeyUnavailable(CryptoError):
    """The key holder cannot be reached; callers must fail closed (drop, never send plaintext)."""


class KeyHolderUnreachable(KeyUnavailable):
    """No answer from a configured key holder (down, restarting, network): transient, worth waiting for."""


class KeyForbidden(CryptoError):
    """This credential may not ask the key holder for that (its role's permissions, policy.keyd)."""


class SealError(CryptoError):
    """The ciphertext does not authenticate (tampered, wrong key, wrong context)."""

"""Where services get keys: the :class:`KeySource` protocol, the in-process source and the key holder's HTTP client."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from policy.crypto.errors import KeyExpired, KeyForbidden, KeyHolderUnreachable, KeyUnavailable
from policy.crypto.holder import LOCAL_ISSUER, KeyHolder
from policy.crypto.metrics import KEYD_CALL
from policy.crypto.ratchet import ChainState
from policy.notary import CheckpointRefused

log = logging.getLogger("paxsim.policy.crypto")


URL_ENV = "PAXSIM_KEYD_URL"
TOKEN_ENV = "PAXSIM_KEYD_TOKEN"  # a credential inline (tools, compose)
TOKEN_FILE_ENV = "PAXSIM_KEYD_TOKEN_FILE"  # ... or in a 0600 file: an environment is readable in /proc/PID/environ


def credential(env: Mapping[str, str], name: str, file_name: str) -> str | None:
    """A credential from ``env[name]``, else from the file ``env[file_name]`` names (stripped); None if neither."""
    if env.get(name):
        return env[name]
    if env.get(file_name):
        return Path(env[file_name]).read_text().strip()
    return None


def _on_event_loop() -> bool:
    """True when called from a thread that is running an asyncio event loop (where blocking I/O stalls it)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class KeySource(Protocol):
    """Where services get key material from: the key holder, in-process or over loopback HTTP."""

    def chain(self, name: str) -> ChainState: ...

    def subject_keys(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, bytes]]: ...

    def pseudonym_keys(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, bytes]]: ...

    def destroy_subject(self, subject_id: str) -> bool: ...

    def resolve_pseudonyms(self, pseudonyms: list[str]) -> dict[str, str]: ...

    def checkpoint(self, chain: str, seq: int, head: str, prev: tuple[int, str] | None = None) -> dict: ...

    def checkpoints(self) -> dict: ...

    def sign_control(self, payload: bytes) -> tuple[str, bytes]: ...

    def control_key(self) -> str: ...

    def public_chain(self, name: str) -> dict: ...


class LocalKeySource:
    """A :class:`KeySource` over a :class:`KeyHolder` in this process (tests, single-process tools)."""

    def __init__(self, holder: KeyHolder) -> None:
        self.holder = holder

    def chain(self, name: str) -> ChainState:
        return self.holder.chain(name)

    def subject_keys(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, bytes]]:
        return self.holder.subject_keys(subject_ids, create)

    def pseudonym_keys(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, bytes]]:
        return self.holder.pseudonym_keys(subject_ids, create)

    def destroy_subject(self, subject_id: str) -> bool:
        return self.holder.destroy_subject(subject_id)

    def checkpoint(self, chain: str, seq: int, head: str, prev: tuple[int, str] | None = None) -> dict:
        return self.holder.checkpoint(chain, seq, head, prev)

    def checkpoints(self) -> dict:
        return self.holder.checkpoints()

    def resolve_pseudonyms(self, pseudonyms: list[str]) -> dict[str, str]:
        return self.holder.resolve_pseudonyms(pseudonyms)

    def sign_control(self, payload: bytes) -> tuple[str, bytes]:
        return LOCAL_ISSUER, base64.b64decode(self.holder.sign_control(LOCAL_ISSUER, payload))

    def control_key(self) -> str:
        return self.holder.notary.public_key

    def public_chain(self, name: str) -> dict:
        return self.holder.public_chain(name)


class HttpKeySource:
    """A :class:`KeySource` talking to ``policy.keyd`` on loopback with the run's bearer token."""

    def __init__(self, url: str, token: str, timeout_s: float = 2.0) -> None:
        import httpx

        self._client = httpx.Client(
            base_url=url.rstrip("/"), timeout=timeout_s, headers={"Authorization": f"Bearer {token}"}, trust_env=False
        )
        self._control_key: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HttpKeySource:
        """The run's key holder: its URL and this process's credential, given as a file or (tools) inline."""
        env = os.environ if environ is None else environ
        if not env.get(URL_ENV):
            raise KeyUnavailable(f"{URL_ENV} is not set: no key holder for this run")
        try:
            token = credential(env, TOKEN_ENV, TOKEN_FILE_ENV)
        except OSError as exc:
            raise KeyUnavailable(f"cannot read the key-holder credential in ${TOKEN_FILE_ENV}: {exc}") from None
        if not token:
            raise KeyUnavailable(f"neither {TOKEN_ENV} nor {TOKEN_FILE_ENV} is set: no credential for the key holder")
        return cls(env[URL_ENV], token)

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        import httpx

        op = path.split("/")[2] if path.startswith("/v1/") else path
        where = "loop" if _on_event_loop() else "thread"
        t0 = time.perf_counter()
        try:
            r = self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise KeyHolderUnreachable(f"key holder unreachable: {exc}") from None
        finally:
            dt = time.perf_counter() - t0
            KEYD_CALL.labels(op, where).observe(dt)
            log.info(
                "key holder call",
                extra={
                    "op": op,
                    "where": where,
                    "ids": len(body.get("ids", ())) if body else 0,
                    "ms": round(dt * 1000, 2),
                    "thread_name": threading.current_thread().name,
                },
            )
        if r.status_code == 404:
            raise KeyExpired(r.json().get("detail", "not found"))
        if r.status_code == 409:
            body409 = r.json()
            raise CheckpointRefused(body409.get("detail", "checkpoint refused"), need_seq=body409.get("need_seq"))
        if r.status_code == 403:
            raise KeyForbidden(r.json().get("detail", "forbidden"))
        if r.status_code != 200:
            raise KeyUnavailable(f"key holder answered {r.status_code}: {r.text[:200]}")
        return r.json()

    def chain(self, name: str) -> ChainState:
        return ChainState.from_json(self._call("GET", f"/v1/chain/{name}"))

    def public_chain(self, name: str) -> dict:
        """The public sealing keys of a class's current epochs (an edge's credential gets only these)."""
        return self._call("GET", f"/v1/chain/{name}/public")

    def whoami(self) -> str:
        """The role of this credential (KeyUnavailable if the holder is down or refuses the token)."""
        return str(self._call("GET", "/v1/whoami")["role"])

    def subject_keys(self, subject_ids: list[str], create: bool) -> dict[str, tuple[str, bytes]]:
        d = self._call("POST", "/v1/subjects", {"ids": subject_ids, "create": create})
        return {sid: (v["key_id"], base64.b64decode(v["key"])) for sid, v in d["keys"].items()}

    def pseudonym_keys(self, subject_ids: list[str], create: bool = False) -> dict[str, tuple[str, bytes]]:
        """Pseudonym keys of existing subjects (never made here: ``create`` is ignored by the holder)."""
        d = self._call("POST", "/v1/subjects/pseudonym-keys", {"ids": subject_ids})
        return {sid: (v["key_id"], base64.b64decode(v["key"])) for sid, v in d["keys"].items()}

    def destroy_subject(self, subject_id: str) -> bool:
        return bool(self._call("POST", "/v1/subjects/destroy", {"id": subject_id})["destroyed"])

    def resolve_pseudonyms(self, pseudonyms: list[str]) -> dict[str, str]:
        return dict(self._call("POST", "/v1/pseudonyms/resolve", {"pseudonyms": pseudonyms})["subjects"])

    def checkpoint(self, chain: str, seq: int, head: str, prev: tuple[int, str] | None = None) -> dict:
        """The key holder's signed checkpoint of an audit chain head; CheckpointRefused (409) if it goes back, or
        does not show (``prev``: the chain's seq and hash at the last checkpoint) that it extends it."""
        body: dict = {"chain": chain, "seq": seq, "hash": head}
        if prev is not None:
            body["prev"] = {"seq": prev[0], "hash": prev[1]}
        return self._call("POST", "/v1/audit/checkpoint", body)

    def checkpoints(self) -> dict:
        return self._call("GET", "/v1/audit/checkpoints")

    def sign_control(self, payload: bytes) -> tuple[str, bytes]:
        """The key holder's signature of a control message, as (issuer: this credential's role, signature);
        KeyForbidden for a role that may not issue control messages."""
        d = self._call("POST", "/v1/control/sign", {"payload": base64.b64encode(payload).decode()})
        return str(d["issuer"]), base64.b64decode(d["signature"])

    def control_key(self) -> str:
        """The key holder's public key (Ed25519, base64) that control messages are signed with; cached."""
        if self._control_key is None:
            self._control_key = str(self._call("GET", "/v1/control/key")["public_key"])
        return self._control_key

    def close(self) -> None:
        self._client.close()

"""The run's key holder: a tiny loopback HTTP process that owns every key in memory (``python -m policy.keyd``).

Key classes come from the policy: ``sightings`` (epoch ``retention.epoch_s``, TTL ``retention.sightings_s``)
and ``tracklets`` (TTL ``unknown_faces.tracklets.ttl_s``). A background thread destroys expired epoch keys
every ``tick``; a policy reload changes TTLs (a shorter TTL destroys at once; a longer one cannot revive).

Every request but ``/healthz`` needs ``Authorization: Bearer <token>``: the admin token and one token per stage
role, read from 0600 files named by ``PAXSIM_KEYD_TOKEN_FILE`` and ``PAXSIM_KEYD_ROLE_TOKENS_FILE`` (or inline in
``PAXSIM_KEYD_TOKEN`` / ``PAXSIM_KEYD_ROLE_TOKENS``; never argv). Its clients name their credential the same way.
It binds to loopback only. Without ``--state`` nothing is
written to disk and a restart loses every key (all sealed data becomes unreadable); with ``--state FILE`` the
keys, erasure tombstones and chain positions are kept in FILE, sealed under ``--master-key`` (both 0600, the key
in another directory; :mod:`policy.keystore`), so a restarted holder carries on and an erased subject stays erased.

    GET    /healthz                       → {"ok": true}
    GET    /v1/whoami                     → {"role": …} (any valid credential)
    GET    /v1/chain/{name}/public        → public sealing keys of the current epochs (the edge: seal, never open)
    GET    /v1/control/key                → {"public_key": …} (Ed25519, verifies control messages; any credential)
    POST   /v1/control/sign {payload}     → {"issuer": role, "signature"} (roles that may issue: gate, dashboard)
    GET    /v1/chain/<class>              → the chain state of the oldest live epoch
    POST   /v1/subjects {"ids": [...], "create": bool} → {"keys": {id: {"key_id", "key"}}}
    POST   /v1/subjects/pseudonym-keys {"ids": [...]} → {"keys": {id: {"key_id", "key"}}}: pseudonym keys, no raw key
    POST   /v1/subjects/destroy {"id": ...} → {"destroyed": bool}  (the id in the body: URLs end up in logs)
    any other method                      → 405 (a key is destroyed through the POST route alone)
    POST   /v1/audit/checkpoint {"chain", "seq", "hash"} → the signed checkpoint (409: goes back, rewritten)
    GET    /v1/audit/checkpoints          → {"public_key", "checkpoints": [...]} (policy.notary)

On start it prints one JSON line ``{"url": ..., "pid": ...}`` on stdout.
"""

from __future__ import annotations

import atexit
import base64
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core import faults
from core.files import write_private
from policy.crypto import CONTROL_CLASS, KeyExpired, KeyHolder, new_token, token_matches
from policy.crypto.outputs import PURPOSE_CLASS_PREFIX, purpose_class, purpose_epoch_s
from policy.crypto.sources import TOKEN_ENV, TOKEN_FILE_ENV, URL_ENV, credential
from policy.keystore import SealedState, StateFileError
from policy.notary import CheckpointRefused, may_checkpoint
from policy.policyfile import Policy, PolicyHolder

log = logging.getLogger("paxsim.policy.keyd")

ROLE_TOKENS_ENV = "PAXSIM_KEYD_ROLE_TOKENS"  # "role:token,role:token": one credential per stage (least privilege)
# the same from files (0600) instead: a process's environment is readable in /proc/PID/environ and `docker inspect`
ROLE_TOKENS_FILE_ENV = "PAXSIM_KEYD_ROLE_TOKENS_FILE"  # one file, "role:token,..."
ROLE_TOKEN_FILES_ENV = "PAXSIM_KEYD_ROLE_TOKEN_FILES"  # "role:path,...", a file per role (compose secrets)

# What each role may ask for. ``PAXSIM_KEYD_TOKEN`` is ``admin`` (enrolment, tools, single-token deployments).
# The edge seals to the sightings class's public keys (it cannot open a sighting, its own included) and names
# e-gate claims by pseudonym (subject keys); it can neither destroy a key, nor resolve a pseudonym, nor touch
# the control class.
# ``subjects``: raw subject keys (they seal and open gallery templates): the matcher and the auditor only.
# ``pseudonyms``: pseudonym keys (policy.crypto.holder.pseudonym_key), which name a subject and open nothing: the
# gate and the dashboard, which attach pseudonyms to erasure requests and API answers.
PERMISSIONS: dict[str, frozenset[str]] = {
    # e-gate claims are sealed with the face: the edge needs no subject key at all
    "edge": frozenset({"seal:sightings", "checkpoint"}),
    # the gate forwards sealed bytes (no sighting key); it and the dashboard publish the erasure outbox (issue)
    "gate": frozenset({"chain:control", "pseudonyms", "checkpoint", "issue"}),
    # chain:purpose: every purpose class (sealing and opening the subject references of matches, tracks, alerts)
    "matcher": frozenset(
        {"chain:sightings", "chain:tracklets", "chain:control", "chain:purpose", "subjects", "subjects:create", "destroy", "checkpoint"}
    ),
    "dashboard": frozenset({"chain:control", "chain:purpose", "pseudonyms", "checkpoint", "checkpoints", "issue"}),
    "auditor": frozenset({"chain:sightings", "chain:tracklets", "chain:control", "chain:purpose", "subjects", "resolve", "checkpoints"}),
    "admin": frozenset({"*"}),
}
STAGE_ROLES = {"edge": "edge", "policy": "gate", "matcher": "matcher", "dashboard": "dashboard"}  # paxsim command → role


def parse_role_tokens(text: str) -> dict[str, str]:
    """``role:token,...`` → {token: role}; ValueError naming an unknown role or a weak token."""
    out: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in text.split(","))):
        role, _, token = item.partition(":")
        if role not in PERMISSIONS:
            raise ValueError(f"{ROLE_TOKENS_ENV}: unknown role {role!r} (one of {', '.join(PERMISSIONS)})")
        if len(token) < MIN_TOKEN_CHARS:
            raise ValueError(f"{ROLE_TOKENS_ENV}: the {role} token is shorter than {MIN_TOKEN_CHARS} characters")
        out[token] = role
    return out


def role_tokens_from_files(spec: str) -> str:
    """``role:path,...`` → the ``role:token,...`` text :func:`parse_role_tokens` reads (each file stripped)."""
    pairs = [item.strip().partition(":") for item in spec.split(",") if item.strip()]
    return ",".join(f"{role}:{Path(path).read_text().strip()}" for role, _, path in pairs)


MIN_TOKEN_CHARS = 32  # a guessable token would hand out every key: refuse to start with a short one
MAX_BODY_BYTES = 1 << 20  # the largest request body (a pseudonym batch of ~20k); larger: 413, never read
REQUEST_TIMEOUT_S = 5.0  # a client that stops sending mid-request loses its connection, not a server thread
CONTROL_KEYS = (86_400.0, 30 * 86_400.0)  # control messages: daily epochs, kept as long as the erasure topic (30 d)


def key_classes(policy: Policy) -> dict[str, tuple[float, float]]:
    """name → (epoch_s, ttl_s) for every key class the policy defines: sightings, tracklets, control, and one
    class per purpose (``purpose.<name>``: the subject references on the output topics, policy.crypto.outputs)."""
    r, tr = policy.retention, policy.unknown_faces.tracklets
    classes = {
        "sightings": (r.epoch_s, r.sightings_s),
        "tracklets": (min(r.epoch_s, tr.ttl_s / 4), tr.ttl_s),
        CONTROL_CLASS: CONTROL_KEYS,
    }
    for name, rule in policy.purposes.items():
        classes[purpose_class(name)] = (purpose_epoch_s(rule.retention_s, r.epoch_s), rule.retention_s)
    return classes


class _Handler(BaseHTTPRequestHandler):
    server: KeyServer
    protocol_version = "HTTP/1.1"
    # Keep-alive + Nagle: the status line/headers and the body go out as two small writes; with Nagle on, the
    # second waits for the client's delayed ACK (~40 ms on Linux) — every key round trip cost ~44 ms instead
    # of < 1 ms. A buffered writer (flushed once per request by BaseHTTPRequestHandler) and TCP_NODELAY avoid it.
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    timeout = REQUEST_TIMEOUT_S  # socket timeout per read: a slow or silent client cannot hold a thread
    role: str | None = None  # of the authenticated caller (PERMISSIONS)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return  # never log requests (paths carry subject ids)

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        """Authenticate; the caller's role is kept for :meth:`_may`."""
        given = self.headers.get("Authorization", "")
        self.role = None
        if given.startswith("Bearer "):
            if token_matches(given[7:], self.server.token):
                self.role = "admin"
            else:
                self.role = next((r for tok, r in self.server.role_tokens.items() if token_matches(given[7:], tok)), None)
        if self.role is not None:
            return True
        self._send(401, {"detail": "missing or wrong bearer token"})
        return False

    def _may(self, what: str) -> bool:
        """Is the authenticated role allowed ``what``? Answers 403 when not."""
        perms = PERMISSIONS[self.role or ""]
        if "*" in perms or what in perms or faults.disabled("keyd.permissions"):
            return True
        self._send(403, {"detail": f"the {self.role} credential may not {what}"})
        return False

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/healthz":
            return self._send(200, {"ok": True})
        if self.path == "/metrics":  # counters only (requests, keys destroyed): never key material
            data = generate_latest()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return None
        if not self._authorized():
            return
        if self.path.startswith("/v1/chain/") and self.path.endswith("/public"):
            name = unquote(self.path[len("/v1/chain/") : -len("/public")])
            perms = PERMISSIONS[self.role or ""]
            if not ({"*", f"chain:{name}"} & perms) and not self._may(f"seal:{name}"):
                return None
            try:
                return self._send(200, self.server.holder.public_chain(name))
            except KeyExpired as exc:
                return self._send(404, {"detail": str(exc)})
        if self.path.startswith("/v1/chain/"):
            name = unquote(self.path[len("/v1/chain/") :])
            if not self._may("chain:purpose" if name.startswith(PURPOSE_CLASS_PREFIX) else f"chain:{name}"):
                return None
            try:
                state = self.server.holder.chain(name)
            except KeyExpired as exc:
                return self._send(404, {"detail": str(exc)})
            return self._send(200, state.to_json())
        if self.path == "/v1/whoami":  # any valid credential: the role it carries (a stage's start-up probe)
            return self._send(200, {"role": self.role})
        if self.path == "/v1/control/key":  # public: what every stage verifies control messages with
            return self._send(200, {"public_key": self.server.holder.notary.public_key})
        if self.path == "/v1/audit/checkpoints":
            if not self._may("checkpoints"):
                return None
            return self._send(200, self.server.holder.checkpoints())
        self._send(404, {"detail": "no such endpoint"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorized():
            return
        if self.path not in (
            "/v1/subjects",
            "/v1/subjects/pseudonym-keys",
            "/v1/subjects/destroy",
            "/v1/pseudonyms/resolve",
            "/v1/audit/checkpoint",
            "/v1/control/sign",
        ):
            return self._send(404, {"detail": "no such endpoint"})
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return self._send(400, {"detail": "bad Content-Length"})
        if n < 0:
            return self._send(400, {"detail": "bad Content-Length"})
        if n > MAX_BODY_BYTES:
            self.close_connection = True  # the body is never read: this connection cannot carry another request
            return self._send(413, {"detail": f"body over {MAX_BODY_BYTES} bytes"})
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
            need = {
                "/v1/subjects/destroy": "destroy",
                "/v1/pseudonyms/resolve": "resolve",
                "/v1/audit/checkpoint": "checkpoint",
                "/v1/control/sign": "issue",
                "/v1/subjects/pseudonym-keys": "pseudonyms",
            }.get(self.path, "subjects:create" if body.get("create") else "subjects")
            if not self._may(need):
                return None
            if self.path == "/v1/control/sign":  # signed for the credential's own role: an issuer cannot claim another
                issuer = self.role or ""
                return self._send(
                    200, {"issuer": issuer, "signature": self.server.holder.sign_control(issuer, base64.b64decode(body["payload"]))}
                )
            if self.path == "/v1/subjects/destroy":
                return self._send(200, {"destroyed": self.server.holder.destroy_subject(str(body["id"]))})
            if self.path == "/v1/pseudonyms/resolve":
                return self._send(200, {"subjects": self.server.holder.resolve_pseudonyms([str(p) for p in body["pseudonyms"]])})
            if self.path == "/v1/audit/checkpoint":
                chain, seq, head = str(body["chain"]), int(body["seq"]), str(body["hash"])
                prev = (int(body["prev"]["seq"]), str(body["prev"]["hash"])) if body.get("prev") is not None else None
                if not may_checkpoint(self.role or "", chain) and not faults.disabled(
                    "keyd.permissions"
                ):  # a stage anchors its own chain, never another's
                    return self._send(403, {"detail": f"the {self.role} credential may not checkpoint chain {chain!r}"})
                try:
                    return self._send(200, self.server.holder.checkpoint(chain, seq, head, prev))
                except CheckpointRefused as exc:
                    return self._send(409, {"detail": str(exc), "need_seq": exc.need_seq})
            ids = [str(i) for i in body["ids"]]
            create = bool(body.get("create", False))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return self._send(400, {"detail": f"bad request: {exc}"})
        if self.path == "/v1/subjects/pseudonym-keys":  # existing subjects only: naming never makes a key
            keys = self.server.holder.pseudonym_keys(ids, False)
        else:
            keys = self.server.holder.subject_keys(ids, create)
        self._send(200, {"keys": {sid: {"key_id": kid, "key": base64.b64encode(k).decode()} for sid, (kid, k) in keys.items()}})

    def _not_allowed(self) -> None:
        """Every other method: 405, whoever asks. Keys are destroyed by POST /v1/subjects/destroy alone (the
        ``destroy`` right), so that no second route can skip that check."""
        self.close_connection = True  # a body we did not read may follow
        self.send_response(405)
        self.send_header("Allow", "GET, POST")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_DELETE = do_PUT = do_PATCH = do_HEAD = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed  # noqa: N815


class KeyServer(ThreadingHTTPServer):
    """Serves a :class:`KeyHolder` on loopback; ``start()`` runs it and the shredder in daemon threads."""

    daemon_threads = True

    def __init__(
        self,
        holder: KeyHolder,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        tick_s: float = 0.05,
        allow_remote: bool = False,
        role_tokens: dict[str, str] | None = None,
    ) -> None:
        """``token``: the admin credential; ``role_tokens``: {token: role} (:data:`PERMISSIONS`)."""
        if not allow_remote and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the key holder binds to loopback only, not {host} (--allow-remote: only on a private network)")
        if len(token) < MIN_TOKEN_CHARS or "change-me" in token.lower():
            raise ValueError(
                f"the key holder's token must be a random string of at least {MIN_TOKEN_CHARS} characters, not a placeholder "
                f"({TOKEN_ENV}; e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        super().__init__((host, port), _Handler)
        self.holder, self.token, self.tick_s = holder, token, tick_s
        self.role_tokens = dict(role_tokens or {})
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def _shredder(self) -> None:
        while not self._stop.wait(self.tick_s):
            self.holder.shred()

    def start(self) -> KeyServer:
        threading.Thread(target=self.serve_forever, name="keyd-http", daemon=True).start()
        threading.Thread(target=self._shredder, name="keyd-shred", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.shutdown()
        self.server_close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m policy.keyd", description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1", help="listen address (loopback unless the services are on other hosts)")
    ap.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (containers on one private network; keys cross it in clear HTTP)",
    )
    ap.add_argument("--policy", default=None, help="policy file (default: $PAXSIM_POLICY or the packaged default)")
    ap.add_argument("--reload-s", type=float, default=1.0)
    ap.add_argument("--state", type=Path, default=None, help="sealed state file: keys and tombstones survive a restart")
    ap.add_argument(
        "--master-key",
        type=Path,
        default=None,
        help="master key file of --state (made if missing; required with --state, and not in the state file's directory)",
    )
    args = ap.parse_args(argv)
    try:
        token = credential(os.environ, TOKEN_ENV, TOKEN_FILE_ENV)
        role_spec = credential(os.environ, ROLE_TOKENS_ENV, ROLE_TOKENS_FILE_ENV) or role_tokens_from_files(
            os.environ.get(ROLE_TOKEN_FILES_ENV, "")
        )
    except OSError as exc:
        print(f"cannot read a key-holder credential file: {exc}", file=sys.stderr)
        return 2
    if not token:
        print(f"neither {TOKEN_ENV} nor {TOKEN_FILE_ENV} is set: refusing to serve keys without a token", file=sys.stderr)
        return 2
    policies = PolicyHolder.from_settings_path(args.policy)
    store = None
    if args.state is not None:
        master = args.master_key
        if master is None or master.resolve().parent == args.state.resolve().parent:
            # beside the state file, one copy of a directory (a backup, a volume snapshot) opens every key in it
            print("--state needs --master-key FILE, kept outside the state file's directory (e.g. a secret mount)", file=sys.stderr)
            return 2
        try:
            store = SealedState(args.state, master)
            holder = KeyHolder(key_classes(policies.current), store=store)
        except StateFileError as exc:
            print(str(exc), file=sys.stderr)
            return 2
    else:
        holder = KeyHolder(key_classes(policies.current))
    policies.on_change(lambda old, new: [holder.set_ttl(n, ttl, e) for n, (e, ttl) in key_classes(new).items()])
    try:
        roles = parse_role_tokens(role_spec or "")
        server = KeyServer(holder, token, host=args.host, port=args.port, allow_remote=args.allow_remote, role_tokens=roles).start()
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(json.dumps({"url": server.url, "pid": os.getpid()}), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(args.reload_s):
        policies.reload()
    server.stop()
    return 0


@dataclass
class KeydProcess:
    """A running ``policy.keyd`` child; ``env`` is what its clients need (pass it to every service)."""

    proc: subprocess.Popen
    url: str
    token: str
    policy_path: str | Path | None = None
    state: Path | None = None
    roles: dict[str, str] | None = None  # role → token, one credential per stage
    secrets: Path | None = None  # a 0700 directory of 0600 credential files: the children read their token there

    def alive(self) -> bool:
        return self.proc.poll() is None

    def restart(self) -> None:
        """Start it again on the same address with the same token and state file (clients keep their settings)."""
        self.stop()
        port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        self.proc = spawn_keyd(self.policy_path, self.token, port=port, state=self.state, roles=self.roles, secrets=self.secrets).proc

    @property
    def env(self) -> dict[str, str]:
        """The admin credential (enrolment, tools, the audit scan): its file, or the token itself without one."""
        if self.secrets is not None:
            return {URL_ENV: self.url, TOKEN_FILE_ENV: str(self.secrets / "admin")}
        return {URL_ENV: self.url, TOKEN_ENV: self.token}

    def stage_env(self) -> dict[str, dict[str, str]]:
        """Per ``paxsim`` stage command, the environment naming that stage's own credential only (its file)."""
        roles = self.roles or {}
        out = {}
        for cmd, role in STAGE_ROLES.items():
            if role in roles:
                given = {TOKEN_FILE_ENV: str(self.secrets / role)} if self.secrets is not None else {TOKEN_ENV: roles[role]}
                out[cmd] = {URL_ENV: self.url, **given}
        return out

    def stage_token(self, command: str) -> str:
        """The credential of the stage run by ``paxsim <command>``."""
        return (self.roles or {})[STAGE_ROLES[command]]

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_credentials(directory: Path, token: str, roles: dict[str, str]) -> Path:
    """The admin token, each role's token and the role list as 0600 files in ``directory`` (made 0700)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(directory / "admin", token.encode())
    for role, role_token in roles.items():
        write_private(directory / role, role_token.encode())
    write_private(directory / "role-tokens", ",".join(f"{r}:{t}" for r, t in roles.items()).encode())
    return directory


def spawn_keyd(
    policy_path: str | Path | None = None,
    token: str | None = None,
    port: int = 0,
    timeout_s: float = 10.0,
    state: Path | None = None,
    roles: dict[str, str] | None = None,
    secrets: Path | None = None,
) -> KeydProcess:
    """Start the key holder as a child process and wait for its ready line. ``state``: its sealed state file
    (a restart with the same file keeps the keys and tombstones). Credentials go by 0600 files in ``secrets``
    (default: a private temporary directory, removed at exit), never in an environment."""
    token = token or new_token()
    roles = roles or {role: new_token() for role in PERMISSIONS if role != "admin"}
    if secrets is None:
        secrets = Path(tempfile.mkdtemp(prefix="paxsim-keyd-"))
        atexit.register(shutil.rmtree, secrets, True)
    write_credentials(secrets, token, roles)
    base = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, ROLE_TOKENS_ENV)}
    env = {**base, TOKEN_FILE_ENV: str(secrets / "admin"), ROLE_TOKENS_FILE_ENV: str(secrets / "role-tokens")}
    cmd = [sys.executable, "-m", "policy.keyd", "--port", str(port)]
    if policy_path is not None:
        cmd += ["--policy", str(policy_path)]
    if state is not None:  # the master key lives with the credentials, away from the state file
        cmd += ["--state", str(state), "--master-key", str(secrets / "master.key")]
    from core.stack import die_with_parent  # the keys must not outlive the run, even after kill -9 of the parent

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, preexec_fn=die_with_parent)
    ready: dict = {}

    def read() -> None:
        line = proc.stdout.readline() if proc.stdout else ""
        if line:
            ready.update(json.loads(line))

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout_s)
    if "url" not in ready:
        proc.kill()
        raise RuntimeError(f"policy.keyd did not start within {timeout_s}s (exit code {proc.poll()})")
    return KeydProcess(proc, ready["url"], token, policy_path, state, roles, secrets)


if __name__ == "__main__":
    raise SystemExit(main())

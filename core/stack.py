"""A set of stage processes started from one place (the demo, ``paxsim up`` and the integration tests).

Each child is ``python -m paxsim.cli <stage> ...`` with its own metrics port and log file. Children get
PR_SET_PDEATHSIG so they die with their parent even after a ``kill -9`` of the parent: no orphans.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from core.config import ENV_PREFIX
from core.obs import Samples, free_port, parse_samples, total, wait_port  # noqa: F401  (total: re-exported for callers)
from core.paths import INSTANCE_ENV

PR_SET_PDEATHSIG = 1
TARGETS_FILE_NAME = "scrape-targets.json"  # Prometheus file_sd of the children; dashboard/scrape.py reads it


def die_with_parent() -> None:
    """``preexec_fn`` for children: the kernel SIGKILLs the child when its parent dies, however it dies; and the
    child gets a process group of its own, so that a terminal's Ctrl-C (SIGINT to the whole foreground group)
    reaches the parent alone, which then stops its children in order instead of seeing them all exit at once."""
    os.setpgid(0, 0)
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


@dataclass
class Child:
    name: str
    args: list[str]
    metrics_port: int
    log_path: Path
    module: str = "paxsim.cli"  # run as ``python -m <module> <args>``
    proc: subprocess.Popen[bytes] | None = None
    cpu_s: float = 0.0  # CPU seconds (user + system) at the last sample, summed over restarts
    rss_max: int = 0  # largest resident set seen, bytes
    _cpu_base: float = 0.0

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Stack:
    """Start, watch, kill and stop stage processes that share one environment.

    ``env`` normally holds only PAXSIM_CONFIG, the effective configuration the parent validated; the parent's
    own ``PAXSIM__*`` overrides are already in it and are not passed on a second time."""

    run_dir: Path
    env: dict[str, str]
    children: dict[str, Child] = field(default_factory=dict)
    # per stage command (the first argument, e.g. "edge"): added to ``env`` for that stage only (its credentials)
    stage_env: dict[str, dict[str, str]] = field(default_factory=dict)
    # one client for every scrape: httpx.get() builds a new client, and with it an SSL context (tens of ms of
    # CPU), on every call; the demo scrapes each child about once a second, on the cores the stages need
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=2.0), repr=False)

    def spawn(
        self, name: str, stage_args: list[str], metrics_flag: str = "--metrics-port", module: str = "paxsim.cli", port: int | None = None
    ) -> Child:
        """Start ``python -m module stage_args <metrics_flag> PORT``; ``port`` None (or 0) = a free one."""
        port = port or free_port()
        child = Child(name, [*stage_args, metrics_flag, str(port)], port, self.run_dir / f"{name}.log", module)
        self.children[name] = child
        self._start(child)
        self._write_targets()
        return child

    def _write_targets(self) -> None:
        """Publish every child's metrics address as a Prometheus ``file_sd`` file (``scrape-targets.json``):
        the dashboard and a Prometheus server both discover the stages from it."""
        groups = [{"targets": [f"127.0.0.1:{c.metrics_port}"], "labels": {"job": c.name}} for c in self.children.values()]
        tmp = self.run_dir / f".{TARGETS_FILE_NAME}.tmp"
        tmp.write_text(json.dumps(groups, indent=1))
        tmp.replace(self.run_dir / TARGETS_FILE_NAME)

    def _start(self, child: Child) -> None:
        log = child.log_path.open("ab")
        child.proc = subprocess.Popen(
            [sys.executable, "-m", child.module, *child.args],
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)},
                **self.env,
                **self.stage_env.get(child.args[0] if child.args else "", {}),
                INSTANCE_ENV: child.name,
            },
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        log.close()

    def restart(self, name: str) -> Child:
        child = self.children[name]
        if child.alive():
            raise RuntimeError(f"{name} is still running")
        child._cpu_base = child.cpu_s
        self._start(child)
        return child

    def sample_resources(self) -> None:
        """Update each live child's CPU seconds and peak RSS, its worker processes included (the edge's vision
        pool does the pixel work in children of the edge process). Call periodically; a child or worker that
        exited keeps its last sample."""
        for child in self.children.values():
            if not child.alive():
                continue
            try:
                p = psutil.Process(child.proc.pid)  # type: ignore[union-attr]
                procs = [p, *p.children(recursive=True)]
            except psutil.Error:
                continue
            cpu = rss = 0.0
            for q in procs:
                try:
                    t = q.cpu_times()
                    cpu += t.user + t.system
                    rss += q.memory_info().rss
                except psutil.Error:
                    continue
            child.cpu_s = max(child.cpu_s, child._cpu_base + cpu)
            child.rss_max = max(child.rss_max, int(rss))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        child = self.children[name]
        if child.proc and child.proc.poll() is None:
            child.proc.send_signal(sig)
            child.proc.wait(timeout=10)

    def wait_ready(self, name: str, timeout: float = 30.0) -> bool:
        return wait_port("127.0.0.1", self.children[name].metrics_port, timeout)

    def scrape(self, name: str) -> Samples:
        """Current samples of a child's /metrics, keyed by (sample name, sorted labels). Empty if unreachable."""
        child = self.children[name]
        try:
            text = self._http.get(child.metrics_url).text
        except httpx.HTTPError:
            return {}
        return parse_samples(text)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM every child, SIGKILL what is left after ``grace_s``."""
        self._http.close()  # its connections go to the children; a later scrape gets a fresh client (and {} if dead)
        self._http = httpx.Client(timeout=2.0)
        for child in self.children.values():
            if child.alive():
                child.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        deadline = time.monotonic() + grace_s
        for child in self.children.values():
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait(timeout=5)

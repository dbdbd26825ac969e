"""Scraping the other stages' ``/metrics``: targets, a short history, rates and histogram quantiles.

Targets come from (all optional, merged):

* ``PAXSIM_DASHBOARD_TARGETS="edge=127.0.0.1:9100,policy=127.0.0.1:9101"`` (name=host:port or a URL);
* a Prometheus ``file_sd`` JSON file, ``PAXSIM_DASHBOARD_TARGETS_FILE`` or ``<state_dir>/scrape-targets.json``:
  ``[{"targets": ["127.0.0.1:9100"], "labels": {"job": "edge"}}]``, re-read when it changes, so the same
  file can feed Prometheus (``file_sd_configs``) and the dashboard.

Quantiles are computed like PromQL's ``histogram_quantile`` over the bucket increase in a window.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client import generate_latest

from core.obs import Samples, parse_samples, total  # noqa: F401  (re-exported: panels use scrape.total)
from core.stack import TARGETS_FILE_NAME  # written by Stack.spawn

log = logging.getLogger("paxsim.dashboard.scrape")

TARGETS_ENV = "PAXSIM_DASHBOARD_TARGETS"
TARGETS_FILE_ENV = "PAXSIM_DASHBOARD_TARGETS_FILE"
SELF = "dashboard"  # the dashboard's own registry is always a target under this name


def _url(addr: str) -> str:
    addr = addr.strip()
    if "://" not in addr:
        addr = "http://" + addr
    return addr if addr.rstrip("/").endswith("/metrics") else addr.rstrip("/") + "/metrics"


def parse_targets(spec: str) -> dict[str, str]:
    """``name=host:port,...`` → {name: metrics URL}. Raises ValueError naming a bad item."""
    out: dict[str, str] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, addr = item.partition("=")
        if not sep or not name or not addr:
            raise ValueError(f"{TARGETS_ENV}: expected name=host:port, got {item!r}")
        out[name.strip()] = _url(addr)
    return out


def read_file_sd(path: Path) -> dict[str, str]:
    """Prometheus file_sd JSON → {job: URL}; several targets of one job get ``job-1``, ``job-2`` ..."""
    groups = json.loads(path.read_text())
    out: dict[str, str] = {}
    for g in groups:
        job = str(g.get("labels", {}).get("job", "target"))
        targets = list(g.get("targets", []))
        for i, addr in enumerate(targets):
            out[job if len(targets) == 1 else f"{job}-{i + 1}"] = _url(addr)
    return out


def by_label(samples: Samples, name: str, label: str, **labels: str) -> dict[str, float]:
    want = set(labels.items())
    out: dict[str, float] = {}
    for (n, lbl), v in samples.items():
        if n == name and want <= set(lbl):
            key = dict(lbl).get(label, "")
            out[key] = out.get(key, 0.0) + v
    return out


def buckets(samples: Samples, name: str, **labels: str) -> dict[float, float]:
    """Cumulative bucket counts of histogram ``name`` (summed over other labels), keyed by upper bound."""
    want = set(labels.items())
    out: dict[float, float] = {}
    for (n, lbl), v in samples.items():
        if n == name + "_bucket" and want <= set(lbl):
            le = float(dict(lbl)["le"])
            out[le] = out.get(le, 0.0) + v
    return out


def histogram_quantile(q: float, cumulative: dict[float, float]) -> float | None:
    """PromQL's histogram_quantile: linear interpolation inside the bucket holding rank q·count."""
    if not cumulative:
        return None
    bounds = sorted(cumulative)
    count = cumulative[bounds[-1]]
    if count <= 0:
        return None
    rank = q * count
    prev_b, prev_c = 0.0, 0.0
    for b in bounds:
        c = cumulative[b]
        if c >= rank:
            if math.isinf(b):
                return prev_b  # like Prometheus: the highest finite bound
            if c == prev_c:
                return b
            return prev_b + (b - prev_b) * (rank - prev_c) / (c - prev_c)
        prev_b, prev_c = b, c
    return prev_b


@dataclass
class TargetState:
    url: str
    up: bool = False
    last_error: str = ""
    history: deque[tuple[float, Samples]] = field(default_factory=lambda: deque(maxlen=120))

    @property
    def latest(self) -> Samples:
        return self.history[-1][1] if self.history else {}

    def at_or_before(self, t: float) -> tuple[float, Samples] | None:
        best = None
        for ts, s in self.history:
            if ts <= t:
                best = (ts, s)
            else:
                break
        return best or (self.history[0] if self.history else None)

    def rate(self, name: str, window_s: float = 5.0, **labels: str) -> float:
        """Per-second increase of counter ``name`` over the last ``window_s`` (0 with fewer than two scrapes)."""
        if len(self.history) < 2:
            return 0.0
        t1, s1 = self.history[-1]
        old = self.at_or_before(t1 - window_s)
        if old is None or old[0] >= t1:
            return 0.0
        t0, s0 = old
        return max(0.0, total(s1, name, **labels) - total(s0, name, **labels)) / (t1 - t0)

    def quantiles(self, name: str, qs: tuple[float, ...] = (0.5, 0.99), window_s: float = 10.0, **labels: str) -> dict:
        """Quantiles of histogram ``name`` over the window; over the whole run when the window saw nothing."""
        if not self.history:
            return {"window": None, **{f"p{int(q * 100)}": None for q in qs}}
        t1, s1 = self.history[-1]
        now_b = buckets(s1, name, **labels)
        old = self.at_or_before(t1 - window_s)
        delta = now_b
        window = "run"
        if old is not None and old[0] < t1:
            before = buckets(old[1], name, **labels)
            d = {b: now_b[b] - before.get(b, 0.0) for b in now_b}
            if d and max(d.values()) > 0:
                delta, window = d, f"{window_s:g}s"
        return {"window": window if now_b else None, **{f"p{int(q * 100)}": histogram_quantile(q, delta) for q in qs}}


class Scraper:
    """Scrapes every target each ``interval_s`` into a short history (about two minutes)."""

    def __init__(self, state_dir: Path, environ: dict[str, str] | None = None, interval_s: float = 1.0, include_self: bool = True) -> None:
        env = dict(os.environ if environ is None else environ)
        self.static = parse_targets(env.get(TARGETS_ENV, ""))
        self.file = Path(env[TARGETS_FILE_ENV]) if env.get(TARGETS_FILE_ENV) else Path(state_dir) / TARGETS_FILE_NAME
        self.interval_s = interval_s
        self.targets: dict[str, TargetState] = {}
        self._file_stamp: tuple[int, int] | None = None
        self._from_file: dict[str, str] = {}
        self.self_state = TargetState("local") if include_self else None
        self.refresh_targets()

    def refresh_targets(self) -> None:
        try:
            st = self.file.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._file_stamp:
            self._file_stamp = stamp
            try:
                self._from_file = read_file_sd(self.file) if stamp else {}
            except (ValueError, OSError, AttributeError, TypeError) as exc:
                log.warning("unreadable scrape targets file", extra={"path": str(self.file), "error": str(exc)})
                self._from_file = {}
        wanted = {**self._from_file, **self.static}
        if self.self_state is not None:
            wanted.pop(SELF, None)
        for name in list(self.targets):
            if self.targets[name] is self.self_state:
                continue
            if name not in wanted or self.targets[name].url != wanted[name]:
                del self.targets[name]
        for name, url in wanted.items():
            self.targets.setdefault(name, TargetState(url))
        if self.self_state is not None:
            self.targets[SELF] = self.self_state

    async def scrape_once(self, client: httpx.AsyncClient) -> None:
        self.refresh_targets()

        async def one(name: str, ts: TargetState) -> None:
            try:
                r = await client.get(ts.url, timeout=max(0.5, self.interval_s))
                r.raise_for_status()
                samples = parse_samples(r.text)
            except (httpx.HTTPError, ValueError) as exc:
                ts.up, ts.last_error = False, f"{type(exc).__name__}: {exc}"[:200]
                return
            ts.up, ts.last_error = True, ""
            ts.history.append((time.monotonic(), samples))

        await asyncio.gather(*(one(n, s) for n, s in list(self.targets.items()) if s is not self.self_state))
        if self.self_state is not None:  # this process's own registry, without an HTTP round trip
            self.self_state.up = True
            self.self_state.history.append((time.monotonic(), parse_samples(generate_latest().decode())))

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient() as client:
            while not stop.is_set():
                await self.scrape_once(client)
                try:
                    await asyncio.wait_for(stop.wait(), self.interval_s)
                except TimeoutError:
                    pass

    def merged_latest(self) -> Samples:
        """Latest samples of every target summed together (label sets kept)."""
        out: Samples = {}
        for ts in self.targets.values():
            for k, v in ts.latest.items():
                out[k] = out.get(k, 0.0) + v
        return out

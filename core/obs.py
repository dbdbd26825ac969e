"""Observability shared by every service: structured (JSON lines) logs and the Prometheus endpoint.

Metric names follow ``paxsim_<stage>_<what>_<unit>``; each stage declares its own metrics next to its code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import sys
import time
from typing import Any

from prometheus_client import Histogram, start_http_server
from prometheus_client.parser import text_string_to_metric_families

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def setup_logging(service: str, level: str = "INFO") -> logging.Logger:
    """Route every log line of this process to stderr as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "kafka", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(service)


EPHEMERAL_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def _below_ephemeral() -> tuple[int, int]:
    """Ports the kernel never hands out by itself: the 12,000 below its ephemeral range (32768 on Linux)."""
    try:
        with open(EPHEMERAL_RANGE_FILE) as f:
            first = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        first = 32768
    return max(1024, first - 12000), first - 1


def free_port(host: str = "127.0.0.1") -> int:
    """A port free now for a child process to listen on. Picked at random below the ephemeral range: a port
    from that range (what a bind on port 0 returns) can be taken by any outgoing connection or port-0 bind
    on the host before the child binds it (seen: a dashboard's port lost to a parallel test's process)."""
    lo, hi = _below_ephemeral()
    pick = random.SystemRandom()
    for _ in range(64):
        port = pick.randint(lo, hi)
        if port_free(host, port):
            return port
    with socket.socket() as s:  # that range is full: any free port
        s.bind((host, 0))
        return s.getsockname()[1]


def port_free(host: str, port: int) -> bool:
    """Can this process listen on ``host:port`` now?"""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """Expose this process's registry at http://host:port/metrics; port 0 picks one. Returns the port."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_port


# how late the event loop woke a short sleep: 50 ms is the pause a stage may never take (poison included)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


async def watch_loop_lag(hist: Histogram, stop: asyncio.Event, every_s: float = 0.01) -> None:
    """Until ``stop``: sleep ``every_s`` and observe how much later than asked the loop woke up, i.e. how long
    the stage's own event loop was held by one step (a CPU-bound record handled on the loop shows here, not the
    broker's or the cameras' timing)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(every_s)
        hist.observe(max(0.0, loop.time() - t0 - every_s))


def wait_port(host: str, port: int, timeout: float) -> bool:
    """True once something accepts TCP connections on host:port, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse_samples(text: str) -> Samples:
    """A /metrics page as {(sample name, sorted labels): value}."""
    out: Samples = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lbl), v in samples.items() if n == name and want <= set(lbl))

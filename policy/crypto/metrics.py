"""Prometheus metrics of the key code: keys destroyed, key-holder round trips, payloads that did not open."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SHRED = Counter("paxsim_crypto_keys_destroyed_total", "Keys destroyed (epoch keys on expiry, subject keys on erasure)", ["kind"])
KEYD_CALL = Histogram(
    "paxsim_crypto_keyd_call_seconds",
    "Round trips to the key holder, by operation and by where they ran (loop = on an asyncio event loop thread: it blocked the loop)",
    ["op", "where"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
OPEN_FAIL = Counter("paxsim_crypto_open_failures_total", "Payloads that could not be opened", ["reason"])

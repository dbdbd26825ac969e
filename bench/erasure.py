"""Erasure latency per stage and per replica, on the whole stack under the load tests' virtual load.

    .venv/bin/python -m bench.erasure                          # 60 and 120 sightings/s, 3 matchers, 30 erasures each (~3 min)
    .venv/bin/python -m bench.erasure --rates 120 --erasures 60 --matchers 2

For each rate: ``paxsim up --config deploy/paxsim.example.yaml`` with ``--matchers`` replicas, the gate, the
dashboard, the key holder and the virtual-camera edge on the embedded broker. After a warm-up, ``--erasures``
enrolled travellers are erased through the dashboard API (``POST /api/erasures``, one every ``--interval``
seconds, while their sightings keep arriving). Latency = the stage's clock when the subject was gone from it
minus the request's time, per request:

* ``published``: the request left the dashboard's durable outbox for the erasure topic (``GET /api/erasures``);
* ``dashboard``: the dashboard's own store (``applied_in_dashboard_s``);
* each matcher replica and the gate: the ``erasure applied`` line of that process's log.

One table, the rates side by side: n, p50, p99, max per stage and replica, and p99 against the 1 s goal.
"""

from __future__ import annotations

import argparse
import json
import random
import time

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.upstack import UpRun

TOKEN = "bench-erasure-admin-token-0123456789abcdef"
GOAL_P99_S = 1.0


def run_rate(rate: float, matchers: int, erasures: int, interval_s: float, warmup_s: float, seed: int, console: Console) -> dict:
    """One stack at ``rate`` sightings/s; returns {stage/replica: [latency_s, ...]}."""
    duration = warmup_s + erasures * interval_s + 15
    env = {
        "PAXSIM__SCENARIO__TRAVELLERS": str(max(120, erasures * 3)),
        "PAXSIM__SCENARIO__EVENTS_PER_SECOND": f"{rate:g}",
        "PAXSIM_DASHBOARD_TOKENS": f"admin:bench:{TOKEN}",
    }
    run = UpRun(["--matchers", str(matchers), "--duration", f"{duration:g}"], env, prefix="bench-erasure-")
    api = httpx.Client(base_url=run.api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    requests: dict[str, float] = {}
    try:
        run.wait_up()
        time.sleep(warmup_s)
        subjects = sorted(api.get("/gallery/subjects").json())
        victims = random.Random(seed).sample(subjects, erasures)
        console.print(f"  {rate:g}/s: erasing {erasures} of {len(subjects)} enrolled travellers, one every {interval_s:g} s")
        for sid in victims:
            r = api.post("/erasures", json={"subject_id": sid})
            r.raise_for_status()
            requests[r.json()["request_id"]] = r.json()["requested_at"]
            time.sleep(interval_s)
        time.sleep(5)  # the last request reaches every replica
        listed = {e["request_id"]: e for e in api.get("/erasures", params={"limit": 10_000}).json()}
    finally:
        run.wait(duration + 120)
    out: dict[str, list[float]] = {"published": [], "dashboard": []}
    for rid, at in requests.items():
        e = listed.get(rid) or {}
        if e.get("published_at"):
            out["published"].append(e["published_at"] - at)
        if e.get("applied_in_dashboard_s") is not None:
            out["dashboard"].append(e["applied_in_dashboard_s"])
    for log in sorted(run.run_dir.glob("*.log")):
        first: dict[str, float] = {}  # a request applied again with a pseudonym the first copy lacked: the first counts
        for line in log.read_text(errors="replace").splitlines():
            if '"erasure applied"' not in line:
                continue
            rec = json.loads(line)
            if rec.get("request_id") in requests:
                first.setdefault(rec["request_id"], rec["latency_ms"] / 1000)
        if first:
            out[log.stem] = list(first.values())
    out["_requests"] = [float(len(requests))]
    return out


def _fmt(xs: list[float], n_req: int) -> list[str]:
    if not xs:
        return [f"0/{n_req}", "–", "–", "–", "–"]
    a = np.array(xs) * 1000
    p99 = float(np.percentile(a, 99))
    return [f"{len(xs)}/{n_req}", f"{np.percentile(a, 50):,.0f}", f"{p99:,.0f}", f"{a.max():,.0f}", f"{p99 / (GOAL_P99_S * 1000):.2f}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", type=float, nargs="+", default=[60.0, 120.0], help="sightings/s (the load tests ramp 60 → 120)")
    ap.add_argument("--matchers", type=int, default=3)
    ap.add_argument("--erasures", type=int, default=30)
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between erasure requests")
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    console = Console(width=max(Console().width, 150))  # one row per stage, every rate beside the others
    runs = {rate: run_rate(rate, args.matchers, args.erasures, args.interval, args.warmup, args.seed, console) for rate in args.rates}
    stages = sorted({s for r in runs.values() for s in r if not s.startswith("_")}, key=lambda s: (s != "published", s != "dashboard", s))
    tab = Table(title=f"erasure latency, request → gone (ms), {args.matchers} matchers; p99/goal = p99 ÷ {GOAL_P99_S:g} s")
    tab.add_column("stage / replica")
    for rate in args.rates:
        for col in ("n", "p50", "p99", "max", "p99/goal"):
            tab.add_column(f"{rate:g}/s {col}", justify="right")
    for s in stages:
        row = [s]
        for rate in args.rates:
            row += _fmt(runs[rate].get(s, []), int(runs[rate]["_requests"][0]))
        tab.add_row(*row)
    console.print(tab)


if __name__ == "__main__":
    main()

"""Capture → decision latency over the run, per second of capture: makes start-up and periodic tails visible.

    .venv/bin/python -m bench.latency                         # 15 s of traffic at 150 sightings/s
    .venv/bin/python -m bench.latency --rate 300 --duration 30 --runs 2 --json out.json

Each run is a full :func:`paxsim.demo.run_pipeline` (embedded Tansu broker, key holder, gate, matcher,
dashboard and the virtual-camera edge, each its own process). Afterwards the matches topic is read from
offset 0 and ``matched_at - captured_at`` of every decided event is bucketed by the second of capture
(relative to the first capture). Printed per run: p50 / p99 / max and count per capture second, then
overall p50 / p99 / max, and the steady-state figures without the first two seconds. Next to each second:
the key-holder round trips the stages made in that second (from their "key holder call" log records,
``policy.crypto.HttpKeySource``), those made on an asyncio event loop (which stalled it) and those made by
background refresh threads, with the milliseconds they took.

The broker is started by the bench (``run_pipeline`` then treats it as external), so the matches topic can
be read after the stages have stopped.

The run's stage logs are kept in ``<state-dir>/run-N/`` (``*.log``) for whoever wants to look further.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from broker import topics as t
from broker.embedded import EmbeddedBroker
from broker.messages import Match, MessageError, decode
from broker.reader import read_all
from core.config import Settings, load_settings
from paxsim.demo import run_pipeline

WARMUP_S = 2


def _stats(ms: np.ndarray) -> dict:
    if not ms.size:
        return {"n": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    return {
        "n": int(ms.size),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def bucket_latencies(matches: list[Match]) -> dict:
    """Per-capture-second and overall p50/p99/max of ``matched_at - captured_at`` (ms)."""
    if not matches:
        return {"per_second": [], "overall": _stats(np.zeros(0)), "steady": _stats(np.zeros(0))}
    t0 = min(m.captured_at for m in matches)
    sec = np.array([math.floor(m.captured_at - t0) for m in matches])
    lat = np.array([(m.matched_at - m.captured_at) * 1000 for m in matches])
    per = [{"second": int(s), **_stats(lat[sec == s])} for s in range(int(sec.max()) + 1)]
    return {"t0": t0, "per_second": per, "overall": _stats(lat), "steady": _stats(lat[sec >= WARMUP_S])}


def keyd_calls(run_dir: Path, t0: float, seconds: int) -> list[dict]:
    """Per second (relative to the first capture): key-holder round trips the stages logged
    (``paxsim.policy.crypto`` "key holder call"), split into those that ran on an event loop (blocking it) and
    those made from background threads; with the milliseconds they took."""
    per = [{"loop_n": 0, "loop_ms": 0.0, "thread_n": 0, "thread_ms": 0.0} for _ in range(seconds)]
    for path in sorted(run_dir.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"key holder call"' not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            start = rec["ts"] - rec["ms"] / 1000
            k = math.floor(start - t0)
            if 0 <= k < seconds:
                w = "loop" if rec.get("where") == "loop" else "thread"
                per[k][f"{w}_n"] += 1
                per[k][f"{w}_ms"] += rec["ms"]
    return per


async def one_run(settings: Settings, duration_s: float) -> dict:
    """One pipeline run on a broker this bench owns (so the matches topic outlives the run); returns the buckets."""
    async with EmbeddedBroker(settings) as broker:
        ext = settings.model_copy(
            update={"broker": settings.broker.model_copy(update={"bootstrap": broker.bootstrap, "profile": "embedded"})}
        )
        summary = await run_pipeline(ext, duration_s, None)
        matches = []
        for rec in await read_all(ext, t.MATCHES.name):
            try:
                matches.append(decode(rec.value or b"", Match))
            except MessageError:
                continue
    out = bucket_latencies(matches)
    if matches:
        for row, calls in zip(out["per_second"], keyd_calls(Path(settings.state_dir), out["t0"], len(out["per_second"]))):
            row.update(calls)
    out["produced"], out["decided"], out["edge_dropped"] = summary.produced, summary.decided, summary.edge_dropped
    out["processes"] = summary.processes
    return out


def _table(title: str, r: dict) -> Table:
    tab = Table(title=title)
    for col in ("capture s", "events", "p50 ms", "p99 ms", "max ms", "keyd on loop n/ms", "keyd bg n/ms"):
        tab.add_column(col, justify="right")
    for row in r["per_second"]:
        tab.add_row(
            str(row["second"]),
            str(row["n"]),
            f"{row['p50_ms'] or 0:.1f}",
            f"{row['p99_ms'] or 0:.1f}",
            f"{row['max_ms'] or 0:.1f}",
            f"{row.get('loop_n', 0)} / {row.get('loop_ms', 0):.0f}",
            f"{row.get('thread_n', 0)} / {row.get('thread_ms', 0):.0f}",
        )
    for name in ("overall", "steady"):
        s = r[name]
        label = "all" if name == "overall" else f"≥{WARMUP_S} s"
        tab.add_row(label, str(s["n"]), f"{s['p50_ms'] or 0:.1f}", f"{s['p99_ms'] or 0:.1f}", f"{s['max_ms'] or 0:.1f}", style="bold")
    return tab


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.latency", description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=150.0, help="offered sightings/s, all virtual cameras")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of traffic per run")
    ap.add_argument("--cameras", type=int, default=None, help="virtual cameras (default: from the configuration)")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--config", default=None, help="paxsim config YAML (default: $PAXSIM_CONFIG or built-in)")
    ap.add_argument("--state-dir", default=None, help="where runs keep their stores and logs (default: a temp dir)")
    ap.add_argument("--json", default=None, help="also write every run's figures here")
    args = ap.parse_args(argv)
    console = Console(width=max(Console().width, 120))
    base = load_settings(args.config)
    scen = {"events_per_second": args.rate, **({"cameras": args.cameras} if args.cameras else {})}
    root = Path(args.state_dir or tempfile.mkdtemp(prefix="paxsim-latency-"))
    results = []
    for i in range(args.runs):
        settings = base.model_copy(
            update={
                "state_dir": root / f"run-{i + 1}",
                "broker": base.broker.model_copy(update={"bootstrap": None}),
                "scenario": base.scenario.model_copy(update=scen),
            }
        )
        t0 = time.monotonic()
        r = asyncio.run(one_run(settings, args.duration))
        results.append(r)
        console.print(
            _table(
                f"run {i + 1}: {args.rate:g}/s offered for {args.duration:g} s — produced {r['produced']}, "
                f"decided {r['decided']}, edge drops {r['edge_dropped']:.0f} ({time.monotonic() - t0:.0f} s wall)",
                r,
            )
        )
        cpu = ", ".join(f"{n} {p['cpu_s'] / args.duration:.2f}" for n, p in r["processes"].items())
        console.print(f"  CPU cores per stage (cpu_s / traffic s): {cpu}")
        console.print(f"  stage logs: {settings.state_dir}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rate": args.rate, "duration_s": args.duration, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

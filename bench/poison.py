"""Hostile producer under load: does poison slow down the honest traffic behind it?

    .venv/bin/python -m bench.poison                 # 40 s run, poison from 12 s to 30 s (~1.5 min)
    .venv/bin/python -m bench.poison --rate 120 --poison-every 0.1

One ``paxsim up --config deploy/paxsim.example.yaml`` run (gate, matcher, dashboard, key holder, virtual-camera
edge on the embedded broker). In a window of the run a hostile producer writes, every ``--poison-every``
seconds, one of each: garbage bytes, a NaN embedding, dim 0 / 64 / 4096 embeddings, a 900 kB sealed payload, a
message of an unknown version, a plaintext embedding, a sealed payload with a key id 10^9 epochs ahead; to the
sightings topic (the gate's input) and to the admitted topic (the matcher's), as a producer with broker write
access could. It then reads the matches topic and prints, for the honest events decided before and during the
poison window side by side: capture → decision latency p50 / p99 / max and the longest gap between two
consecutive decisions (a stalled stage shows as a gap), with the ratio during / before; how long the gate's and
the matcher's own event loops were held (their loop-lag histograms: wake-ups of a 10 ms sleep later than 50 ms,
before and during the poison); and how many poison records each stage dead-lettered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
import threading
import time

import httpx
import msgspec
import numpy as np
from rich.console import Console
from rich.table import Table

from bench.upstack import UpRun
from broker import topics as t
from broker.clients import start_producer
from broker.messages import DeadLetter, Match, MessageError, Sighting, decode, embedding_to_bytes, encode
from broker.reader import read_all
from core.config import Settings, load_settings
from core.obs import parse_samples
from matcher import metricnames as matcher_metrics
from policy import metricnames as policy_metrics


def poison_batch(n: int, chain: str) -> list[tuple[str, bytes]]:
    """One of each kind of poison, with event ids unique to batch ``n``; ``chain``: the run's sightings chain
    (``class:chain`` of a key id read off the admitted topic, as any reader of the topic can)."""
    base = Sighting(
        event_id=f"poison-{n}",
        camera_id="cam-hostile",
        zone="security",
        captured_at=time.time(),
        track_id=1,
        box=(0, 0, 80, 80),
        quality=1.0,
        embedding=embedding_to_bytes(np.full(128, 0.05, np.float32)),
    )
    nan = np.zeros(128, np.float32)
    nan[0] = np.nan

    def v(suffix: str, **kw: object) -> bytes:
        return encode(msgspec.structs.replace(base, event_id=f"poison-{n}-{suffix}", **kw))

    records = [
        v("nan", embedding=embedding_to_bytes(nan)),
        v("dim0", embedding=b"", dim=0),
        v("dim64", embedding=embedding_to_bytes(np.ones(64, np.float32)), dim=64),
        v("dim4096", embedding=embedding_to_bytes(np.ones(4096, np.float32)), dim=4096),
        v("huge", embedding=b"", sealed=b"\x01" * 900_000, key_id="sightings:x:1"),
        v("future", embedding=b"", sealed=b"\x02" * 560, key_id=f"{chain}:{int(time.time()) + 10**9}"),
        v("plain"),
        msgspec.msgpack.encode({**msgspec.to_builtins(base), "type": "sighting.v9", "event_id": f"poison-{n}-v9"}),
        b"\x00not msgpack at all",
    ]
    return [(topic, r) for topic in (t.SIGHTINGS.name, t.ADMITTED.name) for r in records]


def percentiles(xs: list[float]) -> tuple[float, float, float]:
    if not xs:
        return (float("nan"), float("nan"), float("nan"))
    a = np.asarray(xs) * 1000.0
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


def longest_gap_ms(times: list[float]) -> float:
    s = sorted(times)
    return max((b - a for a, b in zip(s, s[1:])), default=float("nan")) * 1000.0


LAG_METRICS = {"policy": policy_metrics.GATE_LOOP_LAG_SECONDS, "matcher": matcher_metrics.LOOP_LAG_SECONDS}


def loop_lag(run: UpRun) -> dict[str, dict[float, float]]:
    """Per stage (gate, matcher): the cumulative bucket counts of its event-loop lag histogram, by upper bound."""
    targets = {g["labels"]["job"]: g["targets"][0] for g in json.loads((run.run_dir / "scrape-targets.json").read_text())}
    out = {}
    for job, name in LAG_METRICS.items():
        samples = parse_samples(httpx.get(f"http://{targets[job]}/metrics", timeout=10).text)
        out[job] = {float(dict(labels)["le"]): v for (n, labels), v in samples.items() if n == name + "_bucket"}
    return out


def pauses(a: dict[float, float], b: dict[float, float]) -> tuple[int, int, str]:
    """Between two bucket snapshots: sleeps observed, wake-ups later than 50 ms, and the bound of the longest."""
    d = {le: b[le] - a.get(le, 0.0) for le in b}
    n = int(d.get(math.inf, 0.0))
    over = n - int(d.get(0.05, 0.0))
    longest = next((le for le in sorted(d) if d[le] >= n), math.inf)
    return n, over, ("≤ " + f"{longest * 1000:g} ms") if math.isfinite(longest) else "> 2.5 s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--poison-from", type=float, default=12.0, help="seconds after every stage is up")
    ap.add_argument("--poison-for", type=float, default=18.0)
    ap.add_argument("--poison-every", type=float, default=0.25, help="seconds between batches of 18 poison records")
    ap.add_argument("--rate", type=float, default=60.0, help="honest sightings/s offered")
    args = ap.parse_args()
    console = Console(width=max(Console().width, 130))
    run = UpRun(["--duration", f"{args.seconds:g}"], {"PAXSIM__SCENARIO__EVENTS_PER_SECOND": f"{args.rate:g}"}, prefix="bench-poison-")
    run.wait_up()
    settings: Settings = load_settings(environ={})
    settings = settings.model_copy(
        update={"broker": settings.broker.model_copy(update={"bootstrap": run.bootstrap, "profile": "embedded"})}
    )
    lag0 = loop_lag(run)
    time.sleep(args.poison_from)
    lag1 = loop_lag(run)
    honest = [decode(r.value, Sighting) for r in asyncio.run(read_all(settings, t.ADMITTED.name))]
    chain = next(s.key_id.rsplit(":", 1)[0] for s in honest if s.key_id)
    window = [time.time(), 0.0]
    sent = [0]

    async def hostile() -> None:
        producer = await start_producer(settings)
        n = 0
        try:
            while time.time() < window[0] + args.poison_for:
                for topic, value in poison_batch(n, chain):
                    await producer.send_and_wait(topic, value, key=b"cam-hostile")
                    sent[0] += 1
                n += 1
                await asyncio.sleep(args.poison_every)
        finally:
            await producer.stop()

    thread = threading.Thread(target=lambda: asyncio.run(hostile()))
    thread.start()
    thread.join()
    window[1] = time.time()
    lag2 = loop_lag(run)
    time.sleep(3.0)
    matches = asyncio.run(read_all(settings, t.MATCHES.name))
    dead = asyncio.run(read_all(settings, t.DEADLETTER.name))
    summary = run.wait(args.seconds + 240)
    before: tuple[list[float], list[float]] = ([], [])
    during: tuple[list[float], list[float]] = ([], [])
    for rec in matches:
        try:
            m: Match = decode(rec.value, Match)
        except MessageError:
            continue
        if m.camera_id == "cam-hostile":
            continue
        bucket = during if window[0] <= m.captured_at <= window[1] else before if m.captured_at < window[0] else None
        if bucket is not None:
            bucket[0].append(m.matched_at - m.captured_at)
            bucket[1].append(m.matched_at)
    by_stage: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for rec in dead:
        d: DeadLetter = decode(rec.value, DeadLetter)  # honest traffic dead-letters nothing: these are the poison
        by_stage[d.stage] = by_stage.get(d.stage, 0) + 1
        why = re.sub(r"\d{4,}", "N", f"{d.stage}: {d.reason}")[:72]  # epochs and sizes vary per record
        reasons[why] = reasons.get(why, 0) + 1
    tab = Table(
        title=f"honest traffic before and during poison ({args.rate:g} sightings/s; {sent[0]:,} poison records in {window[1] - window[0]:.0f} s)"
    )
    for col in ("honest events", "decided", "latency p50 ms", "p99 ms", "max ms", "longest gap between decisions ms"):
        tab.add_column(col, justify="right" if col != "honest events" else "left")
    rows = {}
    for name, (lat, at) in (("before the poison", before), ("during the poison", during)):
        p50, p99, mx = percentiles(lat)
        rows[name] = (p50, p99, mx, longest_gap_ms(at))
        tab.add_row(name, f"{len(lat):,}", f"{p50:.0f}", f"{p99:.0f}", f"{mx:.0f}", f"{rows[name][3]:.0f}")
    ratio = [d / b if b else float("nan") for b, d in zip(rows["before the poison"], rows["during the poison"])]
    tab.add_row("during / before", "", *(f"{r:.2f}x" for r in ratio))
    console.print(tab)
    lags = Table(title="each stage's own pauses: how late its event loop woke a 10 ms sleep (paxsim_<stage>_loop_lag_seconds)")
    for col in ("stage", "window", "sleeps", "woke > 50 ms late", "longest"):
        lags.add_column(col, justify="left" if col in ("stage", "window") else "right")
    for job in LAG_METRICS:
        for label, a, b in (("before the poison", lag0, lag1), ("during the poison", lag1, lag2)):
            n, over, longest = pauses(a[job], b[job])
            lags.add_row("gate" if job == "policy" else job, label, f"{n:,}", f"{over:,}", longest)
    console.print(lags)
    for why, n in sorted(reasons.items()):
        console.print(f"  {n:5d}  {why}", highlight=False)
    console.print(f"poison dead-lettered: {by_stage or 'none'} of {sent[0]:,} sent; stage restarts: {summary['restarts'] or 'none'}")


if __name__ == "__main__":
    main()

"""The live panels' data: one JSON snapshot built from the stream view and the scraped stage metrics.

The snapshot is aggregates only (no subject id, no trajectory): it is what ``/api/panels`` returns and what
``/api/stream`` pushes every second to the web page. Each panel has a Grafana twin in
``deploy/grafana/dashboards/paxsim.json`` built on the same metric names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from broker import metricnames as broker_metrics
from dashboard import metricnames as dashboard_metrics
from dashboard.feed import StreamView
from dashboard.scrape import Scraper, by_label
from edge import metricnames as edge_metrics
from matcher import metricnames as matcher_metrics
from policy import metricnames as policy_metrics

CAMERA_LIVE_S = 3.0  # a camera with a decided event this recent is "live" (so is one its edge reports producing)
CAMERA_STALE_S = 30.0  # older than this: "down"


@dataclass(frozen=True, slots=True)
class StageSpec:
    name: str
    throughput: str  # counter: events handled
    throughput_labels: tuple[tuple[str, str], ...]
    latency: str  # histogram
    latency_labels: tuple[tuple[str, str], ...]
    latency_doc: str
    lag_stage: str | None  # label ``stage`` of paxsim_broker_consumer_lag_messages


STAGES = (
    StageSpec(
        "edge",
        edge_metrics.PUBLISHED_TOTAL,
        (("topic", "paxsim.sightings.v1"),),
        edge_metrics.PUBLISH_LAG_SECONDS,
        (),
        "enqueue → broker ack",
        None,
    ),
    StageSpec(
        "gate", policy_metrics.GATE_EVENTS_TOTAL, (), policy_metrics.DECISION_SECONDS, (("stage", "gate"),), "per policy rule", "gate"
    ),
    StageSpec("matcher", matcher_metrics.EVENTS_TOTAL, (), matcher_metrics.E2E_LATENCY_SECONDS, (), "capture → decision", "matcher"),
    StageSpec(
        "dashboard", dashboard_metrics.RECORDS_TOTAL, (), dashboard_metrics.INGEST_LATENCY_SECONDS, (), "capture → on the dashboard", None
    ),
)

# A schematic departures hall: landside to the gates, left to right (x, y in arbitrary units).
ZONE_LAYOUT = {
    "landside": (0.0, 1.0),
    "checkin": (1.0, 1.0),
    "retail": (3.0, 2.0),
    "security": (2.0, 1.0),
    "immigration": (3.0, 1.0),
    "egate": (3.0, 0.0),
    "concourse": (4.0, 1.0),
    "gate": (5.0, 1.0),
}


def _ms(x: float | None) -> float | None:
    return None if x is None else round(x * 1000.0, 3)


def stage_rows(scraper: Scraper) -> list[dict]:
    lag = by_label(scraper.merged_latest(), broker_metrics.CONSUMER_LAG_MESSAGES, "stage")
    rows = []
    for spec in STAGES:
        rate = 0.0
        q = {"window": None, "p50": None, "p99": None}
        seen = False
        for ts in scraper.targets.values():
            if not any(n == spec.throughput for n, _ in ts.latest):
                continue
            seen = True
            rate += ts.rate(spec.throughput, **dict(spec.throughput_labels))
            tq = ts.quantiles(spec.latency, **dict(spec.latency_labels))
            if tq["window"] is not None and (q["window"] is None or q["window"] == "run"):
                q = tq
        rows.append(
            {
                "stage": spec.name,
                "up": seen,
                "events_per_s": round(rate, 2),
                "p50_ms": _ms(q["p50"]),
                "p99_ms": _ms(q["p99"]),
                "latency_window": q["window"],
                "latency_of": spec.latency_doc,
                "lag": lag.get(spec.lag_stage) if spec.lag_stage else None,
            }
        )
    return rows


def rule_rows(scraper: Scraper, view: StreamView) -> list[dict]:
    """Policy decisions by stage and rule (allow/deny) from the stages' counters, plus the matcher's refusals."""
    rows: dict[tuple[str, str], dict] = {}
    for (name, labels), v in scraper.merged_latest().items():
        if name != policy_metrics.DECISIONS_TOTAL:
            continue
        lbl = dict(labels)
        row = rows.setdefault(
            (lbl.get("stage", ""), lbl.get("rule", "")),
            {"stage": lbl.get("stage", ""), "rule": lbl.get("rule", ""), "allow": 0.0, "deny": 0.0},
        )
        row[lbl.get("decision", "deny")] = row.get(lbl.get("decision", "deny"), 0.0) + v
    if not any(s == "post_match" for s, _ in rows):  # no matcher scrape: fall back to the matches topic
        for rule, n in view.refused_by_rule.items():
            rows[("post_match", rule)] = {"stage": "post_match", "rule": rule, "allow": 0.0, "deny": float(n)}
    return sorted(rows.values(), key=lambda r: (r["stage"], r["rule"]))


def timeline(view: StreamView, now: float, span_s: int = 120, min_span_s: int = 30) -> dict:
    """Per-second decisions over the last ``span_s`` seconds, starting at the first second with data."""
    end = int(now)
    first = min((s for s in view.timeline if s > end - span_s), default=end)
    start = min(first, end - min_span_s + 1)
    secs = list(range(start, end + 1))
    out: dict[str, list] = {"t": secs}
    for key in ("match", "unknown", "refused", "counted"):
        out[key] = [view.timeline.get(s, {}).get(key, 0) for s in secs]
    return out


def zone_map(view: StreamView, biometric: set[str]) -> dict:
    zones = set(ZONE_LAYOUT) & (set(view.zone_faces) | set(view.matches_by_zone) | set(view.unknown_by_zone) | set(view.flows) | biometric)
    zones |= set(view.zone_faces) | set(view.matches_by_zone) | set(view.unknown_by_zone)
    for a, tos in view.flows.items():
        zones |= {a, *tos}
    extra = sorted(z for z in zones if z not in ZONE_LAYOUT)
    nodes = []
    for z in sorted(zones, key=lambda z: (ZONE_LAYOUT.get(z, (99, 0)), z)):
        x, y = ZONE_LAYOUT.get(z, (float(extra.index(z)) if z in extra else 0.0, -1.0))
        nodes.append(
            {
                "zone": z,
                "x": x,
                "y": y,
                "biometric": z in biometric,
                "matched": view.matches_by_zone.get(z, 0),
                "unknown": view.unknown_by_zone.get(z, 0),
                "counted": view.zone_faces.get(z, 0),
            }
        )
    flows = [{"from": a, "to": b, "n": n} for a, tos in sorted(view.flows.items()) for b, n in sorted(tos.items())]
    return {"nodes": nodes, "flows": flows}


def cameras(view: StreamView, scraper: Scraper, now: float) -> list[dict]:
    merged = scraper.merged_latest()
    produced = by_label(merged, edge_metrics.SIGHTINGS_TOTAL, "camera")
    counted_only = by_label(merged, edge_metrics.COUNT_ONLY_FACES_TOTAL, "camera")
    rates: dict[str, float] = {}
    producing: set[str] = set()  # cameras whose edge counted frames or faces in the last scrape window
    for ts in scraper.targets.values():
        cams = set(by_label(ts.latest, edge_metrics.SIGHTINGS_TOTAL, "camera")) | set(
            by_label(ts.latest, edge_metrics.COUNT_ONLY_FACES_TOTAL, "camera")
        )
        for cam in cams | set(by_label(ts.latest, edge_metrics.FRAMES_PROCESSED_TOTAL, "camera")):
            rate = ts.rate(edge_metrics.SIGHTINGS_TOTAL, camera=cam) + ts.rate(edge_metrics.COUNT_ONLY_FACES_TOTAL, camera=cam)
            if cam in cams:
                rates[cam] = rates.get(cam, 0.0) + rate
            if rate > 0 or ts.rate(edge_metrics.FRAMES_PROCESSED_TOTAL, camera=cam) > 0:
                producing.add(cam)
    state: dict[str, str] = {}
    for (name, labels), v in merged.items():
        if name == edge_metrics.SOURCE_STATE and v >= 1:
            lbl = dict(labels)
            state[lbl.get("camera", "")] = lbl.get(edge_metrics.SOURCE_STATE, "")
    rows = []
    for cam in sorted(set(view.cameras) | set(produced) | set(counted_only)):
        st = view.cameras.get(cam)
        age = now - st.last_seen if st and st.last_seen else None
        # a camera is live while its edge produces, even when decisions lag behind it (the lag panel shows that)
        if cam in producing or (age is not None and age <= CAMERA_LIVE_S):
            status = "live"
        else:
            status = "stale" if age is not None and age <= CAMERA_STALE_S else "down"
        rows.append(
            {
                "camera": cam,
                "zone": st.zone if st else "",
                "status": status,
                "last_event_age_s": None if age is None else round(age, 2),
                "decided": st.decided if st else 0,
                "counted": st.counted if st else 0,
                "sightings": produced.get(cam),
                "events_per_s": round(rates.get(cam, 0.0), 2),
                "source_state": state.get(cam),
            }
        )
    return rows


def erasure_panel(view: StreamView) -> dict:
    """How long erasure requests took to empty the dashboard's store (no subject ids here)."""
    stats = sorted(view.erasures.values(), key=lambda e: e.applied_at)
    lat = np.array([e.latency_s for e in stats])
    return {
        "applied": len(stats),
        "p50_s": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_s": float(np.percentile(lat, 99)) if lat.size else None,
        "recent": [
            {"latency_s": round(e.latency_s, 4), "points_removed": e.points_removed, "applied_at": e.applied_at} for e in stats[-20:]
        ],
    }


def snapshot(view: StreamView, scraper: Scraper, biometric: set[str], now: float | None = None) -> dict:
    now = time.time() if now is None else now
    return {
        "t": now,
        "broker_connected": view.connected,
        "targets": {n: {"up": ts.up, "error": ts.last_error} for n, ts in sorted(scraper.targets.items())},
        "stages": stage_rows(scraper),
        "decisions": dict(view.decisions),
        "timeline": timeline(view, now),
        "rules": rule_rows(scraper, view),
        "retention": view.expire(now),
        "erasure": erasure_panel(view),
        "zones": zone_map(view, biometric),
        "cameras": cameras(view, scraper, now),
    }

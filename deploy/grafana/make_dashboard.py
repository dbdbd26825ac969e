"""Writes dashboards/paxsim.json: the Grafana twin of the web dashboard's panels (run after changing a panel).

python deploy/grafana/make_dashboard.py
"""

from __future__ import annotations

import json
from pathlib import Path

DS = {"type": "prometheus", "uid": "paxsim-prom"}
RI = "$__rate_interval"


def target(expr: str, legend: str, ref: str) -> dict:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(
    pid: int,
    title: str,
    kind: str,
    grid: tuple[int, int, int, int],
    targets: list[tuple[str, str]],
    unit: str = "short",
    description: str = "",
    **options: object,
) -> dict:
    x, y, w, h = grid
    return {
        "id": pid,
        "title": title,
        "type": kind,
        "description": description,
        "datasource": DS,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "targets": [target(e, lg, chr(ord("A") + i)) for i, (e, lg) in enumerate(targets)],
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": options,
    }


def q(quantile: float, hist: str, sel: str = "") -> str:
    return f"histogram_quantile({quantile}, sum by (le) (rate({hist}_bucket{sel}[{RI}])))"


STAGE_LATENCY = [
    ("edge", "paxsim_edge_publish_lag_seconds", ""),
    ("gate", "paxsim_policy_decision_seconds", '{stage="gate"}'),
    ("matcher", "paxsim_matcher_e2e_latency_seconds", ""),
    ("dashboard", "paxsim_dashboard_ingest_latency_seconds", ""),
]

PANELS = [
    panel(
        1,
        "Throughput per stage",
        "timeseries",
        (0, 0, 12, 8),
        [
            (f'sum(rate(paxsim_edge_published_total{{topic="paxsim.sightings.v1"}}[{RI}]))', "edge"),
            (f"sum(rate(paxsim_gate_events_total[{RI}]))", "gate"),
            (f"sum(rate(paxsim_matcher_events_total[{RI}]))", "matcher"),
            (f"sum(rate(paxsim_dashboard_records_total[{RI}]))", "dashboard"),
        ],
        unit="ops",
        description="events/s handled by each stage",
    ),
    panel(
        2,
        "Latency per stage (p50 / p99)",
        "timeseries",
        (12, 0, 12, 8),
        [(q(p, h, sel), f"{name} p{int(p * 100)}") for name, h, sel in STAGE_LATENCY for p in (0.5, 0.99)],
        unit="s",
        description="edge: enqueue → broker ack; gate: per policy rule; matcher: capture → decision; dashboard: capture → on the dashboard",
    ),
    panel(
        3,
        "Consumer lag",
        "timeseries",
        (0, 8, 8, 8),
        [("sum by (stage) (paxsim_broker_consumer_lag_messages)", "{{stage}}")],
        description="highwater − position per consuming stage",
    ),
    panel(
        4,
        "Unknown vs consented",
        "timeseries",
        (8, 8, 8, 8),
        [(f"sum by (decision) (rate(paxsim_matcher_events_total[{RI}]))", "{{decision}}")],
        unit="ops",
        description="match = consented enrolee; unknown = embedding discarded; refused = no consent for the purpose",
    ),
    panel(
        5,
        "Policy decisions by rule",
        "barchart",
        (16, 8, 8, 8),
        [("sum by (stage, rule, decision) (paxsim_policy_decisions_total)", "{{stage}}:{{rule}} {{decision}}")],
        orientation="horizontal",
    ),
    panel(
        6,
        "Zone flows (consented travellers)",
        "bargauge",
        (0, 16, 8, 9),
        [("sum by (from_zone, to_zone) (paxsim_dashboard_zone_flows_total)", "{{from_zone}} → {{to_zone}}")],
        description="the web dashboard draws these on the airport map",
        orientation="horizontal",
    ),
    panel(
        7,
        "Faces per zone",
        "bargauge",
        (8, 16, 8, 9),
        [("sum by (zone, kind) (paxsim_dashboard_zone_faces_total)", "{{zone}} {{kind}}")],
        orientation="horizontal",
    ),
    panel(
        8,
        "Data age vs TTL",
        "timeseries",
        (16, 16, 8, 9),
        [
            ("max by (purpose) (paxsim_dashboard_data_age_seconds)", "{{purpose}} oldest"),
            ("max by (purpose) (paxsim_dashboard_data_ttl_seconds)", "{{purpose}} TTL"),
        ],
        unit="s",
    ),
    panel(
        9,
        "Erasure latency",
        "stat",
        (0, 25, 6, 7),
        [
            (q(0.5, "paxsim_dashboard_erasure_seconds"), "p50"),
            (q(0.99, "paxsim_dashboard_erasure_seconds"), "p99"),
            ("sum(paxsim_dashboard_erasures_total)", "applied"),
        ],
        unit="s",
        description="erasure request → subject's data gone from the dashboard's store",
    ),
    panel(
        10,
        "Camera health",
        "table",
        (6, 25, 18, 7),
        [
            (f"sum by (camera) (rate(paxsim_edge_sightings_total[{RI}]))", "sightings/s"),
            (f"sum by (camera) (rate(paxsim_edge_count_only_faces_total[{RI}]))", "counted/s"),
            ("time() - max by (camera) (paxsim_dashboard_camera_last_event_timestamp_seconds)", "seconds since last event"),
        ],
    ),
    panel(11, "Targets up", "stat", (0, 32, 24, 4), [("up", "{{job}}")]),
]

DASHBOARD = {
    "uid": "paxsim-live",
    "title": "paxsim · live",
    "tags": ["paxsim"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "5s",
    "time": {"from": "now-15m", "to": "now"},
    "editable": True,
    "panels": PANELS,
}

if __name__ == "__main__":
    out = Path(__file__).with_name("dashboards") / "paxsim.json"
    out.write_text(json.dumps(DASHBOARD, indent=2) + "\n")
    print(f"wrote {out}")

"""The dashboard's own Prometheus metrics (``paxsim_dashboard_<what>_<unit>``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from dashboard import metricnames as dashboard_metrics

RECORDS = Counter(dashboard_metrics.RECORDS_TOTAL, "Records read from the output topics", ["topic"])
UNDECODABLE = Counter("paxsim_dashboard_undecodable_total", "Records skipped because they did not decode", ["topic"])
INGEST_SECONDS = Histogram(
    dashboard_metrics.INGEST_LATENCY_SECONDS,
    "Capture to the dashboard having the decision (matches topic)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)
ERASURE_SECONDS = Histogram(
    "paxsim_dashboard_erasure_seconds",
    "Erasure request to the subject's data being gone from the dashboard's store",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
ERASURES = Counter(dashboard_metrics.ERASURES_TOTAL, "Erasure requests applied to the dashboard's store")
ERASURES_PUBLISHED = Counter("paxsim_dashboard_erasures_published_total", "Erasure requests the dashboard published to the erasure topic")
DATA_AGE = Gauge("paxsim_dashboard_data_age_seconds", "Age of the oldest stored trajectory point, by purpose", ["purpose"])
DATA_TTL = Gauge("paxsim_dashboard_data_ttl_seconds", "Retention limit (policy) of stored items, by purpose", ["purpose"])
STORED = Gauge("paxsim_dashboard_stored_points", "Trajectory points held, by purpose", ["purpose"])
EXPIRED = Counter("paxsim_dashboard_expired_points_total", "Trajectory points deleted because their purpose's TTL passed", ["purpose"])
API_IDENTITY = Counter(
    "paxsim_dashboard_api_identity_requests_total", "Requests for identity data, by endpoint and outcome", ["endpoint", "outcome"]
)
SSE_CLIENTS = Gauge("paxsim_dashboard_sse_clients", "Live dashboard pages connected")
SSE_REFUSED = Counter("paxsim_dashboard_sse_refused_total", "Live streams refused (dashboard.max_stream_clients reached)")
SCRAPE_UP = Gauge("paxsim_dashboard_scrape_up", "Whether the last scrape of a stage's /metrics worked", ["target"])
ZONE_FACES = Counter(
    "paxsim_dashboard_zone_faces_total", "Faces per zone by outcome (matched, unknown, refused, counted)", ["zone", "kind"]
)
ZONE_FLOWS = Counter("paxsim_dashboard_zone_flows_total", "Consented travellers' zone-to-zone transitions", ["from_zone", "to_zone"])
CAMERA_LAST = Gauge("paxsim_dashboard_camera_last_event_timestamp_seconds", "Time of the latest event seen from a camera", ["camera"])

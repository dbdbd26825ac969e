"""Names of the metrics exported by the dashboard, for readers of its ``/metrics`` (runs, the dashboard, tests).

Importing this module registers no metric, so a reader's own ``/metrics`` does not show them."""

RECORDS_TOTAL = "paxsim_dashboard_records_total"
INGEST_LATENCY_SECONDS = "paxsim_dashboard_ingest_latency_seconds"
ERASURES_TOTAL = "paxsim_dashboard_erasures_total"

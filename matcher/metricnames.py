"""Names of the metrics exported by the matcher, for readers of its ``/metrics`` (runs, the dashboard, tests).

Importing this module registers no metric, so a reader's own ``/metrics`` does not show them."""

EVENTS_TOTAL = "paxsim_matcher_events_total"
DUPLICATES_TOTAL = "paxsim_matcher_duplicates_total"
E2E_LATENCY_SECONDS = "paxsim_matcher_e2e_latency_seconds"
LOOP_LAG_SECONDS = "paxsim_matcher_loop_lag_seconds"

"""Names of the metrics exported by the policy stages (gate, filters, erasure workers), for readers of their
``/metrics`` (runs, the dashboard, tests).

Importing this module registers no metric, so a reader's own ``/metrics`` does not show them."""

GATE_EVENTS_TOTAL = "paxsim_gate_events_total"
DECISIONS_TOTAL = "paxsim_policy_decisions_total"
DECISION_SECONDS = "paxsim_policy_decision_seconds"
ERASURES_TOTAL = "paxsim_policy_erasures_total"
GATE_LOOP_LAG_SECONDS = "paxsim_gate_loop_lag_seconds"

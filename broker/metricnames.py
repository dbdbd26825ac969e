"""Names of the metrics exported by every consuming stage's broker client, for readers of its ``/metrics`` (runs, the dashboard, tests).

Importing this module registers no metric, so a reader's own ``/metrics`` does not show them."""

ASSIGNED_PARTITIONS = "paxsim_broker_assigned_partitions"
CONSUMER_LAG_MESSAGES = "paxsim_broker_consumer_lag_messages"

"""Names of the metrics exported by the edge, for readers of its ``/metrics`` (runs, the dashboard, tests).

Importing this module registers no metric, so a reader's own ``/metrics`` does not show them."""

SIGHTINGS_TOTAL = "paxsim_edge_sightings_total"
COUNT_ONLY_FACES_TOTAL = "paxsim_edge_count_only_faces_total"
PUBLISHED_TOTAL = "paxsim_edge_published_total"
DROPPED_TOTAL = "paxsim_edge_dropped_total"
PUBLISH_LAG_SECONDS = "paxsim_edge_publish_lag_seconds"
FRAMES_PROCESSED_TOTAL = "paxsim_edge_frames_processed_total"
FRAMES_DROPPED_TOTAL = "paxsim_edge_frames_dropped_total"
SOURCE_STATE = "paxsim_edge_source_state"

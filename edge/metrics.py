"""Prometheus metrics of the edge vision pipeline, one series per camera (label ``camera``).

Names follow ``paxsim_edge_<what>_<unit>``. :class:`CameraMetrics` binds the labels once per camera;
:meth:`CameraMetrics.source_listener` turns a Source's events into counters and the state enum.
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Enum, Gauge, Histogram

from edge import metricnames as edge_metrics
from edge.sources.base import Source, SourceState

_CAM = ["camera"]
_LAT = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 30, 60, 120, 300)

FRAMES_READ = Counter("paxsim_edge_frames_read_total", "Read calls on the camera's source", _CAM)
FRAMES_DECODED = Counter("paxsim_edge_frames_decoded_total", "Valid frames delivered by the source", _CAM)
FRAMES_BAD = Counter("paxsim_edge_frames_bad_total", "Zero-size or undecodable frames skipped", _CAM)
FRAMES_SKIPPED = Counter("paxsim_edge_frames_skipped_total", "Frames left out by the sampling rate", _CAM)
FRAMES_DROPPED = Counter(edge_metrics.FRAMES_DROPPED_TOTAL, "Frames dropped because the pipeline was full", _CAM)
FRAMES_PROCESSED = Counter(edge_metrics.FRAMES_PROCESSED_TOTAL, "Frames analysed (detected or carried by the tracker)", _CAM)
FRAMES_COASTED = Counter(
    "paxsim_edge_frames_coasted_total", "Analysed frames the detector skipped (detect_interval): boxes from the tracker", _CAM
)
FRAMES_MOTION_IDLE = Counter(
    "paxsim_edge_frames_motion_idle_total", "Analysed frames with no motion and no live track: the detector was not run", _CAM
)
QUEUE_DEPTH = Gauge("paxsim_edge_queue_frames", "Frames waiting between source and detector", _CAM)
DETECT_SECONDS = Histogram("paxsim_edge_detect_seconds", "Detection time per frame (worker CPU)", _CAM, buckets=_LAT)
ALIGN_SECONDS = Histogram("paxsim_edge_align_seconds", "Landmarks + chips + quality per frame", _CAM, buckets=_LAT)
EMBED_SECONDS = Histogram("paxsim_edge_embed_seconds", "Embedding time per batch of faces", _CAM, buckets=_LAT)
FRAME_LATENCY = Histogram("paxsim_edge_frame_latency_seconds", "Capture to tracked result", _CAM, buckets=_LAT)
FACES = Counter("paxsim_edge_faces_total", "Faces detected", _CAM)
WEAK_FACES = Counter("paxsim_edge_weak_faces_total", "Low-score detections that continued a live track (detector.track_score)", _CAM)
EMBEDDINGS = Counter("paxsim_edge_embeddings_total", "Face embeddings computed", _CAM)
EMBEDS_DROPPED = Counter("paxsim_edge_embeddings_dropped_total", "Embeddings dropped from the full embed lane (overload)", _CAM)
TRACKS = Counter("paxsim_edge_tracks_total", "Face tracks started", _CAM)
TRACKS_ACTIVE = Gauge("paxsim_edge_tracks_active", "Face tracks alive now", _CAM)
FILTERED = Counter("paxsim_edge_observations_filtered_total", "Observations an edge filter withheld", _CAM)
PUBLISH_LAG = Histogram(
    "paxsim_edge_capture_to_publish_seconds",
    "Frame capture to hand-over to the publisher (publish lag)",
    _CAM,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
SOURCE_STATE = Enum(edge_metrics.SOURCE_STATE, "State of the camera's source", _CAM, states=[s.value for s in SourceState])
SOURCE_RECONNECTS = Counter("paxsim_edge_source_reconnects_total", "Source reconnect attempts", _CAM)
SOURCE_BACKOFF = Gauge("paxsim_edge_source_backoff_seconds", "Wait before the source's latest reconnect attempt", _CAM)
SOURCE_ERRORS = Counter("paxsim_edge_source_errors_total", "Source errors by kind", ["camera", "kind"])


class CameraMetrics:
    def __init__(self, camera: str) -> None:
        self.camera = camera
        c = {"camera": camera}
        self.read = FRAMES_READ.labels(**c)
        self.decoded = FRAMES_DECODED.labels(**c)
        self.bad = FRAMES_BAD.labels(**c)
        self.skipped = FRAMES_SKIPPED.labels(**c)
        self.dropped = FRAMES_DROPPED.labels(**c)
        self.processed = FRAMES_PROCESSED.labels(**c)
        self.coasted = FRAMES_COASTED.labels(**c)
        self.motion_idle = FRAMES_MOTION_IDLE.labels(**c)
        self.queue = QUEUE_DEPTH.labels(**c)
        self.detect = DETECT_SECONDS.labels(**c)
        self.align = ALIGN_SECONDS.labels(**c)
        self.embed = EMBED_SECONDS.labels(**c)
        self.latency = FRAME_LATENCY.labels(**c)
        self.faces = FACES.labels(**c)
        self.weak_faces = WEAK_FACES.labels(**c)
        self.embeddings = EMBEDDINGS.labels(**c)
        self.embeds_dropped = EMBEDS_DROPPED.labels(**c)
        self.tracks = TRACKS.labels(**c)
        self.tracks_active = TRACKS_ACTIVE.labels(**c)
        self.filtered = FILTERED.labels(**c)
        self.publish_lag = PUBLISH_LAG.labels(**c)
        self.state = SOURCE_STATE.labels(**c)
        self.reconnects = SOURCE_RECONNECTS.labels(**c)
        self.backoff = SOURCE_BACKOFF.labels(**c)

    def source_listener(self, source: Source, event: str, value: object) -> None:
        if event == "read":
            self.read.inc()
        elif event == "decoded":
            self.decoded.inc()
        elif event == "bad":
            self.bad.inc()
        elif event == "reconnect":
            self.reconnects.inc()
            if isinstance(value, (int, float)):
                self.backoff.set(value)
        elif event == "error":
            SOURCE_ERRORS.labels(camera=self.camera, kind=str(value)).inc()
        elif event == "state":
            self.state.state(value.value if isinstance(value, SourceState) else str(value))

    def observe_publish_lag(self, captured_at: float, now: float | None = None) -> None:
        """For the publisher: call when a sighting from this camera is handed to the broker client."""
        self.publish_lag.observe(max(0.0, (now or time.time()) - captured_at))

"""One camera's vision pipeline: source → sample → detect → track → gated embed → filters → results.

Frames flow through a bounded queue. A live source (stream, webcam, real-time file or synthetic camera)
never waits for us: when the queue is full the oldest frame is dropped and counted, so memory stays
bounded and latency low. A file read "as fast as possible" blocks instead (offline runs lose nothing).
Up to ``max_inflight`` frames per camera are analysed at once in the shared :class:`VisionPool`
(processes spread over the cores); results are tracked in frame order. Embeddings go through the pool's
embed lane (detection first); up to ``embed_backlog`` tracked frames may wait for theirs while the
following frames are analysed, so an embedding (~3 detections of work) never stalls the detector.

Usage, N cameras in one asyncio agent::

    pool = VisionPool()                       # one per agent
    cams = [Camera(cfg, pool, filters=[...]) for cfg in configs]
    async def pump(cam):
        async for result in cam.results():    # FrameResult per processed frame
            for obs in result.faces:           # FaceObservation; obs.embedding is None unless embedded now
                ...                            # -> broker.messages.Sighting via observation_to_sighting()
    await asyncio.gather(*(pump(c) for c in cams))

A camera whose source fails ends its ``results()`` (state ``failed``); the others go on.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge.metrics import CameraMetrics
from edge.motion import MotionGate, MotionSettings
from edge.sources import Backoff, Frame, Source, SourceState, open_source
from edge.tracker import EmbedState, Track, Tracker, TrackerSettings
from edge.vision.detector import Box, DetectorSettings
from edge.vision.pool import EmbedDropped, FrameAnalysis, VisionPool, coasted_candidate

log = logging.getLogger("paxsim.edge.camera")


class CameraConfig(BaseModel):
    """Per-camera settings (one entry of the agent's camera list)."""

    model_config = ConfigDict(extra="forbid")

    camera_id: str = Field(min_length=1)
    zone: str = ""
    source: str = Field(description="file path, folder, rtsp://…, http://…, webcam:N, synthetic:CAMERA")
    loop: bool = Field(default=False, description="restart a file or folder at its end")
    realtime: bool = Field(default=False, description="pace a file/folder at its frame rate (acts live)")
    fps: float | None = Field(default=None, gt=0, description="source frame rate override")
    start_frame: int = Field(
        default=0, ge=0, description="video files: the first pass starts at this frame (staggered replicas); loops restart at 0"
    )
    sample_fps: float | None = Field(default=None, gt=0, description="frames per second to analyse (None: all)")
    motion: MotionSettings = Field(default_factory=MotionSettings, description="motion-gated detection (edge.motion)")
    detect_interval: int = Field(
        default=1, ge=1, le=30, description="run the detector on every k-th analysed frame; the tracker carries the boxes between"
    )
    max_width: int | None = Field(default=None, ge=32, description="downscale wider frames before detection")
    max_height: int | None = Field(default=None, ge=32)
    detector: DetectorSettings = Field(default_factory=DetectorSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    embed: bool = Field(default=True, description="compute embeddings (off: boxes and counts only)")
    measure_all: bool = Field(
        default=False, description="measure quality (landmarks, chip) of every face, not only of views that may be embedded"
    )
    embed_backlog: int = Field(default=24, ge=1, le=256, description="tracked frames that may wait for their embeddings")
    queue_size: int = Field(default=4, ge=1, le=256)
    max_inflight: int = Field(default=2, ge=1, le=16)
    drop_when_full: bool | None = Field(default=None, description="None: drop for live sources, block for files")
    reconnect_base_s: float = Field(default=0.5, gt=0)
    reconnect_max_s: float = Field(default=30.0, gt=0)
    reconnect_attempts: int = Field(default=0, ge=0, description="0 = retry streams for ever")


@dataclass(slots=True)
class FaceObservation:
    """One tracked face in one frame. ``embedding`` (128 float32) is set only on the frames where the
    track was (re-)embedded, and then ``quality`` is that of the embedded view (the best view of the
    track's first frames, see ``edge.tracker``); otherwise ``quality`` is NaN when it was not measured
    (the view could not have earned an embedding). Image pixels never leave the pipeline."""

    camera_id: str
    zone: str
    frame_index: int
    captured_at: float
    track_id: int
    box: Box  # x, y, w, h in source-frame pixels
    quality: float
    score: float
    new_track: bool = False
    embedding: np.ndarray | None = field(default=None, repr=False)


@dataclass(slots=True)
class FrameResult:
    camera_id: str
    zone: str
    frame_index: int
    position: int  # position in the file/folder (-1 for streams)
    captured_at: float
    face_count: int  # faces detected (before filters): what a count-only zone publishes
    tracks_active: int
    faces: list[FaceObservation]  # after the filter chain
    new_tracks: int = 0  # tracks born on this frame (people newly seen: what a count-only zone sums)


ObservationFilter = Callable[[FaceObservation], "FaceObservation | None"]


def load_cameras(path: str | Path) -> list[CameraConfig]:
    """Camera list from a YAML file: either a list of camera mappings or ``{cameras: [...]}``.
    Raises ValueError naming the bad entry."""
    import yaml
    from pydantic import ValidationError

    data = yaml.safe_load(Path(path).read_text()) or []
    if isinstance(data, dict):
        data = data.get("cameras", [])
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of cameras")
    out = []
    for i, entry in enumerate(data):
        try:
            out.append(CameraConfig.model_validate(entry))
        except ValidationError as exc:
            raise ValueError(f"{path}: camera #{i + 1}: {exc}") from None
    ids = [c.camera_id for c in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate camera_id")
    return out


def observation_to_sighting(obs: FaceObservation, event_id: str | None = None):
    """The broker message for an embedded observation (import-light helper for the agent)."""
    from broker.messages import Sighting, embedding_to_bytes

    if obs.embedding is None:
        raise ValueError("observation has no embedding")
    return Sighting(
        event_id=event_id or f"{obs.camera_id}-{uuid.uuid4().hex}",
        camera_id=obs.camera_id,
        zone=obs.zone,
        captured_at=obs.captured_at,
        track_id=obs.track_id,
        box=obs.box,
        quality=float(obs.quality),
        embedding=embedding_to_bytes(obs.embedding),
    )


def _scale_box(box: Box, s: float) -> Box:
    if s == 1.0:
        return box
    return (int(round(box[0] * s)), int(round(box[1] * s)), int(round(box[2] * s)), int(round(box[3] * s)))


class Camera:
    def __init__(
        self,
        config: CameraConfig,
        pool: VisionPool,
        filters: Sequence[ObservationFilter] = (),
        source: Source | None = None,
    ) -> None:
        self.config = config
        self.pool = pool
        self.filters = list(filters)
        self.metrics = CameraMetrics(config.camera_id)
        self.tracker = Tracker(config.tracker)
        backoff = Backoff(base=config.reconnect_base_s, cap=config.reconnect_max_s, attempts=config.reconnect_attempts)
        if source is None:
            source = open_source(
                config.camera_id,
                config.source,
                loop=config.loop,
                realtime=config.realtime,
                fps=config.fps,
                backoff=backoff,
                listener=self.metrics.source_listener,
                start_frame=config.start_frame,
            )
        elif source.listener is None:
            source.listener = self.metrics.source_listener
        self.source = source
        self.drop_when_full = source.live if config.drop_when_full is None else config.drop_when_full
        self.processed = 0
        self._analysed = 0  # frames taken for analysis (detect_interval counts these)
        self._motion = MotionGate(config.motion) if config.motion.enabled else None
        self.motion_gated = 0  # frames the detector saw only where they moved, or not at all (nothing moved)
        self.embedded = 0
        self.embeds_dropped = 0
        self.dropped = 0
        self.errors = 0
        self._next_sample = 0.0

    @property
    def state(self) -> SourceState:
        return self.source.state

    def status(self) -> dict:
        s = self.source.stats
        return {
            "camera": self.config.camera_id,
            "zone": self.config.zone,
            "state": self.state.value,
            "last_error": self.source.last_error,
            "read": s.read,
            "decoded": s.decoded,
            "bad": s.bad,
            "reconnects": s.reconnects,
            "dropped": self.dropped,
            "processed": self.processed,
            "motion_gated": self.motion_gated,
            "embedded": self.embedded,
            "embeds_dropped": self.embeds_dropped,
            "tracks_active": len(self.tracker.tracks),
            "tracks_started": self.tracker.started,
        }

    def stop(self) -> None:
        self.source.stop()

    # -- stages --
    def _sampled(self, frame: Frame) -> bool:
        rate = self.config.sample_fps
        if not rate:
            return True
        fps = self.source.fps
        t = frame.index / fps if fps > 0 else frame.captured_at
        if t + 1e-9 >= self._next_sample:
            self._next_sample = max(self._next_sample + 1.0 / rate, t) if fps > 0 else t + 1.0 / rate
            return True
        return False

    def _resize(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        f = 1.0
        if self.config.max_width and w > self.config.max_width:
            f = self.config.max_width / w
        if self.config.max_height and h * f > self.config.max_height:
            f = self.config.max_height / h
        if f == 1.0:
            return image, 1.0
        small = cv2.resize(image, (max(1, int(w * f)), max(1, int(h * f))), interpolation=cv2.INTER_AREA)
        return small, 1.0 / f

    async def _read(self, q: asyncio.Queue) -> None:
        try:
            async for frame in self.source.frames():
                if not self._sampled(frame):
                    self.metrics.skipped.inc()
                    continue
                image, scale = self._resize(frame.image)
                item = (frame, image, scale)
                if self.drop_when_full:
                    if q.full():
                        q.get_nowait()
                        self.dropped += 1
                        self.metrics.dropped.inc()
                    q.put_nowait(item)
                else:
                    await q.put(item)
                self.metrics.queue.set(q.qsize())
        except Exception:
            log.exception("camera %s: reader crashed", self.config.camera_id, extra={"camera": self.config.camera_id})
        await q.put(None)  # end marker, after every frame already queued

    def _bars(self, frame_index: int) -> tuple[list[Box], list[float], float]:
        """Regions (predicted track boxes) and the quality each track's view must reach to be embedded."""
        cfg = self.config
        tracks = list(self.tracker.tracks.values())
        regions = self.tracker.predicted_boxes(frame_index)
        if cfg.measure_all:
            return regions, [0.0] * len(regions), 0.0
        if not cfg.embed:
            return regions, [math.inf] * len(regions), math.inf
        return regions, [self.tracker.view_bar(t, frame_index) for t in tracks], 0.0

    def _track(self, frame: Frame, scale: float, analysis: FrameAnalysis) -> _Pending:
        """Track one analysed frame (in frame order) and start its embeddings, if any, in the pool."""
        m = self.metrics
        if not analysis.detected:
            m.coasted.inc()
            rows = [(t.track_id, coasted_candidate(t.predicted(frame.index)), False) for t in self.tracker.coast()]
            return _Pending(frame, scale, len(rows), len(self.tracker.tracks), rows, [], None, 0)
        m.detect.observe(analysis.detect_s)
        m.align.observe(analysis.align_s)
        faces = analysis.faces
        tr = self.tracker
        assignments = tr.update(
            frame.index, [f.box for f in faces], [f.quality for f in faces], [f.hist for f in faces], [f.weak for f in faces]
        )
        started = sum(a.born for a in assignments)
        if started:
            m.tracks.inc(started)
        if weak := sum(faces[a.det_index].weak for a in assignments):
            m.weak_faces.inc(weak)
        jobs: list[tuple[Track, object, float, EmbedState]] = []
        if self.config.embed:
            for a in assignments:
                f = faces[a.det_index]
                pick = tr.offer(a.track, frame.index, f.quality, f)
                if pick is not None and pick[0].chip is not None:
                    view, q = pick
                    jobs.append((a.track, view, q, tr.mark_embedded(a.track, q, frame.index)))
        rows = [(a.track.track_id, faces[a.det_index], a.born) for a in assignments if tr.reportable(a.track)]
        if self.config.embed:
            for track, view, q in tr.take_unsettled():  # seen briefly, missed now: embed its best view anyway
                jobs.append((track, view, q, tr.mark_embedded(track, q, frame.index)))
                rows.append((track.track_id, view, False))  # reported at the box of that view
        fut = asyncio.ensure_future(self.pool.embed([v.chip for _, v, _, _ in jobs])) if jobs else None
        return _Pending(frame, scale, len(assignments), len(tr.tracks), rows, jobs, fut, started)  # weak faces no track took: none

    def _complete(self, p: _Pending) -> FrameResult:
        """Build the frame's observations once its embeddings (if any) are back; apply the filter chain."""
        cfg = self.config
        m = self.metrics
        vectors: dict[int, tuple[np.ndarray, float]] = {}  # track id -> (embedding, quality of the embedded view)
        if p.embed_future is not None:
            try:
                vecs, secs = p.embed_future.result()
            except BrokenProcessPool:
                raise
            except Exception as exc:
                if isinstance(exc, EmbedDropped):
                    for track, _, _, before in p.jobs:
                        self.tracker.embed_dropped(track, before)  # the track may try again on a later view
                    self.embeds_dropped += len(p.jobs)
                    m.embeds_dropped.inc(len(p.jobs))
                else:
                    self.errors += 1
                    log.error("camera %s: embedding failed: %s", cfg.camera_id, exc, extra={"camera": cfg.camera_id})
            else:
                m.embed.observe(secs)
                m.embeddings.inc(len(vecs))
                self.embedded += len(vecs)
                for (track, _, q, _), vec in zip(p.jobs, vecs):
                    self.tracker.set_embedding(track, vec)
                    vectors[track.track_id] = (vec, q)
        observations: list[FaceObservation] = []
        for track_id, f, born in p.rows:
            vec, q = vectors.get(track_id, (None, f.quality))
            obs: FaceObservation | None = FaceObservation(
                cfg.camera_id,
                cfg.zone,
                p.frame.index,
                p.frame.captured_at,
                track_id,
                _scale_box(f.box, p.scale),
                q,
                f.score,
                born,
                vec,
            )
            for flt in self.filters:
                obs = flt(obs)
                if obs is None:
                    m.filtered.inc()
                    break
            if obs is not None:
                observations.append(obs)
        m.faces.inc(p.face_count)
        m.tracks_active.set(p.tracks_active)
        m.processed.inc()
        m.latency.observe(max(0.0, time.time() - p.frame.captured_at))
        self.processed += 1
        return FrameResult(
            cfg.camera_id,
            cfg.zone,
            p.frame.index,
            p.frame.position,
            p.frame.captured_at,
            p.face_count,
            p.tracks_active,
            observations,
            p.new_tracks,
        )

    async def results(self) -> AsyncIterator[FrameResult]:
        """Process the source until it ends, fails or ``stop()``; one FrameResult per analysed frame.

        Up to ``max_inflight`` frames are being analysed and up to ``embed_backlog`` tracked frames wait
        for their embeddings, so the pool keeps detecting while a frame's embeddings are computed."""
        cfg = self.config
        limit = cfg.max_inflight
        backlog = cfg.embed_backlog
        q: asyncio.Queue = asyncio.Queue(maxsize=cfg.queue_size)
        reader = asyncio.create_task(self._read(q), name=f"camera-{cfg.camera_id}-reader")
        analyses: deque[tuple[Frame, float, asyncio.Future]] = deque()
        outputs: deque[_Pending] = deque()
        reading = True
        try:
            while True:
                while reading and len(analyses) < limit:
                    if (analyses or outputs) and q.empty():
                        break  # work is pending: don't wait for the next frame
                    item = await q.get()
                    self.metrics.queue.set(q.qsize())
                    if item is None:
                        reading = False
                        break
                    frame, image, scale = item
                    self._analysed += 1
                    if (self._analysed - 1) % cfg.detect_interval:
                        coast = asyncio.get_running_loop().create_future()  # no detection: the tracker carries the boxes
                        coast.set_result(FrameAnalysis([], 0.0, 0.0, (int(image.shape[0]), int(image.shape[1])), detected=False))
                        analyses.append((frame, scale, coast))
                        continue
                    regions, bars, default_bar = self._bars(frame.index)
                    only = self._motion.regions(image, regions) if self._motion is not None else None
                    self.motion_gated += only is not None
                    if only == []:  # nothing moved and no track is expected: the detector has nothing to look at
                        self.metrics.motion_idle.inc()
                        idle = asyncio.get_running_loop().create_future()
                        idle.set_result(FrameAnalysis([], 0.0, 0.0, (int(image.shape[0]), int(image.shape[1]))))
                        analyses.append((frame, scale, idle))
                        continue
                    histograms = self.tracker.settings.appearance_weight > 0
                    call = self.pool.analyze(image, cfg.detector, regions, bars, default_bar, histograms, only)
                    analyses.append((frame, scale, asyncio.ensure_future(call)))
                if outputs and (outputs[0].embed_future is None or outputs[0].embed_future.done()):
                    yield self._complete(outputs.popleft())
                    continue
                if analyses and analyses[0][2].done() and len(outputs) < backlog:
                    frame, scale, fut = analyses.popleft()
                    try:
                        analysis = fut.result()
                    except BrokenProcessPool:
                        raise
                    except Exception as exc:
                        self.errors += 1
                        log.error(
                            "camera %s: frame %d could not be analysed: %s",
                            cfg.camera_id,
                            frame.index,
                            exc,
                            extra={"camera": cfg.camera_id},
                        )
                        continue
                    outputs.append(self._track(frame, scale, analysis))
                    continue
                if not analyses and not outputs:
                    if not reading:
                        break
                    continue
                waiters = []
                if outputs and outputs[0].embed_future is not None:
                    waiters.append(outputs[0].embed_future)
                if analyses and len(outputs) < backlog:
                    waiters.append(analyses[0][2])
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.source.stop()
            reader.cancel()
            pending = [f for _, _, f in analyses] + [p.embed_future for p in outputs if p.embed_future is not None]
            for fut in pending:
                fut.cancel()
            await asyncio.gather(reader, *pending, return_exceptions=True)


@dataclass(slots=True)
class _Pending:
    """A tracked frame waiting for its embeddings."""

    frame: Frame
    scale: float
    face_count: int
    tracks_active: int
    rows: list  # (track_id, FaceCandidate, born) for reportable tracks
    jobs: list  # (Track, FaceCandidate, quality, EmbedState) being embedded, in the order of the batch
    embed_future: asyncio.Future | None
    new_tracks: int = 0

"""Runs the CPU-heavy vision steps off the event loop, spread over the machine's cores.

Measured on a 2-core box: dlib's HOG detection releases the GIL (2 threads: 1.9× throughput) but its
ResNet embedding does not (2 threads: 1.0×; 2 processes: 2.0×). So the default pool is a
``ProcessPoolExecutor`` (spawned workers, models loaded once per worker); ``kind="thread"`` exists for
tools and tests that want no extra processes. Each call carries one frame (or a few chips) and returns
plain data; aligned chips stay inside this edge process and are never published.

Two lanes share the workers: frame analysis (detection) has priority; embeddings wait in a bounded lane
and run when no frame waits, or once the oldest has waited ``embed_max_wait_s`` (so a saturated camera
still gets its embeddings). When the lane is full the oldest embedding is dropped and counted
(:class:`EmbedDropped`; the camera lets that track try again on a later view). At most ``workers + 1``
calls are handed to the executor at once, so the lanes, not the executor's queue, decide the order.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np
from prometheus_client import Counter

from edge.vision import quality
from edge.vision.detector import Box, DetectorSettings, iou, make_detector

_local = threading.local()

EMBEDS_DROPPED = Counter("paxsim_edge_pool_embeds_dropped_total", "Embedding calls dropped because the embed lane was full")
HIST_BINS = (8, 8)  # hue × saturation bins of the appearance histogram


class EmbedDropped(RuntimeError):
    """The embedding was dropped from a full embed lane (the pool is overloaded); it was never computed."""


@dataclass(slots=True)
class FaceCandidate:
    """One detected face. ``quality``, ``landmarks`` and ``chip`` are only measured when the view could
    earn an embedding (see ``analyze_frame``'s ``bars``); otherwise quality is NaN and the others None."""

    box: Box
    score: float
    quality: float
    landmarks: np.ndarray | None  # (5, 2) float32, frame pixels
    chip: np.ndarray | None = field(repr=False)  # (150, 150, 3) uint8 RGB, aligned
    hist: np.ndarray | None = field(default=None, repr=False)  # hue × saturation histogram (sums to 1)
    weak: bool = False  # a low-score detection: it may continue a live track, never start one

    @property
    def measured(self) -> bool:
        return self.chip is not None


@dataclass(slots=True)
class FrameAnalysis:
    faces: list[FaceCandidate]
    detect_s: float
    align_s: float
    shape: tuple[int, int]  # height, width of the analysed image
    detected: bool = True  # False: a frame between detections (``detect_interval``); faces come from the tracker


def coasted_candidate(box: np.ndarray) -> FaceCandidate:
    """A live track's predicted box on a frame the detector skipped: score 0, nothing measured."""
    x, y, w, h = (int(round(float(v))) for v in box)
    return FaceCandidate((x, y, w, h), 0.0, math.nan, None, None)


def _state() -> dict:
    st = getattr(_local, "st", None)
    if st is None:
        st = _local.st = {"detectors": {}}
    return st


def _aligner():
    st = _state()
    if "aligner" not in st:
        from edge.vision.align import Aligner

        st["aligner"] = Aligner()
    return st["aligner"]


def _embedder():
    st = _state()
    if "embedder" not in st:
        from edge.vision.embedder import Embedder

        st["embedder"] = Embedder()
    return st["embedder"]


def _detector(settings: DetectorSettings):
    dets = _state()["detectors"]
    det = dets.get(settings)
    if det is None:
        det = dets[settings] = make_detector(settings)
    return det


def warm(embed: bool = True) -> int:
    """Load the models in this worker now (so the first frame is not slow). Returns the worker's pid."""
    _aligner()
    if embed:
        _embedder()
    return os.getpid()


def box_histogram(image_bgr: np.ndarray, box: Box) -> np.ndarray | None:
    """Normalised hue × saturation histogram of a face box grown to head and shoulders (a quarter of its
    width each side, 2.5 heights down: clothing tells people apart better than skin), the tracker's
    cheap appearance cue."""
    x, y, w, h = box
    x, w, h = x - w // 4, w + w // 2, int(h * 2.5)
    crop = image_bgr[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)]
    if crop.size == 0:
        return None
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)  # the box only, not the frame
    hist = cv2.calcHist([hsv], [0, 1], None, list(HIST_BINS), [0, 180, 0, 256]).ravel()
    total = float(hist.sum())
    return (hist / total).astype(np.float32) if total > 0 else None


def _bars_for(dets: Sequence, regions: Sequence[Box], bars: Sequence[float], default: float) -> list[float]:
    """Each detection's bar: that of the region (a live track's predicted box) it is paired with, one to one,
    best overlap first (IoU > 0.3); ``default`` for a detection paired with none (a new face, or a second
    face overlapping a track's region: it must not inherit that track's bar)."""
    out = [default] * len(dets)
    pairs = sorted(((iou(d.box, r), i, j) for i, d in enumerate(dets) for j, r in enumerate(regions)), reverse=True)
    used_d: set[int] = set()
    used_r: set[int] = set()
    for o, i, j in pairs:
        if o <= 0.3:
            break
        if i in used_d or j in used_r:
            continue
        used_d.add(i)
        used_r.add(j)
        out[i] = bars[j]
    return out


def analyze_frame(
    image_bgr: np.ndarray,
    settings: DetectorSettings,
    regions: Sequence[Box] = (),
    bars: Sequence[float] | None = None,
    default_bar: float = 0.0,
    histograms: bool = False,
    only: Sequence[Box] | None = None,
) -> FrameAnalysis:
    """Detect faces in one BGR frame (``only``: in these boxes of it), then landmarks, aligned chip and quality for each.

    ``regions`` are the live tracks' predicted boxes (small ones are re-scanned closer); ``bars`` the
    quality each track's view must reach to be worth embedding (``Tracker.view_bar``; ``inf``: none
    can), ``default_bar`` the same for faces matching no region. A face whose quality cannot reach its
    bar (:func:`quality.upper_bound`: size and detector score known, best case for the rest) gets no
    landmarks, chip or quality: that is most faces of an already embedded track, and every face of a
    count-only camera (``default_bar=inf``, all bars ``inf``)."""
    t0 = time.perf_counter()
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    dets = _detector(settings).detect(rgb, regions, only)
    # a weak face that overlaps no live track's predicted box can continue none (the tracker pairs weak faces by overlap)
    dets = [d for d in dets if not d.weak or any(iou(d.box, r) > 0 for r in regions)]
    t1 = time.perf_counter()
    bars = list(bars) if bars is not None else [0.0] * len(regions)
    faces = []
    for d, bar in zip(dets, _bars_for(dets, regions, bars, default_bar)):
        hist = box_histogram(image_bgr, d.box) if histograms else None
        if quality.upper_bound(d.box[2], d.confidence) < bar:
            faces.append(FaceCandidate(d.box, d.score, math.nan, None, None, hist, d.weak))
            continue
        aligner = _aligner()
        shape = aligner.shape(rgb, d.box)
        pts = aligner.points(shape)
        chip = aligner.chip(rgb, shape)
        faces.append(FaceCandidate(d.box, d.score, quality.score(d.box[2], pts, chip, d.confidence), pts, chip, hist, d.weak))
    t2 = time.perf_counter()
    return FrameAnalysis(faces, t1 - t0, t2 - t1, (int(image_bgr.shape[0]), int(image_bgr.shape[1])))


def detect_only(image_bgr: np.ndarray, settings: DetectorSettings) -> tuple[int, float]:
    """The raw detector on one frame, no regions, no alignment (baseline for bench/edge.py)."""
    t0 = time.perf_counter()
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    n = len(_detector(settings.model_copy(update={"region_redetect": False})).detect(rgb))
    return n, time.perf_counter() - t0


def embed_chips(chips: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    vecs = _embedder().embed(chips)
    return vecs, time.perf_counter() - t0


class VisionPool:
    """An executor for vision work shared by all cameras of one agent (see the module docstring).
    Use it from one event loop."""

    def __init__(
        self,
        workers: int | None = None,
        kind: Literal["process", "thread"] = "process",
        embed_queue: int = 32,
        embed_max_wait_s: float = 0.25,
    ) -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.kind = kind
        if kind == "process":
            self._ex: Executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        elif kind == "thread":
            self._ex = ThreadPoolExecutor(self.workers, thread_name_prefix="vision")
        else:
            raise ValueError(f"unknown pool kind {kind!r}")
        self.embed_queue = max(1, embed_queue)
        self.embed_max_wait_s = embed_max_wait_s
        self.embeds_dropped = 0
        self._slots = self.workers + 1
        self._busy = 0
        self._high: deque[tuple[Callable, tuple, asyncio.Future]] = deque()
        self._low: deque[tuple[float, Callable, tuple, asyncio.Future]] = deque()

    # -- lanes --
    def _call(self, high: bool, fn: Callable, *args) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        if high:
            self._high.append((fn, args, fut))
        else:
            while len(self._low) >= self.embed_queue:
                *_, old = self._low.popleft()
                if not old.done():
                    self.embeds_dropped += 1
                    EMBEDS_DROPPED.inc()
                    old.set_exception(EmbedDropped("embed lane full: oldest embedding dropped"))
            self._low.append((time.monotonic(), fn, args, fut))
        self._pump()
        return fut

    def _next(self) -> tuple[Callable, tuple, asyncio.Future] | None:
        while self._high or self._low:
            if self._low and (not self._high or time.monotonic() - self._low[0][0] >= self.embed_max_wait_s):
                _, fn, args, fut = self._low.popleft()
            else:
                fn, args, fut = self._high.popleft()
            if not fut.done():  # skip calls cancelled while they waited
                return fn, args, fut
        return None

    def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while self._busy < self._slots:
            job = self._next()
            if job is None:
                return
            fn, args, fut = job
            try:
                inner = loop.run_in_executor(self._ex, fn, *args)
            except Exception as exc:  # executor shut down or broken
                fut.set_exception(exc)
                continue
            self._busy += 1
            inner.add_done_callback(lambda f, out=fut: self._done(f, out))

    def _done(self, inner: asyncio.Future, out: asyncio.Future) -> None:
        self._busy -= 1
        if not out.done():
            if inner.cancelled():
                out.cancel()
            elif inner.exception() is not None:
                out.set_exception(inner.exception())
            else:
                out.set_result(inner.result())
        elif not inner.cancelled():
            inner.exception()  # retrieved: no "never retrieved" warning for abandoned calls
        self._pump()

    def worker_pids(self) -> list[int]:
        """Process ids of the workers (empty for a thread pool or before the first call)."""
        procs = getattr(self._ex, "_processes", None) or {}
        return list(procs)

    @property
    def backlog(self) -> tuple[int, int]:
        """(frame calls, embedding calls) waiting for a worker."""
        return len(self._high), len(self._low)

    # -- calls --
    async def warm(self, embed: bool = True) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._ex, warm, embed) for _ in range(self.workers * 2)))

    async def analyze(
        self,
        image: np.ndarray,
        settings: DetectorSettings,
        regions: Sequence[Box] = (),
        bars: Sequence[float] | None = None,
        default_bar: float = 0.0,
        histograms: bool = False,
        only: Sequence[Box] | None = None,
    ) -> FrameAnalysis:
        return await self._call(
            True,
            analyze_frame,
            image,
            settings,
            tuple(regions),
            None if bars is None else tuple(bars),
            default_bar,
            histograms,
            None if only is None else tuple(only),
        )

    async def detect_only(self, image: np.ndarray, settings: DetectorSettings) -> tuple[int, float]:
        return await self._call(True, detect_only, image, settings)

    async def embed(self, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
        """Embeddings of aligned chips, through the embed lane; raises :class:`EmbedDropped` under overload."""
        return await self._call(False, embed_chips, list(chips))

    def close(self) -> None:
        for *_, fut in list(self._high) + list(self._low):
            if not fut.done():
                try:
                    fut.cancel()
                except RuntimeError:  # its event loop is already closed
                    pass
        self._high.clear()
        self._low.clear()
        self._ex.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> VisionPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

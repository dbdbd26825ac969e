"""Runs the CPU-heavy vision steps off the event loop, spread over the machine's cores.

Measured on a 2-core box: dlib's HOG detection releases the GIL (2 threads: 1.9× throughput) but its
ResNet embedding does not (2 threads: 1.0×; 2 processes: 2.0×). So the default pool is a
``ProcessPoolExecutor`` (spawned workers, models loaded once per worker); ``kind="thread"`` exists for
tools and tests that want no extra processes. Each call carries one frame (or a few chips) and returns
plain data; aligned chips stay inside this edge process and are never published.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Sequence

import cv2
import numpy as np

from edge.vision import quality
from edge.vision.detector import Box, DetectorSettings, make_detector

_local = threading.local()


@dataclass(slots=True)
class FaceCandidate:
    box: Box
    score: float
    quality: float
    landmarks: np.ndarray  # (5, 2) float32, frame pixels
    chip: np.ndarray = field(repr=False)  # (150, 150, 3) uint8 RGB, aligned


@dataclass(slots=True)
class FrameAnalysis:
    faces: list[FaceCandidate]
    detect_s: float
    align_s: float
    shape: tuple[int, int]  # height, width of the analysed image


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


def analyze_frame(image_bgr: np.ndarray, settings: DetectorSettings, regions: Sequence[Box] = ()) -> FrameAnalysis:
    """Detect faces in one BGR frame, then landmarks, aligned chip and quality for each."""
    t0 = time.perf_counter()
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    dets = _detector(settings).detect(rgb, regions)
    t1 = time.perf_counter()
    aligner = _aligner()
    faces = []
    for d in dets:
        shape = aligner.shape(rgb, d.box)
        pts = aligner.points(shape)
        chip = aligner.chip(rgb, shape)
        faces.append(FaceCandidate(d.box, d.score, quality.score(d.box[2], pts, chip, d.score), pts, chip))
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
    """An executor for vision work shared by all cameras of one agent."""

    def __init__(self, workers: int | None = None, kind: Literal["process", "thread"] = "process") -> None:
        self.workers = workers or max(1, os.cpu_count() or 1)
        self.kind = kind
        if kind == "process":
            self._ex: Executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        elif kind == "thread":
            self._ex = ThreadPoolExecutor(self.workers, thread_name_prefix="vision")
        else:
            raise ValueError(f"unknown pool kind {kind!r}")

    async def warm(self, embed: bool = True) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.gather(*(loop.run_in_executor(self._ex, warm, embed) for _ in range(self.workers * 2)))

    async def analyze(self, image: np.ndarray, settings: DetectorSettings, regions: Sequence[Box] = ()) -> FrameAnalysis:
        return await asyncio.get_running_loop().run_in_executor(self._ex, analyze_frame, image, settings, tuple(regions))

    async def detect_only(self, image: np.ndarray, settings: DetectorSettings) -> tuple[int, float]:
        return await asyncio.get_running_loop().run_in_executor(self._ex, detect_only, image, settings)

    async def embed(self, chips: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
        return await asyncio.get_running_loop().run_in_executor(self._ex, embed_chips, list(chips))

    def close(self) -> None:
        self._ex.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "VisionPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

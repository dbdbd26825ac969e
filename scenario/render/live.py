"""Live camera source for the edge: frames straight from memory, no file (API in docs/scenario.md)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np

from ..world import World
from .frames import CameraRenderer, FaceTruth
from .sprites import SpriteCache


class LiveSource:
    """Iterate ``(frame_index, timestamp, frame)`` for one camera; ``truth(frame_index)`` gives that
    frame's ground truth (kept for the last ``keep`` frames).

    ``seconds=None`` runs until ``world.duration_s``. ``realtime=True`` paces frames at the camera's fps and
    makes ``epoch0`` default to the wall clock at start; otherwise timestamps are ``epoch0 + i / fps``.
    """

    def __init__(
        self,
        world: World,
        camera_id: str,
        seconds: float | None = None,
        realtime: bool = False,
        epoch0: float | None = None,
        start_frame: int = 0,
        keep: int = 256,
        cache: SpriteCache | None = None,
    ):
        self.renderer = CameraRenderer(world, camera_id, cache)
        self.camera = self.renderer.spec
        self.fps = self.renderer.fps
        self.realtime = realtime
        self.epoch0 = epoch0
        self.start_frame = int(start_frame)
        total = world.duration_s if seconds is None else float(seconds)
        self.frames = max(0, int(round(total * self.fps)))
        self.keep = keep
        self._truth: OrderedDict[int, list[FaceTruth]] = OrderedDict()

    def __len__(self) -> int:
        return self.frames

    def truth(self, frame_index: int) -> list[FaceTruth]:
        """Ground truth of a frame already yielded (``KeyError`` if older than the last ``keep``)."""
        return self._truth[frame_index]

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        for i, ts, frame, _ in self.with_truth():
            yield i, ts, frame

    def with_truth(self) -> Iterator[tuple[int, float, np.ndarray, list[FaceTruth]]]:
        epoch0 = self.epoch0 if self.epoch0 is not None else (time.time() if self.realtime else 0.0)
        wall0 = time.monotonic()
        for n in range(self.frames):
            i = self.start_frame + n
            if self.realtime:
                delay = wall0 + n / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            frame, truth = self.renderer.render(i)
            self._truth[i] = truth
            while len(self._truth) > self.keep:
                self._truth.popitem(last=False)
            yield i, epoch0 + i / self.fps, frame, truth

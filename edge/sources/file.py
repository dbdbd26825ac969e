"""Recorded video files through OpenCV's FFmpeg backend: looping, real-time pacing or as fast as possible."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from edge.sources.base import EndOfSource, Frame, Source, SourceError

log = logging.getLogger("paxsim.edge.source")


class Paced:
    """Mixin: in real-time mode, deliver frame n no earlier than start + n / fps."""

    realtime: bool
    fps: float
    _t0: float | None = None
    _n = 0

    async def _pace(self, frame: Frame) -> None:
        if not self.realtime or self.fps <= 0:
            return
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        due = self._t0 + self._n / self.fps
        self._n += 1
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 2.0:  # fell far behind (paused consumer): re-anchor instead of bursting
            self._t0, self._n = now, 1


class VideoFileSource(Paced, Source):
    """A video file. ``loop`` restarts it at the end; ``realtime`` paces frames at the file's rate
    (``fps`` overrides an absent or wrong rate). A missing, unopenable or frameless file fails the
    source (not retried); a file that ends before its header's frame count is logged as truncated."""

    def __init__(
        self,
        name: str,
        path: str | Path,
        *,
        loop: bool = False,
        realtime: bool = False,
        fps: float | None = None,
        start_frame: int = 0,
        **kw,
    ) -> None:
        super().__init__(name, **kw)
        self._start = max(0, int(start_frame))  # first pass starts here (seek); a loop restarts at frame 0
        self.path = Path(path)
        self.loop = loop
        self.realtime = realtime
        self.live = realtime
        self._fps_override = fps
        self._cap: cv2.VideoCapture | None = None
        self._pos = 0
        self._expected = 0
        self._truncation_logged = False

    def _open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}", "missing")
        if self.path.stat().st_size == 0:
            raise SourceError(f"video file is empty (0 bytes): {self.path}", "corrupt")
        self._open_cap()
        if self._start:
            start = self._start % self._expected if self._expected else self._start
            self._start = 0  # only the first pass: reopening after a failure or a loop starts at 0
            if start and self._cap is not None and self._cap.set(cv2.CAP_PROP_POS_FRAMES, start):
                self._pos = start

    def _open_cap(self) -> None:
        self._close()
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open video (corrupt, truncated or unsupported): {self.path}", "corrupt")
        self._cap = cap
        native = cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = float(self._fps_override or (native if 0 < native < 1000 else 25.0))
        self._expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._pos = 0

    def _read(self) -> np.ndarray | None:
        assert self._cap is not None
        ok, image = self._cap.read()
        if ok:
            self._pos += 1
            return image
        if self._pos == 0:
            raise SourceError(f"no decodable frame in {self.path}", "corrupt")
        if self._expected and self._pos < self._expected - 1 and not self._truncation_logged:
            self._truncation_logged = True
            log.warning(
                "video %s ended after %d of %d frames (truncated or corrupt)",
                self.path,
                self._pos,
                self._expected,
                extra={"camera": self.name},
            )
            self._error(SourceError("truncated", "truncated"))
        if not self.loop:
            raise EndOfSource()
        self._open_cap()
        return self._read()

    def _position(self) -> int:
        return self._pos - 1

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

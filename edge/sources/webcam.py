"""V4L2 webcams (``/dev/videoN``) through OpenCV; an unplugged camera is retried with backoff."""

from __future__ import annotations

import cv2
import numpy as np

from edge.sources.base import Source, SourceError


class WebcamSource(Source):
    retryable = True
    live = True

    def __init__(
        self, name: str, device: int | str, *, width: int | None = None, height: int | None = None, fps: float | None = None, **kw
    ) -> None:
        super().__init__(name, **kw)
        self.device = device
        self.size = (width, height)
        self.want_fps = fps
        self._cap: cv2.VideoCapture | None = None

    def _open(self) -> None:
        self._close()
        cap = cv2.VideoCapture(self.device, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open webcam {self.device}", "connect")
        w, h = self.size
        if w and h:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, w)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, h)
        if self.want_fps:
            cap.set(cv2.CAP_PROP_FPS, self.want_fps)
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self._cap = cap

    def _read(self) -> np.ndarray | None:
        assert self._cap is not None
        ok, image = self._cap.read()
        if not ok:
            raise SourceError(f"webcam {self.device} stopped delivering frames", "read")
        return image

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

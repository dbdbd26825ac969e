"""Network streams (RTSP, HTTP/MJPEG, RTMP, …) through OpenCV's FFmpeg backend, with reconnects.

Open and read time-outs keep a dead server from hanging the reader; any failure (cannot connect,
read error, stream closed) reconnects with exponential backoff (see :class:`Backoff`), for ever by
default or up to ``backoff.attempts`` times before the source is marked failed.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.sources.base import Source, SourceError

STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


class StreamSource(Source):
    retryable = True
    live = True

    def __init__(self, name: str, url: str, *, timeout_s: float = 5.0, **kw) -> None:
        super().__init__(name, **kw)
        self.url = url
        self.timeout_ms = int(timeout_s * 1000)
        self._cap: cv2.VideoCapture | None = None

    def _open(self) -> None:
        self._close()
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, self.timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, self.timeout_ms]
        cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot connect to stream {self.url}", "connect")
        self._cap = cap
        native = cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.fps = float(native) if 0 < native < 1000 else 0.0

    def _read(self) -> np.ndarray | None:
        assert self._cap is not None
        ok, image = self._cap.read()
        if not ok:
            raise SourceError(f"stream {self.url} stopped delivering frames (closed or timed out)", "read")
        return image

    def _close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None

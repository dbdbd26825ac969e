"""Test media made on the fly: small videos, image folders and an MJPEG-over-HTTP camera that can die.
No faces here (resilience tests need none); face tests use the scenario renderer."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np


def frame(i: int, w: int = 160, h: int = 120) -> np.ndarray:
    img = np.full((h, w, 3), 40, np.uint8)
    x = (i * 5) % max(1, w - 30)
    cv2.rectangle(img, (x, 20), (x + 30, 50), (0, 200, 0), -1)
    return img


def write_video(path: Path, n: int = 20, fourcc: str = "mp4v", fps: float = 25.0, size: tuple[int, int] = (160, 120)) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert w.isOpened(), "OpenCV cannot write test video"
    for i in range(n):
        w.write(frame(i, *size))
    w.release()
    return path


def truncate(src: Path, dst: Path, share: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * share)])
    return dst


class MjpegServer:
    """Serves ``frames`` JPEG frames as multipart/x-mixed-replace at ``fps`` on 127.0.0.1, then closes
    the connection. ``kill()`` stops the server (a camera dying); ``start()`` again brings it back."""

    def __init__(self, frames: int = 10_000, fps: float = 50.0, port: int = 0) -> None:
        self.frames, self.fps, self.port = frames, fps, port
        self.served = 0
        self._srv: ThreadingHTTPServer | None = None
        self._dead = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> MjpegServer:
        owner = self
        owner._dead.clear()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    for i in range(owner.frames):
                        if owner._dead.is_set():
                            break
                        ok, jpg = cv2.imencode(".jpg", frame(i))
                        body = jpg.tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(body))
                        self.wfile.write(body + b"\r\n")
                        owner.served += 1
                        time.sleep(1.0 / owner.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._srv = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._srv.daemon_threads = True
        self.port = self._srv.server_address[1]
        threading.Thread(target=self._srv.serve_forever, daemon=True).start()
        return self

    def kill(self) -> None:
        self._dead.set()
        if self._srv is not None:
            self._srv.shutdown()
            self._srv.server_close()
            self._srv = None

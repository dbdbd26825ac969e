"""The live stream is capped: each page holds a connection and a snapshot per second, so past
``dashboard.max_stream_clients`` the dashboard says 503 (Retry-After) instead of slowing for everyone."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn

from core.config import Settings
from core.obs import free_port
from dashboard.app import create_app


def _open(port: int, path: str) -> tuple[socket.socket, bytes]:
    """A raw HTTP/1.1 GET: the socket and what arrived until the first blank line after the headers' first event."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or (data.startswith(b"HTTP/1.1 200") and b"event: panels" not in data):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    return s, data


def test_streams_past_the_cap_get_503_and_a_closed_stream_frees_its_slot(settings: Settings):
    s = settings.model_copy(update={"dashboard": settings.dashboard.model_copy(update={"max_stream_clients": 2})})
    app = create_app(s, {}, background=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "dashboard did not start"
            time.sleep(0.05)
        live = [_open(port, "/api/stream?interval=5") for _ in range(2)]
        for _, head in live:  # both are live: each has sent its first snapshot
            assert head.startswith(b"HTTP/1.1 200") and b"event: panels" in head
        over, head = _open(port, "/api/stream?interval=5")
        assert head.startswith(b"HTTP/1.1 503") and b"retry-after: 5" in head.lower()
        over.close()
        other, head = _open(port, "/healthz")
        assert head.startswith(b"HTTP/1.1 200")  # the rest of the API is unaffected
        other.close()
        live[0][0].close()  # one page closes: its slot comes back once the server notices
        deadline = time.monotonic() + 15
        while True:
            again, head = _open(port, "/api/stream?interval=5")
            if head.startswith(b"HTTP/1.1 200"):
                break
            again.close()
            assert time.monotonic() < deadline, "a closed stream never gave its slot back"
            time.sleep(0.2)
        assert b"event: panels" in head
        again.close()
        live[1][0].close()
    finally:
        server.should_exit = True
        app.state.stop.set()
        thread.join(10)

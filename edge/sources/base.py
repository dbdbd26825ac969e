"""The common Source interface: an async iterator of frames with an observable state.

Blocking capture calls (OpenCV reads can block for seconds on a dead stream) run in one dedicated
thread per source, so a stuck camera never blocks the event loop or another camera. The base class
owns the life cycle::

    starting → running → (reconnecting → running)* → ended | failed

A subclass implements ``_open``, ``_read`` and ``_close`` (blocking). ``_read`` returns an image,
``None`` for a frame that decoded to nothing (zero-size; counted and skipped), or raises
:class:`EndOfSource` / :class:`SourceError`. Errors are retried with exponential backoff when the
source is retryable (streams, webcams), otherwise the source is marked failed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

log = logging.getLogger("paxsim.edge.source")


class SourceState(str, enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    FAILED = "failed"
    ENDED = "ended"


class SourceError(Exception):
    """The source cannot deliver frames now; ``kind`` names why (for the error metric)."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


class EndOfSource(Exception):
    """The source has no more frames (end of a file or folder)."""


@dataclass(slots=True)
class Frame:
    index: int  # 0-based, increasing over the source's life (across loops and reconnects)
    captured_at: float  # epoch seconds when the frame was read
    image: np.ndarray = field(repr=False)  # H×W×3 uint8 BGR
    position: int = -1  # 0-based position in the file/folder when the source has one


@dataclass(slots=True)
class Backoff:
    """Exponential backoff: ``base · factor^n`` capped at ``cap`` seconds; ``attempts`` 0 = for ever."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    attempts: int = 0

    def delay(self, n: int) -> float:
        return min(self.cap, self.base * self.factor**n)


@dataclass(slots=True)
class SourceStats:
    read: int = 0  # read calls that returned (a frame, an empty frame or an error)
    decoded: int = 0  # valid frames delivered
    bad: int = 0  # zero-size / undecodable frames skipped
    reconnects: int = 0
    backoff_s: list[float] = field(default_factory=list)  # the waits before the last reconnects (at most 32)
    errors: dict[str, int] = field(default_factory=dict)


Listener = Callable[["Source", str, object], None]


class Source:
    """Base class; see the module docstring. ``listener(source, event, value)`` receives
    ``("state", SourceState)``, ``("read", None)``, ``("decoded", None)``, ``("bad", None)``,
    ``("reconnect", backoff seconds)`` and ``("error", kind)`` events (the camera turns them into metrics)."""

    retryable = False
    live = False  # frames arrive in real time whether or not we keep up (drop rather than block)
    max_bad_in_row = 50  # that many empty frames in a row count as an error

    def __init__(self, name: str, *, backoff: Backoff | None = None, listener: Listener | None = None) -> None:
        self.name = name
        self.backoff = backoff or Backoff()
        self.listener = listener
        self.state = SourceState.STARTING
        self.stats = SourceStats()
        self.last_error: str = ""
        self.fps: float = 0.0  # native frame rate when known
        self._stop = False

    # -- subclass API (blocking, called in the source's own thread) --
    def _open(self) -> None:
        raise NotImplementedError

    def _read(self) -> np.ndarray | None:
        raise NotImplementedError

    def _close(self) -> None:
        pass

    def _position(self) -> int:
        return -1

    async def _pace(self, frame: Frame) -> None:
        """Hook for real-time pacing of recorded sources."""

    # -- life cycle --
    def _emit(self, event: str, value: object = None) -> None:
        if self.listener is not None:
            try:
                self.listener(self, event, value)
            except Exception:  # a metrics bug must not kill the camera
                log.exception("source listener failed", extra={"camera": self.name})

    def _set_state(self, state: SourceState) -> None:
        if state != self.state:
            log.info("source %s: %s -> %s", self.name, self.state.value, state.value, extra={"camera": self.name})
        self.state = state
        self._emit("state", state)

    def _error(self, exc: SourceError | Exception) -> None:
        kind = exc.kind if isinstance(exc, SourceError) else type(exc).__name__
        self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1
        self.last_error = str(exc)
        self._emit("error", kind)

    def stop(self) -> None:
        self._stop = True

    async def frames(self) -> AsyncIterator[Frame]:
        """Yield frames until the source ends, fails or is stopped. Never raises for source problems."""
        loop = asyncio.get_running_loop()
        ex = ThreadPoolExecutor(1, thread_name_prefix=f"source-{self.name}")
        index = 0
        failures = 0
        self._set_state(SourceState.STARTING)
        try:
            while not self._stop:
                try:
                    await loop.run_in_executor(ex, self._open)
                    self._set_state(SourceState.RUNNING)
                    bad_in_row = 0
                    while not self._stop:
                        try:
                            image = await loop.run_in_executor(ex, self._read)
                        finally:
                            self.stats.read += 1
                            self._emit("read")
                        if image is None or image.size == 0 or image.ndim < 2:
                            self.stats.bad += 1
                            self._emit("bad")
                            bad_in_row += 1
                            if bad_in_row == 1:
                                log.warning("source %s: empty or undecodable frame skipped", self.name, extra={"camera": self.name})
                            if bad_in_row >= self.max_bad_in_row:
                                raise SourceError(f"{bad_in_row} empty frames in a row", "empty-frames")
                            continue
                        bad_in_row = 0
                        failures = 0
                        if image.ndim == 2:
                            image = np.repeat(image[:, :, None], 3, axis=2)
                        elif image.shape[2] == 4:
                            image = np.ascontiguousarray(image[:, :, :3])
                        elif image.shape[2] != 3:
                            raise SourceError(f"frames with {image.shape[2]} channels are not supported", "format")
                        if image.dtype != np.uint8:
                            raise SourceError(f"frames of dtype {image.dtype} are not supported", "format")
                        frame = Frame(index, time.time(), image, self._position())
                        await self._pace(frame)
                        self.stats.decoded += 1
                        self._emit("decoded")
                        index += 1
                        yield frame
                except EndOfSource:
                    self._set_state(SourceState.ENDED)
                    return
                except SourceError as exc:
                    self._error(exc)
                    await loop.run_in_executor(ex, self._safe_close)
                    if not self.retryable or (self.backoff.attempts and failures >= self.backoff.attempts):
                        log.error("source %s failed: %s", self.name, exc, extra={"camera": self.name, "kind": exc.kind})
                        self._set_state(SourceState.FAILED)
                        return
                    delay = self.backoff.delay(failures)
                    failures += 1
                    self.stats.reconnects += 1
                    self.stats.backoff_s = [*self.stats.backoff_s[-31:], delay]
                    self._emit("reconnect", delay)
                    log.warning(
                        "source %s: %s; reconnecting in %.2fs (attempt %d)",
                        self.name,
                        exc,
                        delay,
                        failures,
                        extra={"camera": self.name, "kind": exc.kind},
                    )
                    self._set_state(SourceState.RECONNECTING)
                    await asyncio.sleep(delay)
                except Exception as exc:  # an unexpected bug in a source: fail this camera only
                    self._error(exc)
                    log.exception("source %s crashed", self.name, extra={"camera": self.name})
                    self._set_state(SourceState.FAILED)
                    return
            if self.state not in (SourceState.FAILED, SourceState.ENDED):
                self._set_state(SourceState.ENDED)
        finally:
            ex.submit(self._safe_close)  # after any read still in flight; never blocks the loop
            ex.shutdown(wait=False)

    def _safe_close(self) -> None:
        try:
            self._close()
        except Exception:
            log.debug("close failed", exc_info=True)

"""Frame sources for edge cameras: files, streams, webcams, image folders, synthetic live cameras.

All share :class:`Source` (async ``frames()`` iterator, ``state``, ``stats``); :func:`open_source`
builds one from a camera's ``source`` string:

- ``rtsp://…``, ``http(s)://…``, ``rtmp://…`` … : :class:`StreamSource`
- ``webcam:0``, ``v4l2:/dev/video0``, ``/dev/videoN``: :class:`WebcamSource`
- ``SCHEME:ARG`` for a scheme registered under the ``paxsim.sources`` entry point: that plug-in's source
  (``synthetic:CAMERA``, the synthetic airport's live camera, is one: ``scenario.live``)
- a directory (or ``folder:PATH``): :class:`ImageFolderSource`
- anything else (or ``file:PATH``): :class:`VideoFileSource`
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

from edge.sources.base import Backoff, EndOfSource, Frame, Listener, Source, SourceError, SourceState, SourceStats
from edge.sources.file import VideoFileSource
from edge.sources.folder import ImageFolderSource
from edge.sources.stream import STREAM_SCHEMES, StreamSource
from edge.sources.synthetic import GeneratorSource
from edge.sources.webcam import WebcamSource

__all__ = [
    "Backoff",
    "EndOfSource",
    "Frame",
    "GeneratorSource",
    "ImageFolderSource",
    "Listener",
    "Source",
    "SourceError",
    "SourceState",
    "SourceStats",
    "StreamSource",
    "VideoFileSource",
    "WebcamSource",
    "open_source",
]


PLUGIN_GROUP = "paxsim.sources"


def _plugin(scheme: str) -> Callable[..., Source] | None:
    """The source factory a package registered for ``scheme`` (entry point group ``paxsim.sources``), if any."""
    found = entry_points(group=PLUGIN_GROUP, name=scheme)
    return next(iter(found)).load() if found else None


def open_source(
    name: str,
    spec: str,
    *,
    loop: bool = False,
    realtime: bool = False,
    fps: float | None = None,
    backoff: Backoff | None = None,
    listener: Listener | None = None,
    width: int | None = None,
    height: int | None = None,
    start_frame: int = 0,
) -> Source:
    """Build the source a camera's ``source`` string names (see the module docstring)."""
    kw = {"backoff": backoff, "listener": listener}
    low = spec.lower()
    if low.startswith(STREAM_SCHEMES):
        return StreamSource(name, spec, **kw)
    if low.startswith(("webcam:", "v4l2:")) or low.startswith("/dev/video"):
        dev = spec.split(":", 1)[1] if ":" in spec else spec
        device: int | str = int(dev) if dev.isdigit() else dev
        return WebcamSource(name, device, width=width, height=height, fps=fps, **kw)
    plugin = _plugin(low.split(":", 1)[0]) if ":" in low else None
    if plugin is not None:
        return plugin(name, spec.split(":", 1)[1], fps=fps, realtime=realtime, **kw)
    if low.startswith("folder:") or Path(spec).is_dir():
        path = spec.split(":", 1)[1] if low.startswith("folder:") else spec
        return ImageFolderSource(name, path, fps=fps or 10.0, loop=loop, realtime=realtime, **kw)
    path = spec.split(":", 1)[1] if low.startswith("file:") else spec
    return VideoFileSource(name, path, loop=loop, realtime=realtime, fps=fps, start_frame=start_frame, **kw)

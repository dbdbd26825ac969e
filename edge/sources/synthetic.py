"""Synthetic live cameras: an adapter over any blocking frame generator (the scenario renderer's live source).

``GeneratorSource`` pulls frames from an iterator made by ``factory()`` in the source's own thread and
paces them at ``fps`` (a live camera does not wait for us). ``SyntheticSource`` builds that factory
from the scenario renderer (``scenario.render``) for one camera of the synthetic airport.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np

from edge.sources.base import EndOfSource, Source, SourceError
from edge.sources.file import Paced


class GeneratorSource(Paced, Source):
    def __init__(self, name: str, factory: Callable[[], Iterable[np.ndarray]], *, fps: float = 10.0, realtime: bool = True, **kw) -> None:
        super().__init__(name, **kw)
        self.factory = factory
        self.fps = fps
        self.realtime = realtime
        self.live = realtime
        self._it: Iterator[np.ndarray] | None = None

    def _open(self) -> None:
        try:
            self._it = iter(self.factory())
        except SourceError:
            raise
        except Exception as exc:
            raise SourceError(f"synthetic source {self.name} could not start: {exc}", "connect") from exc

    def _read(self) -> np.ndarray | None:
        assert self._it is not None
        try:
            return next(self._it)
        except StopIteration:
            raise EndOfSource() from None

    def _close(self) -> None:
        close = getattr(self._it, "close", None)
        self._it = None
        if close is not None:
            close()

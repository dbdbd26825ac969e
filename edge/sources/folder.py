"""A folder of still images played as video, in file-name order. Unreadable files are counted and skipped."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edge.sources.base import EndOfSource, Source, SourceError
from edge.sources.file import Paced

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}


class ImageFolderSource(Paced, Source):
    def __init__(self, name: str, folder: str | Path, *, fps: float = 10.0, loop: bool = False, realtime: bool = False, **kw) -> None:
        super().__init__(name, **kw)
        self.folder = Path(folder)
        self.fps = fps
        self.loop = loop
        self.realtime = realtime
        self.live = realtime
        self._files: list[Path] = []
        self._i = 0

    def _open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}", "missing")
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self._files:
            raise SourceError(f"no images in {self.folder}", "empty")
        self._i = 0

    def _read(self) -> np.ndarray | None:
        if self._i >= len(self._files):
            if not self.loop:
                raise EndOfSource()
            self._i = 0
        path = self._files[self._i]
        self._i += 1
        return cv2.imread(str(path), cv2.IMREAD_COLOR)  # None when unreadable: counted as a bad frame

    def _position(self) -> int:
        return self._i - 1

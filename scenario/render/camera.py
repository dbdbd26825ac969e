"""Pinhole camera in a zone's local frame (x across, y along the zone, z up; metres)."""

from __future__ import annotations

import numpy as np

from ..world import CameraSpec


class PinholeCamera:
    """Projects zone-frame points to pixels. ``yaw`` 0 looks along +y; ``pitch`` < 0 looks down."""

    def __init__(self, spec: CameraSpec):
        self.spec = spec
        self.width, self.height = spec.resolution
        self.fx = (self.width / 2.0) / np.tan(np.deg2rad(spec.hfov) / 2.0)
        self.centre = np.asarray(spec.position, dtype=np.float64)
        y, p = np.deg2rad(spec.yaw), np.deg2rad(spec.pitch)
        fwd = np.array([np.sin(y) * np.cos(p), np.cos(y) * np.cos(p), np.sin(p)])
        right = np.array([np.cos(y), -np.sin(y), 0.0])
        up = np.cross(right, fwd)
        self.forward, self.right, self.up = fwd, right, up
        self.rot = np.stack([right, -up, fwd])  # rows: camera x (right), y (down), z (forward)

    def to_cam(self, pts: np.ndarray) -> np.ndarray:
        """Zone-frame points (..., 3) → camera coordinates (..., 3) (x right, y down, z depth)."""
        return (np.asarray(pts, dtype=np.float64) - self.centre) @ self.rot.T

    def project_cam(self, pc: np.ndarray) -> np.ndarray:
        z = np.maximum(pc[..., 2:3], 1e-6)
        return np.concatenate([self.fx * pc[..., 0:1] / z + self.width / 2.0, self.fx * pc[..., 1:2] / z + self.height / 2.0], axis=-1)

    def project(self, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(pixels (..., 2), depth (...)) of zone-frame points."""
        pc = self.to_cam(pts)
        return self.project_cam(pc), pc[..., 2]

    def clip_polygon(self, pts: np.ndarray, near: float = 0.05) -> np.ndarray | None:
        """Project a planar polygon, clipped against the near plane; ``None`` when fully behind."""
        pc = self.to_cam(pts)
        out = []
        n = len(pc)
        for i in range(n):
            a, b = pc[i], pc[(i + 1) % n]
            ina, inb = a[2] >= near, b[2] >= near
            if ina:
                out.append(a)
            if ina != inb:
                t = (near - a[2]) / (b[2] - a[2])
                out.append(a + t * (b - a))
        if len(out) < 3:
            return None
        return self.project_cam(np.array(out))

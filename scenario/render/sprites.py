"""Face sprite cache: one rendered face per (identity, camera, level, yaw bin, pitch bin).

Two levels: faces under ``SMALL_FACE_PX`` wide come from a 128² model rendered at 45 px/unit with 10° yaw
and 8° pitch bins; larger ones from the full 256² model at 90 px/unit with 5° / 4° bins. Sprites are rendered
under the camera's light and resized per frame. Face models are kept in a small LRU; both caches are bounded.
"""

from __future__ import annotations

from collections import OrderedDict

from ..faces import FaceModel, Identity, Light, View, build, render_view
from ..world import CameraSpec

SMALL_FACE_PX = 40.0
# level: (model grid, pixels per head unit, yaw bin, pitch bin)
LEVELS = {0: (128, 45.0, 10.0, 8.0), 1: (256, 90.0, 5.0, 4.0)}


class SpriteCache:
    def __init__(self, max_models: int = 48, max_sprites: int = 4096):
        self.max_models = max_models
        self.max_sprites = max_sprites
        self._models: OrderedDict[tuple, FaceModel] = OrderedDict()
        self._sprites: OrderedDict[tuple, View] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def model(self, ident: Identity, grid: int = 256) -> FaceModel:
        key = (ident.seed, grid, ident.x.tobytes())
        m = self._models.get(key)
        if m is None:
            m = build(ident, grid)
            self._models[key] = m
            if len(self._models) > self.max_models:
                self._models.popitem(last=False)
        else:
            self._models.move_to_end(key)
        return m

    def get(self, ident: Identity, cam: CameraSpec, yaw: float, pitch: float, face_px: float) -> tuple[View, float]:
        """(sprite, its pixels per head unit) for a face about ``face_px`` wide."""
        level = 0 if face_px < SMALL_FACE_PX else 1
        grid, scale, ybin, pbin = LEVELS[level]
        yb = int(round(yaw / ybin))
        pb = int(round(pitch / pbin))
        key = (ident.seed, ident.x.tobytes(), cam.id, level, yb, pb)
        v = self._sprites.get(key)
        if v is not None:
            self.hits += 1
            self._sprites.move_to_end(key)
            return v, scale
        self.misses += 1
        lt = cam.light
        light = Light(direction=lt.direction, colour=lt.colour, intensity=lt.intensity)
        v = render_view(self.model(ident, grid), yb * ybin, pb * pbin, 0.0, light, scale=scale)
        self._sprites[key] = v
        if len(self._sprites) > self.max_sprites:
            self._sprites.popitem(last=False)
        return v, scale

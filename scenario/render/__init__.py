"""Airport video: per-camera scene, travellers walking their itineraries, face sprites, ground truth."""

from .frames import CameraRenderer, FaceTruth
from .live import LiveSource
from .sprites import SpriteCache
from .writer import render_all, render_camera

__all__ = ["CameraRenderer", "FaceTruth", "LiveSource", "SpriteCache", "render_all", "render_camera"]

"""The default embedder: dlib HOG detector + 5-point landmarks + ResNet 128-D descriptor.

Model files come from the ``face_recognition_models`` package, located with ``importlib.util.find_spec``
without importing it (its ``__init__`` needs ``pkg_resources``). Only the 5-point predictor is used (the
68-point one's training data forbids commercial use).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np


def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("face-recognition-models is not installed (pip install face-recognition-models==0.3.0)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


class DlibFace:
    """Detect and embed faces in BGR uint8 images. Not thread-safe: one instance per thread."""

    def __init__(self) -> None:
        import dlib

        d = models_dir()
        self._dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(d / "shape_predictor_5_face_landmarks.dat"))
        self.resnet = dlib.face_recognition_model_v1(str(d / "dlib_face_recognition_resnet_model_v1.dat"))

    def detect(self, bgr: np.ndarray, upsample: int = 1) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h), best first."""
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        rects, scores, _ = self.detector.run(rgb, upsample, 0.0)
        order = np.argsort(scores)[::-1]
        return [(rects[i].left(), rects[i].top(), rects[i].width(), rects[i].height()) for i in order]

    def detect_scored(self, bgr: np.ndarray, upsample: int = 1) -> list[tuple[tuple[int, int, int, int], float]]:
        """Face boxes with their HOG scores (> 0 = detected), best first."""
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        rects, scores, _ = self.detector.run(rgb, upsample, 0.0)
        order = np.argsort(scores)[::-1]
        return [((rects[i].left(), rects[i].top(), rects[i].width(), rects[i].height()), float(scores[i])) for i in order]

    def embed(self, bgr: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """128-D float32 descriptor of the face in ``box`` (from ``detect``)."""
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        x, y, w, h = box
        rect = self._dlib.rectangle(int(x), int(y), int(x + w - 1), int(y + h - 1))
        shape = self.shape(rgb, rect)
        return np.asarray(self.resnet.compute_face_descriptor(rgb, shape), dtype=np.float32)

    def detect_embed(self, bgr: np.ndarray, upsample: int = 1) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        """Largest-score face and its descriptor, or ``None`` when no face is found."""
        boxes = self.detect(bgr, upsample)
        if not boxes:
            return None
        return boxes[0], self.embed(bgr, boxes[0])


@lru_cache(maxsize=1)
def default_embedder() -> DlibFace:
    return DlibFace()

"""5-point landmarks and aligned 150×150 face chips (the input the dlib ResNet embedder expects)."""

from __future__ import annotations

import dlib
import numpy as np

from edge.vision.detector import Box
from edge.vision.models import SHAPE_PREDICTOR_5, model_path

CHIP_SIZE = 150
CHIP_PADDING = 0.25


class Aligner:
    """Finds 5 landmarks (two corners per eye, base of the nose) in a box and cuts the aligned chip."""

    def __init__(self) -> None:
        self._sp = dlib.shape_predictor(model_path(SHAPE_PREDICTOR_5))

    def shape(self, rgb: np.ndarray, box: Box) -> dlib.full_object_detection:
        x, y, w, h = box
        return self._sp(rgb, dlib.rectangle(int(x), int(y), int(x + w - 1), int(y + h - 1)))

    @staticmethod
    def points(shape: dlib.full_object_detection) -> np.ndarray:
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    @staticmethod
    def chip(rgb: np.ndarray, shape: dlib.full_object_detection) -> np.ndarray:
        return np.asarray(dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

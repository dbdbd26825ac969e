"""How good a face view is for recognition, in [0, 1]: size, sharpness, frontality, detector confidence.

Used by the tracker to embed a track again only on a clearly better view, and by the edge policy's
quality gate. The weights are a simple, documented heuristic, not a learned model.
"""

from __future__ import annotations

import cv2
import numpy as np

FULL_SIZE_PX = 100.0  # faces this wide or wider get the full size score
WEIGHTS = {"size": 0.35, "sharpness": 0.2, "frontality": 0.3, "confidence": 0.15}


def frontality(points: np.ndarray) -> float:
    """1 for a frontal face, falling to 0 as the nose drifts sideways from between the eyes (yaw)."""
    if points.shape != (5, 2):
        return 0.0
    eye_a, eye_b, nose = points[0:2].mean(0), points[2:4].mean(0), points[4]
    axis = eye_b - eye_a
    iod = float(np.hypot(*axis))
    if iod < 1e-3:
        return 0.0
    offset = float(np.dot(nose - (eye_a + eye_b) / 2, axis / iod)) / iod
    return float(np.clip(1.0 - 2.0 * abs(offset), 0.0, 1.0))


def sharpness(chip: np.ndarray) -> float:
    """Variance of the Laplacian of the aligned chip, squashed to [0, 1)."""
    gray = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY) if chip.ndim == 3 else chip
    v = float(cv2.Laplacian(gray, cv2.CV_32F).var())
    return v / (v + 100.0)


def upper_bound(width: float, confidence: float) -> float:
    """The best :func:`score` a face of this width and detector confidence ([0, 1]) can reach (perfectly sharp and
    frontal): a view below a track's bar by this bound needs no landmarks to know it will not be embedded."""
    size = min(1.0, max(0.0, width / FULL_SIZE_PX))
    return WEIGHTS["size"] * size + WEIGHTS["sharpness"] + WEIGHTS["frontality"] + WEIGHTS["confidence"] * float(np.clip(confidence, 0, 1))


def score(width: float, points: np.ndarray, chip: np.ndarray, confidence: float) -> float:
    parts = {
        "size": min(1.0, max(0.0, width / FULL_SIZE_PX)),
        "sharpness": sharpness(chip),
        "frontality": frontality(points),
        "confidence": float(np.clip(confidence, 0.0, 1.0)),
    }
    return round(sum(WEIGHTS[k] * v for k, v in parts.items()), 4)

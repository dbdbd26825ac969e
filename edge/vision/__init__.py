"""Face vision on the edge: detection, 5-point alignment, quality, 128-D embedding (all dlib).

Models come from the ``face-recognition-models`` package (located without importing it). The 68-point
landmark model it also ships is never used (its training data forbids commercial use).
"""

from edge.vision.detector import Detection, Detector, DetectorSettings, HogDetector
from edge.vision.models import ModelsMissing, model_path
from edge.vision.pool import FaceCandidate, FrameAnalysis, VisionPool

__all__ = [
    "Detection",
    "Detector",
    "DetectorSettings",
    "FaceCandidate",
    "FrameAnalysis",
    "HogDetector",
    "ModelsMissing",
    "VisionPool",
    "model_path",
]

"""Where dlib's model files are: inside the installed ``face_recognition_models`` package.

Its ``__init__`` imports ``pkg_resources`` (gone from setuptools >= 81), so we only ask importlib where
the package lives and never import it.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

SHAPE_PREDICTOR_5 = "shape_predictor_5_face_landmarks.dat"
RESNET_EMBEDDER = "dlib_face_recognition_resnet_model_v1.dat"
_ALLOWED = {SHAPE_PREDICTOR_5, RESNET_EMBEDDER}


class ModelsMissing(RuntimeError):
    """The model package is not installed or a model file is absent."""


@cache
def models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelsMissing("package face-recognition-models is not installed (pip install face-recognition-models)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_path(name: str) -> str:
    """Absolute path of one allowed model file; raises ModelsMissing if it is not there."""
    if name not in _ALLOWED:
        raise ValueError(f"model {name!r} is not one paxsim may use")
    path = models_dir() / name
    if not path.is_file():
        raise ModelsMissing(f"model file missing: {path}")
    return str(path)

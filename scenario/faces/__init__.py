"""Procedural parametric faces: identity parameters → 2.5-D height field + albedo → posed, relit views."""

from .jitter import JitterSpec, jittered_view, portrait
from .model import FaceModel, build
from .params import AGE_BANDS, SEXES, Identity, random_identity
from .pose import Light, View, composite, render_view

__all__ = [
    "AGE_BANDS",
    "SEXES",
    "FaceModel",
    "Identity",
    "JitterSpec",
    "Light",
    "View",
    "build",
    "composite",
    "jittered_view",
    "portrait",
    "random_identity",
    "render_view",
]

"""128-D face embeddings from dlib's ResNet (LFW 99.38 %), one aligned chip at a time.

Vectors are float32 and not unit-norm (norm ≈ 1.4 on real faces); dlib's rule is "same person when the
Euclidean distance < 0.6". dlib holds the GIL while embedding, so run it in a process pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import dlib
import numpy as np

from edge.vision.models import RESNET_EMBEDDER, model_path

DIM = 128


class Embedder:
    dim = DIM

    def __init__(self) -> None:
        self._net = dlib.face_recognition_model_v1(model_path(RESNET_EMBEDDER))

    def embed(self, chips: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 128) float32 for n aligned 150×150 RGB chips."""
        out = np.empty((len(chips), DIM), dtype=np.float32)
        for i, chip in enumerate(chips):
            out[i] = np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(chip)), dtype=np.float32)
        return out

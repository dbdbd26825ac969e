"""Tiny synthetic galleries: identity centres with dlib-like spread, noisy views."""

from __future__ import annotations

import numpy as np
import pytest

DIM = 128


def population(n_subjects: int, views: int = 1, seed: int = 0, spread: float = 0.05, noise: float = 0.02):
    """(ids, view vectors, centres): different identities ≈ 0.8 apart, views ≈ 0.3 from their centre."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(0.0, 0.1, DIM)
    centres = (mean + rng.normal(0.0, spread, (n_subjects, DIM))).astype(np.float32)
    ids = [f"sub-{i:05d}" for i in range(n_subjects) for _ in range(views)]
    vecs = np.repeat(centres, views, axis=0) + rng.normal(0.0, noise, (n_subjects * views, DIM)).astype(np.float32)
    return ids, vecs.astype(np.float32), centres


@pytest.fixture
def pop():
    return population

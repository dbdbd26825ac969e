"""Fixtures of the edge tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def key_holder(monkeypatch):
    """The run's key holder (policy.keyd) in this process's environment, for an edge that seals embeddings
    before publishing them."""
    from policy.keyd import spawn_keyd

    k = spawn_keyd()
    for name, value in k.env.items():
        monkeypatch.setenv(name, value)
    try:
        yield k
    finally:
        k.stop()

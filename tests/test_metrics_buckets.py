"""Latency histograms reach minutes: a saturated run's p99 must not read as the last bucket (once 10 s)."""

from __future__ import annotations

import pytest

from dashboard.metrics import INGEST_SECONDS
from edge.metrics import FRAME_LATENCY, PUBLISH_LAG
from matcher.service import E2E_SECONDS


@pytest.mark.parametrize("histogram", [E2E_SECONDS, INGEST_SECONDS, FRAME_LATENCY, PUBLISH_LAG], ids=lambda h: h._name)
def test_latency_histograms_resolve_minutes(histogram):
    finite = [b for b in histogram._upper_bounds if b != float("inf")]
    assert max(finite) >= 300

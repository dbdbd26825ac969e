"""The cameras panel: a camera's status comes from its edge and from the decisions, whichever is fresher."""

from __future__ import annotations

from pathlib import Path

from dashboard import panels
from dashboard.feed import CameraStat, StreamView
from dashboard.scrape import Scraper, TargetState
from edge import metricnames as edge_metrics


def edge_target(counts: list[tuple[float, dict[str, float]]]) -> TargetState:
    """An edge scraped at the given (monotonic time, sightings per camera) points."""
    ts = TargetState("edge")
    for t, per_cam in counts:
        ts.history.append((t, {(edge_metrics.SIGHTINGS_TOTAL, (("camera", cam),)): n for cam, n in per_cam.items()}))
    return ts


def test_a_camera_is_live_while_its_edge_produces_even_when_decisions_lag(tmp_path: Path):
    now = 1_000.0
    view = StreamView()
    view.cameras["producing"] = CameraStat("hall", last_seen=now - 10)  # decisions 10 s behind, edge still counting
    view.cameras["quiet"] = CameraStat("hall", last_seen=now - 10)  # edge counters flat: nothing new from it
    view.cameras["fresh"] = CameraStat("gate", last_seen=now - 1)  # a decided event 1 s old
    view.cameras["gone"] = CameraStat("gate", last_seen=now - 60)
    scraper = Scraper(tmp_path, {}, include_self=False)
    scraper.targets["edge"] = edge_target(
        [(0.0, {"producing": 10, "quiet": 7, "fresh": 3, "gone": 1}), (5.0, {"producing": 40, "quiet": 7, "fresh": 3, "gone": 1})]
    )
    rows = {r["camera"]: r for r in panels.cameras(view, scraper, now)}
    assert {c: r["status"] for c, r in rows.items()} == {"producing": "live", "quiet": "stale", "fresh": "live", "gone": "down"}
    assert rows["producing"]["events_per_s"] == 6.0 and rows["quiet"]["events_per_s"] == 0.0
    assert rows["producing"]["last_event_age_s"] == 10.0  # the lag stays visible in the row

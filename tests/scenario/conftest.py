from __future__ import annotations

from pathlib import Path

import pytest

TINY = """
name: tiny
seed: 3
duration_s: 4
zones:
  - {name: security, kind: landside, length_m: 6, width_m: 4, dwell_s: [8, 12], stop_m: 1.8, stop_s: [1, 2]}
  - {name: gate, kind: airside, length_m: 6, width_m: 4, dwell_s: [8, 12], props: seats}
routes:
  - {name: departure, share: 1.0, path: [security, gate]}
population:
  size: 6
  walk_speed_mps: [1.2, 1.4]
  nationality_group: {domestic: 1.0}
  consent: {egate-verification: 0.5, boarding: 0.5, flow-analytics: 1.0, model-training: 0.0}
cameras:
  - {id: cam-a, zone: security, position: [0, -0.6, 1.8], pitch: -5, hfov: 34, resolution: [160, 120], fps: 5}
  - {id: cam-b, zone: gate, position: [0, -0.6, 1.9], pitch: -6, hfov: 40, resolution: [160, 120], fps: 5}
"""


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p

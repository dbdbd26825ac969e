"""The synthetic airport's live cameras as an edge source (``synthetic:CAMERA`` in a camera's ``source``).

Registered under the ``paxsim.sources`` entry point (pyproject.toml), so the edge opens it by its scheme
without importing the simulator.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edge.sources.base import SourceError
from edge.sources.synthetic import GeneratorSource


def scenario_source(
    name: str,
    camera_id: str,
    *,
    fps: float | None = None,
    realtime: bool = True,
    seconds: float | None = None,
    scenario: str | None = None,
    seed: int | None = None,
    **kw,
) -> GeneratorSource:
    """A live camera of the synthetic airport (``scenario.render.LiveSource``, see docs/scenario.md).

    The renderer paces itself when ``realtime``; this adapter only hands its frames on (``seconds=None``:
    until the world's duration, then the source ends). A camera id the
    world does not have fails the source with a clear message at start.
    """

    def factory() -> Iterator[np.ndarray]:
        from scenario.render import LiveSource
        from scenario.world import load_world

        world = load_world(scenario, seed=seed) if (scenario or seed is not None) else load_world()
        if camera_id not in {c.id for c in world.cameras}:
            raise SourceError(f"no camera {camera_id!r} in the scenario", "missing")
        live = LiveSource(world, camera_id, seconds=seconds, realtime=realtime)
        src.fps = fps or float(live.fps)
        return (frame for _index, _ts, frame in live)

    src = GeneratorSource(name, factory, fps=fps or 0.0, realtime=False, **kw)
    src.live = realtime
    return src

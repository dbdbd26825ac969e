"""Virtual cameras: sightings already in embedding space, from a simulator (no pixels).

The edge defines what it needs of such a feed; the synthetic airport (``scenario.virtual.VirtualAirport``)
is one, handed to ``edge.service.run_virtual_edge`` by whoever starts the edge, so the edge never imports
the simulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class VirtualCamera(Protocol):
    @property
    def camera_id(self) -> str: ...
    @property
    def zone(self) -> str: ...


class VirtualSighting(Protocol):
    """One face seen by a virtual camera, with the ground truth that never leaves the edge."""

    @property
    def camera(self) -> VirtualCamera: ...
    @property
    def t(self) -> float: ...  # seconds since the run started
    @property
    def traveller_id(self) -> str: ...
    @property
    def embedding(self) -> np.ndarray: ...
    @property
    def claimed_subject(self) -> str | None: ...  # e-gate: the identity on the presented passport


class VirtualFeed(Protocol):
    """A deterministic source of virtual sightings: the same seed gives the same sightings for the same windows."""

    @property
    def cameras(self) -> Sequence[VirtualCamera]: ...
    @property
    def travellers(self) -> Sequence[object]: ...
    @property
    def egate_eligible(self) -> Sequence[str]: ...  # subjects whose e-gate claims travel as pseudonyms
    def sightings(self, t0: float, t1: float) -> Sequence[VirtualSighting]: ...

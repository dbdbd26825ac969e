"""Virtual cameras: the synthetic airport emitting sightings in embedding space, no pixels.

Each traveller has a base embedding (their identity); a camera sighting is that base plus per-dimension
Gaussian noise (``ScenarioSettings.embedding_noise``). Travellers walk an itinerary through the zones; each
camera sees the travellers currently in its zone. Everything is deterministic from the scenario seed.

Enrolment (``enrol``) puts the consented share of travellers in the gallery with one clean view each and
grants each of them a seeded subset of purposes, so the run has known faces, unknown faces and known
faces seen in a zone whose purpose they did not consent to.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from paxsim.config import ScenarioSettings

ZONES_DEPARTURE = ("checkin", "security", "immigration", "egate", "concourse", "gate")
PURPOSES = ("egate-verification", "boarding", "flow-analytics", "model-training")
DIM = 128
BASE_SPREAD = 0.05  # per-dimension sigma of identity centres: different-identity distance ≈ 0.8


@dataclass(frozen=True, slots=True)
class VirtualCamera:
    camera_id: str
    zone: str


@dataclass(slots=True)
class Traveller:
    traveller_id: str
    base: np.ndarray  # float32 (DIM,)
    enrolled: bool
    purposes: tuple[str, ...]
    visits: list[tuple[float, float, str]] = field(default_factory=list)  # (enter_s, leave_s, zone)


@dataclass(frozen=True, slots=True)
class VirtualSighting:
    """What a camera saw, with the ground truth that never leaves the edge."""

    camera: VirtualCamera
    t: float  # seconds since scenario start
    traveller_id: str
    embedding: np.ndarray


class VirtualAirport:
    def __init__(self, cfg: ScenarioSettings, duration_s: float) -> None:
        self.cfg = cfg
        self.duration_s = duration_s
        rng = np.random.default_rng(cfg.seed)
        self.cameras = [VirtualCamera(f"cam-{i:03d}", ZONES_DEPARTURE[i % len(ZONES_DEPARTURE)]) for i in range(cfg.cameras)]
        self.travellers: list[Traveller] = []
        for i in range(cfg.travellers):
            base = rng.normal(0.0, BASE_SPREAD, DIM).astype(np.float32)
            enrolled = bool(rng.random() < cfg.consent_share)
            purposes: tuple[str, ...] = ()
            if enrolled:
                mask = rng.random(len(PURPOSES)) < 0.6
                purposes = tuple(p for p, keep in zip(PURPOSES, mask) if keep) or (PURPOSES[int(rng.integers(len(PURPOSES)))],)
            tr = Traveller(f"pax-{i:05d}", base, enrolled, purposes)
            t = float(rng.uniform(0.0, max(duration_s * 0.6, 1e-3)))
            for zone in ZONES_DEPARTURE:
                dwell = float(rng.uniform(0.08, 0.2) * duration_s)
                tr.visits.append((t, t + dwell, zone))
                t += dwell + float(rng.uniform(0.0, 0.03) * duration_s)
            self.travellers.append(tr)
        self._by_id = {t.traveller_id: t for t in self.travellers}
        self._rng = np.random.default_rng(cfg.seed + 1)

    def traveller(self, traveller_id: str) -> Traveller:
        return self._by_id[traveller_id]

    def present(self, zone: str, t: float) -> list[Traveller]:
        return [tr for tr in self.travellers for (a, b, z) in tr.visits if z == zone and a <= t < b]

    def sightings(self, t0: float, t1: float) -> list[VirtualSighting]:
        """Sightings captured in [t0, t1): Poisson arrivals at the configured total rate, spread over cameras."""
        out: list[VirtualSighting] = []
        rng = self._rng
        per_camera = self.cfg.events_per_second * (t1 - t0) / len(self.cameras)
        for cam in self.cameras:
            n = int(rng.poisson(per_camera))
            if n == 0:
                continue
            times = np.sort(rng.uniform(t0, t1, n))
            here = self.present(cam.zone, float(times[n // 2]))
            if not here:
                continue
            for t in times:
                tr = here[int(rng.integers(len(here)))]
                noise = rng.normal(0.0, self.cfg.embedding_noise, DIM).astype(np.float32)
                out.append(VirtualSighting(cam, float(t), tr.traveller_id, tr.base + noise))
        out.sort(key=lambda s: s.t)
        return out

    def enrolment(self) -> tuple[list[str], np.ndarray, dict[str, tuple[str, ...]]]:
        """Gallery rows for enrolled travellers: ids, clean base embeddings, consented purposes."""
        enrolled = [t for t in self.travellers if t.enrolled]
        ids = [t.traveller_id for t in enrolled]
        vecs = np.stack([t.base for t in enrolled]) if enrolled else np.zeros((0, DIM), np.float32)
        return ids, vecs.astype(np.float32), {t.traveller_id: t.purposes for t in enrolled}

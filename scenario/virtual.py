"""Virtual cameras: the synthetic airport (``scenario.world``) emitting sightings in embedding space, no pixels.

The world gives the zones, cameras, travellers (demographics, consent per purpose, timed itineraries); each
traveller's identity has an enrolment embedding (``scenario.calibration.base_embeddings``: the real dlib
embedder's descriptor of the bank identity's frontal render, or a draw fitted to the bank for the others).
A sighting is that embedding moved by the calibrated same-identity noise model (distances drawn from what the
real embedder measured on jittered renders), so the matcher sees the false-match and false-non-match rates a
real pixel pipeline would give on these faces, at rates pixels cannot reach.

Virtual camera *k* is world camera ``k mod len(world.cameras)`` (more virtual cameras than the world has
replicate its cameras, for load). Scenario time runs with wall time from 0 and wraps at the world's duration.
Everything is deterministic from the seed when ``sightings`` is asked for fixed windows in order.

E-gates: at a camera in the ``egate`` zone an e-gate-eligible traveller (enrolled with consent to
``egate-verification``) presents a passport, so the sighting carries a claim: the traveller's own id
(``claimed_subject``). ``impostor_claims`` (default 0) is the share of those claims that name another
eligible traveller instead (a borrowed passport), drawn from a separate generator so the load is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.config import ScenarioSettings
from scenario.bank import base_embeddings
from scenario.calibration import load_noise_model
from scenario.world import World, load_world

DIM = 128
EGATE_ZONE = "egate"
EGATE_PURPOSE = "egate-verification"


@dataclass(frozen=True, slots=True)
class VirtualCamera:
    camera_id: str
    zone: str


@dataclass(slots=True)
class Traveller:
    traveller_id: str
    base: np.ndarray  # float32 (DIM,): the enrolment embedding
    enrolled: bool  # consented to at least one purpose
    purposes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class VirtualSighting:
    """What a camera saw, with the ground truth that never leaves the edge."""

    camera: VirtualCamera
    t: float  # seconds since the run started
    traveller_id: str
    embedding: np.ndarray
    claimed_subject: str | None = None  # e-gate: the identity on the presented passport (ground truth: traveller_id)


class VirtualAirport:
    def __init__(self, cfg: ScenarioSettings, duration_s: float, impostor_claims: float = 0.0) -> None:
        if not 0.0 <= impostor_claims <= 1.0:
            raise ValueError("impostor_claims is a share in [0, 1]")
        self.cfg = cfg
        self.impostor_claims = impostor_claims
        self.duration_s = duration_s
        self.world: World = load_world(cfg.file, seed=cfg.seed, travellers=cfg.travellers)
        bases, _measured = base_embeddings(self.world)
        self.noise = load_noise_model()
        base_cams = self.world.cameras
        self.cameras = [
            VirtualCamera(c.id if k < len(base_cams) else f"{c.id}-v{k // len(base_cams)}", c.zone)
            for k, c in ((k, base_cams[k % len(base_cams)]) for k in range(cfg.cameras))
        ]
        self.travellers: list[Traveller] = []
        for tr, base in zip(self.world.travellers, bases):
            purposes = tuple(p for p, yes in tr.consent.items() if yes)
            self.travellers.append(Traveller(tr.id, base, bool(purposes), purposes))
        self._by_id = {t.traveller_id: t for t in self.travellers}
        self._visits = self.world.by_zone
        self._rng = np.random.default_rng(cfg.seed + 1)
        self._claim_rng = np.random.default_rng(cfg.seed + 2)
        self.egate_eligible = [t.traveller_id for t in self.travellers if EGATE_PURPOSE in t.purposes]

    def traveller(self, traveller_id: str) -> Traveller:
        return self._by_id[traveller_id]

    def present(self, zone: str, t: float) -> list[Traveller]:
        """Travellers in ``zone`` at run time ``t`` (scenario time wraps at the world's duration)."""
        tw = t % self.world.duration_s
        return [self._by_id[tr.id] for tr, v in self._visits.get(zone, ()) if v.enter <= tw < v.exit]

    def sightings(self, t0: float, t1: float) -> list[VirtualSighting]:
        """Sightings captured in [t0, t1): Poisson arrivals at the configured total rate, spread over cameras,
        each of a traveller present in the camera's zone, with a calibrated noisy embedding."""
        rng = self._rng
        per_camera = self.cfg.events_per_second * (t1 - t0) / len(self.cameras)
        picked: list[tuple[VirtualCamera, float, Traveller]] = []
        for cam in self.cameras:
            n = int(rng.poisson(per_camera))
            if n == 0:
                continue
            times = np.sort(rng.uniform(t0, t1, n))
            here = self.present(cam.zone, float(times[n // 2]))
            if not here:
                continue
            picked += [(cam, float(t), here[int(rng.integers(len(here)))]) for t in times]
        if not picked:
            return []
        noisy = self.noise.sample(np.stack([tr.base for _c, _t, tr in picked]), rng)
        out = [VirtualSighting(cam, t, tr.traveller_id, noisy[i], self.claim(cam, tr)) for i, (cam, t, tr) in enumerate(picked)]
        out.sort(key=lambda s: s.t)
        return out

    def claim(self, camera: VirtualCamera, traveller: Traveller) -> str | None:
        """The identity presented at an e-gate camera (None elsewhere or for a traveller not eligible)."""
        if camera.zone != EGATE_ZONE or EGATE_PURPOSE not in traveller.purposes:
            return None
        if self.impostor_claims and len(self.egate_eligible) > 1 and self._claim_rng.random() < self.impostor_claims:
            others = [t for t in self.egate_eligible if t != traveller.traveller_id]
            return others[int(self._claim_rng.integers(len(others)))]
        return traveller.traveller_id

    def enrolment(self) -> tuple[list[str], np.ndarray, dict[str, tuple[str, ...]]]:
        """Gallery rows for travellers who consented to anything: ids, enrolment embeddings, consented purposes."""
        enrolled = [t for t in self.travellers if t.enrolled]
        ids = [t.traveller_id for t in enrolled]
        vecs = np.stack([t.base for t in enrolled]) if enrolled else np.zeros((0, DIM), np.float32)
        return ids, vecs.astype(np.float32), {t.traveller_id: t.purposes for t in enrolled}

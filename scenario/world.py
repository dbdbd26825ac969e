"""The synthetic airport: zones, cameras and travellers, from a validated YAML scenario file.

``load_world(path=None, seed=None)`` reads the file (default: the built-in ``default_airport.yaml``),
validates it with pydantic (a bad file raises :class:`ScenarioError` naming the key) and expands it into a
:class:`World`: a zone graph, cameras and a traveller population with synthetic identities, demographics,
consent per purpose and timed itineraries. Everything is deterministic from one seed (the file's ``seed``
unless ``seed`` is given).

Travellers get a face from the optimised identity bank (``scenario/data/bank.json``) when one with the same
sex and age band is still free, else a fresh random identity drawn from the world seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.config import read_yaml_mapping, validation_lines

from .faces.params import AGE_BANDS, SEXES, Identity, random_identity

DEFAULT_SCENARIO = Path(__file__).parent / "default_airport.yaml"
PURPOSES = ("egate-verification", "boarding", "flow-analytics", "model-training")


class ScenarioError(Exception):
    """The scenario file is missing, not YAML, or invalid; the message names the key and why."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ZoneSpec(_Spec):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    kind: Literal["landside", "border", "airside"] = "landside"
    length_m: float = Field(default=12.0, gt=1.0, le=200.0)
    width_m: float = Field(default=8.0, gt=1.0, le=100.0)
    dwell_s: tuple[float, float] = (30.0, 120.0)
    props: Literal["none", "desks", "arches", "gates", "pillars", "seats", "belts"] = "none"
    stop_m: float | None = Field(default=None, ge=0.0, description="y where travellers pause (desk, e-gate)")
    stop_s: tuple[float, float] = (0.0, 0.0)

    @field_validator("dwell_s")
    @classmethod
    def _dwell(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] <= v[1]:
            raise ValueError("dwell_s must be [min, max] with 0 < min <= max")
        return v


class RouteSpec(_Spec):
    name: str
    share: float = Field(gt=0.0)
    path: list[str] = Field(min_length=1)
    away: list[str] = Field(default_factory=list)


class LightSpec(_Spec):
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    intensity: float = Field(default=1.0, gt=0.0, le=3.0)
    direction: tuple[float, float, float] = (0.0, -0.4, 0.9)


class ExposureSpec(_Spec):
    """How the sensor degrades the image (second scene style: dim halls, motion blur, compression)."""

    gain: float = Field(default=1.0, gt=0.05, le=2.0, description="light reaching the sensor; < 1 is low light")
    agc: bool = Field(default=True, description="automatic gain: a dim image is amplified back to level, sensor noise with it")
    noise: float = Field(default=3.0, ge=0.0, le=40.0, description="sensor noise sigma (grey levels, before the automatic gain)")
    blur_px: float = Field(default=0.0, ge=0.0, le=25.0, description="motion-blur streak length (px, vertical)")
    jpeg_quality: int | None = Field(default=None, ge=5, le=100, description="JPEG round trip (compression artefacts)")


class CameraSpec(_Spec):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    zone: str
    position: tuple[float, float, float] = (0.0, -1.0, 2.4)
    yaw: float = Field(default=0.0, ge=-90.0, le=90.0)
    pitch: float = Field(default=-10.0, ge=-80.0, le=30.0)
    hfov: float = Field(default=50.0, gt=5.0, lt=150.0)
    resolution: tuple[int, int] = (640, 480)
    fps: float = Field(default=15.0, gt=0.0, le=120.0)
    faces: bool = True
    # the smallest face (px wide) this camera is installed to find; the edge's detector scans for it
    # (``detector.min_face_px``); None: the edge's default
    min_face_px: int | None = Field(default=None, ge=8, le=400)
    light: LightSpec = Field(default_factory=LightSpec)
    exposure: ExposureSpec = Field(default_factory=ExposureSpec)

    @field_validator("resolution")
    @classmethod
    def _res(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not (16 <= v[0] <= 7680 and 16 <= v[1] <= 4320):
            raise ValueError("resolution must be [width, height] between 16x16 and 7680x4320")
        return v


def _dist(d: dict[str, float], what: str, allowed: tuple[str, ...] | None = None) -> dict[str, float]:
    if not d:
        raise ValueError(f"{what}: at least one category")
    if any(p < 0 for p in d.values()) or sum(d.values()) <= 0:
        raise ValueError(f"{what}: weights must be >= 0 with a positive sum")
    if allowed is not None and set(d) - set(allowed):
        raise ValueError(f"{what}: unknown categories {sorted(set(d) - set(allowed))}; allowed {list(allowed)}")
    return d


class PopulationSpec(_Spec):
    size: int = Field(default=300, ge=1, le=1_000_000)
    identities: Literal["bank", "random"] = Field(
        default="bank", description="bank: faces from the refined identity bank first; random: only fresh random identities"
    )
    walk_speed_mps: tuple[float, float] = (1.0, 1.45)
    nationality_group: dict[str, float] = Field(default_factory=lambda: {"domestic": 1.0})
    sex: dict[str, float] = Field(default_factory=lambda: {"female": 0.5, "male": 0.5})
    age_band: dict[str, float] = Field(default_factory=lambda: {b: 1.0 for b in AGE_BANDS})
    consent: dict[str, float] = Field(default_factory=lambda: {p: 0.5 for p in PURPOSES})

    @field_validator("nationality_group")
    @classmethod
    def _nat(cls, v: dict[str, float]) -> dict[str, float]:
        return _dist(v, "nationality_group")

    @field_validator("sex")
    @classmethod
    def _sex(cls, v: dict[str, float]) -> dict[str, float]:
        return _dist(v, "sex", SEXES)

    @field_validator("age_band")
    @classmethod
    def _age(cls, v: dict[str, float]) -> dict[str, float]:
        return _dist(v, "age_band", AGE_BANDS)

    @field_validator("consent")
    @classmethod
    def _consent(cls, v: dict[str, float]) -> dict[str, float]:
        bad = set(v) - set(PURPOSES)
        if bad:
            raise ValueError(f"unknown purposes {sorted(bad)}; allowed {list(PURPOSES)}")
        if any(not 0.0 <= p <= 1.0 for p in v.values()):
            raise ValueError("consent probabilities must be in [0, 1]")
        return v

    @field_validator("walk_speed_mps")
    @classmethod
    def _speed(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0.2 <= v[0] <= v[1] <= 4.0:
            raise ValueError("walk_speed_mps must be [min, max] within 0.2..4.0")
        return v


class ScenarioSpec(_Spec):
    name: str = "scenario"
    seed: int = 7
    duration_s: float = Field(default=600.0, gt=0.0, le=7 * 86400.0)
    zones: list[ZoneSpec] = Field(min_length=1)
    routes: list[RouteSpec] = Field(min_length=1)
    egate_groups: list[str] = Field(default_factory=list)
    checkin_skip_share: float = Field(default=0.0, ge=0.0, le=1.0)
    population: PopulationSpec = Field(default_factory=PopulationSpec)
    cameras: list[CameraSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _refs(self) -> ScenarioSpec:
        names = [z.name for z in self.zones]
        if len(set(names)) != len(names):
            raise ValueError("zone names must be unique")
        known = set(names)
        for r in self.routes:
            for step in r.path:
                for z in step.split("|"):
                    if z not in known:
                        raise ValueError(f"route {r.name!r}: unknown zone {z!r}")
            for z in r.away:
                if z not in known:
                    raise ValueError(f"route {r.name!r}: unknown zone {z!r} in away")
        ids = [c.id for c in self.cameras]
        if len(set(ids)) != len(ids):
            raise ValueError("camera ids must be unique")
        for c in self.cameras:
            if c.zone not in known:
                raise ValueError(f"camera {c.id!r}: unknown zone {c.zone!r}")
        return self


# ---- expanded world ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Visit:
    """A traveller in ``zone`` from ``enter`` to ``exit`` (scenario seconds). ``towards``: walks towards the
    zone's cameras (face visible) or away from them."""

    zone: str
    enter: float
    exit: float
    towards: bool = True
    stop_s: float = 0.0  # pause at the zone's stop point (facing its cameras), seconds


@dataclass(frozen=True)
class Demographics:
    nationality_group: str
    sex: str
    age_band: str


@dataclass
class Traveller:
    """One synthetic traveller. ``number`` is 1-based (the MOTChallenge identity); ``bank_index`` is the
    identity's row in the bank (and in ``bank_embeddings.npz``) or ``None`` for a fresh random identity."""

    id: str
    number: int
    route: str
    demographics: Demographics
    consent: dict[str, bool]
    itinerary: list[Visit]
    speed_mps: float
    height_m: float
    lane_m: float
    identity: Identity
    bank_index: int | None
    clothing: tuple[int, int, int]

    def visit_at(self, t: float) -> Visit | None:
        for v in self.itinerary:
            if v.enter <= t < v.exit:
                return v
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "number": self.number,
            "route": self.route,
            "demographics": {
                "nationality_group": self.demographics.nationality_group,
                "sex": self.demographics.sex,
                "age_band": self.demographics.age_band,
                "skin_tone": self.identity.skin_tone_scale,
            },
            "consent": dict(self.consent),
            "itinerary": [
                {
                    "zone": v.zone,
                    "enter": round(v.enter, 3),
                    "exit": round(v.exit, 3),
                    "towards": v.towards,
                    "stop_s": round(v.stop_s, 3),
                }
                for v in self.itinerary
            ],
            "speed_mps": round(self.speed_mps, 3),
            "height_m": round(self.height_m, 3),
            "bank_index": self.bank_index,
            "identity_seed": self.identity.seed,
        }


@dataclass
class World:
    spec: ScenarioSpec
    seed: int
    zones: dict[str, ZoneSpec]
    graph: dict[str, list[str]]
    cameras: list[CameraSpec]
    travellers: list[Traveller]
    purposes: tuple[str, ...] = PURPOSES
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def duration_s(self) -> float:
        return self.spec.duration_s

    def camera(self, camera_id: str) -> CameraSpec:
        for c in self.cameras:
            if c.id == camera_id:
                return c
        raise KeyError(f"no camera {camera_id!r}; cameras: {[c.id for c in self.cameras]}")

    @cached_property
    def by_zone(self) -> dict[str, list[tuple[Traveller, Visit]]]:
        """Visits per zone, sorted by entry time."""
        out: dict[str, list[tuple[Traveller, Visit]]] = {z: [] for z in self.zones}
        for tr in self.travellers:
            for v in tr.itinerary:
                out[v.zone].append((tr, v))
        for lst in out.values():
            lst.sort(key=lambda tv: tv[1].enter)
        return out

    def manifest(self) -> dict[str, Any]:
        return {
            "scenario": self.name,
            "seed": self.seed,
            "duration_s": self.duration_s,
            "purposes": list(self.purposes),
            "zones": [z.model_dump() for z in self.zones.values()],
            "graph": self.graph,
            "cameras": [c.model_dump() for c in self.cameras],
            "identities": [t.to_dict() for t in self.travellers],
        }


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _bank() -> list[Identity]:
    from .bank import BANK_FILE, load_bank

    try:
        return load_bank(BANK_FILE)
    except FileNotFoundError:
        return []


def build_world(spec: ScenarioSpec, seed: int | None = None, bank: list[Identity] | None = None) -> World:
    """Expand a validated spec into a :class:`World` (deterministic in ``seed``)."""
    seed = spec.seed if seed is None else int(seed)
    rng = np.random.default_rng([0xA1, seed])
    zones = {z.name: z for z in spec.zones}
    graph: dict[str, set[str]] = {z: set() for z in zones}
    for r in spec.routes:
        steps = [s.split("|") for s in r.path]
        for a, b in zip(steps, steps[1:]):
            for za in a:
                graph[za].update(b)
    bank = _bank() if bank is None else bank
    if spec.population.identities == "random":
        bank = []  # faces the bank's refinement never saw
    free: dict[tuple[str, str], list[int]] = {}
    for i, ident in enumerate(bank):
        free.setdefault((ident.sex, ident.age_band), []).append(i)
    pop = spec.population
    route_w = {r.name: r.share for r in spec.routes}
    routes = {r.name: r for r in spec.routes}
    travellers: list[Traveller] = []
    for n in range(pop.size):
        route = routes[_choice(rng, route_w)]
        demo = Demographics(_choice(rng, pop.nationality_group), _choice(rng, pop.sex), _choice(rng, pop.age_band))
        consent = {p: bool(rng.uniform() < pop.consent.get(p, 0.0)) for p in PURPOSES}
        speed = float(rng.uniform(*pop.walk_speed_mps))
        height = float(rng.normal(1.77 if demo.sex == "male" else 1.64, 0.07))
        lane = float(rng.uniform(-0.5, 0.5))
        clothing = tuple(int(c) for c in rng.integers(20, 230, size=3))
        egate_ok = demo.nationality_group in spec.egate_groups and consent["egate-verification"]
        skip_checkin = bool(rng.uniform() < spec.checkin_skip_share)
        dwells = []
        for step in route.path:
            options = step.split("|")
            zone = options[0] if (egate_ok or len(options) == 1) else options[-1]
            lo, hi = zones[zone].dwell_s
            walk = zones[zone].length_m / speed
            d = float(rng.uniform(lo, hi))
            z = zones[zone]
            stop = float(rng.uniform(*z.stop_s)) if z.stop_m is not None and z.stop_s[1] > 0 else 0.0
            if zone == "checkin" and skip_checkin:
                d, stop = walk + float(rng.uniform(2.0, 10.0)), 0.0
            dwells.append((zone, max(d, walk + stop + 2.0), stop))
        # anchor: one zone of the route whose walk-through happens within [0, duration_s], so even a
        # short render sees every traveller once; the other visits follow from the dwell times
        anchor = int(rng.integers(len(dwells)))
        walk_a = zones[dwells[anchor][0]].length_m / speed + dwells[anchor][2]
        t = float(rng.uniform(-walk_a, spec.duration_s)) - sum(d for _, d, _ in dwells[:anchor])
        itinerary = []
        for zone, d, stop in dwells:
            towards = zone not in route.away
            itinerary.append(Visit(zone, t, t + d, towards=towards, stop_s=stop if towards else 0.0))
            t += d
        key = (demo.sex, demo.age_band)
        if free.get(key):
            bank_index: int | None = free[key].pop(0)
            identity = bank[bank_index]  # type: ignore[index]
        else:
            bank_index = None
            identity = random_identity(int(rng.integers(2**62)), sex=demo.sex, age_band=demo.age_band)
        travellers.append(
            Traveller(
                id=f"T{n + 1:05d}",
                number=n + 1,
                route=route.name,
                demographics=demo,
                consent=consent,
                itinerary=itinerary,
                speed_mps=speed,
                height_m=height,
                lane_m=lane,
                identity=identity,
                bank_index=bank_index,
                clothing=clothing,  # type: ignore[arg-type]
            )
        )
    return World(
        spec=spec,
        seed=seed,
        zones=zones,
        graph={k: sorted(v) for k, v in graph.items()},
        cameras=list(spec.cameras),
        travellers=travellers,
        meta={"bank_size": len(bank)},
    )


def load_spec(path: str | Path | None = None) -> ScenarioSpec:
    """Read and validate a scenario file (default: the built-in small airport)."""
    p = Path(path) if path else DEFAULT_SCENARIO
    data = read_yaml_mapping(p, "scenario file", ScenarioError)
    try:
        return ScenarioSpec.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(f"invalid scenario {p}:\n" + validation_lines(exc)) from None


def load_world(path: str | Path | None = None, seed: int | None = None, travellers: int | None = None) -> World:
    """Load a scenario file (default: built-in small airport) and expand it; ``seed`` overrides the file's,
    ``travellers`` its population size."""
    spec = load_spec(path)
    if travellers is not None:
        if travellers < 1:
            raise ScenarioError(f"travellers must be >= 1, got {travellers}")
        spec = spec.model_copy(update={"population": spec.population.model_copy(update={"size": int(travellers)})})
    return build_world(spec, seed)

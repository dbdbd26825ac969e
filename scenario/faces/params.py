"""Identity parameters: what makes one synthetic face differ from another.

An identity is a vector of continuous parameters, nominally in [0, 1] (the part the bank optimiser may nudge,
within [X_MIN, X_MAX]), plus a
few discrete traits (sex, age band, hair style, beard, glasses, headscarf) and a texture seed. Everything is
drawn from one integer seed; nothing here is taken from any real person.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# Order matters: it is the layout of ``Identity.x``. Ranges are applied in ``model.py``.
CONTINUOUS = (
    "head_width",
    "head_height",
    "jaw_width",
    "chin_length",
    "eye_spacing",
    "eye_height",
    "eye_size",
    "canthal_tilt",
    "nose_length",
    "nose_width",
    "nose_depth",
    "mouth_height",
    "mouth_width",
    "lip_thickness",
    "brow_gap",
    "brow_thickness",
    "brow_tilt",
    "skin_tone",
    "skin_warmth",
    "hair_lightness",
    "hairline",
    "cheek",
    "warp_a",
    "warp_b",
    "warp_c",
    "warp_d",
    "iris_darkness",
    "lip_colour",
    "face_depth",
    "ear_size",
    "brow_arch",
    "eye_openness",
)
N_CONTINUOUS = len(CONTINUOUS)
INDEX = {name: i for i, name in enumerate(CONTINUOUS)}

# Random identities draw x in [0, 1]; the bank optimiser may extrapolate the ranges a little.
X_MIN, X_MAX = -0.25, 1.25

SEXES = ("female", "male")
AGE_BANDS = ("18-29", "30-44", "45-64", "65+")
HAIR_STYLES = ("short", "long", "cropped", "bun")
BEARDS = ("none", "stubble", "full", "moustache")


@dataclass(frozen=True)
class Identity:
    """A synthetic face identity. ``x`` holds the continuous parameters (see ``CONTINUOUS``)."""

    seed: int
    x: np.ndarray
    sex: str = "female"
    age_band: str = "30-44"
    hair_style: str = "short"
    beard: str = "none"
    glasses: bool = False
    headscarf: bool = False
    texture_seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def p(self, name: str) -> float:
        return float(self.x[INDEX[name]])

    def with_x(self, x: np.ndarray) -> Identity:
        return replace(self, x=np.clip(np.asarray(x, dtype=np.float64), X_MIN, X_MAX))

    @property
    def skin_tone_scale(self) -> int:
        """Skin tone on a 1 (lightest) .. 6 (darkest) scale, for fairness breakdowns."""
        return int(min(5, self.p("skin_tone") * 6)) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "x": [round(float(v), 6) for v in self.x],
            "sex": self.sex,
            "age_band": self.age_band,
            "hair_style": self.hair_style,
            "beard": self.beard,
            "glasses": self.glasses,
            "headscarf": self.headscarf,
            "texture_seed": self.texture_seed,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Identity:
        x = np.asarray(d["x"], dtype=np.float64)
        if x.shape != (N_CONTINUOUS,) or not np.all(np.isfinite(x)):
            raise ValueError(f"identity {d.get('seed')}: x must be {N_CONTINUOUS} finite numbers")
        return cls(
            seed=int(d["seed"]),
            x=np.clip(x, X_MIN, X_MAX),
            sex=str(d["sex"]),
            age_band=str(d["age_band"]),
            hair_style=str(d["hair_style"]),
            beard=str(d["beard"]),
            glasses=bool(d["glasses"]),
            headscarf=bool(d["headscarf"]),
            texture_seed=int(d["texture_seed"]),
        )


def random_identity(seed: int, sex: str | None = None, age_band: str | None = None) -> Identity:
    """Draw an identity from ``seed``; ``sex`` / ``age_band`` may be imposed (e.g. from demographics)."""
    rng = np.random.default_rng([0xFACE, int(seed)])
    # Beta(2, 2) keeps most faces away from the extremes of each range.
    x = rng.beta(2.0, 2.0, size=N_CONTINUOUS)
    x[INDEX["skin_tone"]] = rng.uniform()  # skin tone spread evenly over the whole range
    x[INDEX["hair_lightness"]] = rng.beta(1.2, 2.5)
    sex = sex if sex is not None else SEXES[int(rng.integers(2))]
    age_band = age_band if age_band is not None else AGE_BANDS[int(rng.integers(len(AGE_BANDS)))]
    if sex not in SEXES:
        raise ValueError(f"sex must be one of {SEXES}, got {sex!r}")
    if age_band not in AGE_BANDS:
        raise ValueError(f"age_band must be one of {AGE_BANDS}, got {age_band!r}")
    u = rng.uniform(size=6)
    if sex == "male":
        hair_style = HAIR_STYLES[int(rng.choice(4, p=[0.6, 0.05, 0.3, 0.05]))]
        beard = BEARDS[int(rng.choice(4, p=[0.5, 0.2, 0.2, 0.1]))]
        headscarf = False
    else:
        hair_style = HAIR_STYLES[int(rng.choice(4, p=[0.25, 0.5, 0.05, 0.2]))]
        beard = "none"
        headscarf = bool(u[0] < 0.1)
    glasses = bool(u[1] < 0.18)
    return Identity(
        seed=int(seed),
        x=x,
        sex=sex,
        age_band=age_band,
        hair_style=hair_style,
        beard=beard,
        glasses=glasses,
        headscarf=headscarf,
        texture_seed=int(rng.integers(2**31)),
    )

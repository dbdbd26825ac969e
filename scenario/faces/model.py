"""Turn an :class:`Identity` into a 2.5-D face: height field, albedo and alpha on a square grid.

Grid coordinates: ``u`` to the face's right in the image (x), ``v`` downwards (y), both in [-R, R] head
units (the head is about 1.25 units wide); ``z`` points out of the face towards a frontal viewer.
Built once per identity (≈ 15 ms) and then posed and relit per view by ``pose.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .params import Identity

GRID = 256
EXTENT = 1.35  # grid covers [-EXTENT, EXTENT] in both directions


@dataclass(frozen=True)
class FaceModel:
    """Height field ``z`` (G, G), albedo ``rgb`` (G, G, 3) in 0..1, ``alpha`` (G, G) in 0..1, ``spec``
    (G, G) specular strength and ``cavity`` (G, G) ambient occlusion factor; ``u``, ``v`` grid coordinates."""

    identity: Identity
    u: np.ndarray
    v: np.ndarray
    z: np.ndarray
    rgb: np.ndarray
    alpha: np.ndarray
    spec: np.ndarray
    cavity: np.ndarray
    face_region: np.ndarray  # bool (G, G): brows to chin, cheek to cheek (defines the face box)


def _lerp(t: float, lo: float, hi: float) -> float:
    return lo + (hi - lo) * t


def _g(u: np.ndarray, v: np.ndarray, cu: float, cv: float, su: float, sv: float) -> np.ndarray:
    return np.exp(-(((u - cu) / su) ** 2 + ((v - cv) / sv) ** 2))


def _ell(u: np.ndarray, v: np.ndarray, cu: float, cv: float, ru: float, rv: float, rot: float = 0.0) -> np.ndarray:
    """Signed 'radius' of an ellipse: < 1 inside."""
    c, s = np.cos(rot), np.sin(rot)
    du, dv = u - cu, v - cv
    a = (c * du + s * dv) / ru
    b = (-s * du + c * dv) / rv
    return a * a + b * b


def _soft(d: np.ndarray, edge: float = 0.15) -> np.ndarray:
    """Soft inside mask from an ellipse radius (1 inside, 0 outside)."""
    return np.clip((1.0 - d) / edge, 0.0, 1.0)


def _noise(rng: np.random.Generator, sigma: float, sx: float | None = None, sy: float | None = None, grid: int = GRID) -> np.ndarray:
    k = grid / GRID
    n = rng.standard_normal((grid, grid)).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigmaX=(sx or sigma) * k, sigmaY=(sy or sigma) * k)
    return n / (n.std() + 1e-6)


def build(identity: Identity, grid: int = GRID) -> FaceModel:
    """Build the 2.5-D face for ``identity`` (deterministic) on a ``grid``² grid (128 for small sprites)."""
    p = identity.p
    rng = np.random.default_rng([0x5EED, identity.texture_seed])
    lin = np.linspace(-EXTENT, EXTENT, grid)
    u0, v0 = np.meshgrid(lin, lin)
    # Low-frequency free-form warp of the feature layout.
    wa, wb, wc, wd = (p("warp_a") - 0.5, p("warp_b") - 0.5, p("warp_c") - 0.5, p("warp_d") - 0.5)
    u = u0 + 0.05 * wa * np.sin(np.pi * v0 / 1.2) + 0.04 * wc * u0 * v0
    v = v0 + 0.05 * wb * np.sin(np.pi * u0 / 1.2) + 0.04 * wd * (u0 * u0 - 0.3)

    male = identity.sex == "male"
    age = {"18-29": 0.0, "30-44": 0.3, "45-64": 0.65, "65+": 1.0}[identity.age_band]

    # ---- head outline -------------------------------------------------------------------------------
    a = _lerp(p("head_width"), 0.55, 0.66) + (0.02 if male else 0.0)
    b = _lerp(p("head_height"), 0.80, 0.92)
    jaw = _lerp(p("jaw_width"), 0.55, 0.85) + (0.06 if male else 0.0)
    chin = _lerp(p("chin_length"), 0.0, 0.06)
    btm = b + chin
    vn = np.clip(v / np.where(v < 0, b, btm), -1.0, 1.0)
    half_w = a * np.sqrt(np.clip(1.0 - vn**2, 0.0, 1.0)) ** 0.85
    taper = 1.0 - (1.0 - jaw) * (np.clip(vn - 0.15, 0.0, None) / 0.85) ** 1.6
    half_w = half_w * taper
    rr = np.abs(u) / np.maximum(half_w, 1e-3)
    head = np.clip((1.0 - rr) / 0.04, 0.0, 1.0) * (np.abs(vn) < 1.0)
    depth = _lerp(p("face_depth"), 0.45, 0.62)
    z = depth * np.sqrt(np.clip(1.0 - np.minimum(rr, 1.0) ** 2, 0.0, 1.0)) * np.sqrt(np.clip(1.0 - vn**2, 0.0, 1.0)) ** 0.5

    # ---- feature layout -----------------------------------------------------------------------------
    ex = _lerp(p("eye_spacing"), 0.21, 0.28)
    ey = _lerp(p("eye_height"), -0.10, 0.04)
    ew = _lerp(p("eye_size"), 0.092, 0.118)
    eh = ew * _lerp(p("eye_openness"), 0.38, 0.55)
    tilt = np.deg2rad(_lerp(p("canthal_tilt"), -10.0, 10.0))
    ny = ey + _lerp(p("nose_length"), 0.25, 0.40)
    nw = _lerp(p("nose_width"), 0.075, 0.13)
    nd = _lerp(p("nose_depth"), 0.10, 0.22)
    my = ny + _lerp(p("mouth_height"), 0.13, 0.24)
    mw = _lerp(p("mouth_width"), 0.15, 0.24)
    lt = _lerp(p("lip_thickness"), 0.025, 0.05)
    bg = _lerp(p("brow_gap"), 0.09, 0.17)
    bt = _lerp(p("brow_thickness"), 0.028, 0.05) * (1.25 if male else 1.0)
    btilt = np.deg2rad(_lerp(p("brow_tilt"), -10.0, 10.0))
    barch = _lerp(p("brow_arch"), 0.0, 0.06)
    cheek = _lerp(p("cheek"), 0.0, 0.06)

    # ---- height field features ----------------------------------------------------------------------
    for s in (-1.0, 1.0):
        z -= 0.09 * _g(u, v, s * ex, ey, ew * 1.5, ew * 1.1)  # eye sockets
        z += 0.035 * _g(u, v, s * ex, ey - bg, ew * 1.6, 0.05)  # brow ridge
        z += cheek * _g(u, v, s * (ex + 0.05), ny - 0.02, 0.13, 0.10)  # cheek bones
        z += 0.02 * _g(u, v, s * ex, ey, ew * 0.8, eh * 1.2)  # eyeballs
    ridge_t = np.clip((v - ey) / max(ny - ey, 1e-3), 0.0, 1.0)
    z += nd * ridge_t**1.3 * np.exp(-((u / (nw * 0.35)) ** 2)) * (v < ny + 0.03) * (v > ey - 0.05)
    z += nd * 0.9 * _g(u, v, 0.0, ny, nw * 0.55, 0.05)  # nose tip
    for s in (-1.0, 1.0):
        z += nd * 0.35 * _g(u, v, s * nw * 0.8, ny - 0.005, nw * 0.4, 0.04)  # alae
    z += 0.035 * _g(u, v, 0.0, my - lt * 0.6, mw * 0.9, lt)  # upper lip
    z += 0.04 * _g(u, v, 0.0, my + lt * 0.7, mw * 0.8, lt * 1.1)  # lower lip
    z -= 0.02 * _g(u, v, 0.0, my + lt * 2.6, mw * 0.6, 0.025)  # labiomental fold
    z += 0.03 * _g(u, v, 0.0, btm - 0.1, 0.12, 0.07)  # chin
    z *= head

    # ---- albedo -------------------------------------------------------------------------------------
    tone = p("skin_tone")
    light = np.array([0.93, 0.78, 0.68])
    dark = np.array([0.36, 0.235, 0.165])
    skin = light + (dark - light) * tone
    warm = p("skin_warmth") - 0.5
    skin = np.clip(skin * np.array([1.0 + 0.08 * warm, 1.0, 1.0 - 0.12 * warm]), 0, 1)
    tex = 1.0 + 0.05 * _noise(rng, 6.0, grid=grid) + 0.025 * _noise(rng, 1.2, grid=grid)
    rgb = skin[None, None, :] * tex[..., None]
    blush = np.zeros_like(u)
    for s in (-1.0, 1.0):
        blush += _g(u, v, s * (ex + 0.04), ny + 0.02, 0.10, 0.08)
    rgb = rgb * (1.0 - 0.10 * blush[..., None] * np.array([0.0, 1.0, 1.0]))
    shade = np.zeros_like(u)
    for s in (-1.0, 1.0):
        shade += _g(u, v, s * ex, ey + 0.02, ew * 1.5, ew * 0.9)  # darker skin around the eyes
    rgb *= 1.0 - (0.28 + 0.12 * age) * shade[..., None]

    hair_l = p("hair_lightness")
    hair_col = np.array([0.05, 0.04, 0.035]) + (np.array([0.55, 0.42, 0.25]) - np.array([0.05, 0.04, 0.035])) * hair_l
    if age >= 0.65:
        grey = 0.45 if age < 1.0 else 0.8
        hair_col = hair_col * (1 - grey) + np.array([0.62, 0.62, 0.62]) * grey
    brow_col = np.minimum(hair_col * (0.7 if hair_l < 0.6 else 0.45), skin * 0.35)

    # eyes
    iris_col = np.array([0.25, 0.15, 0.07]) * (1.0 - 0.6 * p("iris_darkness")) + 0.02
    spec = 0.25 * np.ones_like(u)
    for s in (-1.0, 1.0):
        d_eye = _ell(u, v, s * ex, ey, ew, eh, s * tilt)
        m_eye = _soft(d_eye, 0.3)
        sclera = np.array([0.66, 0.63, 0.60])
        rgb = rgb * (1 - m_eye[..., None]) + sclera * m_eye[..., None]
        m_iris = _soft(_ell(u, v, s * ex, ey, eh * 0.95, eh * 0.95), 0.2) * m_eye
        rgb = rgb * (1 - m_iris[..., None]) + iris_col * m_iris[..., None]
        m_pupil = _soft(_ell(u, v, s * ex, ey, eh * 0.4, eh * 0.4), 0.3) * m_eye
        rgb = rgb * (1 - m_pupil[..., None]) + 0.02 * m_pupil[..., None]
        spec = np.maximum(spec, 0.9 * m_eye)
        # upper lid / lashes: dark arc on the upper edge of the eye
        lid = _soft(_ell(u, v, s * ex, ey - eh * 0.3, ew * 1.08, eh * 1.05, s * tilt), 0.25) * (1 - m_eye)
        lid *= (v < ey + 0.01).astype(float)
        rgb *= 1.0 - 0.85 * lid[..., None]
        # brows
        bu = u - s * ex
        bv = v - (ey - bg) + barch * (1 - (bu / (ew * 1.6)) ** 2) - s * np.tan(btilt) * bu
        m_brow = np.exp(-((bv / bt) ** 4)) * np.exp(-((bu / (ew * 1.55)) ** 6))
        rgb = rgb * (1 - m_brow[..., None]) + brow_col * m_brow[..., None]
    # nostrils
    for s in (-1.0, 1.0):
        m_n = _soft(_ell(u, v, s * nw * 0.45, ny + 0.035, nw * 0.3, 0.018), 0.4)
        rgb *= 1.0 - 0.7 * m_n[..., None]
    # lips
    lip_base = skin * np.array([0.78, 0.50, 0.52])
    lip_col = lip_base * (0.75 + 0.35 * p("lip_colour"))
    m_lip = _soft(_ell(u, v, 0.0, my, mw, lt * 1.9), 0.35)
    rgb = rgb * (1 - m_lip[..., None]) + lip_col * m_lip[..., None]
    m_line = np.exp(-(((v - my - 0.015 * (u / mw) ** 2) / 0.008) ** 2)) * np.exp(-((u / mw) ** 8))
    rgb *= 1.0 - 0.7 * m_line[..., None]
    spec = np.maximum(spec, 0.5 * m_lip)

    # age marks: forehead lines, nasolabial folds
    if age > 0.2:
        lines = np.zeros_like(u)
        for k in range(3):
            lines += np.exp(-(((v - (ey - bg - 0.12 - 0.06 * k)) / 0.006) ** 2)) * np.exp(-((u / 0.3) ** 4))
        for s in (-1.0, 1.0):
            t = np.clip((v - ny) / (my - ny + 0.05), 0, 1)
            cu = s * (nw * 1.1 + 0.08 * t)
            lines += np.exp(-(((u - cu) / 0.01) ** 2)) * (v > ny - 0.02) * (v < my + 0.05)
        rgb *= 1.0 - 0.15 * age * lines[..., None]

    # ---- hair, beard, ears, neck ----------------------------------------------------------------------
    alpha = head.copy()
    hl = -b + _lerp(p("hairline"), 0.20, 0.40) + (0.05 * age if male else 0.0)
    strands = 0.75 + 0.25 * _noise(rng, 0.8, 0.6, 3.0, grid=grid)
    hair_rgb = hair_col[None, None, :] * strands[..., None]
    style = identity.hair_style
    outer_w = a + (0.10 if style in ("long", "bun") else 0.05 if style == "short" else 0.02)
    outer = _ell(u, v, 0.0, 0.02 if style != "long" else 0.2, outer_w, b + (0.08 if style != "cropped" else 0.03))
    top = (v < hl + 0.08 * (u / a) ** 2).astype(float)
    m_hair = _soft(outer, 0.05) * top
    if style == "long":
        sides = (np.abs(u) > half_w * 0.93) * (v < 0.9) * _soft(_ell(u, v, 0, 0.2, a + 0.14, 1.15), 0.05)
        m_hair = np.maximum(m_hair, sides)
    if style == "bun":
        m_hair = np.maximum(m_hair, _soft(_ell(u, v, 0.0, -b - 0.12, 0.22, 0.16), 0.1))
    if style == "cropped":
        hair_rgb = hair_rgb * 0.6 + rgb * 0.4
    if identity.headscarf:
        scarf_col = np.array([0.15, 0.2, 0.45]) * (0.6 + 0.8 * p("hair_lightness"))
        face_open = _soft(_ell(u, v, 0.0, ey + 0.25, a * 0.86, b * 0.86), 0.06)
        m_scarf = _soft(_ell(u, v, 0.0, 0.15, a + 0.15, b + 0.25), 0.03) * (1 - face_open)
        m_hair = m_scarf
        hair_rgb = scarf_col[None, None, :] * (0.85 + 0.15 * _noise(rng, 8.0, grid=grid))[..., None]
    # ears (behind the hair, beside the head)
    es = _lerp(p("ear_size"), 0.06, 0.10)
    m_ear = np.zeros_like(u)
    for s in (-1.0, 1.0):
        m_ear = np.maximum(m_ear, _soft(_ell(u, v, s * (a + 0.01), ey + 0.12, es * 0.7, es * 1.6), 0.2))
    m_ear *= 1 - head
    rgb = rgb * (1 - m_ear[..., None]) + (skin * 0.9) * m_ear[..., None]
    alpha = np.maximum(alpha, m_ear)
    z += 0.05 * m_ear
    # neck
    neck_w = a * (0.62 if male else 0.52)
    m_neck = (np.abs(u) < neck_w) * (v > 0.35) * (1 - head)
    rgb = rgb * (1 - m_neck[..., None]) + (skin * 0.78)[None, None, :] * m_neck[..., None]
    alpha = np.maximum(alpha, m_neck)
    z = z - 0.15 * m_neck
    # beard
    if identity.beard != "none":
        dens = {"stubble": 0.35, "full": 0.9, "moustache": 0.85}[identity.beard]
        jaw_band = np.clip((v - ny) / 0.06, 0.0, 1.0) * head * (1 - _soft(_ell(u, v, 0.0, my, mw * 1.05, lt * 2.2), 0.3))
        if identity.beard == "moustache":
            jaw_band = _soft(_ell(u, v, 0.0, my - lt * 2.4, mw * 1.0, 0.035), 0.4) * head
        else:
            cheek_cut = _soft(_ell(u, v, 0.0, ey - 0.05, a * 0.78, 0.5 + (ny - ey)), 0.6)
            jaw_band = jaw_band * (1 - cheek_cut)
        m_beard = dens * jaw_band * (0.8 + 0.2 * strands)
        beard_col = hair_col * (1.0 if identity.beard != "stubble" else 0.8)
        mix = m_beard[..., None]
        rgb = rgb * (1 - mix) + (beard_col * strands[..., None]) * mix
        z += 0.02 * m_beard * (identity.beard == "full")
        spec = spec * (1 - 0.8 * m_beard)
    # hair over everything else
    hair_z = np.maximum(z, depth * 0.55 * np.sqrt(np.clip(1 - np.minimum(outer, 1), 0, 1)))
    rgb = rgb * (1 - m_hair[..., None]) + hair_rgb * m_hair[..., None]
    z = z * (1 - m_hair) + hair_z * m_hair
    alpha = np.maximum(alpha, m_hair)
    spec = spec * (1 - 0.7 * m_hair)
    # glasses (frame drawn into the albedo, slightly raised)
    if identity.glasses:
        ring = np.zeros_like(u)
        for s in (-1.0, 1.0):
            d = _ell(u, v, s * ex, ey + 0.01, ew * 1.45, ew * 1.05)
            ring = np.maximum(ring, np.exp(-(((np.sqrt(d) - 1.0) / 0.08) ** 2)))
        ring = np.maximum(ring, np.exp(-(((v - ey + 0.02) / 0.012) ** 2)) * (np.abs(u) < ex - ew * 1.3))
        rgb = rgb * (1 - 0.9 * ring[..., None]) + 0.04 * ring[..., None]
        z = z + 0.04 * ring * head
        spec = np.maximum(spec, 0.6 * ring)

    blur = cv2.GaussianBlur(z.astype(np.float32), (0, 0), 6.0 * grid / GRID)
    cavity = np.clip(1.0 - 4.0 * np.maximum(blur - z, 0.0), 0.55, 1.0)
    return FaceModel(
        identity=identity,
        u=u0.astype(np.float32),
        v=v0.astype(np.float32),
        z=z.astype(np.float32),
        rgb=np.clip(rgb, 0.0, 1.0).astype(np.float32),
        alpha=np.clip(alpha, 0.0, 1.0).astype(np.float32),
        spec=spec.astype(np.float32),
        cavity=cavity.astype(np.float32),
        face_region=(head > 0.5) & (v0 > ey - bg - 0.06) & (np.abs(u0) < 0.92 * a),
    )

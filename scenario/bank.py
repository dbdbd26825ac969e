"""Identity bank: synthetic identities optimised to be far apart for the default embedder.

Identities are added one at a time. Each starts as the best of a few random seeds and is then nudged by a
(1+1) evolution strategy (1/5th success rule) on its continuous parameters, maximising

    fitness = min distance of its enrolment embedding to the bank  −  0.5 × distance(enrolment, turned view)

and accepting only candidates that dlib HOG (upsample 1) detects in every test view (frontal, both sides
turned ~22°, small and dim, blurred and JPEG-compressed). Skin tone is stratified over the bank and not
optimised, sex and age band alternate, so the bank stays demographically balanced. A second pass
(``refine_bank``) re-optimises the identities with the nearest neighbours against all the others, with two
harder test views (25° turned, dim) and a small bonus for the HOG detection score.

Output (small, committed): ``scenario/data/bank.json`` (identities) and ``scenario/data/bank_embeddings.npz``
(``embeddings`` float32 (N, 128) of the frontal enrolment renders, ``seeds`` int64). Regenerate with
``paxsim scenario bank``. Tests never run this (it needs ~10 s of dlib per identity).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .calibration import DIM, enrol_view
from .faces import Light, build, portrait, render_view
from .faces.jitter import scale_for_face_px
from .faces.params import AGE_BANDS, INDEX, SEXES, Identity, random_identity

DATA = Path(__file__).parent / "data"
BANK_FILE = DATA / "bank.json"
EMBEDDINGS_FILE = DATA / "bank_embeddings.npz"

_TEST_VIEWS = (
    # yaw, pitch, roll, face_px, light direction, intensity, blur, jpeg
    (22.0, 6.0, 4.0, 85.0, (0.6, -0.4, 0.7), 0.9, 0.0, 0),
    (-22.0, -8.0, -4.0, 85.0, (-0.6, -0.2, 0.8), 0.9, 0.0, 0),
    (8.0, 8.0, 0.0, 62.0, (0.3, -0.6, 0.7), 0.6, 0.8, 50),
    (-12.0, 0.0, 6.0, 100.0, (-0.2, -0.3, 0.9), 1.1, 1.2, 40),
)
# refinement pass: harder views (darker, more turned, tilted)
_HARD_VIEWS = _TEST_VIEWS + (
    (25.0, -6.0, -5.0, 75.0, (-0.5, -0.2, 0.8), 0.6, 1.0, 40),
    (-25.0, 8.0, 6.0, 110.0, (0.6, -0.6, 0.6), 0.65, 0.5, 60),
)


@dataclass
class Candidate:
    identity: Identity
    embedding: np.ndarray | None
    fitness: float


def _evaluate(ident: Identity, bank: np.ndarray, emb, views=_TEST_VIEWS, score_weight: float = 0.0) -> Candidate:
    import cv2

    model = build(ident)
    img, _ = enrol_view(model)
    r = emb.detect_embed(img, 1)
    if r is None:
        return Candidate(ident, None, -np.inf)
    e = r[1]
    per40 = scale_for_face_px(model, 40.0) / 40.0
    rng = np.random.default_rng(ident.seed)
    turned = None
    min_score = np.inf
    for yaw, pitch, roll, px, ld, inten, blur, q in views:
        view = render_view(model, yaw, pitch, roll, Light(direction=ld, intensity=inten), scale=per40 * px)
        im, _ = portrait(view, rng, pad=0.35)
        if blur:
            im = cv2.GaussianBlur(im, (0, 0), blur)
        if q:
            im = cv2.imdecode(cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, q])[1], cv2.IMREAD_COLOR)
        found = emb.detect_scored(im, 1)
        if not found:
            return Candidate(ident, e, -np.inf)
        min_score = min(min_score, found[0][1])
        if turned is None:
            turned = emb.embed(im, found[0][0])
    self_d = float(np.linalg.norm(turned - e))
    near = float(np.min(np.linalg.norm(bank - e[None, :], axis=1))) if len(bank) else 1.0
    return Candidate(ident, e, near - 0.5 * self_d + score_weight * min(min_score, 1.0))


def optimise_identity(k: int, bank: np.ndarray, seed: int, emb, starts: int = 5, steps: int = 12) -> Candidate:
    """Best of ``starts`` random identities, then ``steps`` (1+1)-ES mutations (see module docstring)."""
    rng = np.random.default_rng([seed, k, 0xB4])
    sex, age = SEXES[k % 2], AGE_BANDS[(k // 2) % len(AGE_BANDS)]
    tone = ((k * 19) % 50 + rng.uniform()) / 50.0  # stratified skin tone, fixed during optimisation
    best: Candidate | None = None
    for j in range(starts):
        ident = random_identity(seed * 1_000_003 + k * 101 + j, sex=sex, age_band=age)
        x = ident.x.copy()
        x[INDEX["skin_tone"]] = tone
        c = _evaluate(ident.with_x(x), bank, emb)
        if best is None or c.fitness > best.fitness:
            best = c
    assert best is not None
    sigma = 0.08
    frozen = np.zeros_like(best.identity.x, dtype=bool)
    frozen[INDEX["skin_tone"]] = True
    for _ in range(steps):
        x = best.identity.x + np.where(frozen, 0.0, rng.normal(0.0, sigma, best.identity.x.shape))
        c = _evaluate(best.identity.with_x(x), bank, emb)
        if c.fitness > best.fitness:
            best, sigma = c, min(sigma * 1.5, 0.25)
        else:
            sigma = max(sigma * 1.5**-0.25, 0.01)
    return best


def save_bank(identities: list[Identity], embeddings: np.ndarray, meta: dict, out: Path = DATA) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "bank.json.tmp"
    tmp.write_text(json.dumps({"meta": meta, "identities": [i.to_dict() for i in identities]}, indent=None) + "\n")
    os.replace(tmp, out / BANK_FILE.name)
    tmpz = out / "bank_embeddings.tmp.npz"
    np.savez_compressed(tmpz, embeddings=np.asarray(embeddings, np.float32), seeds=np.array([i.seed for i in identities], np.int64))
    os.replace(tmpz, out / EMBEDDINGS_FILE.name)


def build_bank(
    n: int = 50, seed: int = 0, out: Path = DATA, progress: Callable[[int, Candidate], None] | None = None
) -> tuple[list[Identity], np.ndarray]:
    """Optimise ``n`` identities and save them (after each one, so a stopped run keeps its progress)."""
    from .faces.dlibface import default_embedder

    emb = default_embedder()
    idents: list[Identity] = []
    embs = np.zeros((0, 128), np.float32)
    t0 = time.time()
    for k in range(n):
        c = optimise_identity(k, embs, seed, emb)
        if c.embedding is None or not np.isfinite(c.fitness):
            raise RuntimeError(f"identity {k}: no detectable candidate found")
        idents.append(c.identity)
        embs = np.vstack([embs, c.embedding[None, :]])
        d = np.linalg.norm(embs[:, None] - embs[None], axis=2) + np.eye(len(embs)) * 9
        meta = {
            "seed": seed,
            "n": len(idents),
            "embedder": "dlib HOG + shape_predictor_5 + dlib_face_recognition_resnet_model_v1",
            "nearest_neighbour_min": round(float(d.min()), 4) if len(embs) > 1 else None,
            "nearest_neighbour_mean": round(float(d.min(axis=1).mean()), 4) if len(embs) > 1 else None,
            "seconds": round(time.time() - t0, 1),
        }
        save_bank(idents, embs, meta, out)
        if progress:
            progress(k + 1, c)
    return idents, embs


def refine_bank(
    indices: list[int],
    seed: int = 1,
    out: Path = DATA,
    steps: int = 12,
    starts: int = 3,
    progress: Callable[[int, Candidate], None] | None = None,
    bank_dir: Path = DATA,
    score_weight: float = 0.1,
) -> tuple[list[Identity], np.ndarray]:
    """Second pass: re-optimise the bank identities ``indices`` against all the others, with harder
    detection views and a bonus for HOG detection score (keeps faces detectable under jitter). The
    current identity competes with ``starts`` new random ones of the same sex/age/skin tone."""
    from .faces.dlibface import default_embedder

    emb = default_embedder()
    idents = load_bank(bank_dir / BANK_FILE.name)
    embs, _ = load_bank_embeddings(bank_dir / EMBEDDINGS_FILE.name)
    meta = json.loads((bank_dir / BANK_FILE.name).read_text()).get("meta", {})
    for n, k in enumerate(indices):
        rest = np.delete(embs, k, axis=0)
        cur = idents[k]
        rng = np.random.default_rng([seed, k, 0x2E])
        best = _evaluate(cur, rest, emb, _HARD_VIEWS, score_weight)
        for j in range(starts):
            cand = random_identity(seed * 7_000_003 + k * 131 + j, sex=cur.sex, age_band=cur.age_band)
            x = cand.x.copy()
            x[INDEX["skin_tone"]] = cur.p("skin_tone")
            c = _evaluate(cand.with_x(x), rest, emb, _HARD_VIEWS, score_weight)
            if c.fitness > best.fitness:
                best = c
        sigma = 0.08
        frozen = np.zeros_like(best.identity.x, dtype=bool)
        frozen[INDEX["skin_tone"]] = True
        for _ in range(steps):
            x = best.identity.x + np.where(frozen, 0.0, rng.normal(0.0, sigma, best.identity.x.shape))
            c = _evaluate(best.identity.with_x(x), rest, emb, _HARD_VIEWS, score_weight)
            if c.fitness > best.fitness:
                best, sigma = c, min(sigma * 1.5, 0.25)
            else:
                sigma = max(sigma * 1.5**-0.25, 0.01)
        if best.embedding is not None and np.isfinite(best.fitness):
            idents[k] = best.identity
            embs[k] = best.embedding
        d = np.linalg.norm(embs[:, None] - embs[None], axis=2) + np.eye(len(embs)) * 9
        meta.update(
            refined=sorted(set(meta.get("refined", [])) | set(indices[: n + 1])),
            nearest_neighbour_min=round(float(d.min()), 4),
            nearest_neighbour_mean=round(float(d.min(axis=1).mean()), 4),
        )
        save_bank(idents, embs, meta, out)
        if progress:
            progress(n + 1, best)
    return idents, embs


def load_bank(path: Path = BANK_FILE) -> list[Identity]:
    """Identities of the saved bank (no dlib needed)."""
    d = json.loads(Path(path).read_text())
    return [Identity.from_dict(x) for x in d["identities"]]


def load_bank_embeddings(path: Path = EMBEDDINGS_FILE) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings float32 (N, 128), seeds int64 (N,)) of the bank's frontal enrolment renders."""
    with np.load(path) as z:
        return z["embeddings"].astype(np.float32), z["seeds"].astype(np.int64)


def base_embeddings(world) -> tuple[np.ndarray, np.ndarray]:
    """Enrolment embeddings for every traveller of ``world`` (row i = ``world.travellers[i]``).

    Returns ``(embeddings float32 (N, 128), measured bool (N,))``. Travellers with a bank identity get the
    real embedder's descriptor of their frontal render (``bank_embeddings.npz``, ``measured`` True); the
    others get a vector drawn, from their identity seed, from a diagonal Gaussian fitted to the bank's
    descriptors (same mean and per-dimension spread, so pairwise distances match the bank's on average).
    """
    bank, _ = load_bank_embeddings()
    mu, sd = bank.mean(axis=0), bank.std(axis=0)
    out = np.empty((len(world.travellers), DIM), np.float32)
    measured = np.zeros(len(world.travellers), bool)
    for i, tr in enumerate(world.travellers):
        if tr.bank_index is not None and tr.bank_index < len(bank):
            out[i] = bank[tr.bank_index]
            measured[i] = True
        else:
            rng = np.random.default_rng([0xBA5E, tr.identity.seed % (2**63)])
            out[i] = (mu + sd * rng.standard_normal(DIM)).astype(np.float32)
    return out, measured

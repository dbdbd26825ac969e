from __future__ import annotations

import json

import numpy as np

from scenario.bank import BANK_FILE, EMBEDDINGS_FILE, load_bank, load_bank_embeddings
from scenario.calibration import CALIBRATION_FILE, Measurement, NoiseModel, load_noise_model, noisy_embedding


def test_noise_model_reproduces_its_distance_distribution():
    q = tuple(np.linspace(0.2, 0.5, 101))
    model = NoiseModel(quantiles=q)
    rng = np.random.default_rng(0)
    base = rng.normal(0, 0.1, (4000, 128)).astype(np.float32)
    noisy = model.sample(base, rng)
    assert noisy.dtype == np.float32 and noisy.shape == base.shape
    d = np.linalg.norm(noisy - base, axis=1)
    assert d.min() >= 0.2 - 1e-5 and d.max() <= 0.5 + 1e-5
    assert abs(np.median(d) - 0.35) < 0.01
    one = model.sample(base[0], rng)
    assert one.shape == (128,)


def test_from_measurement_threshold_separates_same_and_different():
    # 3 identities × 4 renders; own distances ~0.3, others ~0.7
    ids = np.repeat(np.arange(3), 4)
    d = np.full((12, 3), 0.7, np.float32)
    d[np.arange(12), ids] = np.linspace(0.25, 0.35, 12)
    m = Measurement(ids, np.ones(12, bool), np.ones(12, bool), d, np.ones(3, bool))
    assert m.rank1() == 1.0
    model = NoiseModel.from_measurement(m)
    assert 0.35 <= model.threshold <= 0.7
    assert model.stats["fmr_at_threshold"] == 0 and model.stats["fnmr_at_threshold"] == 0
    assert abs(model.sigma_per_dim - np.sqrt(np.mean(np.array(model.quantiles) ** 2) / 128)) < 1e-9


def test_shipped_bank_and_calibration_are_small_consistent_and_load_without_dlib():
    for f in (BANK_FILE, EMBEDDINGS_FILE, CALIBRATION_FILE):
        assert f.stat().st_size < 1_000_000, f
    bank = load_bank()
    emb, seeds = load_bank_embeddings()
    assert len(bank) >= 50
    assert emb.shape == (len(bank), 128) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert list(seeds) == [i.seed for i in bank]
    model = load_noise_model()
    stats = json.loads(CALIBRATION_FILE.read_text())["stats"]
    assert stats["identities"] == len(bank)
    assert 0.2 < model.threshold < 0.7
    noisy = noisy_embedding(emb[0], np.random.default_rng(1))
    assert 0 < np.linalg.norm(noisy - emb[0]) < 1.0


def test_world_assigns_bank_identities_to_travellers():
    from scenario.world import load_world

    w = load_world()
    banked = [t for t in w.travellers if t.bank_index is not None]
    assert banked, "default world uses no bank identity"
    idx = [t.bank_index for t in banked]
    assert len(set(idx)) == len(idx)
    bank = load_bank()
    for t in banked[:10]:
        assert bank[t.bank_index].to_dict() == t.identity.to_dict()
        assert (t.demographics.sex, t.demographics.age_band) == (t.identity.sex, t.identity.age_band)


def test_base_embeddings_for_every_traveller():
    from scenario.bank import base_embeddings
    from scenario.world import load_world

    w = load_world()
    emb, measured = base_embeddings(w)
    stored, _ = load_bank_embeddings()
    assert emb.shape == (len(w.travellers), 128) and emb.dtype == np.float32
    for i, t in enumerate(w.travellers):
        if t.bank_index is not None:
            assert measured[i] and np.array_equal(emb[i], stored[t.bank_index])
    assert (~measured).any()
    again, _ = base_embeddings(load_world())
    assert np.array_equal(emb, again)
    synth = emb[~measured]
    d = np.linalg.norm(synth[:20, None] - synth[None, :20], axis=2)[np.triu_indices(20, 1)]
    assert 0.3 < d.mean() < 1.0

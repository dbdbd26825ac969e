import numpy as np

from paxsim.config import ScenarioSettings
from scenario.virtual import VirtualAirport


def _windows(seed: int) -> list[tuple[str, str, float]]:
    a = VirtualAirport(ScenarioSettings(seed=seed, cameras=4, travellers=40, events_per_second=80), duration_s=5)
    out = []
    for k in range(50):
        out += [(s.camera.camera_id, s.traveller_id, round(s.t, 6)) for s in a.sightings(k * 0.1, (k + 1) * 0.1)]
    return out


def test_same_seed_same_load_different_seed_different_load():
    assert _windows(3) == _windows(3)
    assert _windows(3) != _windows(4)


def test_embeddings_are_noisy_views_of_the_traveller():
    cfg = ScenarioSettings(seed=1, cameras=6, travellers=30, events_per_second=200)
    a = VirtualAirport(cfg, duration_s=10)
    sights = [s for k in range(100) for s in a.sightings(k * 0.1, (k + 1) * 0.1)]
    assert sights
    own = [np.linalg.norm(s.embedding - a.traveller(s.traveller_id).base) for s in sights]
    other = [np.linalg.norm(s.embedding - a.travellers[(int(s.traveller_id[4:]) + 1) % 30].base) for s in sights]
    assert max(own) < 0.45 < min(other)  # separable at the matcher's threshold (0.55)

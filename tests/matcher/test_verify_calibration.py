import numpy as np
import pytest

from matcher.calibration import (
    calibrate,
    eer,
    open_set_per_group,
    open_set_rates,
    per_group,
    rates_at,
    rates_table,
    threshold_at_far,
)
from matcher.index import GalleryIndex, IndexError_
from matcher.verify import Verifier, verify_templates
from tests.matcher.conftest import population


def test_verifier_accepts_own_face_and_rejects_other():
    ids, vecs, centres = population(50, views=2, seed=1)
    v = Verifier(GalleryIndex.build(ids, vecs), threshold=0.6)
    live = centres[3] + np.random.default_rng(0).normal(0, 0.02, 128).astype(np.float32)
    ok = v.verify("sub-00003", live)
    assert ok.accepted and ok.distance == pytest.approx(float(np.sqrt(((vecs[6:8] - live) ** 2).sum(axis=1)).min()), rel=1e-5)
    other = v.verify("sub-00004", live)
    assert other.outcome == "reject" and other.distance > 0.6
    assert v.verify("nobody", live).outcome == "unknown-subject"
    assert [r.outcome for r in v.verify_many([("sub-00003", live), ("nobody", live)])] == ["accept", "unknown-subject"]


def test_verify_templates_errors():
    t = np.zeros((2, 128), np.float32)
    with pytest.raises(IndexError_):
        verify_templates(np.full(128, np.nan, np.float32), t, 0.6)
    with pytest.raises(IndexError_):
        verify_templates(np.zeros((2, 128), np.float32), t, 0.6)
    assert verify_templates(np.zeros(128, np.float32), np.zeros((0, 128)), 0.6).outcome == "unknown-subject"
    with pytest.raises(ValueError):
        Verifier(GalleryIndex(), threshold=0)


def test_rates_and_threshold_at_far():
    genuine = [0.1, 0.2, 0.3, 0.7]
    impostor = [0.5, 0.8, 0.9, 1.0]
    r = rates_at(genuine, impostor, 0.6)
    assert (r.far, r.frr) == (0.25, 0.25)
    assert threshold_at_far(impostor, 0.0) == 0.5  # no impostor strictly below 0.5
    assert rates_at(genuine, impostor, threshold_at_far(impostor, 0.0)).far == 0.0
    assert threshold_at_far(impostor, 0.5) == 0.9
    e, t = eer(genuine, impostor)
    assert e == pytest.approx(0.25)
    c = calibrate(genuine, impostor, target_far=0.0)
    assert c.threshold == 0.5 and c.far == 0.0 and c.frr == 0.25
    with pytest.raises(ValueError):
        rates_at([np.nan], [1.0], 0.5)


def test_separable_sets_have_zero_eer():
    e, t = eer([0.1, 0.2], [0.8, 0.9])
    assert e == 0.0 and 0.2 < t <= 0.8


def test_per_group_breakdown():
    rows = per_group([0.1, 0.7, 0.2, 0.3], ["a", "a", "b", "b"], [0.5, 0.9], ["a", "b"], 0.6)
    assert rows["a"].frr == 0.5 and rows["a"].far == 1.0
    assert rows["b"].frr == 0.0 and rows["b"].far == 0.0
    assert "| a |" in rates_table(rows)


def test_open_set_rates():
    r = open_set_rates(["x", "y", "z", "w"], [0.3, 0.7, 0.2, 0.5], ["x", "y", "q", None], threshold=0.6)
    assert r.rank1 == pytest.approx(2 / 3)  # x, y right at rank 1; z wrong
    assert r.fnir == pytest.approx(2 / 3)  # y above threshold, z wrong subject
    assert r.fpir == 1.0 and r.enrolled == 3 and r.non_enrolled == 1
    g = open_set_per_group(["x", None], [0.3, None], ["x", None], ["m", "f"], 0.6)
    assert g["m"].rank1 == 1.0 and g["f"].fpir == 0.0
    assert "FPIR" in rates_table(g)


def test_the_operating_point_chooses_threshold_and_margin_together_the_way_the_matcher_decides():
    """Two look-alike subjects (a, b) and one apart (c): a stranger between a and b is named by the threshold
    alone; only a margin refuses it, at the price of a's ambiguous view. The chosen rule is the best one whose
    FPIR meets the target, measured with the matcher's own index and ``SearchResult.identify``."""
    from matcher.calibration import open_set_point, operating_point
    from matcher.index import GalleryIndex

    def unit(*xs: float) -> np.ndarray:
        v = np.zeros(128, np.float32)
        v[: len(xs)] = xs
        return v

    index = GalleryIndex.build(["a", "b", "c"], np.stack([unit(0, 0), unit(0.2, 0), unit(0, 1)]))
    probe = lambda *xs: index.search(unit(*xs)[None, :], 2)[0]  # noqa: E731
    # a's views: two farther from a than the stranger is (only a loose threshold names them), one near b
    genuine = [("a", probe(-0.12, 0)), ("a", probe(0.08, 0)), ("a", probe(-0.15, 0.05)), ("c", probe(0, 0.95))]
    strangers = [probe(0.1, 0.01)]  # halfway between a and b, 0.1 from each
    loose = open_set_point(genuine, strangers, 0.3, 0.0)
    assert (loose.identified, loose.fpir) == (1.0, 1.0)
    chosen = operating_point(genuine, strangers, 0.0, [0.1, 0.3], [0.0, 0.05, 0.5])
    assert chosen is not None and (chosen.threshold, chosen.margin) == (0.3, 0.05)
    assert chosen.fpir == 0.0 and chosen.identified == 0.75 and chosen.wrong == 0.0 and chosen.fnir == 0.25
    strict = open_set_point(genuine, strangers, 0.1, 0.0)  # the threshold alone must give up half of the views
    assert (strict.identified, strict.fpir) == (0.5, 0.0)
    assert operating_point(genuine, strangers, 0.0, [0.3], [0.0]) is None  # no rule meets the target

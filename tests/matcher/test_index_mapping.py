"""The label → subject mapping (numpy runs, explicit lists only for interleaved additions) against a plain
model, over random add / remove / snapshot sequences, for a flat and an HNSW index."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from matcher.index import GalleryIndex

SUBJECTS = [f"s{i}" for i in range(6)]
op = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(SUBJECTS), st.integers(1, 3)),
    st.tuples(st.just("remove"), st.sampled_from(SUBJECTS), st.just(0)),
    st.tuples(st.just("restore"), st.just(""), st.just(0)),
)


@settings(max_examples=60, deadline=None)
@given(ops=st.lists(op, max_size=25), kind=st.sampled_from(["flat", "hnsw"]), seed=st.integers(0, 2**16))
def test_mapping_matches_a_plain_model(ops, kind, seed):
    rng = np.random.default_rng(seed)
    index = GalleryIndex(8, kind)
    model: dict[str, list[np.ndarray]] = {}
    for name, sid, n in ops:
        if name == "add":
            v = rng.standard_normal((n, 8)).astype(np.float32)
            assert index.add(sid, v) == len(model.get(sid, [])) + n
            model.setdefault(sid, []).extend(v)
        elif name == "remove":
            assert index.remove(sid) == len(model.pop(sid, []))
        else:
            index = GalleryIndex.from_bytes(index.to_bytes())
    assert len(index) == sum(len(v) for v in model.values())
    assert index.subjects() == sorted(model)
    assert index.max_views() == max((len(v) for v in model.values()), default=0)
    for sid, views in model.items():
        assert index.view_count(sid) == len(views)
        got = index.views_of(sid)
        assert np.allclose(np.sort(got, axis=0), np.sort(np.stack(views), axis=0), atol=1e-5)
        for v in views:  # every stored view finds its own subject at distance 0
            hit = index.search(v[None, :])[0].best
            assert hit is not None and hit.subject_id == sid and hit.distance < 1e-3

import asyncio

import faiss
import numpy as np
import pytest

from matcher.index import (
    EXACT_MAX,
    IVFPQ_MIN,
    GalleryIndex,
    IndexError_,
    IndexParams,
    choose_kind,
    search_batched,
)
from tests.matcher.conftest import population

SMALL_IVF = IndexParams(nlist=16, nprobe=16, pq_m=16)


def test_choose_kind_by_size():
    assert choose_kind(0) == "flat"
    assert choose_kind(EXACT_MAX - 1) == "flat"
    assert choose_kind(EXACT_MAX) == "ivf"
    assert choose_kind(IVFPQ_MIN - 1) == "ivf"
    assert choose_kind(IVFPQ_MIN) == "ivfpq"


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_identifies_noisy_views_with_euclidean_distance(kind):
    ids, vecs, centres = population(400, views=2, seed=1)
    g = GalleryIndex.build(ids, vecs, kind=kind, params=SMALL_IVF)
    assert g.kind == kind and len(g) == 800 and g.subject_count == 400
    rng = np.random.default_rng(2)
    q = centres[:50] + rng.normal(0, 0.02, (50, 128)).astype(np.float32)
    res = g.search(q, k=3)
    assert [r.best.subject_id for r in res] == [f"sub-{i:05d}" for i in range(50)]
    for i, r in enumerate(res):
        assert [h.rank for h in r.hits] == [0, 1, 2]
        assert len({h.subject_id for h in r.hits}) == 3  # one hit per subject
        assert r.hits[0].distance <= r.hits[1].distance <= r.hits[2].distance
        if kind != "ivfpq":  # exact vectors: distance is the true Euclidean distance to the best view
            views = vecs[2 * i : 2 * i + 2]
            true = np.sqrt(((views - q[i]) ** 2).sum(axis=1)).min()
            assert r.best.distance == pytest.approx(true, rel=1e-4)
        assert r.identify(0.6) is r.best
        assert r.identify(r.best.distance) is None  # strict: distance < threshold
        gap = r.hits[1].distance - r.best.distance
        assert r.identify(0.6, margin=gap / 2) is r.best and r.identify(0.6, margin=gap * 2) is None


def test_multi_view_best_view_wins():
    rng = np.random.default_rng(3)
    a_far, a_near, b = (rng.normal(0, 0.05, 128).astype(np.float32) for _ in range(3))
    g = GalleryIndex()
    assert g.add("A", np.stack([a_far, a_near])) == 2
    g.add("B", b)
    q = a_near + 0.001
    r = g.search(q, k=2)[0]
    assert r.best.subject_id == "A"
    assert r.best.distance == pytest.approx(float(np.linalg.norm(q - a_near)), rel=1e-4)
    assert [h.subject_id for h in r.hits] == ["A", "B"]


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_remove_erases_subject_and_its_vectors(kind):
    ids, vecs, centres = population(300, views=2, seed=4)
    g = GalleryIndex.build(ids, vecs, kind=kind, params=SMALL_IVF)
    before = g.faiss_index.ntotal
    assert g.remove("sub-00007") == 2
    assert g.remove("sub-00007") == 0 and "sub-00007" not in g
    res = g.search(centres[7:8], k=5)[0]
    assert "sub-00007" not in {h.subject_id for h in res.hits}
    assert len(res.hits) == 5
    if kind == "hnsw":  # tombstone: the stored template bytes are overwritten
        storage = faiss.downcast_index(g.faiss_index.storage)
        stored = faiss.vector_to_array(storage.codes).view(np.float32).reshape(-1, 128)
        assert not np.isclose(stored, vecs[14]).all(axis=1).any()
    else:
        assert g.faiss_index.ntotal == before - 2
    with pytest.raises(IndexError_):
        g.views_of("sub-00007")


def test_hnsw_rebuilds_after_many_tombstones():
    ids, vecs, centres = population(100, views=1, seed=5)
    g = GalleryIndex.build(ids, vecs, kind="hnsw")
    for i in range(12):  # > 10 % of 100
        g.remove(f"sub-{i:05d}")
    # the 11th removal crossed 10 %: rebuilt from the 89 live views; the 12th is a fresh tombstone
    assert g.faiss_index.ntotal == 89 and len(g) == 88
    res = g.search(centres[20:40], k=1)
    assert [r.best.subject_id for r in res] == [f"sub-{i:05d}" for i in range(20, 40)]
    g.add("new", centres[0])
    assert g.search(centres[0:1])[0].best.subject_id == "new"


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw", "ivfpq"])
def test_snapshot_round_trip(kind):
    ids, vecs, centres = population(300, views=1, seed=6)
    g = GalleryIndex.build(ids, vecs, kind=kind, params=SMALL_IVF)
    g.remove("sub-00003")
    g2 = GalleryIndex.from_bytes(g.to_bytes())
    assert g2.kind == kind and len(g2) == len(g) and g2.subjects() == g.subjects()
    q = centres[:20]
    assert g2.search(q, k=2) == g.search(q, k=2)
    g2.add("late", centres[3])  # label allocation continues after restore
    assert g2.search(centres[3:4])[0].best.subject_id == "late"


def test_corrupt_snapshot_is_refused():
    ids, vecs, _ = population(10)
    data = bytearray(GalleryIndex.build(ids, vecs).to_bytes())
    data[-5] ^= 0xFF
    with pytest.raises(IndexError_, match="corrupt"):
        GalleryIndex.from_bytes(bytes(data))
    with pytest.raises(IndexError_):
        GalleryIndex.from_bytes(b"garbage")


def test_bad_input_is_a_clear_error():
    ids, vecs, _ = population(10)
    g = GalleryIndex.build(ids, vecs)
    bad = vecs[:3].copy()
    bad[1, 5] = np.nan
    with pytest.raises(IndexError_, match="rows \\[1\\]"):
        g.search(bad)
    with pytest.raises(IndexError_, match="shape"):
        g.search(np.zeros((2, 64), np.float32))
    with pytest.raises(IndexError_):
        g.add("x", bad)
    with pytest.raises(IndexError_):
        GalleryIndex.build(ids[:5], vecs)
    assert len(g) == 10  # nothing half-added


def test_empty_index_answers_nothing():
    g = GalleryIndex()
    assert g.search(np.zeros((3, 128), np.float32)) == [g.search(np.zeros(128, np.float32))[0]] * 3
    assert g.search(np.zeros(128, np.float32))[0].best is None


def test_untrained_ivf_refuses_add():
    g = GalleryIndex(kind="ivf", params=SMALL_IVF)
    with pytest.raises(IndexError_, match="not trained"):
        g.add("a", np.zeros(128, np.float32))


def test_search_from_worker_thread_matches_direct_and_batched():
    ids, vecs, centres = population(200, seed=7)
    g = GalleryIndex.build(ids, vecs)

    async def run():
        return await asyncio.gather(*(asyncio.to_thread(g.search, centres[i : i + 10]) for i in range(0, 50, 10)))

    threaded = [r for part in asyncio.run(run()) for r in part]
    assert threaded == g.search(centres[:50]) == search_batched(g, centres[:50], batch=7)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_concurrent_search_add_remove(kind):
    """Searches in worker threads while the gallery changes: no crash, never a removed or blank subject."""
    import threading

    ids, vecs, centres = population(200, seed=8)
    g = GalleryIndex.build(ids, vecs, kind=kind, params=SMALL_IVF)
    removed: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher():
        try:
            while not stop.is_set():
                gone = set(removed)  # removed before this search started
                for r in g.search(centres[:64], k=3):
                    for h in r.hits:
                        assert h.subject_id and h.subject_id not in gone
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(0, 60, 2):
        g.remove(f"sub-{i:05d}")
        removed.add(f"sub-{i:05d}")
        g.add(f"new-{i}", centres[i])
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors[0]
    assert g.subject_count == 200

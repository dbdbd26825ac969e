"""The face-template index: FAISS chosen by gallery size, several views per subject, erasable, serializable.

``GalleryIndex`` maps string subject ids to one or more 128-D views (templates) and answers batched
nearest-subject queries. The FAISS structure is picked from the gallery size (see :func:`choose_kind` and
docs/matcher.md):

=========  ==========================  ===================================================
kind       FAISS index                 removal (erasure)
=========  ==========================  ===================================================
flat       IndexIDMap2(IndexFlatL2)    ``remove_ids``: vector bytes gone at once
ivf        IndexIVFFlat (own ids)      ``remove_ids``: vector bytes gone at once
hnsw       IndexHNSWFlat               tombstone: stored vector overwritten, id filtered,
                                       rebuilt when tombstones exceed ``HNSW_REBUILD_SHARE``
ivfpq      IndexIVFPQ (HNSW coarse)    ``remove_ids`` (codes gone at once)
=========  ==========================  ===================================================

Distances handed out are **Euclidean** (FAISS L2 indexes return squared distances; we take the root), so a
result compares directly with dlib's documented 0.6 rule and ``MatcherSettings.threshold``.

Thread use: :meth:`GalleryIndex.search` is meant to run in a worker thread (``asyncio.to_thread``); FAISS
releases the GIL during ``search`` (bench/matcher.py measures it), so the consumer loop keeps running. A
readers-writer lock lets searches run together and makes add/remove/rebuild exclusive.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import faiss
import msgspec
import numpy as np

Kind = Literal["flat", "ivf", "hnsw", "ivfpq"]
KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw", "ivfpq")

EXACT_MAX = 100_000  # below: exact search
IVFPQ_MIN = 10_000_000  # from here: compressed codes
HNSW_REBUILD_SHARE = 0.10  # rebuild an HNSW index once this share of its nodes are tombstones
_MAGIC = b"PXIDX1"
_DEFAULT_THREADS = faiss.omp_get_max_threads()
SMALL_WORK = 200_000  # vector comparisons below which a search runs on one OpenMP thread


class IndexError_(ValueError):
    """Bad input to the index (wrong shape, non-finite values, unknown subject, corrupt snapshot)."""


def choose_kind(n: int) -> Kind:
    """The index kind for a gallery of ``n`` views: exact < 100k, IVF-Flat below 10M, IVF-PQ from 10M."""
    if n < EXACT_MAX:
        return "flat"
    if n < IVFPQ_MIN:
        return "ivf"
    return "ivfpq"


def ivf_nlist(n: int) -> int:
    """Inverted lists for ``n`` vectors: a power of two near √n, at least 64, at most 65536.

    Measured at 1M (bench/matcher.py): for the same share of the gallery scanned, 1024 lists reach the same
    recall as 4096 and train 4× faster, so we stay at the low end of FAISS's 4–16·√n guideline."""
    target = np.sqrt(max(n, 1))
    return int(min(65536, max(64, 2 ** round(np.log2(target)))))


def auto_nprobe(nlist: int) -> int:
    """Lists probed per query: 1/16 of them (≈ 6 % of the gallery scanned; recall@1 ≥ 0.99 at 1M)."""
    return max(1, nlist // 16)


@dataclass(frozen=True, slots=True)
class IndexParams:
    """Tuning knobs; defaults reach recall@1 ≥ 0.99 vs exact on the bench's synthetic population."""

    nlist: int = 0  # 0 = ivf_nlist(n) at build time
    nprobe: int = 0  # 0 = auto_nprobe(nlist)
    hnsw_m: int = 32
    ef_construction: int = 64
    ef_search: int = 128
    pq_m: int = 32  # sub-quantizers for ivfpq (128/32 = 4 dims each, 32 bytes per vector)
    pq_bits: int = 8
    train_per_list: int = 40  # training sample = nlist × this (capped by the data)


@dataclass(frozen=True, slots=True)
class Hit:
    """One candidate subject: its best view's Euclidean distance and its rank (0 = nearest)."""

    subject_id: str
    distance: float
    rank: int


def search_k(margin: float) -> int:
    """Subjects a search must return for :meth:`SearchResult.identify` with ``margin``: the margin rule
    compares the two nearest."""
    return 2 if margin > 0 else 1


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The candidates for one query, nearest first, one per subject (best view)."""

    hits: tuple[Hit, ...]

    @property
    def best(self) -> Hit | None:
        return self.hits[0] if self.hits else None

    def identify(self, threshold: float, margin: float = 0.0) -> Hit | None:
        """The best hit if its distance is below ``threshold`` (Euclidean) and, with ``margin``, the next
        subject's is at least ``margin`` farther (search with k ≥ 2); else None (unknown)."""
        b = self.best
        if b is None or b.distance >= threshold:
            return None
        if margin > 0 and len(self.hits) > 1 and self.hits[1].distance - b.distance < margin:
            return None  # two subjects about as near: naming either would be a guess
        return b


@dataclass(slots=True)
class _Mapping:
    """Which subject each FAISS label (view) belongs to; -1 = removed.

    Kept in numpy arrays, not per-subject Python lists (those were ~170 MB per million subjects): a subject's
    views are one run of consecutive labels ``first[code] .. first[code] + count[code] - 1`` (how
    :meth:`allocate` hands them out); only a subject whose views were added at different times, with
    other subjects' views in between, keeps an explicit label list in ``scattered``."""

    subjects: list[str] = field(default_factory=list)  # code -> subject id ("" once removed)
    codes: dict[str, int] = field(default_factory=dict)  # subject id -> code
    label_code: np.ndarray = field(default_factory=lambda: np.full(0, -1, dtype=np.int64))
    next_label: int = 0
    first: np.ndarray = field(default_factory=lambda: np.full(0, -1, dtype=np.int64))  # code -> first label
    count: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # code -> live views
    scattered: dict[int, list[int]] = field(default_factory=dict)  # code -> labels, when not one run
    _max: int = -1  # most views of any subject; -1 = recompute (after a removal)

    def code_for(self, subject_id: str) -> int:
        code = self.codes.get(subject_id)
        if code is None:
            code = len(self.subjects)
            self.subjects.append(subject_id)
            self.codes[subject_id] = code
            if code >= self.first.size:
                size = max(1024, 2 * self.first.size)
                self.first = _grown(self.first, size, -1)
                self.count = _grown(self.count, size, 0)
        return code

    def allocate(self, code: int, count: int) -> np.ndarray:
        start = self.next_label
        labels = np.arange(start, start + count, dtype=np.int64)
        self.next_label += count
        if self.next_label > self.label_code.size:
            self.label_code = _grown(self.label_code, max(self.next_label, 2 * self.label_code.size, 1024), -1)
        self.label_code[labels] = code
        have = int(self.count[code])
        if have == 0:
            self.first[code] = start
        elif code in self.scattered:
            self.scattered[code].extend(labels.tolist())
        elif int(self.first[code]) + have != start:  # someone else's views in between: list this subject's
            self.scattered[code] = list(range(int(self.first[code]), int(self.first[code]) + have)) + labels.tolist()
        self.count[code] = have + count
        if self._max >= 0:
            self._max = max(self._max, have + count)
        return labels

    def labels_of(self, code: int) -> np.ndarray:
        listed = self.scattered.get(code)
        if listed is not None:
            return np.asarray(listed, dtype=np.int64)
        return np.arange(int(self.first[code]), int(self.first[code]) + int(self.count[code]), dtype=np.int64)

    def views(self, code: int) -> int:
        return int(self.count[code])

    def drop(self, code: int) -> np.ndarray:
        """Forget a subject's views; returns their labels."""
        labels = self.labels_of(code)
        self.scattered.pop(code, None)
        if int(self.count[code]) >= self._max:
            self._max = -1
        self.first[code], self.count[code] = -1, 0
        return labels

    def total_views(self) -> int:
        return int(self.count[: len(self.subjects)].sum())

    def max_views(self) -> int:
        """Most views of any subject (cached: search asks on every call)."""
        if self._max < 0:
            n = len(self.subjects)
            self._max = int(self.count[:n].max()) if n else 0
        return self._max

    def rebuild_views(self) -> None:
        """Derive ``first``/``count``/``scattered`` from ``label_code`` (after a rebuild or a restore)."""
        n = len(self.subjects)
        self.first = np.full(max(1024, n), -1, dtype=np.int64)
        self.count = np.zeros(max(1024, n), dtype=np.int32)
        self.scattered = {}
        self._max = -1
        lc = self.label_code[: self.next_label]
        labels = np.flatnonzero(lc >= 0)
        if not labels.size:
            return
        codes = lc[labels]
        order = np.argsort(codes, kind="stable")  # labels stay ascending within a code
        labels, codes = labels[order], codes[order]
        uniq, starts, counts = np.unique(codes, return_index=True, return_counts=True)
        lo, hi = labels[starts], labels[starts + counts - 1]
        self.first[uniq], self.count[uniq] = lo, counts
        for i in np.flatnonzero(hi - lo + 1 != counts).tolist():
            self.scattered[int(uniq[i])] = labels[starts[i] : starts[i] + counts[i]].tolist()


def _grown(a: np.ndarray, size: int, fill: int) -> np.ndarray:
    out = np.full(size, fill, dtype=a.dtype)
    out[: a.size] = a
    return out


class _RWLock:
    """Many readers or one writer."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    def read(self) -> _Guard:
        return _Guard(self, write=False)

    def write(self) -> _Guard:
        return _Guard(self, write=True)


class _Guard:
    def __init__(self, lock: _RWLock, write: bool) -> None:
        self.lock, self.write = lock, write

    def __enter__(self) -> None:
        c = self.lock._cond
        with c:
            if self.write:
                while self.lock._writer or self.lock._readers:
                    c.wait()
                self.lock._writer = True
            else:
                while self.lock._writer:
                    c.wait()
                self.lock._readers += 1

    def __exit__(self, *exc: object) -> None:
        c = self.lock._cond
        with c:
            if self.write:
                self.lock._writer = False
            else:
                self.lock._readers -= 1
            c.notify_all()


def as_batch(vectors: np.ndarray | Sequence[np.ndarray], dim: int) -> np.ndarray:
    """A C-contiguous float32 (n, dim) array; raise IndexError_ on a wrong shape or non-finite values."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim == 1:
        x = x.reshape(1, -1)
    if x.ndim != 2 or x.shape[1] != dim:
        raise IndexError_(f"expected vectors of shape (n, {dim}), got {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)[:10].tolist()
        raise IndexError_(f"non-finite values in rows {bad}")
    return np.ascontiguousarray(x)


class GalleryIndex:
    """Subject templates in a FAISS index. Build with :meth:`build` or start empty (exact) and :meth:`add`."""

    def __init__(self, dim: int = 128, kind: Kind = "flat", params: IndexParams | None = None) -> None:
        if kind not in KINDS:
            raise IndexError_(f"unknown index kind {kind!r}; one of {KINDS}")
        self.dim = dim
        self.kind: Kind = kind
        self.params = params or IndexParams()
        self._map = _Mapping()
        self._lock = _RWLock()
        self._tombstones = 0  # hnsw only
        self._faiss: faiss.Index = self._new_faiss(0) if kind in ("flat", "hnsw") else None

    # ---- construction ----------------------------------------------------------------------------

    def _new_faiss(self, n: int) -> faiss.Index:
        p, d = self.params, self.dim
        if self.kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlatL2(d))
        if self.kind == "hnsw":
            idx = faiss.IndexHNSWFlat(d, p.hnsw_m)
            idx.hnsw.efConstruction = p.ef_construction
            idx.hnsw.efSearch = p.ef_search
            return idx
        nlist = p.nlist or ivf_nlist(n)
        if self.kind == "ivf":
            idx = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        else:
            quantizer = faiss.IndexHNSWFlat(d, 32)
            quantizer.hnsw.efSearch = max(64, (p.nprobe or auto_nprobe(nlist)) * 2)
            idx = faiss.IndexIVFPQ(quantizer, d, nlist, p.pq_m, p.pq_bits)
        idx.nprobe = p.nprobe or auto_nprobe(nlist)
        idx.cp.min_points_per_centroid = 5  # quieter: we sample on purpose
        idx.set_direct_map_type(faiss.DirectMap.Hashtable)  # reconstruct(label) for 1:1 verification
        return idx

    def train(self, sample: np.ndarray, expected_size: int | None = None) -> None:
        """Train an IVF/IVF-PQ index on representative vectors (a random sample of the gallery);
        ``expected_size`` (views) sizes the inverted lists (default: the sample size)."""
        x = as_batch(sample, self.dim)
        with self._lock.write():
            if self.kind in ("flat", "hnsw"):
                return
            if self._faiss is None:
                self._faiss = self._new_faiss(expected_size or x.shape[0])
            self._faiss.train(x)

    @classmethod
    def build(
        cls,
        subject_ids: Sequence[str],
        vectors: np.ndarray,
        *,
        kind: Kind | None = None,
        params: IndexParams | None = None,
        dim: int = 128,
        expected_size: int | None = None,
        seed: int = 0,
    ) -> GalleryIndex:
        """Index ``vectors[i]`` as a view of ``subject_ids[i]``; the kind defaults to :func:`choose_kind`."""
        x = as_batch(vectors, dim)
        if len(subject_ids) != x.shape[0]:
            raise IndexError_(f"{len(subject_ids)} subject ids for {x.shape[0]} vectors")
        n = expected_size or x.shape[0]
        self = cls(dim=dim, kind=kind or choose_kind(n), params=params)
        if self.kind in ("ivf", "ivfpq"):
            self._faiss = self._new_faiss(n)
            nlist = self._faiss.nlist
            take = min(x.shape[0], nlist * self.params.train_per_list)
            rng = np.random.default_rng(seed)
            sample = x[np.sort(rng.choice(x.shape[0], size=take, replace=False))] if take < x.shape[0] else x
            self._faiss.train(sample)
        self.add_many(subject_ids, x)
        return self

    @property
    def is_trained(self) -> bool:
        return self._faiss is not None and bool(self._faiss.is_trained)

    # ---- mutation --------------------------------------------------------------------------------

    def add(self, subject_id: str, views: np.ndarray) -> int:
        """Add one or more views of one subject; returns how many views the subject now has."""
        x = as_batch(views, self.dim)
        if not subject_id:
            raise IndexError_("empty subject id")
        with self._lock.write():
            self._require_trained()
            code = self._map.code_for(subject_id)
            labels = self._map.allocate(code, x.shape[0])
            self._faiss_add(x, labels)
            return self._map.views(code)

    def add_many(self, subject_ids: Sequence[str], vectors: np.ndarray, chunk: int = 100_000) -> None:
        """Add ``vectors[i]`` as a view of ``subject_ids[i]`` (bulk, chunked)."""
        x = as_batch(vectors, self.dim)
        if len(subject_ids) != x.shape[0]:
            raise IndexError_(f"{len(subject_ids)} subject ids for {x.shape[0]} vectors")
        if any(not s for s in subject_ids):
            raise IndexError_("empty subject id")
        with self._lock.write():
            self._require_trained()
            m = self._map
            labels = np.empty(x.shape[0], dtype=np.int64)
            for i, sid in enumerate(subject_ids):
                labels[i] = m.allocate(m.code_for(sid), 1)[0]
            for s in range(0, x.shape[0], chunk):
                self._faiss_add(x[s : s + chunk], labels[s : s + chunk])

    def _require_trained(self) -> None:
        if self._faiss is None or not self._faiss.is_trained:
            raise IndexError_(f"{self.kind} index is not trained: use GalleryIndex.build or train() first")

    def _faiss_add(self, x: np.ndarray, labels: np.ndarray) -> None:
        if self.kind == "hnsw":
            # HNSW labels are positions; positions and labels are allocated in the same order
            assert int(labels[0]) == self._faiss.ntotal, "hnsw label/position out of step"
            self._faiss.add(x)
        else:
            self._faiss.add_with_ids(x, labels)

    def remove(self, subject_id: str) -> int:
        """Erase every view of ``subject_id`` (its vectors leave memory now); returns views removed (0 if unknown)."""
        with self._lock.write():
            m = self._map
            code = m.codes.pop(subject_id, None)
            if code is None:
                return 0
            labels = m.drop(code)
            m.subjects[code] = ""
            m.label_code[labels] = -1
            if self.kind == "hnsw":
                self._tombstone(labels)
            elif labels.size:
                labels = np.ascontiguousarray(labels)
                sel = faiss.IDSelectorArray(labels.size, faiss.swig_ptr(labels))  # what a hashtable direct map needs
                removed = self._faiss.remove_ids(sel)
                if removed != labels.size:
                    raise RuntimeError(f"faiss removed {removed} of {labels.size} views of a subject")
            return int(labels.size)

    def _tombstone(self, labels: np.ndarray) -> None:
        """Overwrite the stored HNSW vectors with a far sentinel (the template is gone) and count them."""
        codes = self._hnsw_vectors()
        codes[labels] = 1e4  # in place; far from every real embedding (norm ≈ 1.4): never a near neighbour
        self._tombstones += int(labels.size)
        if self._tombstones > HNSW_REBUILD_SHARE * max(self._faiss.ntotal, 1):
            self._rebuild_hnsw()

    def _hnsw_vectors(self) -> np.ndarray:
        """A writable (ntotal, dim) float32 view of the HNSW flat storage (no copy)."""
        storage = faiss.downcast_index(self._faiss.storage)
        raw = faiss.rev_swig_ptr(storage.codes.data(), storage.codes.size())
        return raw.view(np.float32).reshape(-1, self.dim)

    def _rebuild_hnsw(self) -> None:
        live = np.flatnonzero(self._map.label_code[: self._faiss.ntotal] >= 0)
        vecs = self._hnsw_vectors()[live]  # fancy indexing copies: safe after the old index is dropped
        codes = self._map.label_code[live]
        self._map.label_code = np.full(max(1024, live.size), -1, dtype=np.int64)
        self._map.label_code[: live.size] = codes
        self._map.next_label = int(live.size)
        self._map.rebuild_views()
        self._faiss = self._new_faiss(live.size)
        self._tombstones = 0
        if live.size:
            self._faiss.add(np.ascontiguousarray(vecs))

    # ---- queries ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of live views."""
        return self._map.total_views()

    @property
    def subject_count(self) -> int:
        return len(self._map.codes)

    def __contains__(self, subject_id: object) -> bool:
        return subject_id in self._map.codes

    def subjects(self) -> list[str]:
        return sorted(self._map.codes)

    def view_count(self, subject_id: str) -> int:
        code = self._map.codes.get(subject_id)
        return 0 if code is None else self._map.views(code)

    def max_views(self) -> int:
        return self._map.max_views()

    def views_of(self, subject_id: str) -> np.ndarray:
        """The stored views of one subject, (v, dim) float32 (exact for flat/ivf/hnsw, decoded for ivfpq)."""
        with self._lock.read():
            code = self._map.codes.get(subject_id)
            if code is None:
                raise IndexError_(f"unknown subject {subject_id!r}")
            labels = self._map.labels_of(code)
            if self.kind == "hnsw":
                return self._hnsw_vectors()[labels]
            return np.vstack([self._faiss.reconstruct(int(lab)) for lab in labels])

    def search(self, batch: np.ndarray, k: int = 1) -> list[SearchResult]:
        """Nearest ``k`` subjects (best view each) for every row of ``batch`` (n, dim) float32.

        Runs one FAISS call for the whole batch; call it from a worker thread (the GIL is released)."""
        x = as_batch(batch, self.dim)
        if k < 1:
            raise IndexError_("k must be ≥ 1")
        with self._lock.read():
            if self._faiss is None or self._faiss.ntotal == 0 or not self._map.codes:
                return [SearchResult(()) for _ in range(x.shape[0])]
            views = self.max_views()
            extra = 1 if self.kind == "hnsw" and self._tombstones else 0
            kk = min(self._faiss.ntotal, k * max(views, 1) + extra * 8) if (k > 1 or extra) else 1
            # FAISS parallelises over queries; for small work OpenMP start-up and spin-waiting cost more than
            # the search (20 ms vs 0.7 ms for one query on a busy 2-core box), so run it on this thread alone.
            # The setting is per OS thread: it does not leak into other threads' searches.
            faiss.omp_set_num_threads(1 if x.shape[0] * self._scan_per_query() < SMALL_WORK else _DEFAULT_THREADS)
            dist2, labels = self._faiss.search(x, kk)
            codes = np.where(labels >= 0, self._map.label_code[np.clip(labels, 0, None)], -1)
            dist = np.sqrt(np.maximum(dist2, 0.0))
            subjects = self._map.subjects  # read under the lock: a concurrent remove() blanks entries in place
            if kk == 1:
                c0, d0 = codes[:, 0].tolist(), dist[:, 0].tolist()
                return [SearchResult((Hit(subjects[c], d, 0),) if c >= 0 else ()) for c, d in zip(c0, d0)]
            return [_reduce(subjects, crow, drow, k) for crow, drow in zip(codes.tolist(), dist.tolist())]

    def _scan_per_query(self) -> float:
        """Rough vector comparisons per query, to size the OpenMP team."""
        n = self._faiss.ntotal
        if self.kind == "flat":
            return n
        if self.kind == "hnsw":
            return self._faiss.hnsw.efSearch * self.params.hnsw_m * 2
        ivf = faiss.extract_index_ivf(self._faiss)
        return n * ivf.nprobe / max(ivf.nlist, 1) + ivf.nlist

    def distances_to(self, subject_id: str, batch: np.ndarray) -> np.ndarray:
        """Euclidean distance from each query row to the subject's nearest view (for 1:1 verification)."""
        x = as_batch(batch, self.dim)
        views = self.views_of(subject_id)
        d2 = ((x[:, None, :] - views[None, :, :]) ** 2).sum(axis=2)
        return np.sqrt(d2.min(axis=1))

    # ---- raw access (benchmarks) -----------------------------------------------------------------

    @property
    def faiss_index(self) -> faiss.Index:
        """The underlying FAISS index (read-only use: benchmarks compare against it)."""
        return self._faiss

    def set_search_params(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        with self._lock.write():
            if nprobe is not None and self.kind in ("ivf", "ivfpq"):
                faiss.extract_index_ivf(self._faiss).nprobe = nprobe
                self.params = _replace(self.params, nprobe=nprobe)
            if ef_search is not None and self.kind == "hnsw":
                self._faiss.hnsw.efSearch = ef_search
                self.params = _replace(self.params, ef_search=ef_search)

    def memory_bytes(self) -> int:
        """Serialized size of the FAISS index: a close proxy of its resident memory."""
        with self._lock.read():
            return 0 if self._faiss is None else int(faiss.serialize_index(self._faiss).size)

    # ---- snapshots -------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """Self-contained snapshot: header (mapping, params) + ``faiss.serialize_index``, CRC-checked."""
        with self._lock.read():
            m = self._map
            header = msgspec.msgpack.encode(
                {
                    "dim": self.dim,
                    "kind": self.kind,
                    "params": msgspec.structs.asdict(_ParamsMsg(**_params_dict(self.params))),
                    "subjects": m.subjects,
                    "label_code": m.label_code[: m.next_label].astype("<i8").tobytes(),
                    "next_label": m.next_label,
                    "tombstones": self._tombstones,
                }
            )
            body = b"" if self._faiss is None else faiss.serialize_index(self._faiss).tobytes()
        payload = struct.pack("<I", len(header)) + header + body
        return _MAGIC + struct.pack("<I", zlib.crc32(payload)) + payload

    @classmethod
    def from_bytes(cls, data: bytes) -> GalleryIndex:
        """Inverse of :meth:`to_bytes`; raise IndexError_ on a truncated or corrupt snapshot."""
        if len(data) < 14 or data[:6] != _MAGIC:
            raise IndexError_("not a paxsim index snapshot")
        (crc,) = struct.unpack_from("<I", data, 6)
        payload = memoryview(data)[10:]
        if zlib.crc32(payload) != crc:
            raise IndexError_("index snapshot is corrupt (CRC mismatch)")
        (hlen,) = struct.unpack_from("<I", payload, 0)
        h = msgspec.msgpack.decode(payload[4 : 4 + hlen])
        self = cls(dim=h["dim"], kind=h["kind"], params=IndexParams(**h["params"]))
        body = np.frombuffer(payload[4 + hlen :], dtype=np.uint8)
        self._faiss = faiss.deserialize_index(body) if body.size else self._faiss
        m = self._map
        m.subjects = list(h["subjects"])
        m.next_label = int(h["next_label"])
        lc = np.frombuffer(h["label_code"], dtype="<i8").astype(np.int64)
        m.label_code = np.full(max(1024, lc.size), -1, dtype=np.int64)
        m.label_code[: lc.size] = lc
        m.codes = {s: c for c, s in enumerate(m.subjects) if s}
        m.rebuild_views()
        self._tombstones = int(h["tombstones"])
        return self


class _ParamsMsg(msgspec.Struct):
    nlist: int
    nprobe: int
    hnsw_m: int
    ef_construction: int
    ef_search: int
    pq_m: int
    pq_bits: int
    train_per_list: int


def _params_dict(p: IndexParams) -> dict:
    return {f: getattr(p, f) for f in IndexParams.__dataclass_fields__}


def _replace(p: IndexParams, **kw: int) -> IndexParams:
    d = _params_dict(p)
    d.update(kw)
    return IndexParams(**d)


def _reduce(subjects: list[str], codes: list[int], dists: list[float], k: int) -> SearchResult:
    seen: set[int] = set()
    hits: list[Hit] = []
    for c, d in zip(codes, dists):
        if c < 0 or c in seen:
            continue
        seen.add(c)
        hits.append(Hit(subjects[c], d, len(hits)))
        if len(hits) == k:
            break
    return SearchResult(tuple(hits))


def iter_batches(x: np.ndarray, size: int) -> Iterator[np.ndarray]:
    """Split ``x`` into micro-batches of at most ``size`` rows."""
    for s in range(0, x.shape[0], size):
        yield x[s : s + size]


def search_batched(index: GalleryIndex, x: np.ndarray, k: int = 1, batch: int = 256) -> list[SearchResult]:
    """Search ``x`` in micro-batches of ``batch`` rows (what the consumer loop does)."""
    out: list[SearchResult] = []
    for b in iter_batches(x, batch):
        out.extend(index.search(b, k))
    return out

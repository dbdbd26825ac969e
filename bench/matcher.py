"""Matcher benchmark: our GalleryIndex wrapper vs raw FAISS on the same index, in the same run.

    .venv/bin/python -m bench.matcher                       # 10k, 100k, 1M (~10 min on 2 cores)
    .venv/bin/python -m bench.matcher --sizes 10000         # quick
    .venv/bin/python -m bench.matcher --sizes 1000000 --nprobe-sweep 8,16,24,32
    .venv/bin/python -m bench.matcher --sizes 100000 --kinds hnsw
    .venv/bin/python -m bench.matcher --sizes "" --ivfpq-10m   # streamed 10M IVF-PQ (~2 GB peak)
    .venv/bin/python -m bench.matcher --sizes "" --alerts-run 60   # false-flag rate of the alert rules, full pipeline
    .venv/bin/python -m bench.matcher --sizes "" --egate           # 1:1 e-gate FAR/FRR on the scenario population

Synthetic gallery with a dlib-like structure: identity centres = a shared mean + N(0, 0.05) per dimension
(different identities ≈ 0.8 apart, as in scenario/virtual.py), ``--views`` noisy views per identity
(σ 0.02 per dimension); queries = fresh noisy views (σ 0.027, the scenario's camera noise) of enrolled
identities plus 20 % impostors who are not enrolled.

Measured, per gallery size:
- queries/s in micro-batches (``--batch``, default 256) through ``GalleryIndex.search`` (results built as
  Python objects) and through ``faiss_index.search`` on the very same index, alternating, best of
  ``--repeats``; ratio = ours / raw (goal ≥ 0.8);
- recall@1 against exact search (IndexFlatL2 over the same vectors): share of queries whose top-1 view is
  the exact top-1 (ties within 1e-5 count);
- RSS growth while building (psutil) and the serialized index size, both scaled to per-1M views;
- the GIL: share of a pure-Python loop's speed the main thread keeps while a search runs in a thread
  (FAISS on one OpenMP thread for this check, so both fit on the 2 cores: ~100 % = GIL released,
  ≤ 50 % = held).
"""

from __future__ import annotations

import argparse
import gc
import os
import threading
import time
from dataclasses import dataclass

import faiss
import numpy as np
import psutil

from matcher.index import GalleryIndex, IndexParams, choose_kind, ivf_nlist

DIM = 128
SPREAD = 0.05
VIEW_NOISE = 0.02
QUERY_NOISE = 0.027


def rss() -> int:
    return psutil.Process().memory_info().rss


class Population:
    """Deterministic identity centres, generated lazily by chunk (so 10M never sits in memory twice)."""

    def __init__(self, n_views: int, views: int, seed: int, decay: float = 1.0) -> None:
        self.n_views, self.views, self.seed = n_views, views, seed
        self.n_ids = (n_views + views - 1) // views
        rng = np.random.default_rng(seed)
        self.mean = rng.normal(0.0, 0.1, DIM).astype(np.float32)
        # identity variance along principal axes ∝ 1/i^decay, same total as σ=SPREAD in every dimension
        var = 1.0 / np.arange(1, DIM + 1) ** decay
        self.scale = np.sqrt(var * DIM * SPREAD**2 / var.sum()).astype(np.float32)
        self.rotation = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0].astype(np.float32)

    def identity_dim(self) -> float:
        """Participation ratio of the identity spectrum: its effective number of dimensions."""
        v = self.scale.astype(np.float64) ** 2
        return float(v.sum() ** 2 / (v**2).sum())

    def _identities(self, rng: np.random.Generator, n: int) -> np.ndarray:
        z = rng.normal(0.0, 1.0, (n, DIM)).astype(np.float32) * self.scale
        return self.mean + z @ self.rotation

    STEP = 65536

    def _block(self, c0: int) -> np.ndarray:
        return self._identities(np.random.default_rng((self.seed, c0)), self.STEP)

    def centres(self, lo: int, hi: int) -> np.ndarray:
        out = np.empty((hi - lo, DIM), np.float32)
        for c0 in range(lo - lo % self.STEP, hi, self.STEP):
            block = self._block(c0)
            a, b = max(lo, c0), min(hi, c0 + self.STEP)
            out[a - lo : b - lo] = block[a - c0 : b - c0]
        return out

    def centres_at(self, idx: np.ndarray) -> np.ndarray:
        out = np.empty((idx.size, DIM), np.float32)
        blocks = idx - idx % self.STEP
        for c0 in np.unique(blocks).tolist():
            sel = blocks == c0
            out[sel] = self._block(c0)[idx[sel] - c0]
        return out

    def view_chunk(self, lo: int, hi: int) -> tuple[list[str], np.ndarray]:
        """Views lo..hi (view v is identity v // views)."""
        ids = np.arange(lo, hi) // self.views
        c = self.centres(int(ids[0]), int(ids[-1]) + 1)[ids - ids[0]]
        rng = np.random.default_rng((self.seed, 1, lo))
        x = c + rng.normal(0.0, VIEW_NOISE, c.shape).astype(np.float32)
        return [f"id{i}" for i in ids.tolist()], x

    def queries(self, n: int, impostor_share: float = 0.2) -> tuple[np.ndarray, list[str | None]]:
        rng = np.random.default_rng((self.seed, 2))
        n_imp = int(n * impostor_share)
        who = rng.choice(self.n_ids, n - n_imp, replace=False)
        genuine = self.centres_at(who)
        imp = self._identities(rng, n_imp)
        q = np.vstack([genuine, imp]) + rng.normal(0.0, QUERY_NOISE, (n, DIM)).astype(np.float32)
        truth: list[str | None] = [f"id{i}" for i in who.tolist()] + [None] * n_imp
        return np.ascontiguousarray(q, dtype=np.float32), truth


@dataclass
class Row:
    size: int
    kind: str
    params: str
    build_s: float
    ours_qps: float
    raw_qps: float
    recall1: float
    recall1_genuine: float
    rank1: float
    index_mb_per_1m: float
    rss_mb_per_1m: float

    @property
    def ratio(self) -> float:
        return self.ours_qps / self.raw_qps


def exact_top1(pop: Population, q: np.ndarray, chunk: int = 500_000) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest view (label, squared distance) by chunked brute force: the ground truth."""
    best_d = np.full(q.shape[0], np.inf, np.float32)
    best_i = np.full(q.shape[0], -1, np.int64)
    for lo in range(0, pop.n_views, chunk):
        hi = min(pop.n_views, lo + chunk)
        _, x = pop.view_chunk(lo, hi)
        d, i = faiss.knn(q, x, 1)
        better = d[:, 0] < best_d
        best_d[better], best_i[better] = d[better, 0], i[better, 0] + lo
    return best_i, best_d


def build(pop: Population, kind: str, params: IndexParams, chunk: int = 500_000) -> GalleryIndex:
    """Train on a sample, then add in chunks (never holds more than one chunk of raw vectors)."""
    g = GalleryIndex(kind=kind, params=params)  # type: ignore[arg-type]
    if kind in ("ivf", "ivfpq"):
        nlist = params.nlist or ivf_nlist(pop.n_views)
        take = min(pop.n_views, nlist * params.train_per_list)
        rng = np.random.default_rng(5)
        lo = int(rng.integers(0, max(1, pop.n_views - take)))
        _, sample = pop.view_chunk(lo, lo + take)
        g._faiss = g._new_faiss(pop.n_views)  # noqa: SLF001 (bench builds in chunks)
        g.train(sample)
        del sample
    for lo in range(0, pop.n_views, chunk):
        ids, x = pop.view_chunk(lo, min(pop.n_views, lo + chunk))
        g.add_many(ids, x)
    return g


def throughput(g: GalleryIndex, q: np.ndarray, batch: int, repeats: int) -> tuple[float, float]:
    raw = g.faiss_index
    batches = [q[s : s + batch] for s in range(0, q.shape[0], batch)]

    def run_raw() -> float:
        t = time.perf_counter()
        for b in batches:
            raw.search(b, 1)
        return q.shape[0] / (time.perf_counter() - t)

    def run_ours() -> float:
        t = time.perf_counter()
        for b in batches:
            res = g.search(b, 1)
            for r in res:  # consume like the consumer loop does
                _ = r.best
        return q.shape[0] / (time.perf_counter() - t)

    run_raw(), run_ours()  # warm-up
    raws, ours = [], []
    for _ in range(repeats):
        raws.append(run_raw())
        ours.append(run_ours())
    return max(ours), max(raws)


def recall_and_rank1(
    g: GalleryIndex, q: np.ndarray, truth: list[str | None], exact_i: np.ndarray, exact_d2: np.ndarray
) -> tuple[float, float, float]:
    """(recall@1 vs exact over all queries, the same over genuine queries only, rank-1 of genuine queries)."""
    d2, labels = g.faiss_index.search(q, 1)
    hit = (labels[:, 0] == exact_i) | (d2[:, 0] <= exact_d2 * (1 + 1e-5) + 1e-9)
    res = g.search(q, 1)
    gen = [i for i, t in enumerate(truth) if t is not None]
    rank1 = float(np.mean([res[i].best is not None and res[i].best.subject_id == truth[i] for i in gen]))
    return float(hit.mean()), float(hit[gen].mean()), rank1


def gil_share(g: GalleryIndex, q: np.ndarray) -> float:
    """Speed of a pure-Python loop in the main thread while a search runs in another, vs alone."""

    def loop_rate(seconds: float, stop: threading.Event | None = None) -> float:
        n, t0 = 0, time.perf_counter()
        while True:
            for _ in range(1000):
                n += 1
            el = time.perf_counter() - t0
            if (stop is not None and stop.is_set()) or (stop is None and el > seconds):
                return n / el

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # leave a core to the main thread: we measure the GIL, not core contention
    alone = loop_rate(0.5)
    done = threading.Event()
    big = np.vstack([q] * max(1, 4000 // q.shape[0] + 1))

    def work() -> None:
        for _ in range(3):
            g.faiss_index.search(big, 1)
        done.set()

    th = threading.Thread(target=work)
    th.start()
    during = loop_rate(0.0, done)
    th.join()
    faiss.omp_set_num_threads(threads)
    return during / alone


def bench_one(
    size: int,
    kind: str,
    params: IndexParams,
    args: argparse.Namespace,
    pop: Population,
    q: np.ndarray,
    truth: list[str | None],
    exact: tuple[np.ndarray, np.ndarray],
) -> tuple[Row, GalleryIndex]:
    gc.collect()
    before = rss()
    t = time.perf_counter()
    g = build(pop, kind, params)
    build_s = time.perf_counter() - t
    grew = rss() - before
    ours, raw = throughput(g, q, args.batch, args.repeats)
    rec, rec_g, r1 = recall_and_rank1(g, q, truth, *exact)
    scale = 1e6 / size
    p = (
        f"nlist={faiss.extract_index_ivf(g.faiss_index).nlist},nprobe={faiss.extract_index_ivf(g.faiss_index).nprobe}"
        if kind in ("ivf", "ivfpq")
        else (f"M={params.hnsw_m},efS={params.ef_search}" if kind == "hnsw" else "-")
    )
    row = Row(size, kind, p, build_s, ours, raw, rec, rec_g, r1, g.memory_bytes() * scale / 2**20, grew * scale / 2**20)
    return row, g


def ivfpq_10m(args: argparse.Namespace, size: int = 10_000_000) -> Row:
    """The 10M IVF-PQ run, streamed: train on a sample, then generate and add in chunks (one chunk of raw
    vectors in memory at a time); exact ground truth by chunked brute force over the same stream."""
    pop = Population(size, args.views, args.seed, args.decay)
    params = IndexParams(nlist=args.nlist, nprobe=args.nprobe, pq_m=args.pq_m, train_per_list=args.train_per_list)
    g = GalleryIndex(kind="ivfpq", params=params)
    gc.collect()
    rss0 = rss()
    t0 = time.perf_counter()
    g._faiss = g._new_faiss(size)  # noqa: SLF001 (the bench streams the build)
    ivf = faiss.extract_index_ivf(g.faiss_index)
    ivf.cp.niter = args.kmeans_iter
    take = min(size, ivf.nlist * params.train_per_list)
    start = int(np.random.default_rng(5).integers(0, size - take))
    _, sample = pop.view_chunk(start, start + take)
    g.train(sample)
    del sample
    train_s = time.perf_counter() - t0
    print(f"[10M] trained on {take:,} views ({ivf.nlist} lists, k-means {args.kmeans_iter} iterations) in {train_s:.0f} s", flush=True)
    quantizer = faiss.downcast_index(ivf.quantizer)
    search_ef = quantizer.hnsw.efSearch
    quantizer.hnsw.efSearch = args.add_ef  # assigning a view to its list needs the top-1 centroid only
    gen_s = 0.0
    for lo in range(0, size, args.chunk):
        t = time.perf_counter()
        ids, x = pop.view_chunk(lo, min(size, lo + args.chunk))
        gen_s += time.perf_counter() - t
        g.add_many(ids, x)
        del ids, x
        el = time.perf_counter() - t0
        print(f"[10M] added {min(size, lo + args.chunk):,} views, {el:.0f} s, RSS {rss() / 2**30:.2f} GB", flush=True)
    quantizer.hnsw.efSearch = search_ef
    build_s = time.perf_counter() - t0
    grew = rss() - rss0
    index_bytes = g.memory_bytes()
    print(
        f"[10M] build {build_s:.0f} s (train {train_s:.0f} s, of the rest {gen_s:.0f} s generating views); "
        f"index {index_bytes / 2**20:,.0f} MB; RSS {rss() / 2**30:.2f} GB (grew {grew / 2**30:.2f} GB)",
        flush=True,
    )
    q, truth = pop.queries(args.queries_10m)
    t = time.perf_counter()
    exact = exact_top1(pop, q)
    print(f"[10M] exact ground truth for {q.shape[0]} queries in {time.perf_counter() - t:.0f} s", flush=True)
    ours, raw = throughput(g, q, args.batch, args.repeats)
    rec, rec_g, r1 = recall_and_rank1(g, q, truth, *exact)
    row = Row(
        size,
        "ivfpq",
        f"nlist={ivf.nlist},nprobe={ivf.nprobe},pq={params.pq_m}x{params.pq_bits}",
        build_s,
        ours,
        raw,
        rec,
        rec_g,
        r1,
        index_bytes / 10 / 2**20,
        grew / 10 / 2**20,
    )
    print_rows([row])
    return row


def alerts_run(duration_s: float, travellers: int, cameras: int, eps: float) -> None:
    """The whole pipeline (embedded broker, key holder, edge → gate → matcher as processes) on the synthetic
    population with every alert rule enabled for every biometric purpose; nobody in it does anything wrong, so
    every alert is a false flag. Ground truth says which flags come from a wrong identification."""
    import asyncio
    import json
    import tempfile
    from pathlib import Path

    import yaml

    from broker import topics as t
    from broker.embedded import EmbeddedBroker
    from broker.messages import Alert, Match, TrackUpdate, decode
    from broker.reader import read_all
    from core.config import load_settings
    from core.paths import ground_truth_path
    from core.stack import Stack
    from matcher.alerts import ALERTS_ENV, flag_rates
    from paxsim.demo import resolve_pseudonyms, start_pipeline, watch
    from paxsim.infra import child_env, enrol_scenario
    from policy.crypto import HttpKeySource
    from policy.keyd import spawn_keyd

    run = Path(tempfile.mkdtemp(prefix="paxsim-alerts-"))
    rules = yaml.safe_load((Path(__file__).parents[1] / "matcher" / "default-alerts.yaml").read_text())
    rules.update(enabled=True, purposes=["flow-analytics", "egate-verification", "boarding"])
    (run / "alerts.yaml").write_text(yaml.safe_dump(rules))
    os.environ[ALERTS_ENV] = str(run / "alerts.yaml")
    base = load_settings(environ={})
    settings = base.model_copy(
        update={
            "state_dir": run / "state",
            "scenario": base.scenario.model_copy(update=dict(travellers=travellers, cameras=cameras, events_per_second=eps)),
        }
    )

    async def go() -> tuple[list, list, list, dict]:
        broker = await EmbeddedBroker(settings).start()
        keys = spawn_keyd()
        try:
            cs = settings.model_copy(
                update={"broker": settings.broker.model_copy(update={"bootstrap": broker.bootstrap, "profile": "embedded"})}
            )
            enrol_scenario(cs, duration_s)
            stack = Stack(Path(cs.state_dir), child_env(cs, broker.bootstrap, True, keys))
            try:
                start_pipeline(stack, duration_s, ground_truth_path(cs))
                await watch(stack, None)
            finally:
                stack.stop()
            src = HttpKeySource(keys.url, keys.token)
            matches = resolve_pseudonyms([decode(r.value, Match) for r in await read_all(cs, t.MATCHES.name)], cs, src)
            tracks = resolve_pseudonyms([decode(r.value, TrackUpdate) for r in await read_all(cs, t.TRACKS.name)], cs, src)
            alerts = resolve_pseudonyms([decode(r.value, Alert) for r in await read_all(cs, t.ALERTS.name)], cs, src)
            truth = {r["event_id"]: r["traveller_id"] for r in map(json.loads, ground_truth_path(cs).read_text().splitlines())}
            return matches, tracks, alerts, truth
        finally:
            await broker.stop()
            keys.stop()

    matches, tracks, alerts, truth = asyncio.run(go())
    # zone changes along each subject's sightings in capture order (updates arrive out of order across partitions)
    by_subject: dict[str, list] = {}
    for u in {u.event_id: u for u in tracks}.values():
        by_subject.setdefault(u.subject_id, []).append(u)
    moves = []
    for seq in by_subject.values():
        seq.sort(key=lambda u: u.captured_at)
        moves += [b for a, b in zip(seq, seq[1:]) if a.zone != b.zone]
    implausible = [u for u in tracks if not u.plausible]
    r = flag_rates(alerts, set(by_subject), len(moves), len(implausible))
    identified = [m for m in matches if m.decision in ("match", "verified")]
    wrong = {m.event_id for m in identified if m.subject_id != truth.get(m.event_id)}
    kinds: dict[str, int] = {}
    for a in {a.alert_id: a for a in alerts}.values():
        kinds[a.kind] = kinds.get(a.kind, 0) + 1
    print(
        f"alerts run: {duration_s:.0f} s, {travellers} travellers, {cameras} cameras, {eps:.0f} sightings/s; "
        f"{len(matches)} decisions, {len(identified)} identified, {len(wrong)} of them wrong ({len(wrong) / max(1, len(identified)):.2%})"
    )
    print(f"  alert records {len(alerts)}, distinct ids {r.alerts} ({kinds}); duplicates on the topic {len(alerts) - r.alerts}")
    upper = (3.0 / r.subjects) if r.flagged_subjects == 0 and r.subjects else float("nan")
    print(
        f"  subjects with a trajectory {r.subjects}, flagged {r.flagged_subjects}: subject false-flag rate {r.subject_flag_rate:.2%}"
        + (f" (95 % upper bound {upper:.2%}, rule of three)" if upper == upper else "")
    )
    print(
        f"  zone changes (capture order) {r.transitions}, updates flagged implausible {r.implausible_transitions}: rate {r.transition_flag_rate:.2%}; "
        f"of the implausible, caused by a wrong identification: {sum(u.event_id in wrong for u in implausible)}"
    )
    print(f"  (ground truth: nobody misbehaved, every alert is a false flag); run dir {run}")


def egate_rates(travellers: int, reps: int, seed: int = 9) -> None:
    """1:1 e-gate FAR/FRR on the scenario's e-gate-eligible travellers with the calibrated embedder noise
    (``scenario.virtual``): genuine claims = a fresh noisy capture vs the traveller's own enrolment, impostor
    claims = the same capture vs another eligible traveller's (a borrowed passport)."""
    from core.config import load_settings
    from matcher.calibration import DLIB_THRESHOLD, rates_at
    from matcher.verify import verify_templates
    from scenario.virtual import EGATE_PURPOSE, VirtualAirport

    st = load_settings(environ={})
    a = VirtualAirport(st.scenario.model_copy(update=dict(travellers=travellers)), 60)
    eligible = [t for t in a.travellers if EGATE_PURPOSE in t.purposes]
    rng = np.random.default_rng(seed)
    bases = np.stack([t.base for t in eligible])
    own = np.repeat(np.arange(len(eligible)), reps)
    live = a.noise.sample(bases[own], rng)
    other = (own + rng.integers(1, len(eligible), own.size)) % len(eligible)
    th = st.matcher.threshold
    genuine = [verify_templates(x, bases[i], th).distance for x, i in zip(live, own)]
    impostor = [verify_templates(x, bases[j], th).distance for x, j in zip(live, other)]
    for t in (th, DLIB_THRESHOLD):
        r = rates_at(genuine, impostor, t)
        print(
            f"e-gate 1:1: {len(eligible)} eligible travellers, {len(genuine)} genuine / {len(impostor)} impostor claims "
            f"at {t:.2f}: FAR {r.far:.4f}  FRR {r.frr:.4f}"
        )


def calibration_report(g: GalleryIndex, q: np.ndarray, truth: list[str | None], threshold: float) -> None:
    """Genuine vs impostor distances on this synthetic population, against the documented dlib rule."""
    from matcher.calibration import DLIB_THRESHOLD, calibrate, open_set_rates, rates_at

    rng = np.random.default_rng(3)
    subjects = g.subjects()
    genuine, impostor = [], []
    for i, t in enumerate(truth):
        if t is None:
            continue
        genuine.append(float(g.distances_to(t, q[i : i + 1])[0]))
        other = subjects[int(rng.integers(len(subjects)))]
        if other != t:
            impostor.append(float(g.distances_to(other, q[i : i + 1])[0]))
    cal = calibrate(genuine, impostor, target_far=1e-3)
    print(
        f"1:1 calibration ({len(genuine)} genuine, {len(impostor)} impostor pairs): EER {cal.eer:.4f} at {cal.eer_threshold:.3f}; "
        f"threshold for FAR ≤ 1e-3: {cal.threshold:.3f} (FRR {cal.frr:.4f})"
    )
    for t in (threshold, DLIB_THRESHOLD):
        r = rates_at(genuine, impostor, t)
        print(f"  at {t:.2f}: FAR {r.far:.4f}  FRR {r.frr:.4f}")
    res = g.search(q, 1)
    best = [r.best.subject_id if r.best else None for r in res]
    dist = [r.best.distance if r.best else None for r in res]
    for t in (threshold, DLIB_THRESHOLD):
        o = open_set_rates(best, dist, truth, t)
        print(
            f"  1:N at {t:.2f}: rank-1 {o.rank1:.4f}  FNIR {o.fnir:.4f}  FPIR {o.fpir:.4f} ({o.enrolled} enrolled, {o.non_enrolled} impostor probes)"
        )


def print_rows(rows: list[Row]) -> None:
    print()
    print(
        "| views | kind | params | build s | ours q/s | raw FAISS q/s | ours/raw | recall@1 vs exact | recall@1 genuine | rank-1 genuine | index MB per 1M | RSS MB per 1M |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r.size:,} | {r.kind} | {r.params} | {r.build_s:.1f} | {r.ours_qps:,.0f} | {r.raw_qps:,.0f} | {r.ratio:.3f} | "
            f"{r.recall1:.4f} | {r.recall1_genuine:.4f} | {r.rank1:.4f} | {r.index_mb_per_1m:,.0f} | {r.rss_mb_per_1m:,.0f} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--kinds", default="auto", help="auto (by size) or a comma list of flat,ivf,hnsw,ivfpq")
    ap.add_argument("--views", type=int, default=2)
    ap.add_argument("--queries", type=int, default=4096)
    ap.add_argument("--queries-large", type=int, default=2048, help="queries at ≥ 1M (slower searches)")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--nprobe", type=int, default=IndexParams().nprobe, help="0 = auto (nlist/16)")
    ap.add_argument("--nlist", type=int, default=0, help="0 = auto (≈ √n)")
    ap.add_argument("--also-hnsw", action="store_true", help="add an HNSW row for sizes ≥ 100k")
    ap.add_argument("--nprobe-sweep", default="", help="comma list, IVF kinds only")
    ap.add_argument("--ef-search", type=int, default=IndexParams().ef_search)
    ap.add_argument("--threads", type=int, default=0, help="FAISS OpenMP threads (0 = all cores)")
    ap.add_argument("--ivfpq-10m", action="store_true", help="also a 10M IVF-PQ run (needs ~8 GB free)")
    ap.add_argument("--queries-10m", type=int, default=200, help="queries at 10M (exact ground truth is the slow part)")
    ap.add_argument("--train-per-list", type=int, default=16, help="10M: training views per inverted list")
    ap.add_argument("--kmeans-iter", type=int, default=10, help="10M: k-means iterations of the coarse quantizer")
    ap.add_argument("--add-ef", type=int, default=32, help="10M: HNSW efSearch of the coarse quantizer while adding")
    ap.add_argument("--chunk", type=int, default=500_000, help="10M: views generated and added per chunk")
    ap.add_argument("--pq-m", type=int, default=IndexParams().pq_m, help="IVF-PQ sub-quantizers (bytes per vector)")
    ap.add_argument("--alerts-run", type=float, default=0, help="seconds of full-pipeline traffic to measure the alert false-flag rate")
    ap.add_argument("--alerts-travellers", type=int, default=300)
    ap.add_argument("--alerts-cameras", type=int, default=8)
    ap.add_argument("--alerts-eps", type=float, default=150.0, help="sightings/s offered by the virtual edge")
    ap.add_argument("--egate", action="store_true", help="1:1 e-gate FAR/FRR on the scenario's eligible travellers")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--decay", type=float, default=1.0, help="identity spectrum decay (0 = isotropic, hardest)")
    ap.add_argument("--calibrate", action="store_true", help="print genuine/impostor calibration per size")
    ap.add_argument("--threshold", type=float, default=0.55, help="operating threshold (MatcherSettings.threshold)")
    args = ap.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(
        f"faiss {faiss.__version__}, OpenMP threads {faiss.omp_get_max_threads()}, batch {args.batch}, "
        f"{args.queries} queries ({args.queries_large} at ≥ 1M; 20 % impostors), {args.views} views per identity, "
        f"identity spectrum effective dim {Population(1, 1, args.seed, args.decay).identity_dim():.1f} of {DIM}"
    )
    print(f"load average at start: {os.getloadavg()}")
    rows: list[Row] = []
    sizes = [int(s) for s in args.sizes.split(",") if s]
    for size in sizes:
        pop = Population(size, args.views, args.seed, args.decay)
        nq = args.queries if size < 1_000_000 else min(args.queries, args.queries_large)
        q, truth = pop.queries(nq if size < 10_000_000 else min(nq, args.queries_10m))
        t = time.perf_counter()
        exact = exact_top1(pop, q)
        print(f"[{size:,}] exact ground truth in {time.perf_counter() - t:.1f} s", flush=True)
        kinds = [choose_kind(size)] if args.kinds == "auto" else args.kinds.split(",")
        if args.also_hnsw and size >= 100_000 and "hnsw" not in kinds:
            kinds.append("hnsw")
        for kind in kinds:
            params = IndexParams(nlist=args.nlist, nprobe=args.nprobe, ef_search=args.ef_search, pq_m=args.pq_m)
            row, g = bench_one(size, kind, params, args, pop, q, truth, exact)
            rows.append(row)
            print_rows([row])
            if args.nprobe_sweep and kind in ("ivf", "ivfpq"):
                for npb in [int(x) for x in args.nprobe_sweep.split(",")]:
                    g.set_search_params(nprobe=npb)
                    ours, raw = throughput(g, q, args.batch, args.repeats)
                    rec, rec_g, r1 = recall_and_rank1(g, q, truth, *exact)
                    r = Row(
                        size,
                        kind,
                        f"nlist={faiss.extract_index_ivf(g.faiss_index).nlist},nprobe={npb}",
                        0.0,
                        ours,
                        raw,
                        rec,
                        rec_g,
                        r1,
                        row.index_mb_per_1m,
                        row.rss_mb_per_1m,
                    )
                    rows.append(r)
                    print_rows([r])
            if args.calibrate and kind == kinds[0]:
                calibration_report(g, q, truth, args.threshold)
            if kind == kinds[0] and size == sizes[0]:
                print(f"GIL: main-thread Python loop keeps {gil_share(g, q):.0%} of its speed while FAISS searches in a thread")
            del g
            gc.collect()
    if args.ivfpq_10m:
        rows.append(ivfpq_10m(args))
    if rows:
        print_rows(rows)
    if args.egate:
        egate_rates(args.alerts_travellers, 20)
    if args.alerts_run:
        alerts_run(args.alerts_run, args.alerts_travellers, args.alerts_cameras, args.alerts_eps)


if __name__ == "__main__":
    main()

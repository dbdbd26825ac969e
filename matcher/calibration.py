"""Threshold calibration from genuine/impostor distance sets, and open-set identification rates.

Conventions: distances are Euclidean; a comparison is *accepted* when ``distance < threshold``.

- FAR (false accept rate): share of impostor comparisons accepted.
- FRR (false reject rate): share of genuine comparisons rejected.
- EER: the rate where FAR and FRR cross (reported with the threshold that reaches it).
- Open-set 1:N (:func:`open_set_rates`): rank-1 = enrolled probes whose best subject is right;
  FNIR = enrolled probes not returned as the right subject under the threshold;
  FPIR = probes of people not enrolled that get any subject under the threshold.
- Operating point (:func:`operating_point`): threshold *and* margin chosen together, decided the way the
  matcher decides (``SearchResult.identify``): the rule that names the most enrolled probes right among those
  whose FPIR stays within a target.

Every rate is also broken down per demographic group (:func:`per_group`), because an average can hide a
group that the system fails.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from matcher.index import SearchResult

DLIB_THRESHOLD = 0.6  # dlib's documented same-person rule for its ResNet embedding on real faces


@dataclass(frozen=True, slots=True)
class Rates:
    threshold: float
    far: float
    frr: float
    genuine: int  # number of genuine comparisons
    impostor: int  # number of impostor comparisons


@dataclass(frozen=True, slots=True)
class Calibration:
    threshold: float  # chosen operating point
    far: float
    frr: float
    eer: float
    eer_threshold: float
    target_far: float
    genuine: int
    impostor: int


def _arr(x: Sequence[float] | np.ndarray) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if not np.isfinite(a).all():
        raise ValueError("distances contain NaN or infinity")
    return a


def rates_at(genuine: Sequence[float] | np.ndarray, impostor: Sequence[float] | np.ndarray, threshold: float) -> Rates:
    """FAR and FRR of the decision ``distance < threshold``; a rate over an empty set is NaN."""
    g, i = _arr(genuine), _arr(impostor)
    frr = float((g >= threshold).mean()) if g.size else float("nan")
    far = float((i < threshold).mean()) if i.size else float("nan")
    return Rates(threshold, far, frr, int(g.size), int(i.size))


def eer(genuine: Sequence[float] | np.ndarray, impostor: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """(EER, threshold at the crossing). Exact sweep over every observed distance."""
    g, i = np.sort(_arr(genuine)), np.sort(_arr(impostor))
    if not g.size or not i.size:
        raise ValueError("EER needs both genuine and impostor distances")
    cands = np.unique(np.concatenate([g, i, [g[-1] + 1e-6, i[0]]]))
    frr = 1.0 - np.searchsorted(g, cands, side="left") / g.size  # share of g >= t
    far = np.searchsorted(i, cands, side="left") / i.size  # share of i < t
    j = int(np.argmin(np.abs(far - frr)))
    return float((far[j] + frr[j]) / 2.0), float(cands[j])


def threshold_at_far(impostor: Sequence[float] | np.ndarray, target_far: float) -> float:
    """The largest threshold whose FAR does not exceed ``target_far`` (distance < t accepted)."""
    i = np.sort(_arr(impostor))
    if not i.size:
        raise ValueError("no impostor distances")
    if not 0.0 <= target_far < 1.0:
        raise ValueError("target_far must be in [0, 1)")
    allowed = int(np.floor(target_far * i.size))  # this many impostors may fall below t
    return float(i[allowed])  # t = the (allowed+1)-th smallest: exactly `allowed` are strictly below


def calibrate(genuine: Sequence[float] | np.ndarray, impostor: Sequence[float] | np.ndarray, target_far: float = 1e-3) -> Calibration:
    """Operating point at ``target_far`` plus the EER, from one embedder's distance sets."""
    t = threshold_at_far(impostor, target_far)
    r = rates_at(genuine, impostor, t)
    e, et = eer(genuine, impostor)
    return Calibration(t, r.far, r.frr, e, et, target_far, r.genuine, r.impostor)


def per_group(
    genuine: Sequence[float] | np.ndarray,
    genuine_groups: Sequence[Hashable],
    impostor: Sequence[float] | np.ndarray,
    impostor_groups: Sequence[Hashable],
    threshold: float,
) -> dict[Hashable, Rates]:
    """FAR/FRR per group at one threshold (impostor pairs belong to the probe's group)."""
    g, i = _arr(genuine), _arr(impostor)
    gg, ig = np.asarray(genuine_groups, dtype=object), np.asarray(impostor_groups, dtype=object)
    if gg.size != g.size or ig.size != i.size:
        raise ValueError("one group label per distance")
    out: dict[Hashable, Rates] = {}
    for grp in sorted(set(gg.tolist()) | set(ig.tolist()), key=str):
        out[grp] = rates_at(g[gg == grp], i[ig == grp], threshold)
    return out


@dataclass(frozen=True, slots=True)
class OpenSetRates:
    threshold: float
    rank1: float  # enrolled probes whose nearest subject is the right one (no threshold)
    fnir: float  # enrolled probes not identified correctly under the threshold (FRR of 1:N)
    fpir: float  # non-enrolled probes given any subject under the threshold (FAR of 1:N)
    enrolled: int
    non_enrolled: int


def open_set_rates(
    best_subjects: Sequence[str | None],
    best_distances: Sequence[float | None],
    truth: Sequence[str | None],
    threshold: float,
) -> OpenSetRates:
    """Rates of a 1:N run. ``truth[i]`` is the probe's enrolled subject, or None for a non-enrolled person."""
    if not (len(best_subjects) == len(best_distances) == len(truth)):
        raise ValueError("best_subjects, best_distances and truth must have the same length")
    n_en = n_non = rank1 = fn = fp = 0
    for s, d, t in zip(best_subjects, best_distances, truth):
        hit = s is not None and d is not None and d < threshold
        if t is None:
            n_non += 1
            fp += hit
        else:
            n_en += 1
            rank1 += s == t
            fn += not (hit and s == t)
    nan = float("nan")
    return OpenSetRates(
        threshold,
        rank1 / n_en if n_en else nan,
        fn / n_en if n_en else nan,
        fp / n_non if n_non else nan,
        n_en,
        n_non,
    )


def open_set_per_group(
    best_subjects: Sequence[str | None],
    best_distances: Sequence[float | None],
    truth: Sequence[str | None],
    groups: Sequence[Hashable],
    threshold: float,
) -> dict[Hashable, OpenSetRates]:
    """:func:`open_set_rates` for each demographic group of the probes."""
    out: dict[Hashable, OpenSetRates] = {}
    for grp in sorted(set(groups), key=str):
        idx = [k for k, g in enumerate(groups) if g == grp]
        out[grp] = open_set_rates([best_subjects[k] for k in idx], [best_distances[k] for k in idx], [truth[k] for k in idx], threshold)
    return out


def rates_table(rows: dict[Hashable, Rates | OpenSetRates]) -> str:
    """A markdown table of per-group rates (for docs and reports)."""
    lines = []
    for grp, r in rows.items():
        if isinstance(r, Rates):
            if not lines:
                lines += ["| group | threshold | FAR | FRR | genuine | impostor |", "|---|---|---|---|---|---|"]
            lines.append(f"| {grp} | {r.threshold:.3f} | {r.far:.4f} | {r.frr:.4f} | {r.genuine} | {r.impostor} |")
        else:
            if not lines:
                lines += ["| group | threshold | rank-1 | FNIR | FPIR | enrolled | not enrolled |", "|---|---|---|---|---|---|---|"]
            lines.append(f"| {grp} | {r.threshold:.3f} | {r.rank1:.4f} | {r.fnir:.4f} | {r.fpir:.4f} | {r.enrolled} | {r.non_enrolled} |")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class OpenSetPoint:
    """One decision rule (``SearchResult.identify(threshold, margin)``) measured on an open-set probe set."""

    threshold: float
    margin: float
    identified: float  # enrolled probes named as the right subject
    wrong: float  # enrolled probes named as somebody else
    fnir: float  # enrolled probes not named right (refused or wrong)
    fpir: float  # probes of people never enrolled that were named as anybody
    enrolled: int
    non_enrolled: int


def open_set_point(
    genuine: Sequence[tuple[str, SearchResult]], strangers: Sequence[SearchResult], threshold: float, margin: float
) -> OpenSetPoint:
    """Rates of the rule on ``genuine`` (the probe's true subject, its search) and ``strangers`` (searches of
    people never enrolled). Searches must hold at least ``matcher.index.search_k(margin)`` subjects."""
    named = [(who, r.identify(threshold, margin)) for who, r in genuine]
    right = sum(h is not None and h.subject_id == who for who, h in named)
    wrong = sum(h is not None and h.subject_id != who for who, h in named)
    fp = sum(r.identify(threshold, margin) is not None for r in strangers)
    n, m, nan = len(genuine), len(strangers), float("nan")
    return OpenSetPoint(
        threshold,
        margin,
        right / n if n else nan,
        wrong / n if n else nan,
        (n - right) / n if n else nan,
        fp / m if m else nan,
        n,
        m,
    )


def operating_point(
    genuine: Sequence[tuple[str, SearchResult]],
    strangers: Sequence[SearchResult],
    target_fpir: float,
    thresholds: Iterable[float],
    margins: Iterable[float],
) -> OpenSetPoint | None:
    """The rule over ``thresholds`` × ``margins`` that names the most enrolled probes right while at most
    ``target_fpir`` of the strangers are named (ties: fewer strangers named, then the stricter threshold);
    None if no rule reaches the target. With ``m`` strangers, a target below ``1 / m`` means "none named"."""
    margins = list(margins)
    points = [open_set_point(genuine, strangers, t, g) for t in thresholds for g in margins]
    ok = [p for p in points if p.fpir <= target_fpir]
    return max(ok, key=lambda p: (p.identified, -p.fpir, -p.threshold)) if ok else None

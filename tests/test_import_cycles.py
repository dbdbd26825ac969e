"""No two modules of the project import each other, directly or round a loop (imports inside functions count;
imports made only for type checking do not, as they never run)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("paxsim", "scenario", "dashboard", "matcher", "edge", "policy", "broker", "core")


def cycles(graph) -> list[list[str]]:  # noqa: ANN001 - a grimp ImportGraph
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph.find_modules_directly_imported_by(w)))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def build():  # noqa: ANN201
    import grimp

    sys.path.insert(0, str(ROOT))
    return grimp.build_graph(*PACKAGES, cache_dir=None, exclude_type_checking_imports=True)


def test_no_import_cycle_between_modules():
    assert cycles(build()) == []


def test_the_cycle_check_finds_a_planted_loop():
    graph = build()
    graph.add_import(importer="core.paths", imported="core.obs")
    graph.add_import(importer="core.obs", imported="core.paths")
    assert ["core.obs", "core.paths"] in cycles(graph)

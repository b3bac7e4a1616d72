"""Issue 5's targets, checked against peerbench result files.

    python3 benches/targets.py MAIN.json [MEMORY.json] [PROCS.json] [--peer ferrocorn]

Reads the JSON files `benches/peers.sh` writes (peerbench's `records`), takes the median of each
(peer, workload, mode) over its repetitions, and prints one markdown table: each target, the
ratio it asks for, the figures it is computed from, and whether this run meets it. Nothing here
measures; it only reads what peerbench recorded, so the table can be recomputed from the files.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

GRANIAN = ("granian-w1", "granian-w2", "granian-w1-bt4")
GUNICORN = ("gunicorn-sync", "gunicorn-gthread")


class Runs:
    """Medians of peerbench records by (peer, workload, mode)."""

    def __init__(self, paths: list[str]):
        self.records: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
        for path in paths:
            with open(path) as f:
                for r in json.load(f)["records"]:
                    if "rps" in r:
                        self.records[(r["peer"], r["workload"], r["mode"])].append(r)

    def median(self, peer: str, workload: str, field: str, mode: str = "pinned") -> float | None:
        values = [
            r[field]
            for r in self.records.get((peer, workload, mode), [])
            if r.get(field) is not None
        ]
        return statistics.median(values) if values else None

    def total(self, peer: str, workload: str, field: str, mode: str = "pinned") -> float | None:
        runs = self.records.get((peer, workload, mode), [])
        return sum(r.get(field) or 0 for r in runs) if runs else None

    def best(self, peers: tuple[str, ...], workload: str, mode: str = "pinned") -> str | None:
        """The peer among `peers` with the highest median req/s on `workload`."""
        scored = [(self.median(p, workload, "rps", mode), p) for p in peers]
        scored = [(v, p) for v, p in scored if v is not None]
        return max(scored)[1] if scored else None


def times(r: float, needed: float) -> str:
    """`r` as a ratio, with a fourth decimal when three would round it onto the target."""
    shown = f"{r:.3f}"
    return (f"{r:.4f}" if float(shown) == needed and r != needed else shown) + "×"


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if unit == "req/s":
        return f"{value:,.0f} req/s"
    if unit == "ms":
        return f"{value / 1000:.2f} ms"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:,.0f}"


def rows(runs: Runs, me: str):
    """(target, needed, measured, from what, met) for every target of the issue."""

    def ratio(
        target: str, workload: str, other: str | None, op: str, needed: float, mode: str = "pinned"
    ):
        mine = runs.median(me, workload, "rps", mode)
        theirs = runs.median(other, workload, "rps", mode) if other else None
        if mine is None or not theirs:
            return (target, f"{op} {needed}×", "–", f"{other or 'peer'} not in the run", None)
        r = mine / theirs
        met = r >= needed if op == "≥" else r <= needed
        return (
            target,
            f"{op} {needed}×",
            times(r, needed),
            f"{fmt(mine, 'req/s')} vs {other} {fmt(theirs, 'req/s')}",
            met,
        )

    for workload, label in (("hello", "hello c64"), ("hello-c1000", "hello c1000")):
        yield ratio(f"{label} vs granian's best", workload, runs.best(GRANIAN, workload), "≥", 1.3)
        yield ratio(f"{label} vs bjoern", workload, "bjoern", "≥", 1.0)
        yield ratio(f"{label} vs gunicorn gthread", workload, "gunicorn-gthread", "≥", 12)
        yield ratio(f"{label} vs bare hyper", workload, "hyper", "≥", 0.75)
    for workload in ("django-html", "django-json"):
        yield ratio(f"{workload} vs bjoern", workload, "bjoern", "≥", 1.0)
        yield ratio(f"{workload} vs gunicorn gthread", workload, "gunicorn-gthread", "≥", 1.3)
    for workload in ("stream", "upload", "download"):
        yield ratio(
            f"{workload} vs granian's best", workload, runs.best(GRANIAN, workload), "≥", 1.0
        )
        yield ratio(
            f"{workload} vs gunicorn's best", workload, runs.best(GUNICORN, workload), "≥", 2
        )
    for workload, label in (("hello", "c64"), ("hello-c1000", "c1000")):
        granian = runs.best(GRANIAN, workload)
        mine = runs.median(me, workload, "p99_us")
        theirs = runs.median(granian, workload, "p99_us") if granian else None
        met = None if mine is None or theirs is None else mine <= theirs
        yield (
            f"hello p99 at {label} vs granian's best",
            "≤ granian",
            fmt(mine, "ms"),
            f"{granian} {fmt(theirs, 'ms')}",
            met,
        )
    errors = runs.total(me, "hello-c1000", "errors")
    yield (
        "socket errors at c1000 (all reps)",
        "0",
        fmt(errors),
        f"non-2xx: {fmt(runs.total(me, 'hello-c1000', 'non2xx'))}",
        None if errors is None else errors == 0,
    )
    for workload in ("django-html", "django-json"):
        one = runs.median(f"{me}-w1", workload, "rss_peak_mib")
        many = runs.median(f"{me}-w32", workload, "rss_peak_mib")
        if one and many:
            yield (
                f"peak RSS `--workers 32` ÷ `--workers 1`, {workload}",
                "≤ 1.2×",
                times(many / one, 1.2),
                f"{fmt(many, 'MiB')} vs {fmt(one, 'MiB')}",
                many / one <= 1.2,
            )
        else:
            yield (
                f"peak RSS `--workers 32` ÷ `--workers 1`, {workload}",
                "≤ 1.2×",
                "–",
                "memory part not in the run",
                None,
            )
    mine, theirs = (
        runs.median(me, "hello", "rss_peak_mib"),
        runs.median("bjoern", "hello", "rss_peak_mib"),
    )
    yield (
        "hello peak RSS vs bjoern",
        "≤ 2×",
        times(mine / theirs, 2) if mine and theirs else "–",
        f"{fmt(mine, 'MiB')} vs bjoern {fmt(theirs, 'MiB')}",
        None if not (mine and theirs) else mine / theirs <= 2,
    )
    yield _procs(runs, me)


def _procs(runs: Runs, me: str) -> tuple:
    mine = runs.median(f"{me}-p2", "django-json", "rps", "unpinned")
    theirs = runs.median("gunicorn-gthread", "django-json", "rps", "unpinned")
    target = "unpinned `--processes 2` django-json vs gunicorn gthread `-w 2 --threads 4`"
    if mine is None or not theirs:
        return (target, "≥ 1.2×", "–", "procs part not in the run", None)
    return (
        target,
        "≥ 1.2×",
        times(mine / theirs, 1.2),
        f"{fmt(mine, 'req/s')} vs {fmt(theirs, 'req/s')}",
        mine / theirs >= 1.2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "files", nargs="+", help="peerbench result JSON files (main, memory, procs)"
    )
    parser.add_argument("--peer", default="ferrocorn", help="the ferrocorn configuration to judge")
    args = parser.parse_args()
    runs = Runs(args.files)
    print(f"| target ({args.peer}) | asks | measured | from (medians) | met |")
    print("|---|---|---|---|---|")
    for target, needed, measured, source, met in rows(runs, args.peer):
        verdict = "–" if met is None else ("yes" if met else "**no**")
        print(f"| {target} | {needed} | {measured} | {source} | {verdict} |")


if __name__ == "__main__":
    main()

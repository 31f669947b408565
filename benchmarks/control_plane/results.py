"""The benchmark's figures: one row each, percentiles, and the table they are printed as."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field


@dataclass
class Row:
    figure: str
    samples: list[float] = field(default_factory=list)  # latencies in ms, for p50/p95/p99
    measured: str = ""
    target: str = ""
    met: bool | None = None
    note: str = ""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def print_table(rows: list[Row], header: str) -> None:
    print()
    print(header)
    cols = ["figure", "p50 ms", "p95 ms", "p99 ms", "measured", "target", "met"]
    lines = []
    for row in rows:
        p = ["", "", ""]
        if row.samples:
            p = [f"{pct(row.samples, q):.2f}" for q in (0.5, 0.95, 0.99)]
        met = "" if row.met is None else ("yes" if row.met else "NO")
        lines.append([row.figure, *p, row.measured, row.target, met])
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(cols)]
    print("| " + " | ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) + " |")
    notes = [f"- {r.figure}: {r.note}" for r in rows if r.note]
    if notes:
        print("\n".join(["", "notes:", *notes]))
    sys.stdout.flush()

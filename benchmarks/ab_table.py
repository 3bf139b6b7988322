"""Before/after table from ``benchmarks/run.py`` JSON files of two builds run alternately.

    python benchmarks/ab_table.py DIR        # DIR holds before_1.json, after_1.json, before_2.json, ...

Prints, per (batch, part, weight precision), the median time of each side (median over the files of
that side of each file's median) and the ratio after / before (below 1 is faster). Run the two
builds' ``benchmarks/run.py`` alternately with the same arguments (e.g. from a worktree with the old
commit built in place, see ab_speed.py), so machine drift hits both sides alike.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def load(directory: Path, side: str) -> dict[tuple, list[float]]:
    rows: dict[tuple, list[float]] = {}
    for path in sorted(directory.glob(f"{side}_*.json")):
        for r in json.loads(path.read_text())["results"]:
            rows.setdefault((r["config"], r["batch"], r["part"], r["weight_precision"]), []).append(r["median_ms"])
    return rows


def main(directory: Path) -> None:
    before, after = load(directory, "before"), load(directory, "after")
    print("| config | batch | part | weights | before ms | after ms | after / before |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(before.keys() & after.keys(), key=lambda k: (k[0], k[1], k[2], ("fp32", "bf16", "int8").index(k[3]))):
        b, a = statistics.median(before[key]), statistics.median(after[key])
        print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {b:.1f} | {a:.1f} | {a / b:.2f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

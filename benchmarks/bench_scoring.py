"""Benchmark: metrics, scoring and decisions for every supplier, from generated records already in memory.

    .venv/bin/python benchmarks/bench_scoring.py [--lines 1000000 10000000] [--repeat 3]

Suppliers default to lines / 200 (50,000 for 10M lines), as in the generator benchmark.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rules.decide import assemble_evaluations, status_changes  # noqa: E402
from rules.loader import load_rule_set  # noqa: E402
from rules.metrics import measure_suppliers  # noqa: E402
from rules.scoring import score_suppliers  # noqa: E402
from suppliers.generate import generate_frames  # noqa: E402

AS_OF = date(2026, 6, 30)


def evaluate_all(frames: dict[str, pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    rule_set = load_rule_set()
    window, tolerance = rule_set.evaluation.window_days, rule_set.evaluation.on_time_tolerance_days
    suppliers = frames["suppliers"].with_columns(current_status=pl.col("status"))
    performance = measure_suppliers(suppliers, frames["purchase_order_lines"], frames["receipts"],
                                    frames["nonconformances"], frames["feedback"], as_of=AS_OF,
                                    window_days=window, tolerance_days=tolerance)
    scored = score_suppliers(suppliers, performance.metrics, rule_set, as_of=AS_OF)
    empty_previous = pl.DataFrame(schema={"supplier_id": pl.String, "previous_as_of": pl.Date,
                                          "previous_score": pl.Float64, "previous_band": pl.String})
    evaluated = assemble_evaluations(scored, rule_set, empty_previous)
    return evaluated, status_changes(evaluated)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--suppliers", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for lines in args.lines:
        suppliers = args.suppliers or max(60, lines // 200)
        frames = generate_frames(suppliers=suppliers, lines=lines, seed=1, end_date=AS_OF)
        receipts = frames["receipts"].height
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            evaluated, _ = evaluate_all(frames)
            timings.append(time.perf_counter() - started)
        bands = dict(evaluated.group_by("band").len().sort("band", nulls_last=True).iter_rows())
        print(f"{lines:>11,} lines  {receipts:>11,} receipts  {suppliers:>7,} suppliers  "
              f"best {min(timings):6.2f} s  (runs: {', '.join(f'{t:.2f}' for t in timings)})  bands {bands}")


if __name__ == "__main__":
    main()

"""Benchmark: the audit evidence pack of a year with many evaluations, each step timed.

    .venv/bin/python benchmarks/bench_evidence.py [--suppliers 5000] [--months 12]

Writes a SQLite store in a temporary folder through the store's own API (one official run a month, every
supplier evaluated), then times reading and shaping the records, rendering the HTML and writing the workbook.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reports.evidence import collect_evidence, render_evidence_html, write_evidence_workbook  # noqa: E402
from suppliers.runs import RunRecord  # noqa: E402
from suppliers.store import Store  # noqa: E402

CRITERIA = [{"name": "On-time delivery", "measured": True, "points": 91.9, "effective_weight": 30.0},
            {"name": "OTIF", "measured": True, "points": 83.9, "effective_weight": 20.0},
            {"name": "Rejects", "measured": True, "points": 80.0, "effective_weight": 30.0},
            {"name": "Lateness", "measured": False, "points": None, "effective_weight": 20.0}]


def fill(store: Store, suppliers: int, months: int) -> None:
    ids = [f"S{i:06d}" for i in range(suppliers)]
    frame = pl.DataFrame({"supplier_id": ids, "score": [float(i % 100) for i in range(suppliers)],
                          "band": ["A"] * suppliers, "status": ["approved"] * suppliers,
                          "current_status": ["approved"] * suppliers, "insufficient_reason": [None] * suppliers,
                          "gates_hit": [[] for _ in ids], "metrics": [{"order_lines": 10}] * suppliers,
                          "criteria": [CRITERIA] * suppliers},
                         schema_overrides={"insufficient_reason": pl.String, "gates_hit": pl.List(pl.String)})
    for month in range(1, months + 1):
        as_of, key = date(2026, month, 28), f"key-{month}"
        store.start_run(RunRecord(run_id=f"run-{month}", run_key=key, trigger="nightly", requested_by="bench",
                                  as_of=as_of, window_days=365, selection=["*active*"], rule_set_name="rules",
                                  rule_set_version="1", rule_set_hash="h" * 64, input_fingerprint="f" * 64,
                                  code_version="bench"))
        store.save_evaluations(key, f"run-{month}", frame, as_of=as_of, window_start=as_of - timedelta(days=364),
                               rule_set_hash="h" * 64)
        store.finish_run(f"run-{month}", status="succeeded", evaluations_added=suppliers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suppliers", type=int, default=5000)
    parser.add_argument("--months", type=int, default=12, choices=range(1, 13), metavar="1-12")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        with Store(f"sqlite:///{folder}/store.db") as store:
            fill(store, args.suppliers, args.months)
            started = time.perf_counter()
            evidence = collect_evidence(store, date(2026, 1, 1), date(2026, 12, 31))
        collected = time.perf_counter()
        html = render_evidence_html(evidence)
        rendered = time.perf_counter()
        workbook = Path(folder) / "evidence.xlsx"
        write_evidence_workbook(evidence, workbook)
        written = time.perf_counter()
        print(f"{evidence.evaluations.height:,} evaluations of {args.suppliers:,} suppliers: "
              f"read and shape {collected - started:.2f} s, HTML {rendered - collected:.2f} s "
              f"({len(html.encode()) / 1e6:.2f} MB), workbook {written - rendered:.2f} s "
              f"({workbook.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

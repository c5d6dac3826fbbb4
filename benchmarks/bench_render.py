"""Benchmark: render and write every supplier report, the officer digest and the buyer messages of a run.

    .venv/bin/python benchmarks/bench_render.py [--suppliers 10000] [--lines 2100000] [--repeat 3] [--processes N]

Reports are written to a temporary folder in the working folder (``--out`` for another place): a slow /tmp would
measure the file system. The buyer messages (one per buyer, made only when mailed) are then made and timed apart.

The evaluated frame is realistic: sample records (about 210 order lines per supplier, as in a 1M-line /
4,740-supplier run), measured, scored and decided twice (as of 2026-03-31, then 2026-06-30 with the first as
its previous evaluation and score history), with the proposals and actions the second decision raises.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reports.bundle import AslFollowUp, DataQuality, RunReports, write_run_reports  # noqa: E402
from rules.decide import decide  # noqa: E402
from rules.loader import load_rule_set  # noqa: E402
from rules.metrics import measure_suppliers, window_start  # noqa: E402
from rules.scoring import score_suppliers  # noqa: E402
from suppliers.generate import generate_frames  # noqa: E402
from suppliers.runs import RunRecord  # noqa: E402
from suppliers.validate import QUARANTINE_SCHEMA, SUMMARY_SCHEMA  # noqa: E402

THEN, AS_OF = date(2026, 3, 31), date(2026, 6, 30)


def build_inputs(suppliers: int, lines: int) -> dict:
    rule_set = load_rule_set()
    frames = generate_frames(suppliers=suppliers, lines=lines, seed=3, end_date=AS_OF)
    chosen = frames["suppliers"].with_columns(current_status=pl.col("status"))
    options = rule_set.evaluation.measure_options()
    window = rule_set.evaluation.window_days
    no_official = pl.DataFrame(schema={"supplier_id": pl.String, "official_as_of": pl.Date})
    no_previous = pl.DataFrame(schema={"supplier_id": pl.String, "previous_as_of": pl.Date,
                                       "previous_score": pl.Float64, "previous_band": pl.String})
    performance = measure_suppliers(chosen, frames["purchase_order_lines"], frames["receipts"],
                                    frames["nonconformances"], frames["feedback"], as_of=THEN, window_days=window,
                                    **options)
    then = decide(chosen, score_suppliers(chosen, performance.metrics, rule_set, as_of=THEN), rule_set,
                  previous=no_previous, official_as_of=no_official, as_of=THEN, official=True).evaluated
    previous = then.select("supplier_id", previous_as_of=pl.lit(THEN), previous_score="score", previous_band="band",
                           previous_criteria=pl.Series([json.dumps(c, default=str) for c in then["criteria"]
                                                        .to_list()], dtype=pl.String))
    performance = measure_suppliers(chosen, frames["purchase_order_lines"], frames["receipts"],
                                    frames["nonconformances"], frames["feedback"], as_of=AS_OF, window_days=window,
                                    with_records=True, **options)
    decisions = decide(chosen, score_suppliers(chosen, performance.metrics, rule_set, as_of=AS_OF), rule_set,
                       previous=previous, official_as_of=no_official, as_of=AS_OF, official=True,
                       officers=("qm@example.org",))
    history = then.filter(pl.col("score").is_not_null()).select("supplier_id", as_of=pl.lit(THEN), score="score",
                                                                band="band")
    actions = decisions.actions.with_row_index("number", offset=1).with_columns(pl.col("number").cast(pl.Int64))
    names = chosen.select("supplier_id", "name")
    follow_up = AslFollowUp(
        proposals=decisions.proposals.join(names, on="supplier_id", how="left").with_columns(as_of=pl.lit(AS_OF)),
        actions=actions.join(names, on="supplier_id", how="left"),
        overdue=pl.DataFrame(schema={"supplier_id": pl.String, "name": pl.String, "profile": pl.String,
                                     "last_scored": pl.Date, "next_due": pl.Date}))
    quality = DataQuality(summary=pl.DataFrame(schema=SUMMARY_SCHEMA), quarantine=pl.DataFrame(
        schema=QUARANTINE_SCHEMA), previous=None, max_share=0.2, read_from="data")
    run = RunRecord(run_id="bench-run", run_key="b" * 64, trigger="nightly", requested_by=None, as_of=AS_OF,
                    window_days=window, selection=["*active*"], rule_set_name=rule_set.name,
                    rule_set_version=rule_set.version, rule_set_hash=rule_set.content_hash,
                    input_fingerprint="f" * 64, code_version="bench")
    return {"run": run, "rule_set": rule_set, "evaluated": decisions.evaluated, "changes": decisions.changes,
            "late_lines": performance.late_lines, "quality": quality,
            "quarantine_summary": pl.DataFrame(schema={**SUMMARY_SCHEMA, "top_reasons": pl.List(pl.String)}),
            "window_start": window_start(AS_OF, window), "follow_up": follow_up, "records": performance.records,
            "history": history}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished workers: what a shared machine's wall time hides."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def render_once(inputs: dict, out_dir: Path, processes: int | None = None) -> RunReports:
    return write_run_reports(out_dir, run=inputs["run"], rule_set=inputs["rule_set"], evaluated=inputs["evaluated"],
                             changes=inputs["changes"], late_lines=inputs["late_lines"], quality=inputs["quality"],
                             quarantine_summary=inputs["quarantine_summary"], window_start=inputs["window_start"],
                             follow_up=inputs["follow_up"], records=inputs["records"], history=inputs["history"],
                             processes=processes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suppliers", type=int, default=10_000)
    parser.add_argument("--lines", type=int, default=None, help="order lines (default: 210 per supplier)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--processes", type=int, default=None, help="worker processes (default: the CPUs)")
    parser.add_argument("--out", type=Path, default=Path.cwd(), help="where the temporary report folders go")
    args = parser.parse_args()
    started = time.perf_counter()
    inputs = build_inputs(args.suppliers, args.lines or args.suppliers * 210)
    print(f"inputs: {args.suppliers:,} suppliers evaluated in {time.perf_counter() - started:.1f} s (not counted)")
    timings, cpu = [], []
    for attempt in range(args.repeat):
        with tempfile.TemporaryDirectory(dir=args.out, prefix=".bench-render-") as folder:
            started, used = time.perf_counter(), _cpu_seconds()
            reports = render_once(inputs, Path(folder), args.processes)
            timings.append(time.perf_counter() - started)
            cpu.append(_cpu_seconds() - used)
            reports_dir = Path(folder) / "suppliers"
            files = [p for p in Path(folder).rglob("*") if p.is_file()]
            size = sum(p.stat().st_size for p in files)
            per_report = sum(p.stat().st_size for p in reports_dir.iterdir()) / len(reports.suppliers)
            if attempt == args.repeat - 1:
                started = time.perf_counter()
                buyers = [(len(b.rendered.html.encode()), sum(len(c) for _, c, _ in b.attachments))
                          for b in reports.buyers]
                buyer_time = time.perf_counter() - started
    count = len(reports.suppliers)
    best = min(timings)
    print(f"{count:,} supplier reports + digest rendered and written: best {best:.2f} s (runs: "
          f"{', '.join(f'{t:.2f}' for t in timings)}), {best / count * 1000:.2f} ms per report, "
          f"{per_report / 1024:.1f} KiB per report; {len(files):,} files, {size / 1e6:.1f} MB; "
          f"digest {len(reports.digest.rendered.html.encode()) / 1024:.1f} KiB; CPU (this process and its workers) "
          f"{min(cpu):.2f} s, a bound for a quiet machine: {min(cpu) / len(os.sched_getaffinity(0)):.2f} s wall")
    print(f"{len(buyers)} buyer messages made (as when mailed) in {buyer_time:.2f} s: HTML "
          f"{max(h for h, _ in buyers) / 1024:.1f} KiB at most, attachments {max(a for _, a in buyers) / 1e6:.1f} MB "
          f"at most")


if __name__ == "__main__":
    main()

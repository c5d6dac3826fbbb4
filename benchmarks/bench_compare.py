"""Benchmark side by side: supplier-eval's evaluation, the same delivery metrics in DuckDB SQL and in pandas.

    .venv/bin/python -m pip install -c constraints.txt -e '.[bench]'      # make bench does this
    .venv/bin/python benchmarks/bench_compare.py [--sizes 100000 1000000 10000000] [--render]

For each size the sample-data generator writes one Parquet data folder (suppliers = order lines / 200, so 50,000
at 10M; seed 7; records up to 2026-06-30), once, into ``--work``. Then, on the same files, each engine runs in a
child process of its own, so its wall time, CPU time (user + system, ``os.wait4``) and peak resident memory are
its own (peak memory in GB of 10⁹ bytes, and in GiB of 2³⁰):

- ``supplier-eval``: the evaluation a run does, by the core functions in-process (no Prefect): read the data
  folder, validate it (the run's window), choose every active supplier, metrics (with the records behind them,
  as the reports need), score, decide, store (a new SQLite file). With ``--render`` also the reports and the
  mail (to an outbox folder), timed separately: they grow with the suppliers, not the records.
- ``duckdb``: the shared metrics below in one SQL query over the Parquet files.
- ``pandas``: the same metrics in straightforward vectorised pandas (merge, sort, grouped cumulative sum,
  grouped aggregations; no Python loop over records).

The shared metrics, per active supplier, as of 2026-06-30 over the 365-day window (2025-07-01 to 2026-06-30)
with the shipped rules' 2-day tolerance and no early limit; quantities compared in millionths of a unit:

- ``order_lines``: judged lines, promised in the window with promised date + 2 days ≤ the as-of date;
- ``on_time_lines``: judged lines whose units received by promised date + 2 cover the quantity ordered;
- ``on_time_rate`` = on_time_lines / order_lines;
- ``in_full_rate``: judged lines with no uninspected receipt (by the as-of date) whose accepted units cover the
  order / such lines; null when no judged line has an inspected receipt;
- ``mean_days_late``: over judged lines not on time, max(0, completion date − promised date), the completion
  date being the receipt that brings the running total up to the order, else the last receipt, else the as-of
  date; 0 with no late line;
- ``receipts``: receipts received in the window, whatever the promised date of their line;
- ``ppm_rejected`` = 10⁶ × Σ rejected / Σ (accepted + rejected) over those receipts that were inspected;
  null when they inspected no unit.

The run fails unless all three agree on every supplier (counts exactly, rates to 1e-9). The machine's other
load counts in every figure: compare ratios measured in the same run. With ``--repeat N`` the engines run N
rounds, in turn (the order reversed every other round, so neither always runs first); each figure is then the
median of the rounds (peak: the highest), each ratio the median of the rounds' own ratios, and the rounds'
ratios are listed below the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sample_data import sample_folder  # noqa: E402

AS_OF = date(2026, 6, 30)
WINDOW_DAYS = 365
TOLERANCE_DAYS = 2
WINDOW_START = date(2025, 7, 1)  # AS_OF - WINDOW_DAYS + 1
SHARED = ("order_lines", "on_time_lines", "on_time_rate", "in_full_rate", "mean_days_late", "receipts",
          "ppm_rejected")
COUNTS = ("order_lines", "on_time_lines", "receipts")
ENGINES = ("supplier-eval", "duckdb", "pandas")


def prepare(work: Path, lines: int) -> Path:
    """The Parquet data folder of ``lines`` order lines, generated once (in a child, not measured)."""
    return sample_folder(work, lines, "parquet", AS_OF)


# --- supplier-eval ------------------------------------------------------------------------------------------

def run_supplier_eval(folder: Path, out: Path, render: bool) -> dict[str, float]:
    import uuid

    import polars as pl

    from reports.bundle import AslFollowUp, DataQuality, write_run_reports
    from reports.context import quarantine_summary_with_reasons
    from reports.delivery import Transport
    from reports.outbox import deliver_run_messages
    from rules.asl import overdue_suppliers, schedule, with_asl_facts
    from rules.decide import decide
    from rules.loader import load_rule_set
    from rules.metrics import measure_suppliers, window_start
    from rules.scoring import score_suppliers
    from suppliers.runs import RunRecord, choose_suppliers, code_version, with_current_status
    from suppliers.sources import load_sources
    from suppliers.store import AslResults, Store
    from suppliers.validate import validate_inputs

    steps: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        steps[name] = now - clock
        clock = now

    rule_set = load_rule_set()
    first_day = window_start(AS_OF, WINDOW_DAYS)
    loaded = load_sources(folder, *reads_only())
    lap("load")
    validated = validate_inputs(loaded.raw, as_of=AS_OF, formats=loaded.formats, max_quarantine_share=1.0,
                                window=(first_day, AS_OF), **hands_on(validate_inputs))
    del loaded  # the raw frames are not needed once validated
    lap("validate")
    work = out.parent / f"{out.stem}-work"
    run = RunRecord(run_id=str(uuid.uuid4()), run_key=uuid.uuid4().hex, trigger="adhoc", requested_by="bench",
                    as_of=AS_OF, window_days=WINDOW_DAYS, selection=["*"], rule_set_name=rule_set.name,
                    rule_set_version=rule_set.version, rule_set_hash=rule_set.content_hash,
                    input_fingerprint="bench", code_version=code_version())
    with Store(f"sqlite:///{work / 'store.db'}") as store:
        store.start_run(run)
        history = store.read_history(run_key=run.run_key, run_id=run.run_id, as_of=AS_OF)
        chosen = choose_suppliers(validated.suppliers)
        selected = with_asl_facts(with_current_status(chosen, history.current_statuses), manual=history.manual,
                                  previous_bands=history.recent_bands, nonconformances=validated.nonconformances,
                                  as_of=AS_OF)
        lap("store read")
        performance = measure_suppliers(selected, validated.purchase_order_lines, validated.receipts,
                                        validated.nonconformances, validated.feedback, as_of=AS_OF,
                                        window_days=WINDOW_DAYS, with_records=True,
                                        **handed_on(validated), **rule_set.evaluation.measure_options())
        lap("metrics")
        scored = score_suppliers(selected, performance.metrics, rule_set, as_of=AS_OF)
        decisions = decide(selected, scored, rule_set, previous=history.previous,
                           official_as_of=history.official_as_of, as_of=AS_OF, official=True)
        lap("score+decide")
        quarantine_summary = quarantine_summary_with_reasons(validated.summary, validated.quarantine)
        asl = AslResults.of(decisions, chosen, official=True)
        store.save_results(run.run_key, run.run_id, evaluated=decisions.evaluated, changes=decisions.changes,
                           quarantine_summary=quarantine_summary, as_of=AS_OF, window_start=first_day,
                           rule_set_hash=run.rule_set_hash, approved_by=run.approver, asl=asl)
        lap("store")
        performance.metrics.select("supplier_id", *SHARED).write_parquet(out)
        clock = time.perf_counter()  # writing the comparison file is not the evaluation's
        if render:
            follow_up = store.open_follow_up()
            plan = schedule(validated.suppliers, store.last_scored(as_of=AS_OF), rule_set, as_of=AS_OF)
            reports = write_run_reports(
                work / "reports", run=run, rule_set=rule_set, evaluated=decisions.evaluated,
                changes=decisions.changes, late_lines=performance.late_lines,
                quality=DataQuality(summary=validated.summary, quarantine=validated.quarantine, previous=None,
                                    max_share=1.0, read_from=str(folder)),
                quarantine_summary=quarantine_summary, window_start=first_day,
                follow_up=AslFollowUp(proposals=follow_up.proposals, actions=follow_up.actions,
                                      overdue=overdue_suppliers(plan, validated.suppliers, chosen["supplier_id"])),
                records=performance.records)
            lap("render")
            deliver_run_messages(store, run, reports, sender="bench@example.org", officers=("qm@example.org",),
                                 requested=(), transport=Transport(smtp=None, outbox_dir=work / "outbox"))
            lap("deliver")
        store.finish_run(run.run_id, status="succeeded", evaluations_added=decisions.evaluated.height)
    _ = pl  # imported for its thread pool to start with the process, as in a run
    return steps


# --- DuckDB ---------------------------------------------------------------------------------------------------

DUCKDB_SQL = """
WITH active AS (SELECT supplier_id FROM read_parquet('{suppliers}') WHERE active),
judged AS (
    SELECT l.supplier_id, l.po_id, l.line_no, l.promised_date, l.promised_date + {tolerance} AS deadline,
           CAST(round(l.quantity_ordered * 1e6) AS BIGINT) AS ordered
    FROM read_parquet('{lines}') l SEMI JOIN active USING (supplier_id)
    WHERE l.promised_date BETWEEN DATE '{start}' AND DATE '{as_of}' AND l.promised_date + {tolerance} <= DATE '{as_of}'
),
known AS (
    SELECT po_id, line_no, received_date, CAST(round(quantity_received * 1e6) AS BIGINT) AS received,
           CAST(round(quantity_accepted * 1e6) AS BIGINT) AS accepted,
           quantity_accepted IS NOT NULL AND quantity_rejected IS NOT NULL AS inspected
    FROM read_parquet('{receipts}') WHERE received_date <= DATE '{as_of}'
),
per_receipt AS (
    SELECT j.*, k.received_date, k.received, k.accepted, k.inspected,
           sum(k.received) OVER (PARTITION BY j.po_id, j.line_no ORDER BY k.received_date
                                 ROWS UNBOUNDED PRECEDING) AS so_far
    FROM judged j LEFT JOIN known k USING (po_id, line_no)
),
per_line AS (
    SELECT supplier_id, any_value(promised_date) AS promised_date, any_value(ordered) AS ordered,
           coalesce(sum(received) FILTER (WHERE received_date <= deadline), 0) AS by_deadline,
           coalesce(sum(accepted), 0) AS accepted_total,
           NOT coalesce(bool_or(received_date IS NOT NULL AND NOT inspected), false) AS line_inspected,
           coalesce(bool_or(received_date IS NOT NULL AND inspected), false) AS has_results,
           min(received_date) FILTER (WHERE so_far >= ordered) AS completed,
           max(received_date) AS last_receipt
    FROM per_receipt GROUP BY supplier_id, po_id, line_no
),
delivery AS (
    SELECT supplier_id, count(*) AS order_lines,
           count(*) FILTER (WHERE by_deadline >= ordered) AS on_time_lines,
           avg(CASE WHEN by_deadline >= ordered THEN 1.0 ELSE 0.0 END) AS on_time_rate,
           CASE WHEN bool_or(has_results) THEN
                avg(CASE WHEN accepted_total >= ordered THEN 1.0 ELSE 0.0 END) FILTER (WHERE line_inspected) END
               AS in_full_rate,
           coalesce(avg(greatest(0, coalesce(completed, last_receipt, DATE '{as_of}') - promised_date))
                    FILTER (WHERE by_deadline < ordered), 0.0) AS mean_days_late
    FROM per_line GROUP BY supplier_id
),
quality AS (
    SELECT l.supplier_id, count(*) AS receipts,
           1e6 * sum(r.quantity_rejected)
                 FILTER (WHERE r.quantity_accepted IS NOT NULL AND r.quantity_rejected IS NOT NULL)
             / nullif(sum(r.quantity_accepted + r.quantity_rejected), 0) AS ppm_rejected
    FROM read_parquet('{receipts}') r
    JOIN (SELECT po_id, line_no, supplier_id FROM read_parquet('{lines}') SEMI JOIN active USING (supplier_id)) l
      USING (po_id, line_no)
    WHERE r.received_date BETWEEN DATE '{start}' AND DATE '{as_of}'
    GROUP BY l.supplier_id
)
SELECT a.supplier_id, coalesce(d.order_lines, 0) AS order_lines, coalesce(d.on_time_lines, 0) AS on_time_lines,
       d.on_time_rate, d.in_full_rate, d.mean_days_late, coalesce(q.receipts, 0) AS receipts, q.ppm_rejected
FROM active a LEFT JOIN delivery d USING (supplier_id) LEFT JOIN quality q USING (supplier_id)
"""


def hands_on(validate: object) -> dict[str, object]:
    """Validation hands each receipt's order line on to the metrics and keeps only the columns a run reads, as the
    pipeline asks it to, where the code measured can."""
    import inspect

    parameters = inspect.signature(validate).parameters
    if "with_receipt_lines" not in parameters:
        return {}
    if "columns" not in parameters:
        return {"with_receipt_lines": True}
    from suppliers.runs import RunReading

    return {"with_receipt_lines": True, "columns": RunReading(receipt_lines=True).columns}


def reads_only() -> tuple[object, ...]:
    """The fields a run reads, for ``load_sources``, as the pipeline loads them, where the code measured can."""
    try:
        from suppliers.runs import fields_a_run_reads
    except ImportError:  # the code before runs read only what they use
        return ()
    return (fields_a_run_reads(),)


def handed_on(validated: object) -> dict[str, object]:
    """What the pipeline hands from validation to the metrics, as the code measured has it."""
    return {"receipt_lines": validated.receipt_lines} if hasattr(validated, "receipt_lines") else {}


def run_duckdb(folder: Path, out: Path) -> dict[str, float]:
    import duckdb

    started = time.perf_counter()
    sql = DUCKDB_SQL.format(
        suppliers=folder / "suppliers.parquet", lines=folder / "purchase_order_lines.parquet",
        receipts=folder / "receipts.parquet", start=WINDOW_START, as_of=AS_OF, tolerance=TOLERANCE_DAYS)
    connection = duckdb.connect()
    connection.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet)")
    return {"metrics": time.perf_counter() - started}


# --- pandas ---------------------------------------------------------------------------------------------------

def run_pandas(folder: Path, out: Path) -> dict[str, float]:
    import numpy as np
    import pandas as pd

    started = time.perf_counter()
    as_of, start = pd.Timestamp(AS_OF), pd.Timestamp(WINDOW_START)
    suppliers = pd.read_parquet(folder / "suppliers.parquet", columns=["supplier_id", "active"])
    active = suppliers.loc[suppliers["active"], ["supplier_id"]]
    lines = pd.read_parquet(folder / "purchase_order_lines.parquet",
                            columns=["po_id", "line_no", "supplier_id", "promised_date", "quantity_ordered"])
    lines = lines.merge(active, on="supplier_id")
    receipts = pd.read_parquet(folder / "receipts.parquet", columns=[
        "po_id", "line_no", "received_date", "quantity_received", "quantity_accepted", "quantity_rejected"])
    for frame, column in ((lines, "promised_date"), (receipts, "received_date")):
        frame[column] = pd.to_datetime(frame[column])

    deadline = lines["promised_date"] + pd.Timedelta(days=TOLERANCE_DAYS)
    judged = lines[lines["promised_date"].between(start, as_of) & (deadline <= as_of)].copy()
    judged["deadline"] = judged["promised_date"] + pd.Timedelta(days=TOLERANCE_DAYS)
    judged["ordered"] = (judged["quantity_ordered"] * 1e6).round().astype("int64")
    known = receipts[receipts["received_date"] <= as_of].copy()
    known["received"] = (known["quantity_received"] * 1e6).round().astype("int64")
    known["accepted"] = (known["quantity_accepted"] * 1e6).round()
    known["inspected"] = known["quantity_accepted"].notna() & known["quantity_rejected"].notna()

    keys = ["po_id", "line_no"]
    rows = judged.merge(known[[*keys, "received_date", "received", "accepted", "inspected"]], on=keys, how="left")
    rows = rows.sort_values([*keys, "received_date"], kind="stable")
    has_receipt = rows["received_date"].notna()
    rows["received"] = rows["received"].fillna(0)
    rows["so_far"] = rows.groupby(keys, sort=False)["received"].cumsum()
    rows["by_deadline"] = np.where(rows["received_date"] <= rows["deadline"], rows["received"], 0)
    rows["uninspected"] = has_receipt & ~rows["inspected"].fillna(False).astype(bool)
    rows["with_results"] = has_receipt & rows["inspected"].fillna(False).astype(bool)
    rows["completing"] = rows["received_date"].where(rows["so_far"] >= rows["ordered"])
    per_line = rows.groupby(keys, sort=False).agg(
        supplier_id=("supplier_id", "first"), promised_date=("promised_date", "first"), ordered=("ordered", "first"),
        by_deadline=("by_deadline", "sum"), accepted_total=("accepted", "sum"), uninspected=("uninspected", "any"),
        with_results=("with_results", "any"), completed=("completing", "min"), last_receipt=("received_date", "max"),
    )
    per_line["on_time"] = per_line["by_deadline"] >= per_line["ordered"]
    per_line["in_full"] = (per_line["accepted_total"] >= per_line["ordered"]).astype(float).where(
        ~per_line["uninspected"])
    finished = per_line["completed"].fillna(per_line["last_receipt"]).fillna(as_of)
    per_line["days_late"] = ((finished - per_line["promised_date"]).dt.days.clip(lower=0)).where(~per_line["on_time"])
    delivery = per_line.groupby("supplier_id").agg(
        order_lines=("on_time", "size"), on_time_lines=("on_time", "sum"), on_time_rate=("on_time", "mean"),
        in_full_rate=("in_full", "mean"), has_results=("with_results", "any"), mean_days_late=("days_late", "mean"),
    )
    delivery["in_full_rate"] = delivery["in_full_rate"].where(delivery["has_results"])
    delivery["mean_days_late"] = delivery["mean_days_late"].fillna(0.0)

    in_window = receipts[receipts["received_date"].between(start, as_of)].merge(
        lines[[*keys, "supplier_id"]], on=keys)
    inspected = in_window["quantity_accepted"].notna() & in_window["quantity_rejected"].notna()
    in_window["rejected"] = in_window["quantity_rejected"].where(inspected)
    in_window["units"] = in_window["quantity_accepted"] + in_window["quantity_rejected"]
    quality = in_window.groupby("supplier_id").agg(receipts=("po_id", "size"), rejected=("rejected", "sum"),
                                                   units=("units", "sum"))
    quality["ppm_rejected"] = 1e6 * quality["rejected"] / quality["units"].where(quality["units"] > 0)

    result = active.merge(delivery.reset_index(), on="supplier_id", how="left").merge(
        quality.reset_index(), on="supplier_id", how="left")
    for column in COUNTS:
        result[column] = result[column].fillna(0).astype("int64")
    elapsed = time.perf_counter() - started
    result[["supplier_id", *SHARED]].to_parquet(out)
    return {"metrics": elapsed}


# --- the runs -------------------------------------------------------------------------------------------------

def child(engine: str, folder: Path, out: Path, render: bool) -> None:
    if engine == "supplier-eval":
        steps = run_supplier_eval(folder, out, render)
    elif engine == "duckdb":
        steps = run_duckdb(folder, out)
    else:
        steps = run_pandas(folder, out)
    print(json.dumps(steps))


def measure(engine: str, folder: Path, out: Path, render: bool) -> dict:
    """Run ``engine`` in a child process: its wall and CPU time, peak RSS and step timings."""
    (out.parent / f"{out.stem}-work").mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "--child", engine, str(folder), str(out),
                                "--render" if render else "--no-render"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{engine} failed on {folder}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "peak_gb": usage.ru_maxrss * 1024 / 1e9,
            "steps": json.loads(output.strip().splitlines()[-1])}


def core_seconds(steps: dict[str, float]) -> float:
    """Metrics and scoring: what the issue compares with DuckDB's metrics (DuckDB's one step is its metrics)."""
    return steps.get("metrics", 0.0) + steps.get("score+decide", 0.0)


def evaluation_seconds(steps: dict[str, float]) -> float:
    """The whole evaluation without Prefect: every step but rendering and delivery."""
    return sum(v for k, v in steps.items() if k not in ("render", "deliver"))


def median_result(results: list[dict]) -> dict:
    """The median of several rounds' figures, step by step; the highest peak."""
    steps = {name: statistics.median(r["steps"][name] for r in results) for name in results[0]["steps"]}
    return {"wall": statistics.median(r["wall"] for r in results), "cpu": statistics.median(r["cpu"] for r in results),
            "peak_gb": max(r["peak_gb"] for r in results), "steps": steps}


def disagreements(results: dict[str, Path]) -> list[str]:
    """Where the engines' shared metrics differ, per engine and metric: how many suppliers, and one example."""
    import polars as pl

    reference = pl.read_parquet(results["supplier-eval"])
    found = []
    for engine, path in results.items():
        if engine == "supplier-eval":
            continue
        other = pl.read_parquet(path).cast({c: pl.Int64 for c in COUNTS}).cast(
            {c: pl.Float64 for c in SHARED if c not in COUNTS})
        if sorted(other["supplier_id"]) != sorted(reference["supplier_id"]):
            found.append(f"{engine}: not the same suppliers ({other.height:,} vs {reference.height:,})")
            continue
        both = reference.join(other, on="supplier_id", suffix="_other")
        for metric in SHARED:
            a, b = pl.col(metric), pl.col(f"{metric}_other")
            if metric in COUNTS:
                differs = a != b
            else:
                differs = (a.is_null() != b.is_null()) | ((a - b).abs() > 1e-9 * pl.max_horizontal(a.abs(), 1.0))
            bad = both.filter(differs.fill_null(False))
            if bad.height:
                row = bad.row(0, named=True)
                found.append(f"{engine}: {metric} differs for {bad.height:,} suppliers, e.g. {row['supplier_id']}: "
                             f"{row[metric]} vs {row[f'{metric}_other']}")
    return found


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5] == "--render")
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    parser.add_argument("--render", action="store_true", help="also time rendering the reports and the mail")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "supplier-eval-bench-compare")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every engine, in turn; medians reported")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if "supplier-eval" not in args.engines:
        args.engines.insert(0, "supplier-eval")  # the reference the others are checked against
    print(f"{'lines':>11} {'engine':<14} {'wall s':>7} {'cpu s':>7} {'peak GB':>8} {'GiB':>5} {'metrics s':>10} "
          f"{'vs duckdb':>9}  steps")
    failed = False
    for lines in args.sizes:
        folder = prepare(args.work, lines)
        rounds: list[dict[str, dict]] = []
        problems: list[str] = []
        for turn in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch:
                measured, outputs = {}, {}
                for engine in (args.engines if turn % 2 == 0 else args.engines[::-1]):
                    outputs[engine] = Path(scratch) / f"{engine}.parquet"
                    measured[engine] = measure(engine, folder, outputs[engine], args.render)
                problems += [p for p in disagreements(outputs) if p not in problems]
            rounds.append(measured)
        ratios: dict[str, list[tuple[float, float]]] = {engine: [] for engine in args.engines}
        for measured in rounds:
            duck = measured.get("duckdb", {}).get("steps", {}).get("metrics")
            for engine, result in measured.items():
                if duck:
                    ratios[engine].append((core_seconds(result["steps"]) / duck,
                                           evaluation_seconds(result["steps"]) / duck))
        for engine in args.engines:
            result = median_result([measured[engine] for measured in rounds])
            steps = result["steps"]
            ratio = ""
            if ratios[engine]:
                ratio = f"{statistics.median(r for r, _ in ratios[engine]):5.2f}x" + (
                    f" (evaluation {statistics.median(e for _, e in ratios[engine]):.2f}x)"
                    if engine == "supplier-eval" else "")
            shown = ", ".join(f"{k} {v:.2f}" for k, v in steps.items())
            print(f"{lines:>11,} {engine:<14} {result['wall']:7.2f} {result['cpu']:7.2f} {result['peak_gb']:8.2f} "
                  f"{result['peak_gb'] * 1e9 / 2**30:5.2f} "
                  f"{core_seconds(steps):10.2f} {ratio:>9}  {shown}", flush=True)
        if args.repeat > 1 and ratios["supplier-eval"]:
            print(f"{'':>11} {args.repeat} rounds, medians (peak: the highest); supplier-eval's metrics + scoring / "
                  "DuckDB's, round by round: " + ", ".join(f"{r:.2f}" for r, _ in ratios["supplier-eval"])
                  + "; evaluation / DuckDB's metrics: " + ", ".join(f"{e:.2f}" for _, e in ratios["supplier-eval"]))
        print(f"{'':>11} agreement: " + ("every supplier, every shared metric" if not problems else "NO"))
        for problem in problems:
            print(f"{'':>13}{problem}")
        failed |= bool(problems)
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

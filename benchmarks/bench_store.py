"""Benchmark: score, decide and store for every supplier, alone, from metrics computed once.

    .venv/bin/python benchmarks/bench_store.py [--lines 10000000] [--repeat 3] [--postgres URL]

The inputs of scoring are made once per size and kept in ``--work``: the bench_compare data folder (generated
there if missing), validated and measured as a run does, with every active supplier chosen. Then each step is
timed alone, ``--repeat`` times (best and all shown):

- ``score+decide (first)``: ``score_suppliers`` and ``decide`` with an empty store's history (as bench_compare);
- ``store (first)``: ``Store.save_results`` of those decisions into a new SQLite file;
- ``store read``: ``Store.read_history`` of the store holding that evaluation, a week later;
- ``score+decide (next)``: a week later, every supplier with a previous evaluation (the causes of each change are
  worked out from the stored criteria);
- ``store (next)``: saving that evaluation into a copy of the store holding the first one.

With ``--postgres URL`` (a server URL; the benchmark creates and drops databases named ``bench_store_*`` there)
the two store steps are timed on PostgreSQL as well (the CPU time shown is this process's, not the server's).
Each step shows its best wall time and that run's CPU time (user + system, all threads): the machine's other
load counts in the wall time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from sample_data import sample_folder  # noqa: E402

from reports.context import quarantine_summary_with_reasons  # noqa: E402
from rules.asl import with_asl_facts  # noqa: E402
from rules.decide import Decisions, decide  # noqa: E402
from rules.loader import load_rule_set  # noqa: E402
from rules.metrics import measure_suppliers, window_start  # noqa: E402
from rules.model import RuleSet  # noqa: E402
from rules.scoring import score_suppliers  # noqa: E402
from suppliers.runs import RunRecord, choose_suppliers, code_version, with_current_status  # noqa: E402
from suppliers.store import AslResults, History, Store  # noqa: E402

AS_OF = date(2026, 6, 30)
NEXT = AS_OF + timedelta(days=7)
WINDOW_DAYS = 365


def prepare(work: Path, lines: int, validated_folder: Path | None) -> Path:
    """``work/inputs-<lines>``: the chosen suppliers, their metrics and the quarantine summary, made once.

    From ``validated_folder`` (one Parquet file per record kind, already validated) when given.
    """
    from suppliers.sources import load_sources
    from suppliers.validate import QUARANTINE_SCHEMA, SUMMARY_SCHEMA, ValidatedInputs, validate_inputs

    inputs = work / f"inputs-{lines}"
    if (inputs / ".complete").exists():
        return inputs
    rule_set = load_rule_set()
    if validated_folder is not None:
        frames = {kind: pl.read_parquet(validated_folder / f"{kind}.parquet") for kind in (
            "suppliers", "purchase_order_lines", "receipts", "nonconformances", "feedback")}
        summary = pl.DataFrame([(kind, f"{kind}.parquet", frame.height, 0, 0.0) for kind, frame in frames.items()],
                               schema=SUMMARY_SCHEMA, orient="row")
        validated = ValidatedInputs(**frames, quarantine=pl.DataFrame(schema=QUARANTINE_SCHEMA),
                                    summary=summary)
    else:
        loaded = load_sources(sample_folder(work, lines, "parquet", AS_OF))
        validated = validate_inputs(loaded.raw, as_of=AS_OF, formats=loaded.formats, max_quarantine_share=1.0,
                                    window=(window_start(AS_OF, WINDOW_DAYS), AS_OF))
        del loaded
    chosen = choose_suppliers(validated.suppliers)
    performance = measure_suppliers(chosen, validated.purchase_order_lines, validated.receipts,
                                    validated.nonconformances, validated.feedback, as_of=AS_OF,
                                    window_days=WINDOW_DAYS, **rule_set.evaluation.measure_options())
    inputs.mkdir(parents=True, exist_ok=True)
    chosen.write_parquet(inputs / "chosen.parquet")
    validated.nonconformances.write_parquet(inputs / "nonconformances.parquet")
    performance.metrics.write_parquet(inputs / "metrics.parquet")
    quarantine_summary_with_reasons(validated.summary, validated.quarantine).write_parquet(
        inputs / "quarantine_summary.parquet")
    (inputs / ".complete").write_text("")
    return inputs


def run_record(rule_set: RuleSet, as_of: date) -> RunRecord:
    return RunRecord(run_id=str(uuid.uuid4()), run_key=uuid.uuid4().hex, trigger="adhoc", requested_by="bench",
                     as_of=as_of, window_days=WINDOW_DAYS, selection=["*"], rule_set_name=rule_set.name,
                     rule_set_version=rule_set.version, rule_set_hash=rule_set.content_hash,
                     input_fingerprint="bench", code_version=code_version())


def score_and_decide(inputs: Path, rule_set: RuleSet, history: History, as_of: date) -> Decisions:
    chosen = pl.read_parquet(inputs / "chosen.parquet")
    nonconformances = pl.read_parquet(inputs / "nonconformances.parquet")
    metrics = pl.read_parquet(inputs / "metrics.parquet")
    selected = with_asl_facts(with_current_status(chosen, history.current_statuses), manual=history.manual,
                              previous_bands=history.recent_bands, nonconformances=nonconformances, as_of=as_of)
    started = Clock()
    scored = score_suppliers(selected, metrics, rule_set, as_of=as_of)
    decisions = decide(selected, scored, rule_set, previous=history.previous,
                       official_as_of=history.official_as_of, as_of=as_of, official=True)
    score_and_decide.seconds = started.lap()  # type: ignore[attr-defined]
    return decisions


class Clock:
    """Wall time and this process's CPU time (user + system, every thread) since it was made."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), sum(os.times()[:2])

    def lap(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, sum(os.times()[:2]) - self.cpu


def save(store: Store, run: RunRecord, decisions: Decisions, inputs: Path) -> tuple[float, float]:
    chosen = pl.read_parquet(inputs / "chosen.parquet")
    summary = pl.read_parquet(inputs / "quarantine_summary.parquet")
    asl = AslResults.of(decisions, chosen, official=True)
    store.start_run(run)
    started = Clock()
    added = store.save_results(run.run_key, run.run_id, evaluated=decisions.evaluated, changes=decisions.changes,
                               quarantine_summary=summary, as_of=run.as_of,
                               window_start=window_start(run.as_of, WINDOW_DAYS), rule_set_hash=run.rule_set_hash,
                               approved_by=run.approver, asl=asl)
    seconds = started.lap()
    store.finish_run(run.run_id, status="succeeded", evaluations_added=added)
    assert added == decisions.evaluated.height, (added, decisions.evaluated.height)
    return seconds


def timed(label: str, repeat: int, once: Callable[[], tuple[float, float]]) -> None:
    timings = [once() for _ in range(repeat)]
    wall, cpu = min(timings)
    print(f"  {label:<26} best {wall:6.2f} s wall, {cpu:6.2f} s CPU  "
          f"(runs: {', '.join(f'{w:.2f}' for w, _ in timings)})", flush=True)


def postgres_database(server: str, name: str) -> str:
    """A new, empty database ``name`` on the server; its URL."""
    engine = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sa.engine.make_url(server).set(database=name).render_as_string(hide_password=False)


def bench(inputs: Path, rule_set: RuleSet, repeat: int, postgres: str | None) -> None:
    """Time each step of one size ``repeat`` times (see the module docstring)."""
    counter = iter(range(1_000_000))
    with tempfile.TemporaryDirectory(prefix="bench-store-") as scratch_name:
        scratch = Path(scratch_name)
        with Store(f"sqlite:///{scratch / 'empty.db'}") as empty:
            run = run_record(rule_set, AS_OF)
            blank = empty.read_history(run_key=run.run_key, run_id=run.run_id, as_of=AS_OF)

        def first_decide() -> tuple[float, float]:
            score_and_decide(inputs, rule_set, blank, AS_OF)
            return score_and_decide.seconds  # type: ignore[attr-defined]

        timed("score+decide (first)", repeat, first_decide)
        first = score_and_decide(inputs, rule_set, blank, AS_OF)

        def first_save(url_of: Callable[[int], str]) -> Callable[[], tuple[float, float]]:
            def once() -> tuple[float, float]:
                with Store(url_of(next(counter))) as store:
                    return save(store, run_record(rule_set, AS_OF), first, inputs)
            return once

        timed("store (first, SQLite)", repeat, first_save(lambda n: f"sqlite:///{scratch / f'first-{n}.db'}"))
        baseline = scratch / "baseline.db"
        with Store(f"sqlite:///{baseline}") as store:
            save(store, run_record(rule_set, AS_OF), first, inputs)
        later = run_record(rule_set, NEXT)

        def read() -> tuple[float, float]:
            with Store(f"sqlite:///{baseline}") as store:
                started = Clock()
                store.read_history(run_key=later.run_key, run_id=later.run_id, as_of=NEXT)
                return started.lap()

        timed("store read (SQLite)", repeat, read)
        with Store(f"sqlite:///{baseline}") as store:
            history = store.read_history(run_key=later.run_key, run_id=later.run_id, as_of=NEXT)
        assert history.previous.height == first.evaluated.height

        def next_decide() -> tuple[float, float]:
            score_and_decide(inputs, rule_set, history, NEXT)
            return score_and_decide.seconds  # type: ignore[attr-defined]

        timed("score+decide (next)", repeat, next_decide)
        following = score_and_decide(inputs, rule_set, history, NEXT)

        def next_save() -> tuple[float, float]:
            copy = scratch / f"next-{next(counter)}.db"
            shutil.copyfile(baseline, copy)
            with Store(f"sqlite:///{copy}") as store:
                return save(store, run_record(rule_set, NEXT), following, inputs)

        timed("store (next, SQLite)", repeat, next_save)
        if postgres is None:
            return
        server = postgres

        def database(n: int) -> str:
            return postgres_database(server, f"bench_store_{n}")

        timed("store (first, PostgreSQL)", repeat, first_save(database))

        def next_postgres() -> tuple[float, float]:
            with Store(database(next(counter))) as store:
                save(store, run_record(rule_set, AS_OF), first, inputs)
                return save(store, run_record(rule_set, NEXT), following, inputs)

        timed("store (next, PostgreSQL)", repeat, next_postgres)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, nargs="+", default=[10_000_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "supplier-eval-bench-compare")
    parser.add_argument("--validated", type=Path, help="a folder of already validated Parquet files, one per kind "
                        "(suppliers.parquet, ...), instead of validating the generated data folder")
    parser.add_argument("--postgres", help="a PostgreSQL server URL (postgresql+psycopg://...) to time the store on")
    args = parser.parse_args()
    rule_set = load_rule_set()
    for lines in args.lines:
        inputs = prepare(args.work, lines, args.validated)
        suppliers = pl.scan_parquet(inputs / "chosen.parquet").select(pl.len()).collect().item()
        print(f"{lines:,} order lines, {suppliers:,} suppliers", flush=True)
        bench(inputs, rule_set, args.repeat, args.postgres)


if __name__ == "__main__":
    main()

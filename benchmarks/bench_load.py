"""Benchmark: load, map and validate receipts from a CSV export, next to Polars' and DuckDB's own CSV reads.

The export is the sample-data generator's, written as CSV (``suppliers/generate.py``), with a mapping file that
maps every canonical column by its plain name, as a canonical export is mapped. Receipts are about 1.15x the
order lines, so 5M receipts come with about 4.35M lines. Steps, each timed on its own (best of ``--repeat``,
and their median):

- ``pl.read_csv`` of receipts.csv: every column as text (``infer_schema=False``, the yardstick) and typed;
- ``duckdb`` reading the same file into a table, as text and typed (skipped when duckdb is not installed:
  it is a benchmark-only choice, not a dependency);
- ``read_table``: supplier-eval's reader of a mapping-file source, only the mapped columns (those only typed
  fields use read compact, as ``read_mapped_sources`` reads them);
- mapping: the mapped fields of the receipts from that frame (``_map_record``);
- validation of suppliers, order lines and receipts (cast, Pandera checks, duplicates, references: receipts
  need their order lines), and the receipts' share of it (the same without receipts); of that share, the time
  spent matching receipts to their order lines (timed inside the runs);
- the same validation of the evaluation window only (``validate_inputs(window=...)``), when available;
- end to end: ``read_mapped_sources`` + ``validate_inputs`` of all three kinds.

The issue's target: read + map + validate of the receipts at most 2x ``pl.read_csv(infer_schema=False)``.

    .venv/bin/python benchmarks/bench_load.py [--receipts 5000000] [--repeat 2] [--work /tmp/supplier-eval-bench]

The data is generated once into ``--work`` and reused (generating is not timed).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sample_data import sample_folder  # noqa: E402

from rules.metrics import window_start  # noqa: E402
from suppliers.mapping import load_mapping, read_mapped_sources  # noqa: E402

try:  # how read_mapped_sources maps a source read (before it had a name: the same two steps)
    from suppliers.mapping import _mapped  # noqa: E402
except ImportError:  # pragma: no cover - the code before this benchmark
    from suppliers.mapping import _map_record, _without_blank_rows  # noqa: E402

    def _mapped(kind: str, record: Any, table: Any, fmt: str) -> pl.DataFrame:
        return _map_record(kind, record, _without_blank_rows(table.frame), table.label)
from suppliers.readers import read_table  # noqa: E402
from suppliers.records import RECORDS  # noqa: E402
from suppliers.schemas import empty_frame  # noqa: E402
from suppliers.sources import Source  # noqa: E402
from suppliers.validate import validate_inputs  # noqa: E402

AS_OF = date(2026, 6, 30)
WINDOW_DAYS = 365
KINDS = ("suppliers", "purchase_order_lines", "receipts")
RECEIPTS_PER_LINE = 1.15


def mapping_text() -> str:
    """A mapping file for a canonical export: each source one file, every field its column by name."""
    lines = ["sources:"]
    lines += [f"  {kind}: {{path: {kind}.csv}}" for kind in KINDS]
    lines.append("records:")
    for kind in KINDS:
        lines += [f"  {kind}:", f"    from: {kind}", "    fields:"]
        lines += [f"      {name}: {name}" for name in RECORDS[kind].columns]
    return "\n".join(lines) + "\n"


def prepare(work: Path, receipts: int) -> Path:
    """The data folder for about ``receipts`` receipts, with its mapping file (generated once, in a child)."""
    lines = round(receipts / RECEIPTS_PER_LINE)
    folder = sample_folder(work, lines, "csv", AS_OF)
    (folder / "mapping.yaml").write_text(mapping_text())
    return folder


class Seconds(float):
    """The fastest of several runs, with their median and the median of the process's CPU seconds (user + system,
    every thread): on a machine shared with other work, CPU seconds change less than the time on the clock."""

    median: float
    cpu: float


def best(repeat: int, step: Callable[[], Any]) -> tuple[Seconds, Any]:
    """The fastest of ``repeat`` runs of ``step`` (with their median) and its last result."""
    times, cpu, result = [], [], None
    for _ in range(repeat):
        result = None
        gc.collect()
        started, used = time.perf_counter(), _cpu()
        result = step()
        times.append(time.perf_counter() - started)
        cpu.append(_cpu() - used)
    fastest = Seconds(min(times))
    fastest.median, fastest.cpu = statistics.median(times), statistics.median(cpu)
    return fastest, result


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def matching_share(repeat: int, step: Callable[[], Any]) -> Seconds | None:
    """The seconds of ``repeat`` validations spent matching receipts to their order lines (the reference check,
    the lines set aside for a quarantined receipt, the match handed on), timed inside the run; fastest and median."""
    import suppliers.validate as validation

    names = [name for name in ("_reference", "_lines_with_a_quarantined_receipt", "_receipt_lines")
             if hasattr(validation, name)]  # _receipt_lines: the match handed on to the metrics, where it is made
    if "_reference" not in names:
        return None
    real = {name: getattr(validation, name) for name in names}
    spent = [0.0]

    def timed(name: str) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return real[name](*args, **kwargs)
            finally:
                if name != "_reference" or args[0].kind == "receipts":
                    spent[0] += time.perf_counter() - started
        return run

    times = []
    try:
        for name in names:
            setattr(validation, name, timed(name))
        for _ in range(repeat):
            spent[0] = 0.0
            gc.collect()
            step()
            times.append(spent[0])
    finally:
        for name in names:
            setattr(validation, name, real[name])
    fastest = Seconds(min(times))
    fastest.median, fastest.cpu = statistics.median(times), float("nan")
    return fastest


def duckdb_reads(path: Path, repeat: int) -> dict[str, float]:
    try:
        import duckdb
    except ImportError:
        return {}
    con = duckdb.connect()

    def read(all_text: bool) -> Callable[[], Any]:
        option = ", all_varchar = true" if all_text else ""
        return lambda: con.execute(f"CREATE OR REPLACE TABLE t AS SELECT * FROM read_csv('{path}'{option})")

    text, _ = best(repeat, read(True))
    typed, _ = best(repeat, read(False))
    rows = con.execute("SELECT count(*) FROM t").fetchone()[0]
    con.close()
    assert rows > 0
    return {"text": text, "typed": typed}


def least_any_validation(folder: Path, repeat: int) -> dict[str, Seconds]:
    """What any validation of the receipts must at least do, in plain Polars, each the quickest way we know: parse
    every column to its type (the schema given to ``read_csv``: parsing is the cast; or the text read cast, which
    a validation naming the wrong value does), check that receipt ids are
    unique (as many distinct 64-bit hashes of the id as receipts), and find each receipt's order line (a streaming
    join on a 64-bit hash of po_id and line_no; the lines' keys are read beforehand, not timed). No reasons, no
    quarantine, no check of a hash's collisions: a floor, not a validation."""
    typed = dict(RECORDS["receipts"].schema)
    read, receipts = best(repeat, lambda: pl.read_csv(folder / "receipts.csv", schema=typed))
    as_text = pl.read_csv(folder / "receipts.csv", infer_schema=False)
    # A validation that says which value was wrong keeps the text: it reads text and casts it (a date by its format).
    casts = [pl.col(name).str.to_date("%Y-%m-%d", strict=False) if dtype == pl.Date
             else pl.col(name).cast(dtype, strict=False) for name, dtype in typed.items()]
    cast, _ = best(repeat, partial(as_text.select, casts))
    unique, distinct = best(repeat, lambda: receipts.select(pl.col("receipt_id").hash().n_unique()).item())
    assert distinct == receipts.height
    keys = ["po_id", "line_no"]
    lines = pl.read_csv(folder / "purchase_order_lines.csv", columns=keys,
                        schema_overrides={key: typed[key] for key in keys})

    def match() -> pl.DataFrame:
        key = pl.struct(*keys).hash().alias("key")
        return (receipts.lazy().select(key)
                .join(lines.lazy().select(key, line=pl.int_range(pl.len(), dtype=pl.UInt32)), on="key", how="left")
                .collect(engine="streaming"))

    matched, pairs = best(repeat, match)
    assert pairs.height == receipts.height
    return {"read": read, "cast": cast, "unique": unique, "match": matched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--receipts", type=int, default=5_000_000, help="receipts wanted (lines = receipts / 1.15)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/supplier-eval-bench"))
    args = parser.parse_args()

    folder = prepare(args.work, args.receipts)
    receipts_csv = folder / "receipts.csv"
    mapping = load_mapping(folder / "mapping.yaml")
    rows: list[tuple[str, float | None]] = []

    polars_text, frame = best(args.repeat, lambda: pl.read_csv(receipts_csv, infer_schema=False))
    n_receipts = frame.height
    del frame
    polars_typed, _ = best(args.repeat, lambda: pl.read_csv(receipts_csv, try_parse_dates=True))
    duck = duckdb_reads(receipts_csv, args.repeat)
    least = least_any_validation(folder, args.repeat)

    # read_table and mapping of each kind, as read_mapped_sources does them
    raw: dict[str, tuple[Source, pl.DataFrame]] = {}
    read_times: dict[str, float] = {}
    map_times: dict[str, float] = {}
    try:  # the columns read_mapped_sources reads, and those it reads compact
        from suppliers.mapping import source_columns
        reads = source_columns(mapping)
    except ImportError:  # pragma: no cover - the code before compact reads
        reads = {kind: (tuple(e.column for e in mapping.file.records[kind].fields.values()), ()) for kind in KINDS}
    for kind in KINDS:
        spec, record = mapping.spec(kind), mapping.file.records[kind]
        columns, compact = reads[kind]
        options = {"compact": compact} if compact else {}
        read_times[kind], table = best(args.repeat, partial(read_table, spec, columns=columns, **options))
        map_times[kind], mapped = best(args.repeat, partial(_mapped, kind, record, table, spec.format))
        raw[kind] = (Source(kind=kind, path=Path(table.label), format=spec.format, label=table.label), mapped)
        del table
    formats = {kind: mapping.formats(kind) for kind in KINDS}

    def validate(parts: dict[str, tuple[Source, pl.DataFrame]], **kwargs: Any) -> Callable[[], Any]:
        return lambda: validate_inputs(parts, as_of=AS_OF, formats=formats, max_quarantine_share=1.0, **kwargs)

    validate_all, result = best(args.repeat, validate(raw))
    summary = result.summary
    del result
    no_receipts = {**raw, "receipts": (raw["receipts"][0], empty_frame("receipts").cast(pl.String))}
    validate_lines, _ = best(args.repeat, validate(no_receipts))
    receipts_share = max(validate_all - validate_lines, 0.0)
    matching = matching_share(args.repeat, validate(raw))
    windowed = "window" in inspect.signature(validate_inputs).parameters
    validate_window = None
    if windowed:
        window = (window_start(AS_OF, WINDOW_DAYS), AS_OF)
        validate_window, result = best(args.repeat, validate(raw, window=window))
        window_summary = result.summary
        del result
    del raw, no_receipts
    end_to_end, _ = best(args.repeat, lambda: validate_inputs(
        (loaded := read_mapped_sources(mapping)).raw, as_of=AS_OF, formats=loaded.formats, max_quarantine_share=1.0))

    receipts_total = read_times["receipts"] + map_times["receipts"] + receipts_share
    receipts_median = (read_times["receipts"].median + map_times["receipts"].median
                       + max(validate_all.median - validate_lines.median, 0.0))
    receipts_cpu = (read_times["receipts"].cpu + map_times["receipts"].cpu
                    + max(validate_all.cpu - validate_lines.cpu, 0.0))
    rows = [
        ("pl.read_csv(infer_schema=False), receipts.csv (the yardstick)", polars_text),
        ("pl.read_csv(try_parse_dates=True), typed", polars_typed),
        ("duckdb read_csv(all_varchar) into a table", duck.get("text")),
        ("duckdb read_csv, typed, into a table", duck.get("typed")),
        ("read_table, receipts (mapped columns only)", read_times["receipts"]),
        ("mapping, receipts", map_times["receipts"]),
        ("validation: suppliers + lines + receipts", validate_all),
        ("validation: receipts' share", receipts_share),
        ("  of which matching receipts to their order lines", matching),
        (f"validation of the {WINDOW_DAYS}-day window only", validate_window),
        ("receipts total: read + map + validation share", receipts_total),
        ("read_table + mapping, lines and suppliers",
         sum(read_times[k] + map_times[k] for k in KINDS if k != "receipts")),
        ("end to end: read_mapped_sources + validate_inputs, 3 kinds", end_to_end),
        ("the least any validation does (plain Polars, see least_any_validation):", None),
        ("  read_csv with the receipts' schema (parsing is the cast)", least["read"]),
        ("  or the cast of the text read (to say which value is wrong)", least["cast"]),
        ("  receipt ids unique (on a 64-bit hash)", least["unique"]),
        ("  each receipt's order line (streaming join on a 64-bit hash of the key)", least["match"]),
    ]
    print(f"{n_receipts:,} receipts, {summary['rows_read'][1]:,} order lines, {summary['rows_read'][0]:,} suppliers "
          f"from CSV ({receipts_csv.stat().st_size / 1e6:,.0f} MB receipts.csv); best of {args.repeat}")
    width = max(len(label) for label, _ in rows)
    print(f"{'step':<{width}}  {'seconds':>8}  {'x read_csv':>10}  {'median':>8}  {'CPU s':>8}")
    for label, seconds in rows:
        if seconds is None and label.endswith(":"):
            print(label)
        elif seconds is None:
            print(f"{label:<{width}}  {'—':>8}  {'(not available)':>10}")
        else:
            more = ""
            if isinstance(seconds, Seconds):  # a time measured inside a run has no CPU seconds of its own (nan)
                more = f"{seconds.median:8.2f}  " + (f"{seconds.cpu:8.2f}" if seconds.cpu == seconds.cpu else "")
            print(f"{label:<{width}}  {seconds:8.2f}  {seconds / polars_text:9.2f}x  {more}")
    verdict = "within" if receipts_total <= 2 * polars_text else "OVER"
    print(f"receipts: read + map + validate = {receipts_total / polars_text:.2f}x pl.read_csv: {verdict} the 2x target")
    print(f"the same of the medians: {receipts_median:.2f} s / {polars_text.median:.2f} s = "
          f"{receipts_median / polars_text.median:.2f}x; of the CPU seconds: {receipts_cpu:.2f} / "
          f"{polars_text.cpu:.2f} = {receipts_cpu / polars_text.cpu:.2f}x")
    if matching is not None:
        rest = receipts_total - matching
        print(f"receipts without matching them to their order lines: {rest:.2f} s = {rest / polars_text:.2f}x")
    floor = least["read"] + least["unique"] + least["match"]
    print(f"the least any validation of the receipts does: {floor:.2f} s = {floor / polars_text:.2f}x pl.read_csv")
    floor = polars_text + least["cast"] + least["unique"] + least["match"]
    print(f"the same, reading text and casting it (to name a wrong value): {floor:.2f} s = "
          f"{floor / polars_text:.2f}x pl.read_csv")
    if windowed:
        kept = dict(zip(window_summary["kind"], window_summary["rows_read"], strict=True))
        print(f"window {window[0]} to {window[1]} validates {kept['purchase_order_lines']:,} lines and "
              f"{kept['receipts']:,} receipts of {summary['rows_read'][1]:,} and {n_receipts:,}")


if __name__ == "__main__":
    main()

"""Benchmark: validate 1M purchase-order lines and ~1.2M receipts with a small share of bad rows.

The frames are built in Polars as the CSV reader gives them (every column text), so the figure covers the
whole of validation: casting, Pandera checks, quarantine, duplicates and referential checks. A second
pass feeds typed frames, as a Parquet source gives them.

    .venv/bin/python benchmarks/bench_validate.py [--lines 1000000] [--suppliers 5000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suppliers.sources import Source  # noqa: E402
from suppliers.validate import validate_inputs  # noqa: E402

BAD_SHARE = 0.005  # per kind of defect below, so a few percent of rows in all


def build(n_lines: int, n_suppliers: int, seed: int = 7) -> dict[str, pl.DataFrame]:
    """Typed frames with a few bad values of each kind planted."""
    rng = np.random.default_rng(seed)
    supplier_ids = pl.Series([f"S{i:05d}" for i in range(n_suppliers)])
    suppliers = pl.DataFrame(
        {
            "supplier_id": supplier_ids,
            "name": pl.Series([f"Supplier {i}" for i in range(n_suppliers)]),
            "category": rng.choice(["metal", "plastic", "service"], n_suppliers),
            "criticality": rng.choice(["critical", "major", "minor"], n_suppliers),
            "contact_email": pl.Series([f"sales{i}@supplier{i}.example" for i in range(n_suppliers)]),
            "owner_email": rng.choice(["ann@buyer.example", "bob@buyer.example"], n_suppliers),
            "status": rng.choice(["approved", "conditional", "probation"], n_suppliers),
            "certificate_expiry": pl.date_range(
                pl.date(2025, 1, 1), pl.date(2027, 12, 31), "1d", eager=True
            ).sample(n_suppliers, with_replacement=True, seed=seed),
            "active": rng.random(n_suppliers) < 0.95,
        }
    )

    po = np.arange(n_lines) // 4
    order_day = rng.integers(0, 700, n_lines)
    lines = pl.DataFrame(
        {
            "po_id": po,
            "line_no": (np.arange(n_lines) % 4) + 1,
            "supplier_id": supplier_ids.gather(rng.integers(0, n_suppliers, n_lines)),
            "item_id": rng.integers(0, 50_000, n_lines),
            "category": rng.choice(["metal", "plastic", "service"], n_lines),
            "order_date": order_day,
            "promised_date": order_day + rng.integers(3, 40, n_lines),
            "quantity_ordered": rng.integers(1, 500, n_lines).astype(float),
            "unit_price": rng.random(n_lines).round(2) * 100,
            "currency": rng.choice(["EUR", "USD"], n_lines),
        }
    ).with_columns(
        pl.format("PO{}", "po_id").alias("po_id"),
        pl.format("I{}", "item_id").alias("item_id"),
        (pl.date(2024, 1, 1) + pl.duration(days="order_date")).alias("order_date"),
        (pl.date(2024, 1, 1) + pl.duration(days="promised_date")).alias("promised_date"),
    )

    # ~1.2 receipts per line: every line once, a fifth of them a second time (split delivery).
    second = rng.random(n_lines) < 0.2
    line_index = np.concatenate([np.arange(n_lines), np.flatnonzero(second)])
    n_receipts = len(line_index)
    received = rng.integers(1, 500, n_receipts).astype(float)
    rejected = np.where(rng.random(n_receipts) < 0.05, np.floor(received * 0.1), 0.0)
    picked = lines.select("po_id", "line_no", "order_date").gather(line_index)
    receipts = (
        pl.DataFrame(
            {
                "receipt_id": pl.Series([f"R{i}" for i in range(n_receipts)]),
                "po_id": picked["po_id"],
                "line_no": picked["line_no"],
                "received_date": picked["order_date"],
                "delay": rng.integers(1, 60, n_receipts),
                "quantity_received": received,
                "quantity_accepted": received - rejected,
                "quantity_rejected": rejected,
            }
        )
        .with_columns((pl.col("received_date") + pl.duration(days="delay")).alias("received_date"))
        .drop("delay")
    )
    return {"suppliers": suppliers, "purchase_order_lines": lines, "receipts": receipts}


def as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """What the CSV reader gives: every column as String."""
    return frame.with_columns(pl.all().cast(pl.String))


def plant_defects(frames: dict[str, pl.DataFrame], seed: int = 11) -> dict[str, pl.DataFrame]:
    """Spoil a small share of text cells: bad numbers and dates, ranges, enums, orphans, duplicates."""
    rng = np.random.default_rng(seed)

    def spoil(frame: pl.DataFrame, column: str, value: str | None) -> pl.DataFrame:
        mask = pl.Series(rng.random(frame.height) < BAD_SHARE)
        return frame.with_columns(
            pl.when(mask).then(pl.lit(value, pl.String)).otherwise(pl.col(column)).alias(column)
        )

    lines = frames["purchase_order_lines"]
    for column, value in [
        ("quantity_ordered", "-5"),
        ("order_date", "31/12/2024"),
        ("currency", "euro"),
        ("supplier_id", "S99999"),
        ("unit_price", "n/a"),
        ("item_id", ""),
    ]:
        lines = spoil(lines, column, value)
    receipts = frames["receipts"]
    for column, value in [
        ("quantity_received", "abc"),
        ("quantity_rejected", "100000"),
        ("line_no", "9"),
        ("received_date", "2024-02-30"),
    ]:
        receipts = spoil(receipts, column, value)
    # duplicate receipt ids: copy the id of the previous row
    dup = pl.Series(rng.random(receipts.height) < BAD_SHARE)
    receipts = receipts.with_columns(
        pl.when(dup).then(pl.col("receipt_id").shift(1)).otherwise(pl.col("receipt_id")).alias("receipt_id")
    )
    return {**frames, "purchase_order_lines": lines, "receipts": receipts}


def run(frames: dict[str, pl.DataFrame], label: str) -> float:
    raw = {kind: (Source(kind, Path(f"{kind}.csv"), "csv"), frame) for kind, frame in frames.items()}
    start = time.perf_counter()
    result = validate_inputs(raw, max_quarantine_share=0.5)
    seconds = time.perf_counter() - start
    print(f"{label}: {seconds:.2f} s")
    for row in result.summary.iter_rows(named=True):
        print(
            f"    {row['source']:<26} read {row['rows_read']:>9,}  quarantined {row['rows_quarantined']:>7,}"
            f"  ({row['share']:.2%})"
        )
    print(f"    quarantine rows: {result.quarantine.height:,}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--suppliers", type=int, default=5_000)
    args = parser.parse_args()

    start = time.perf_counter()
    typed = build(args.lines, args.suppliers)
    text = plant_defects({kind: as_text(frame) for kind, frame in typed.items()})
    print(
        f"built {typed['purchase_order_lines'].height:,} lines and {typed['receipts'].height:,} receipts "
        f"in {time.perf_counter() - start:.1f} s"
    )
    run(typed, "typed frames (as from Parquet), clean")
    run(text, "text frames (as from CSV), with defects")


if __name__ == "__main__":
    main()

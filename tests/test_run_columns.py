"""A run loads, validates and holds only the fields it reads; what it leaves out changes no result."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from rules import metrics
from suppliers.errors import SourceError
from suppliers.generate import generate_frames
from suppliers.mapping import load_inputs, load_mapping
from suppliers.records import RECORDS
from suppliers.runs import RunReading, fields_a_run_reads
from suppliers.schemas import CANONICAL
from suppliers.sources import load_sources
from suppliers.validate import SUMMARY_SCHEMA, validate_inputs

AS_OF = date(2026, 6, 30)
WINDOW = (metrics.window_start(AS_OF, 365), AS_OF)
EXAMPLE_MAPPING = Path(__file__).parents[1] / "examples" / "usaid-scms" / "mapping.yaml"


@pytest.fixture(scope="module")
def data() -> dict[str, pl.DataFrame]:
    frames = generate_frames(suppliers=30, lines=3000, seed=11, end_date=AS_OF)
    return {kind: frame for kind, frame in frames.items() if kind in RECORDS}


def _folder(root: Path, data: dict[str, pl.DataFrame], fmt: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for kind, frame in data.items():
        if fmt == "csv":
            frame.write_csv(root / f"{kind}.csv")
        else:
            frame.write_parquet(root / f"{kind}.parquet")
    return root


def test_an_order_lines_own_category_is_the_only_field_a_run_leaves_unread() -> None:
    unread = {(kind, name) for kind, record in RECORDS.items() for name in CANONICAL[kind]
              if name not in fields_a_run_reads()[kind]}
    assert unread == {("purchase_order_lines", "category")}
    kept = RunReading(receipt_lines=True).columns
    assert kept["receipts"] == ("receipt_id", "received_date", "quantity_received", "quantity_accepted",
                                "quantity_rejected")  # each receipt's line is known by its position
    assert RunReading(receipt_lines=False).columns["receipts"] == tuple(CANONICAL["receipts"])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_run_parses_only_the_columns_of_the_fields_it_reads(tmp_path: Path, data, fmt: str) -> None:
    folder = _folder(tmp_path, data, fmt)
    everything, run = load_sources(folder), load_sources(folder, fields_a_run_reads())
    lines_read = run.raw["purchase_order_lines"][1]
    assert "category" in everything.raw["purchase_order_lines"][1].columns
    assert "category" not in lines_read.columns
    assert lines_read.columns == [c for c in everything.raw["purchase_order_lines"][1].columns if c != "category"]
    assert run.fingerprint == everything.fingerprint  # the bytes of the files, whatever is parsed of them


def test_a_missing_column_is_still_named_with_the_one_it_may_be_meant_as(tmp_path: Path, data) -> None:
    """With a field's column not in the file, every column is read: validation can say what is there instead."""
    folder = _folder(tmp_path, {**data, "receipts": data["receipts"].rename({"received_date": "date_received"})},
                     "csv")
    loaded = load_sources(folder, fields_a_run_reads())
    with pytest.raises(SourceError, match=r"receipts.csv: missing column 'received_date' \(found 'date_received'"):
        validate_inputs(loaded.raw, as_of=AS_OF, max_quarantine_share=1.0)


def test_a_repeated_header_is_refused_when_only_some_columns_are_read(tmp_path: Path, data) -> None:
    folder = _folder(tmp_path, data, "csv")
    path = folder / "receipts.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0] + ",receipt_id", *(line + ",X" for line in lines[1:])]) + "\n")
    with pytest.raises(SourceError, match="column 'receipt_id' appears more than once"):
        load_sources(folder, fields_a_run_reads())


def test_validation_returns_the_columns_asked_and_refuses_unknown_ones(tmp_path: Path, data) -> None:
    loaded = load_sources(_folder(tmp_path, data, "parquet"))
    asked = RunReading(receipt_lines=True).columns
    lean = validate_inputs(loaded.raw, as_of=AS_OF, max_quarantine_share=1.0, window=WINDOW, with_receipt_lines=True,
                           columns=asked)
    whole = validate_inputs(loaded.raw, as_of=AS_OF, max_quarantine_share=1.0, window=WINDOW,
                            with_receipt_lines=True)
    for kind in CANONICAL:
        assert getattr(lean, kind).columns == list(asked[kind])
        assert_frame_equal(getattr(lean, kind), getattr(whole, kind).select(asked[kind]))
    with pytest.raises(ValueError, match="receipts.quantity_due"):
        validate_inputs(loaded.raw, as_of=AS_OF, columns={"receipts": ("receipt_id", "quantity_due")})
    with pytest.raises(ValueError, match="need with_receipt_lines=True"):  # the metrics could not find their lines
        validate_inputs(loaded.raw, as_of=AS_OF, columns=RunReading(receipt_lines=True).columns)


@pytest.mark.parametrize("handed_on", [True, False])
def test_the_metrics_of_a_runs_columns_are_those_of_every_column(tmp_path: Path, data, handed_on: bool) -> None:
    """The metrics read no column a run leaves out: from the lean frames, the same metrics, lines and records."""
    folder = _folder(tmp_path, data, "parquet")
    lean_read = load_sources(folder, fields_a_run_reads())
    lean = validate_inputs(lean_read.raw, as_of=AS_OF, max_quarantine_share=1.0, window=WINDOW,
                           with_receipt_lines=handed_on, columns=RunReading(receipt_lines=handed_on).columns)
    whole = validate_inputs(load_sources(folder).raw, as_of=AS_OF, max_quarantine_share=1.0, window=WINDOW,
                            with_receipt_lines=handed_on)

    def measured(inputs) -> metrics.SupplierPerformance:
        return metrics.measure_suppliers(inputs.suppliers, inputs.purchase_order_lines, inputs.receipts,
                                         inputs.nonconformances, inputs.feedback, as_of=AS_OF, window_days=365,
                                         tolerance_days=2, with_records=True, receipt_lines=inputs.receipt_lines)

    got, expected = measured(lean), measured(whole)
    assert expected.late_lines.height > 0 and expected.records.height > 0
    assert_frame_equal(got.metrics, expected.metrics)
    assert_frame_equal(got.late_lines, expected.late_lines)
    assert_frame_equal(got.records, expected.records)


def test_a_mapping_read_for_a_run_maps_only_the_fields_it_reads() -> None:
    mapping = load_mapping(EXAMPLE_MAPPING)
    assert "category" in mapping.file.records["purchase_order_lines"].fields
    for_a_run = mapping.reading_only(fields_a_run_reads())
    assert "category" not in for_a_run.file.records["purchase_order_lines"].fields
    assert for_a_run.file.records["suppliers"] == mapping.file.records["suppliers"]
    assert for_a_run.content_hash == mapping.content_hash  # the run key names the file as written
    loaded = load_inputs(Path("."), EXAMPLE_MAPPING, fields_a_run_reads())
    assert "category" not in loaded.raw["purchase_order_lines"][1].columns


def test_once_measured_a_run_keeps_no_order_line_or_receipt(tmp_path: Path, data) -> None:
    """Rendering reads the suppliers, nonconformances, quarantine and summary: the largest frames are let go of."""
    loaded = load_sources(_folder(tmp_path, data, "parquet"))
    validated = validate_inputs(loaded.raw, as_of=AS_OF, max_quarantine_share=1.0, with_receipt_lines=True)
    kept = validated.measured()
    assert kept.purchase_order_lines.height == kept.receipts.height == 0 and kept.receipt_lines is None
    assert kept.purchase_order_lines.schema == validated.purchase_order_lines.schema
    for name in ("suppliers", "nonconformances", "feedback", "quarantine", "summary"):
        assert getattr(kept, name) is getattr(validated, name)
    assert validated.purchase_order_lines.height > 0  # the inputs measured are not changed


LINES_WITH_A_NOTE = """\
po_id,line_no,supplier_id,item_id,category,order_date,promised_date,quantity_ordered,unit_price,currency,note
P1,1,S1,I1,metal,2026-03-01,2026-03-15,10,2.5,EUR,
P1,1,S1,I1,plastic,2026-03-01,2026-03-15,10,2.5,EUR,
P1,2,S1,I1,metal,2026-03-01,2026-03-15,10,2.5,EUR,
P1,2,S1,I2,metal,2026-03-01,2026-03-15,10,2.5,EUR,
,,,,metal,,,,,,
,,,,,,,,,,a note alone
P2,1,S1,I1,metal,2026-03-01,2026-03-15,-4,2.5,EUR,
"""


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("without", [None, "currency"])
def test_the_same_rows_are_set_aside_for_the_same_reasons_however_many_columns_are_read(
        tmp_path: Path, data, fmt: str, without: str | None) -> None:
    """Two lines that differ only in a field no evaluation reads (category) are exact copies; a line with nothing in
    the fields an evaluation reads (only a category, only a note) is a blank line: whether those columns are read
    (everything, or the run's fields and a file without one of them) or not (the run's fields)."""
    lines = pl.read_csv(LINES_WITH_A_NOTE.encode(), infer_schema=False)
    if without:
        lines = lines.drop(without)
    suppliers = data["suppliers"].head(3).with_columns(supplier_id=pl.Series(["S1", "S2", "S3"]))
    folder = _folder(tmp_path, {"suppliers": suppliers.cast(pl.String) if fmt == "csv" else suppliers,
                                "purchase_order_lines": lines, "receipts": data["receipts"].clear()}, fmt)
    found = []
    for fields in (None, fields_a_run_reads()):
        loaded = load_sources(folder, fields)
        validated = validate_inputs(loaded.raw, as_of=AS_OF, max_quarantine_share=1.0)
        found.append((validated.quarantine.filter(pl.col("kind") == "purchase_order_lines")
                      .select("row", "code", "reason").rows(), validated.summary.rows()))
    everything, a_run = found
    assert a_run == everything
    assert everything[0] == [
        (2, "duplicate_row", "exact copy of row 1"),
        (4, "duplicate_key", "duplicate of row 3"),
        (7, "out_of_range", "quantity_ordered must be > 0"),
    ]  # rows 5 and 6 are blank lines: left out, and not counted as read

    summary = pl.DataFrame(everything[1], schema=SUMMARY_SCHEMA, orient="row")
    assert summary.filter(pl.col("kind") == "purchase_order_lines")["rows_read"].item() == 5


def test_a_field_rows_are_kept_one_per_is_mapped_for_a_run_even_if_no_evaluation_reads_it(tmp_path: Path) -> None:
    """A mapping may keep one row per value of a field a run does not read: the field stays mapped for it."""
    (tmp_path / "lines.csv").write_text("po,line,vendor,due,qty,group,got\nP1,1,S1,2026-03-15,10,metal,2026-03-14\n")
    (tmp_path / "mapping.yaml").write_text("""\
sources:
  lines: {path: lines.csv}
records:
  suppliers:
    from: lines
    one_row_per: [supplier_id]
    fields:
      supplier_id: vendor
      name: vendor
      category: {constant: parts}
      criticality: {constant: minor}
      status: {constant: approved}
      active: {constant: "true"}
  receipts:
    from: lines
    fields:
      receipt_id: po
      po_id: po
      line_no: line
      received_date: got
      quantity_received: qty
  purchase_order_lines:
    from: lines
    one_row_per: [category]
    fields:
      po_id: po
      line_no: line
      supplier_id: vendor
      promised_date: due
      quantity_ordered: qty
      category: group
""")
    fields = load_mapping(tmp_path / "mapping.yaml").reading_only(fields_a_run_reads()).file.records[
        "purchase_order_lines"].fields
    assert set(fields) == {"po_id", "line_no", "supplier_id", "promised_date", "quantity_ordered", "category"}

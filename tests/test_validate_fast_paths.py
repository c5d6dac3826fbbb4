"""The quick ways validation and reading take give what the plain ways give.

- a cell is cast the quick way (the column as it is, one cast of a whole column) unless only clean-and-parse can
  tell: the result, and what is quarantined, is that of cleaning and parsing every cell;
- a key of several columns is matched on its hash and then compared: two keys sharing a hash change nothing;
- the reference check joins its parents a share at a time: the parts give what one join gives;
- a frame's columns are cut into the same chunks, so that selecting columns copies nothing;
- a source read for a mapping reads only the columns the mapping names, and its blank rows are left out once.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import suppliers.mapping
import suppliers.readers
import suppliers.validate
from suppliers.formats import CANONICAL_FORMAT, ColumnFormat, clean_cell, parse_cell
from suppliers.mapping import load_mapping, read_mapped_sources
from suppliers.readers import SourceSpec, aligned, read_table
from suppliers.schemas import CANONICAL
from suppliers.sources import Source
from suppliers.validate import validate_inputs

MESSY_NUMBERS = ["12", " 12", "12 ", "\u00a012", "12.0", "1e3", "-3", "+4", "1,5", "0x10", "inf", "-inf", "nan",
                 "NaN", "", "   ", None, "abc", "9223372036854775808", "1.5", " 2.25 ", "N/A", "-"]
MESSY_DATES = ["2024-01-05", " 2024-01-05", "2024-01-05 ", "2024-1-5", "20240105", "2024-02-30", "5-Jan-24",
               "", "  ", None, "N/A", "2024-01-05T00:00", "\u30002024-01-05"]
MESSY_TEXT = ["R1", " R1", "R1 ", "\tR1", "R1\u00a0", "", "   ", None, "N/A", "r1", "R 1"]
MESSY_FLAGS = ["true", "True", " yes", "NO", "0", "1", "y", "", None, "maybe", "N/A"]


def _column(values: list[str | None], n: int) -> list[str | None]:
    return [values[i % len(values)] for i in range(n)]


def _receipts_text(n: int = 60) -> pl.DataFrame:
    return pl.DataFrame({
        "receipt_id": _column(MESSY_TEXT, n), "po_id": _column(MESSY_TEXT[::-1], n),
        "line_no": _column(MESSY_NUMBERS, n), "received_date": _column(MESSY_DATES, n),
        "quantity_received": _column(MESSY_NUMBERS[::-1], n), "quantity_accepted": _column(MESSY_NUMBERS[3:], n),
        "quantity_rejected": _column(MESSY_NUMBERS[7:], n),
    }, schema=dict.fromkeys(CANONICAL["receipts"], pl.String))


def _expected(kind: str, raw: pl.DataFrame, formats: dict[str, ColumnFormat]) -> tuple[pl.DataFrame, set]:
    """Every cell cleaned and parsed the plain way: the cast rows, and the (row, column, value) that did not parse."""
    schema = CANONICAL[kind]
    numbered = raw.with_row_index("__row__", offset=1).with_columns(pl.col("__row__").cast(pl.Int64))
    cleaned = {c: clean_cell(pl.col(c), raw.schema[c], dtype, formats.get(c, CANONICAL_FORMAT))
               for c, dtype in schema.items()}
    frame = numbered.select(
        "__row__", *[pl.col(c).cast(pl.String).alias(f"_raw_{c}") for c in schema],
        *[cleaned[c].alias(f"_clean_{c}") for c in schema],
    )
    parsed = frame.select(
        "__row__", *[pl.col(f"_raw_{c}") for c in schema], *[pl.col(f"_clean_{c}") for c in schema],
        *[parse_cell(pl.col(f"_clean_{c}"), frame.schema[f"_clean_{c}"], dtype, formats.get(c, CANONICAL_FORMAT))
          .alias(c) for c, dtype in schema.items()],
    )
    blank = parsed.select(pl.all_horizontal([pl.col(f"_clean_{c}").is_null() for c in schema])).to_series()
    parsed = parsed.filter(~blank)
    failed = {
        (row, c, value)
        for c in schema
        for row, value in parsed.filter(pl.col(f"_clean_{c}").is_not_null() & pl.col(c).is_null())
        .select("__row__", f"_raw_{c}").iter_rows()
    }
    return parsed.select("__row__", *schema), failed


def _cast(kind: str, raw: pl.DataFrame, formats: dict[str, ColumnFormat]) -> tuple[pl.DataFrame, set]:
    checked = suppliers.validate._cast_source(kind, raw, f"{kind}.csv", formats)
    failed = {(row, column, value) for part in checked.unparseable
              for row, column, value in part.select("__row__", "column", "value").iter_rows()}
    return checked.cast, failed


WORDS = ColumnFormat(missing_values=("N/A", "-"), values=(("R1", "R-one"), ("12", "13")), default="7")


@pytest.mark.parametrize("formats", [
    pytest.param({}, id="a canonical file"),
    pytest.param({c: WORDS for c in CANONICAL["receipts"]}, id="missing values, a value map and a default"),
    pytest.param({c: ColumnFormat(decimal_char=",", group_char=".", bare_number=False, date_formats=(
        "%d-%b-%y", "%Y-%m-%d")) for c in CANONICAL["receipts"]}, id="number and date formats"),
])
def test_text_cells_cast_the_quick_way_as_cleaning_and_parsing_each_would(formats: dict) -> None:
    raw = _receipts_text()
    cast, failed = _cast("receipts", raw, formats)
    expected, expected_failed = _expected("receipts", raw, formats)
    assert_frame_equal(cast, expected)
    assert failed == expected_failed
    assert failed  # the messy cells do include bad ones


def test_true_false_cells_cast_the_quick_way_as_cleaning_and_parsing_each_would() -> None:
    n = 40
    raw = pl.DataFrame({c: _column(MESSY_TEXT, n) for c in CANONICAL["suppliers"]}).with_columns(
        criticality=pl.lit("major"), status=pl.lit("approved"), active=pl.Series(_column(MESSY_FLAGS, n)),
        certificate_expiry=pl.Series(_column(MESSY_DATES, n)))
    for formats in ({}, {"active": ColumnFormat(true_values=("y", "yes"), false_values=("n", "no"))}):
        cast, failed = _cast("suppliers", raw, formats)
        expected, expected_failed = _expected("suppliers", raw, formats)
        assert_frame_equal(cast, expected)
        assert failed == expected_failed


def test_typed_cells_already_of_their_type_are_taken_as_they_are_and_bad_floats_still_caught() -> None:
    raw = pl.DataFrame({
        "receipt_id": ["R1", "R2", " R3", None], "po_id": ["P1", "P1", "P1", "P1"], "line_no": [1, 2, None, 4],
        "received_date": [date(2024, 1, 5), None, date(2024, 1, 7), date(2024, 1, 8)],
        "quantity_received": [1.5, float("inf"), float("nan"), None],
        "quantity_accepted": [1.0, 2.0, 3.0, 4.0], "quantity_rejected": [0.5, None, 0.0, float("-inf")],
    })
    cast, failed = _cast("receipts", raw, {})
    expected, expected_failed = _expected("receipts", raw, {})
    assert_frame_equal(cast, expected)
    assert failed == expected_failed == {(2, "quantity_received", "inf"), (3, "quantity_received", "NaN"),
                                         (4, "quantity_rejected", "-inf")}
    # a column that needed nothing is the source's own column, not a copy of it
    assert cast.get_column("quantity_accepted").equals(raw.get_column("quantity_accepted"))


# --- references and duplicates


LINES = """\
po_id,line_no,supplier_id,item_id,category,order_date,promised_date,quantity_ordered,unit_price,currency
P1,1,S1,I1,metal,2024-03-01,2024-03-15,100,2.50,EUR
P1,2,S1,I2,metal,2024-03-01,2024-03-20,50,1,EUR
P2,1,S2,I3,metal,2024-03-05,2024-04-15,10,1,EUR
P3,1,S9,I4,metal,2024-03-01,2024-03-10,5,1,EUR
P1,2,S1,I2,metal,2024-03-01,2024-03-20,50,1,EUR
P4,1,S2,I5,metal,2024-03-10,2024-03-30,5,1,EUR
P5,3,S1,I6,metal,2024-03-10,2024-03-30,5,1,EUR
"""
RECEIPTS = """\
receipt_id,po_id,line_no,received_date,quantity_received,quantity_accepted,quantity_rejected
R1,P1,1,2024-03-14,100,98,2
R2,P1,2,2024-03-22,50,50,0
R3,P1,3,2024-03-22,5,5,0
R4,P3,1,2024-03-09,5,5,0
R5,P2,1,2024-03-01,10,10,0
R6,P4,1,2024-03-20,5,5,0
R2,P4,1,2024-03-21,5,5,0
R7,P5,3,2024-03-29,5,5,0
R8,P5,1,2024-03-29,5,5,0
"""
SUPPLIERS = """\
supplier_id,name,category,criticality,contact_email,owner_email,status,certificate_expiry,active
S1,Acme,metal,critical,a@x.example,b@x.example,approved,2026-06-30,true
S2,Bolt,metal,minor,c@x.example,d@x.example,approved,,true
"""


def _inputs() -> dict[str, tuple[Source, pl.DataFrame]]:
    texts = {"suppliers": SUPPLIERS, "purchase_order_lines": LINES, "receipts": RECEIPTS}
    return {kind: (Source(kind, Path(f"{kind}.csv"), "csv"), pl.read_csv(text.encode(), infer_schema=False))
            for kind, text in texts.items()}


def test_keys_sharing_a_hash_and_joins_in_parts_give_what_one_exact_join_gives(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plain = validate_inputs(_inputs(), as_of=date(2024, 6, 30), max_quarantine_share=1.0, with_receipt_lines=True)
    codes = set(plain.quarantine["code"])
    assert {"unknown_line", "reference_quarantined", "duplicate_key", "duplicate_row", "received_before_ordered",
            "unknown_supplier"} <= codes
    # every key of several columns gets the same hash: each match must be told apart by its columns
    monkeypatch.setattr(suppliers.validate, "_key_hash", lambda columns, names: pl.lit(7, pl.UInt64))
    monkeypatch.setattr(suppliers.validate, "_PARENTS_PER_JOIN", 2)  # and the parents are joined two at a time
    collided = validate_inputs(_inputs(), as_of=date(2024, 6, 30), max_quarantine_share=1.0, with_receipt_lines=True)
    assert_frame_equal(collided.quarantine, plain.quarantine)
    assert_frame_equal(collided.receipts, plain.receipts)
    assert_frame_equal(collided.purchase_order_lines, plain.purchase_order_lines)
    # and each receipt is handed on with its own line, not one that shares its hash
    assert plain.receipt_lines.drop_nulls().len() == plain.receipts.height > 0
    assert collided.receipt_lines.to_list() == plain.receipt_lines.to_list()


def test_a_key_column_in_order_with_a_repeat_still_finds_the_repeat() -> None:
    inputs = _inputs()
    source, receipts = inputs["receipts"]
    ordered = receipts.sort("receipt_id")  # R2 twice, next to each other
    inputs["receipts"] = (source, ordered)
    result = validate_inputs(inputs, as_of=date(2024, 6, 30), max_quarantine_share=1.0)
    repeats = result.quarantine.filter(pl.col("kind") == "receipts", pl.col("code") == "duplicate_key")
    assert repeats.select("row", "value").rows() == [(3, "R2")]


# --- frames and sources


def test_aligned_cuts_every_column_into_the_same_chunks_without_changing_a_value() -> None:
    def cut(name: str, values: list) -> pl.Series:  # a column in two chunks, as a reader gives it
        return pl.concat([pl.Series(name, values[:2]), pl.Series(name, values[2:])], rechunk=False)

    frame = pl.DataFrame([cut("a", [1, 2, 3, 4, 5]), cut("b", list("vwxyz")), pl.Series("c", ["k"] * 5)])
    assert len({tuple(frame.get_column(c).chunk_lengths()) for c in frame.columns}) > 1
    result = aligned(frame)
    assert {tuple(result.get_column(c).chunk_lengths()) for c in result.columns} == {(2, 3)}
    assert_frame_equal(result, frame)
    assert result.select("a", "c").n_chunks("all") == [2, 2]  # selecting columns now keeps their chunks


def test_a_row_of_empty_quoted_cells_is_a_blank_row(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b'a,b\n1,2\n"",\n"","  "\n3,\n')
    frame = read_table(SourceSpec(name="s", format="csv", path=path)).frame
    assert frame.select("a", "b", "__row__").rows() == [("1", "2", 1), ("3", None, 4)]


def test_blank_rows_of_a_typed_source_are_left_out_once(tmp_path: Path) -> None:
    frame = pl.DataFrame({
        "n": [1, None, None, 0, None], "t": ["x", None, "  ", None, ""], "b": [None, None, None, None, False],
        "__file__": "f.parquet", "__row__": [1, 2, 3, 4, 5],
    })
    assert suppliers.mapping._without_blank_rows(frame)["__row__"].to_list() == [1, 4, 5]


def test_a_mapped_source_is_read_for_the_columns_the_mapping_names_only(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "export.csv").write_text(
        "Vendor,Unused,Notes\nAcme,1,x\n", encoding="utf-8")
    (tmp_path / "mapping.yaml").write_text(
        "sources:\n  export: {path: export.csv}\nrecords:\n"
        "  suppliers:\n    from: export\n    fields: {supplier_id: Vendor, name: Vendor, category: {constant: c},"
        " criticality: {constant: major}, status: {constant: approved}, active: {constant: true}}\n"
        "  purchase_order_lines:\n    from: export\n    fields: {po_id: Vendor, line_no: {constant: 1},"
        " supplier_id: Vendor, promised_date: {constant: '2024-01-01'}, quantity_ordered: {constant: 1}}\n"
        "  receipts:\n    from: export\n    fields: {receipt_id: Vendor, po_id: Vendor, line_no: {constant: 1},"
        " received_date: {constant: '2024-01-01'}, quantity_received: {constant: 1}}\n",
        encoding="utf-8")
    asked: list[tuple[str, ...] | None] = []
    real = suppliers.readers.read_table

    def spy(spec: SourceSpec, *, columns: tuple[str, ...] | None = None) -> suppliers.readers.RawTable:
        asked.append(columns)
        return real(spec, columns=columns)

    monkeypatch.setattr(suppliers.readers, "read_table", spy)
    loaded = read_mapped_sources(load_mapping(tmp_path / "mapping.yaml"))
    assert asked == [("Vendor",)]
    assert all("Unused" not in frame.columns for _, frame in loaded.raw.values())

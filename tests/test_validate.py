"""Sources, schemas and validation with quarantine.

Every fixture is a tiny CSV written here, line by line, so a row number in an assertion is the line number
in the file minus the header.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pytest

import suppliers.validate
from suppliers.errors import DataQualityError, SourceError
from suppliers.files import spreadsheet_safe
from suppliers.schemas import CANONICAL, MODELS
from suppliers.sources import Source, discover_sources, fingerprint_sources, read_source
from suppliers.validate import (
    QUARANTINE_CODES,
    QUARANTINE_SCHEMA,
    SUMMARY_SCHEMA,
    reason_family,
    validate_frame,
    validate_inputs,
)

SUPPLIERS = """\
supplier_id,name,category,criticality,contact_email,owner_email,status,certificate_expiry,active
S1,Acme Metals,metal,critical,sales@acme.example,ann@buyer.example,approved,2026-06-30,true
S2,Bolt & Co,metal,minor,sales@bolt.example,bob@buyer.example,conditional,,Yes
S3,Cog Plastics,plastic,huge,sales@cog.example,ann@buyer.example,approved,2026-01-01,true
"""

LINES = """\
po_id,line_no,supplier_id,item_id,category,order_date,promised_date,quantity_ordered,unit_price,currency
P1,1,S1,I1,metal,2024-03-01,2024-03-15,100,2.50,EUR
P1,2,S1,I2,metal,2024-03-01,2024-03-20,50,1,EUR
P2,1,S2,I3,metal,31/03/2024,2024-04-15,10,1,EUR
P3,1,S2,I4,metal,2024-03-01,2024-03-10,-5,1,EUR
P4,1,S2,I5,metal,2024-03-10,2024-03-01,5,1,EUR
P5,1,S2,I9,metal,2024-03-01,,5,1,EUR
P1,1,S1,I1,metal,2024-03-01,2024-03-15,90,2.50,EUR
P6,1,S9999,I6,metal,2024-03-01,2024-03-10,5,1,EUR
P7,1,S3,I7,plastic,2024-03-01,2024-03-10,5,1,EUR
P8,1,S2,I8,metal,2024-03-01,2024-03-10,0,-1,eur
"""

RECEIPTS = """\
receipt_id,po_id,line_no,received_date,quantity_received,quantity_accepted,quantity_rejected
R1,P1,1,2024-03-14,100,98,2
R2,P1,2,2024-03-22,50,50,0
R3,P1,3,2024-03-22,5,5,0
R4,P3,1,2024-03-09,5,5,0
R5,P1,1,2024-03-15,10,8,5
R6,P1,1,2024-03-16,abc,1,0
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def load(folder: Path, **kwargs):
    sources = discover_sources(folder)
    return validate_inputs({kind: (src, read_source(src)[0]) for kind, src in sources.items()}, **kwargs)


def rows_of(quarantine: pl.DataFrame) -> set[tuple]:
    return set(quarantine.select("source", "row", "column", "value", "reason").iter_rows())


@pytest.fixture(scope="module")
def messy(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("messy")
    write(folder, "suppliers.csv", SUPPLIERS)
    write(folder, "purchase_order_lines.csv", LINES)
    write(folder, "receipts.csv", RECEIPTS)
    return folder


@pytest.fixture(scope="module")
def result(messy):
    return load(messy, max_quarantine_share=1.0)


# --- good rows and quarantine


def test_good_rows_survive_in_canonical_dtypes_and_order(result):
    for kind in ("suppliers", "purchase_order_lines", "receipts", "nonconformances", "feedback"):
        assert getattr(result, kind).schema == pl.Schema(CANONICAL[kind]), kind
    assert result.suppliers.rows() == [
        (
            "S1",
            "Acme Metals",
            "metal",
            "critical",
            "sales@acme.example",
            "ann@buyer.example",
            "approved",
            dt.date(2026, 6, 30),
            True,
        ),
        (
            "S2",
            "Bolt & Co",
            "metal",
            "minor",
            "sales@bolt.example",
            "bob@buyer.example",
            "conditional",
            None,
            True,
        ),
    ]
    # P1/1 is left out too: two of its receipts (rows 5 and 6) are quarantined, so its delivery cannot be judged
    assert result.purchase_order_lines.select("po_id", "line_no").rows() == [("P1", 2)]
    assert result.purchase_order_lines.row(0) == (  # P1,2,S1,I2,metal,2024-03-01,2024-03-20,50,1,EUR
        "P1",
        2,
        "S1",
        "I2",
        "metal",
        dt.date(2024, 3, 1),
        dt.date(2024, 3, 20),
        50.0,
        1.0,
        "EUR",
    )
    assert result.receipts.get_column("receipt_id").to_list() == ["R1", "R2"]
    assert result.quarantine.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert result.summary.schema == pl.Schema(SUMMARY_SCHEMA)


@pytest.mark.parametrize(
    "expected",
    [
        pytest.param(
            ("purchase_order_lines.csv", 3, "order_date", "31/03/2024", "not a date (expected YYYY-MM-DD)"),
            id="cast failure keeps the original text",
        ),
        pytest.param(
            ("purchase_order_lines.csv", 4, "quantity_ordered", "-5", "quantity_ordered must be > 0"),
            id="range",
        ),
        pytest.param(
            ("suppliers.csv", 3, "criticality", "huge", "criticality must be one of critical, major, minor"),
            id="enumeration",
        ),
        pytest.param(
            (
                "purchase_order_lines.csv",
                5,
                "promised_date",
                "promised_date=2024-03-01, order_date=2024-03-10",
                "promised_date is before order_date",
            ),
            id="cross-column dates",
        ),
        pytest.param(
            (
                "receipts.csv",
                5,
                "quantity_accepted",
                "quantity_accepted=8, quantity_rejected=5, quantity_received=10",
                "quantity_accepted + quantity_rejected differs from quantity_received",
            ),
            id="cross-column quantities",
        ),
        pytest.param(
            ("purchase_order_lines.csv", 6, "promised_date", None, "required value is missing"),
            id="missing required value",
        ),
        pytest.param(
            ("purchase_order_lines.csv", 7, "po_id, line_no", "P1, 1", "duplicate of row 1"),
            id="duplicate key",
        ),
        pytest.param(
            (
                "purchase_order_lines.csv",
                8,
                "supplier_id",
                "S9999",
                "unknown supplier_id 'S9999' (not in suppliers.csv)",
            ),
            id="unknown supplier",
        ),
        pytest.param(
            (
                "purchase_order_lines.csv",
                9,
                "supplier_id",
                "S3",
                "supplier_id 'S3' is quarantined in suppliers.csv",
            ),
            id="supplier that was quarantined",
        ),
        pytest.param(
            (
                "receipts.csv",
                3,
                "po_id, line_no",
                "P1, 3",
                "unknown purchase order line: po_id 'P1' line_no 3 (not in purchase_order_lines.csv)",
            ),
            id="receipt for unknown line",
        ),
        pytest.param(
            (
                "receipts.csv",
                4,
                "po_id, line_no",
                "P3, 1",
                "purchase order line po_id 'P3' line_no 1 is quarantined in purchase_order_lines.csv",
            ),
            id="receipt for quarantined line",
        ),
        pytest.param(("receipts.csv", 6, "quantity_received", "abc", "not a number"), id="not a number"),
    ],
)
def test_bad_row_is_quarantined_with_file_row_column_value_and_reason(result, expected):
    assert expected in rows_of(result.quarantine)


@pytest.mark.parametrize(
    ("source", "row", "column", "code"),
    [
        ("purchase_order_lines.csv", 3, "order_date", "unparseable"),
        ("receipts.csv", 6, "quantity_received", "unparseable"),
        ("purchase_order_lines.csv", 4, "quantity_ordered", "out_of_range"),
        ("suppliers.csv", 3, "criticality", "not_allowed"),
        ("purchase_order_lines.csv", 10, "currency", "bad_format"),
        ("purchase_order_lines.csv", 5, "promised_date", "promised_before_ordered"),
        ("receipts.csv", 5, "quantity_accepted", "quantities_do_not_add_up"),
        ("purchase_order_lines.csv", 7, "po_id, line_no", "duplicate_key"),
        ("purchase_order_lines.csv", 8, "supplier_id", "unknown_supplier"),
        ("purchase_order_lines.csv", 9, "supplier_id", "reference_quarantined"),
        ("receipts.csv", 3, "po_id, line_no", "unknown_line"),
        ("receipts.csv", 4, "po_id, line_no", "reference_quarantined"),
    ],
)
def test_a_quarantined_row_carries_the_code_of_its_reason(result, source, row, column, code):
    at = result.quarantine.filter((pl.col("source") == source) & (pl.col("row") == row) & (pl.col("column") == column))
    assert at.get_column("code").to_list() == [code]


def test_every_code_is_of_the_vocabulary_and_the_vocabulary_is_the_documented_table(result):
    assert set(result.quarantine.get_column("code")) <= set(QUARANTINE_CODES)
    assert result.quarantine.get_column("code").null_count() == 0
    documented = re.findall(r"^``([a-z_]+)``", suppliers.validate.__doc__ or "", flags=re.MULTILINE)
    assert documented == list(dict.fromkeys(documented)), "a code is documented twice"
    assert set(documented) == set(QUARANTINE_CODES), (
        "the table of reason codes in suppliers/validate.py's docstring differs from QUARANTINE_CODES"
    )


def test_reason_family_folds_row_numbers_of_duplicates_and_copies():
    quarantine = pl.DataFrame(
        {
            "column": ["supplier_id", "supplier_id", "receipt_id"],
            "reason": ["duplicate of row 3", "exact copy of row 12", "exact copy of row 4"],
        }
    )
    assert quarantine.select(reason_family()).to_series().to_list() == [
        "supplier_id: duplicate of an earlier row",
        "supplier_id: exact copy of an earlier row",
        "receipt_id: exact copy of an earlier row",
    ]


def test_row_with_several_problems_gives_each_reason_but_counts_once(result):
    row10 = result.quarantine.filter((pl.col("source") == "purchase_order_lines.csv") & (pl.col("row") == 10))
    assert sorted(row10.get_column("reason").to_list()) == [
        "currency must be a 3-letter upper-case currency code (e.g. EUR)",
        "quantity_ordered must be > 0",
        "unit_price must be >= 0",
    ]
    lines = result.summary.filter(pl.col("kind") == "purchase_order_lines").row(0, named=True)
    assert lines["rows_quarantined"] == 9  # rows 3..10, row 10 once despite three reasons, and row 1 (its receipts)


def test_a_cast_failure_is_not_also_reported_as_missing(result):
    row3 = result.quarantine.filter((pl.col("source") == "purchase_order_lines.csv") & (pl.col("row") == 3))
    assert row3.select("column", "reason").rows() == [("order_date", "not a date (expected YYYY-MM-DD)")]


def test_summary_counts_rows_read_and_distinct_rows_quarantined(result):
    summary = {r["source"]: r for r in result.summary.iter_rows(named=True)}
    assert set(summary) == {"suppliers.csv", "purchase_order_lines.csv", "receipts.csv"}
    assert (summary["suppliers.csv"]["rows_read"], summary["suppliers.csv"]["rows_quarantined"]) == (3, 1)
    assert (
        summary["purchase_order_lines.csv"]["rows_read"],
        summary["purchase_order_lines.csv"]["rows_quarantined"],
    ) == (10, 9)
    assert (summary["receipts.csv"]["rows_read"], summary["receipts.csv"]["rows_quarantined"]) == (6, 4)
    assert summary["receipts.csv"]["share"] == pytest.approx(4 / 6)
    # every quarantined row is gone from the good rows, every other row is there
    assert result.receipts.height == 6 - 4


def test_validate_frame_alone_trims_text_reads_booleans_and_drops_extra_columns():
    raw = pl.DataFrame(
        {
            "supplier_id": ["  S1 ", "S2", "S3", "S4"],
            "name": ["A", "B", "C", "D"],
            "category": ["x"] * 4,
            "criticality": ["major"] * 4,
            "contact_email": ["a@x.example", "b@x.example", "not-an-email", "d@x.example"],
            "owner_email": ["o@x.example"] * 4,
            "status": ["approved"] * 4,
            "certificate_expiry": [" 2025-01-31 ", "", None, "2025-02-30"],
            "active": ["TRUE", "no", "1", "maybe"],
            "erp_internal_code": ["z"] * 4,
        }
    )
    good, quarantine = validate_frame("suppliers", raw, "suppliers.csv")
    assert good.columns == list(CANONICAL["suppliers"])
    assert good.select("supplier_id", "certificate_expiry", "active").rows() == [
        ("S1", dt.date(2025, 1, 31), True),
        ("S2", None, False),
    ]
    assert quarantine.select("row", "column", "value", "reason").rows() == [
        (3, "contact_email", "not-an-email", "contact_email is not a valid email address"),
        (4, "certificate_expiry", "2025-02-30", "not a date (expected YYYY-MM-DD)"),
        (4, "active", "maybe", "not a true/false value (expected true, false, yes, no, 1 or 0)"),
    ]


def test_blank_lines_are_skipped_and_row_numbers_still_match_the_file(tmp_path):
    text = RECEIPTS.splitlines()
    body = "\n".join([text[0], text[1], "", text[2], "   ", "R9,P1,2,2024-03-22,0,0,0", "", ""]) + "\n"
    path = write(tmp_path, "receipts.csv", body)
    frame, _ = read_source(Source("receipts", path, "csv"))
    good, quarantine = validate_frame("receipts", frame, path.name)
    assert good.get_column("receipt_id").to_list() == ["R1", "R2"]
    # R9 is on file line 6, so data row 5: the blank and the whitespace-only lines still count
    assert quarantine.select("row", "column", "value", "reason").rows() == [
        (5, "quantity_received", "0", "quantity_received must be > 0")
    ]


def test_optional_sources_are_checked_against_suppliers(tmp_path):
    write(tmp_path, "suppliers.csv", SUPPLIERS)
    write(tmp_path, "purchase_order_lines.csv", LINES)
    write(tmp_path, "receipts.csv", RECEIPTS)
    write(
        tmp_path,
        "nonconformances.csv",
        """\
ncr_id,supplier_id,raised_date,severity,closed_date
N1,S1,2024-03-01,major,
N2,S1,2024-03-01,minor,2024-02-01
N3,S404,2024-03-01,critical,2024-03-05
N1,S2,2024-03-02,minor,
""",
    )
    write(
        tmp_path,
        "feedback.csv",
        "supplier_id,date,score\nS1,2024-03-01,4\nS2,2024-03-01,6\nS2,2024-03-02,1.5\n",
    )
    result = load(tmp_path, max_quarantine_share=1.0)
    assert result.nonconformances.select("ncr_id", "closed_date").rows() == [("N1", None)]
    assert result.feedback.rows() == [("S1", dt.date(2024, 3, 1), 4)]
    got = rows_of(result.quarantine)
    assert (
        "nonconformances.csv",
        2,
        "closed_date",
        "closed_date=2024-02-01, raised_date=2024-03-01",
        "closed_date is before raised_date",
    ) in got
    assert (
        "nonconformances.csv",
        3,
        "supplier_id",
        "S404",
        "unknown supplier_id 'S404' (not in suppliers.csv)",
    ) in got
    assert ("nonconformances.csv", 4, "ncr_id", "N1", "duplicate of row 1") in got
    assert ("feedback.csv", 2, "score", "6", "score must be between 1 and 5") in got
    assert ("feedback.csv", 3, "score", "1.5", "not a whole number") in got


def test_optional_sources_absent_give_empty_frames_with_canonical_schema(tmp_path):
    write(tmp_path, "suppliers.csv", SUPPLIERS)
    write(tmp_path, "purchase_order_lines.csv", LINES)
    write(tmp_path, "receipts.csv", RECEIPTS)
    assert set(discover_sources(tmp_path)) == {"suppliers", "purchase_order_lines", "receipts"}
    result = load(tmp_path, max_quarantine_share=1.0)
    for kind in ("nonconformances", "feedback"):
        frame = getattr(result, kind)
        assert frame.height == 0
        assert frame.schema == pl.Schema(CANONICAL[kind])
    assert set(result.summary.get_column("kind")) == {"suppliers", "purchase_order_lines", "receipts"}


def test_parquet_source_is_read_as_stored_and_validated(tmp_path):
    write(tmp_path, "suppliers.csv", SUPPLIERS)
    write(
        tmp_path,
        "receipts.csv",
        "receipt_id,po_id,line_no,received_date,quantity_received,"
        "quantity_accepted,quantity_rejected\nR1,P1,1,2024-03-14,100,100,0\n",
    )
    pl.DataFrame(
        {
            "po_id": ["P1", "P2", "P3"],
            "line_no": pl.Series([1, 1, 1], dtype=pl.Int32),
            "supplier_id": ["S1", "S2", "S1"],
            "item_id": [101, 102, 103],  # a text column stored as numbers
            "category": ["metal"] * 3,
            "order_date": [dt.datetime(2024, 3, 1, 8, 30)] * 3,
            "promised_date": [dt.date(2024, 3, 15)] * 3,
            "quantity_ordered": [100.0, float("nan"), 3.0],
            "unit_price": [2.5, 1.0, 1.0],
            "currency": ["EUR"] * 3,
        }
    ).write_parquet(tmp_path / "purchase_order_lines.parquet")
    sources = discover_sources(tmp_path)
    assert sources["purchase_order_lines"].format == "parquet"
    result = load(tmp_path, max_quarantine_share=1.0)
    assert result.purchase_order_lines.schema == pl.Schema(CANONICAL["purchase_order_lines"])
    assert result.purchase_order_lines.select("po_id", "line_no", "item_id", "order_date").rows() == [
        ("P1", 1, "101", dt.date(2024, 3, 1)),
        ("P3", 1, "103", dt.date(2024, 3, 1)),
    ]
    assert rows_of(result.quarantine.filter(pl.col("kind") == "purchase_order_lines")) == {
        ("purchase_order_lines.parquet", 2, "quantity_ordered", "NaN", "not a number")
    }


# --- bad sources


def test_missing_required_file_names_the_folder_and_the_expected_file(tmp_path):
    write(tmp_path, "suppliers.csv", SUPPLIERS)
    write(tmp_path, "purchase_order_lines.csv", LINES)
    write(tmp_path, "receipt.csv", RECEIPTS)
    with pytest.raises(SourceError) as caught:
        discover_sources(tmp_path)
    message = str(caught.value)
    assert str(tmp_path) in message
    assert "receipts.csv (or receipts.parquet)" in message
    assert "found 'receipt.csv'" in message


def test_missing_data_folder_is_a_source_error(tmp_path):
    with pytest.raises(SourceError, match="data folder not found"):
        discover_sources(tmp_path / "nowhere")


def test_both_csv_and_parquet_for_one_kind_is_a_source_error(tmp_path):
    write(tmp_path, "suppliers.csv", SUPPLIERS)
    pl.read_csv(tmp_path / "suppliers.csv").write_parquet(tmp_path / "suppliers.parquet")
    with pytest.raises(SourceError, match="both suppliers.csv and suppliers.parquet"):
        discover_sources(tmp_path)


def test_missing_column_names_the_file_the_column_and_a_close_match(tmp_path):
    write(
        tmp_path,
        "suppliers.csv",
        SUPPLIERS.replace(",status,", ",state,").replace(",active", ",is_active"),
    )
    write(tmp_path, "purchase_order_lines.csv", LINES)
    write(tmp_path, "receipts.csv", RECEIPTS)
    with pytest.raises(SourceError) as caught:
        load(tmp_path)
    message = str(caught.value)
    assert message.startswith(
        "suppliers.csv: missing columns 'status' (found 'state' — did you mean it?), "
        "'active' (found 'is_active' — did you mean it?)"
    )
    assert "rename the column" in message
    assert "\n" not in message


def test_file_that_is_not_utf8_is_a_source_error_naming_file_and_line(tmp_path):
    path = tmp_path / "suppliers.csv"
    path.write_bytes(SUPPLIERS.replace("Bolt & Co", "Bölt & Co").encode("latin-1"))
    with pytest.raises(SourceError) as caught:
        read_source(Source("suppliers", path, "csv"))
    message = str(caught.value)
    assert message.startswith("suppliers.csv: is not UTF-8 text (byte 0xf6 on line 3)")
    assert "UTF-8" in caught.value.fix


def test_empty_file_is_a_source_error(tmp_path):
    path = write(tmp_path, "receipts.csv", "")
    with pytest.raises(SourceError, match=r"^receipts.csv: the file is empty"):
        read_source(Source("receipts", path, "csv"))


def test_ragged_csv_is_a_source_error(tmp_path):
    path = write(tmp_path, "receipts.csv", RECEIPTS + "R7,P1,1,2024-03-16,1,1,0,surplus\n")
    with pytest.raises(SourceError, match=r"^receipts.csv: cannot be read as CSV"):
        read_source(Source("receipts", path, "csv"))


# --- threshold


def test_quarantine_share_over_threshold_stops_the_run_with_the_file_share_and_reasons(messy):
    with pytest.raises(DataQualityError) as caught:
        load(messy)  # default threshold 0.2; lines are 80% bad, receipts 67%, suppliers 33%
    error = caught.value
    message = str(error)
    assert error.where == "purchase_order_lines.csv"
    assert "90.0% of rows quarantined (9 of 10), over the 20.0% threshold" in message
    assert "top reasons:" in message and "quantity_ordered must be > 0 (2)" in message
    assert "receipts.csv" in message and "suppliers.csv" in message
    assert "validation.max_quarantine_share" in error.fix
    assert error.quarantine.height >= 8  # kept for the data-quality report of the failed run


def test_quarantine_over_threshold_is_written_before_the_error_is_raised(messy, tmp_path):
    target = tmp_path / "reports" / "failed-run" / "quarantine.csv"
    with pytest.raises(DataQualityError) as caught:
        load(messy, quarantine_path=target)
    error = caught.value
    assert f"the rows are listed in {target}" in error.fix
    assert "validation.max_quarantine_share" in error.fix
    assert error.summary.schema == pl.Schema(SUMMARY_SCHEMA)
    written = pl.read_csv(target, schema=QUARANTINE_SCHEMA)
    # the full quarantine, every source, not just the worst one, made safe to open in a spreadsheet
    assert written.equals(spreadsheet_safe(error.quarantine))
    assert set(written.get_column("source")) == {"suppliers.csv", "purchase_order_lines.csv", "receipts.csv"}
    assert [p.name for p in target.parent.iterdir()] == ["quarantine.csv"]  # no partial file left behind


def test_quarantine_under_threshold_is_not_written(messy, tmp_path):
    target = tmp_path / "quarantine.csv"
    load(messy, max_quarantine_share=0.9, quarantine_path=target)
    assert not target.exists()


def test_quarantine_that_cannot_be_written_still_raises_the_data_quality_error(messy, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(DataQualityError) as caught:
        load(messy, quarantine_path=blocker / "quarantine.csv")
    assert "could not be listed in" in caught.value.fix
    assert caught.value.quarantine.height >= 8


def test_quarantine_share_under_threshold_lets_the_run_go_on(messy):
    result = load(messy, max_quarantine_share=0.9)
    assert result.purchase_order_lines.height == 1


# --- fingerprint and dataframe-level checks


def test_read_source_returns_the_digest_of_the_bytes_it_parsed(tmp_path):
    path = write(tmp_path, "receipts.csv", RECEIPTS)
    frame, digest = read_source(Source("receipts", path, "csv"))
    assert digest == hashlib.sha256(RECEIPTS.encode()).hexdigest()
    assert frame.height == 6 and frame.dtypes == [pl.String] * 7

    parquet = tmp_path / "feedback.parquet"
    pl.DataFrame({"supplier_id": ["S1"], "date": [dt.date(2024, 3, 1)], "score": [4]}).write_parquet(parquet)
    frame, digest = read_source(Source("feedback", parquet, "parquet"))
    assert digest == hashlib.sha256(parquet.read_bytes()).hexdigest()
    assert frame.rows() == [("S1", dt.date(2024, 3, 1), 4)]


def test_read_source_reads_the_file_once(tmp_path, monkeypatch):
    path = write(tmp_path, "receipts.csv", RECEIPTS)
    reads: list[Path] = []
    original = Path.read_bytes

    def counting(self: Path) -> bytes:
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counting)
    read_source(Source("receipts", path, "csv"))
    assert reads == [path]


def test_fingerprint_combines_the_digests_of_what_was_read(tmp_path):
    write(tmp_path, "suppliers.csv", SUPPLIERS)
    write(tmp_path, "purchase_order_lines.csv", LINES)
    write(tmp_path, "receipts.csv", RECEIPTS)
    sources = discover_sources(tmp_path)
    digests = {kind: read_source(src)[1] for kind, src in sources.items()}
    first = fingerprint_sources(digests)
    assert first == fingerprint_sources(dict(reversed(list(digests.items()))))
    assert len(first) == 64 and int(first, 16) >= 0

    # A new export landing after the read does not change the fingerprint of the data that was read ...
    write(tmp_path, "receipts.csv", RECEIPTS.replace("R6,", "R7,"))
    assert fingerprint_sources(digests) == first
    # ... and reading it again gives a different one.
    digests["receipts"] = read_source(sources["receipts"])[1]
    assert fingerprint_sources(digests) != first
    # The kind is part of it: the same bytes under another kind, or a kind more, differ.
    same = digests["receipts"]
    assert fingerprint_sources({"receipts": same}) != fingerprint_sources({"feedback": same})
    assert fingerprint_sources({**digests, "feedback": same}) != fingerprint_sources(digests)


def test_frame_level_failure_is_reported_against_the_source(tmp_path, monkeypatch):
    def enough(data: pa.PolarsData) -> bool:
        return data.lazyframe.select(pl.len()).collect().item() >= 3

    feedback = MODELS["feedback"]
    at_least_three = pa.DataFrameSchema(
        feedback.columns,
        checks=[*feedback.checks, pa.Check(enough, error="fewer than 3 feedback rows")],
        name="feedback",
    )
    monkeypatch.setitem(MODELS, "feedback", at_least_three)
    raw = pl.DataFrame(
        {"supplier_id": ["S1", "S2"], "date": ["2024-03-01", "2024-03-02"], "score": ["4", "5"]}
    )
    good, quarantine = validate_frame("feedback", raw, "feedback.csv")
    assert quarantine.select("source", "row", "code", "reason").rows() == [
        ("feedback.csv", None, "check_failed", "whole file: fewer than 3 feedback rows")
    ]
    assert good.height == 2

    write(tmp_path, "suppliers.csv", SUPPLIERS)
    write(tmp_path, "purchase_order_lines.csv", LINES)
    write(tmp_path, "receipts.csv", RECEIPTS)
    write(tmp_path, "feedback.csv", "supplier_id,date,score\nS1,2024-03-01,4\n")
    with pytest.raises(SourceError, match=r"^feedback.csv: whole file: fewer than 3 feedback rows"):
        load(tmp_path, max_quarantine_share=1.0)


def test_a_line_whose_receipt_is_quarantined_is_not_judged_late(result):
    """Without its bad receipt the line would look undelivered and count late: it is set aside instead."""
    line = result.quarantine.filter((pl.col("source") == "purchase_order_lines.csv") & (pl.col("row") == 1))
    assert line.select("column", "value", "code", "reason").rows() == [
        ("po_id, line_no", "P1, 1", "delivery_quarantined",
         "a receipt of this line is quarantined (row 5 of receipts.csv): its delivery cannot be judged")]


def test_each_good_receipt_is_handed_on_with_its_lines_position(tmp_path, messy, result):
    """The reference check matches every receipt to its order line; validation hands that match on (the metrics
    read it instead of matching again): per good receipt, the position of its line among the good lines, null
    for a line set aside after its receipts were checked (P1/1 of the messy files: a receipt of it is bad). A
    validation alone, which does not measure, holds no pairs for it."""
    assert result.receipt_lines is None
    handed_on = load(messy, max_quarantine_share=1.0, with_receipt_lines=True)
    assert handed_on.receipts["receipt_id"].to_list() == ["R1", "R2"]
    assert handed_on.purchase_order_lines.select("po_id", "line_no").rows() == [("P1", 2)]
    assert handed_on.receipt_lines.to_list() == [None, 0]
    write(tmp_path, "suppliers.csv", SUPPLIERS)
    write(tmp_path, "purchase_order_lines.csv", """\
po_id,line_no,supplier_id,item_id,category,order_date,promised_date,quantity_ordered,unit_price,currency
L1,1,S1,I1,metal,2024-03-01,2024-03-15,10,1,EUR
L2,1,S1,I1,metal,2024-03-01,2024-03-15,oops,1,EUR
L3,1,S2,I1,metal,2024-03-01,2024-03-15,10,1,EUR
L4,1,S1,I1,metal,2024-03-01,2024-03-15,10,1,EUR
L5,1,S2,I1,metal,2024-03-01,2024-03-15,10,1,EUR
""")
    write(tmp_path, "receipts.csv", """\
receipt_id,po_id,line_no,received_date,quantity_received,quantity_accepted,quantity_rejected
R1,L5,1,2024-03-14,10,10,0
R2,L1,1,2024-03-14,4,4,0
R3,L2,1,2024-03-14,10,10,0
R4,L3,1,2024-03-14,5,5,0
R5,L3,1,2024-03-15,5,5,0
R6,L9,1,2024-03-15,5,5,0
""")
    validated = load(tmp_path, max_quarantine_share=1.0, with_receipt_lines=True)
    assert validated.purchase_order_lines["po_id"].to_list() == ["L1", "L3", "L4", "L5"]
    assert validated.receipts["receipt_id"].to_list() == ["R1", "R2", "R4", "R5"]  # R3: its line is bad; R6: unknown
    assert validated.receipt_lines.to_list() == [3, 0, 1, 1]


def test_the_run_log_says_how_many_rows_were_set_aside_of_how_many(result):
    # the messy files: 3 suppliers (S3's criticality is bad), 10 order lines (only P1/2 is good), 6 receipts
    # (R1 and R2 are good): 1 + 9 + 4 of 3 + 10 + 6
    assert result.describe() == "14 rows quarantined of 19 read"
    assert (result.describe((dt.date(2024, 1, 1), dt.date(2024, 6, 30)))
            == "14 rows quarantined of 19 the window 2024-01-01 to 2024-06-30 needs")

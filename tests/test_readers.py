"""suppliers.readers: real ERP exports read raw, and every way they go wrong told in one line with the fix."""

from __future__ import annotations

import codecs
import datetime as dt
import hashlib
import sqlite3
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from suppliers import readers
from suppliers.errors import ConfigError, SourceError
from suppliers.readers import RawTable, SourceSpec, read_table

TEXT = "supplier,qty\nMüller GmbH,3\nDupont €,4.5\n"
EXPECTED = pl.DataFrame({"supplier": ["Müller GmbH", "Dupont €"], "qty": ["3", "4.5"]})


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def read_csv(path: Path, columns: list[str] | None = None, **settings: object) -> RawTable:
    return read_table(SourceSpec(name="shipments", format="csv", path=path, **settings), columns=columns)


def source_columns(table: RawTable) -> pl.DataFrame:
    return table.frame.drop("__file__", "__row__")


def error_of(path: Path, columns: list[str] | None = None, **settings: object) -> str:
    with pytest.raises(SourceError) as caught:
        read_csv(path, columns, **settings)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --- CSV: encodings, line ends, quoting, delimiters, headers


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        pytest.param(TEXT.encode("utf-8"), None, id="utf-8"),
        pytest.param(codecs.BOM_UTF8 + TEXT.encode("utf-8"), None, id="utf-8 with BOM"),
        pytest.param(codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), None, id="utf-16 LE with BOM"),
        pytest.param(codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), None, id="utf-16 BE with BOM"),
        pytest.param(TEXT.encode("utf-16-le"), "utf-16-le", id="utf-16 LE without BOM, by setting"),
        pytest.param(codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "utf-16", id="utf-16 by setting, BOM"),
        pytest.param(TEXT.encode("cp1252"), "cp1252", id="cp1252 by setting"),
        pytest.param(TEXT.encode("cp1252"), "Windows-1252", id="cp1252 by its other name"),
    ],
)
def test_every_encoding_reads_back_the_same_text(tmp_path: Path, data: bytes, encoding: str | None) -> None:
    table = read_csv(write(tmp_path / "shipments.csv", data), encoding=encoding)

    assert_frame_equal(source_columns(table), EXPECTED)
    assert table.frame.get_column("__row__").to_list() == [1, 2]
    assert table.frame.get_column("__file__").to_list() == ["shipments.csv", "shipments.csv"]
    assert table.frame.schema["__row__"] == pl.Int64
    assert table.fingerprint == hashlib.sha256(data).hexdigest()  # of the bytes as stored, not as transcoded
    assert table.label == "shipments.csv"


def test_latin1_by_setting(tmp_path: Path) -> None:
    data = "supplier;city\nMüller;Köln\n".encode("latin-1")
    table = read_csv(write(tmp_path / "s.csv", data), encoding="latin-1")
    assert source_columns(table).row(0) == ("Müller", "Köln")


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_line_ends_lf_crlf_and_bare_cr(tmp_path: Path, eol: str) -> None:
    table = read_csv(write(tmp_path / "s.csv", TEXT.replace("\n", eol).encode()))
    assert_frame_equal(source_columns(table), EXPECTED)
    assert table.frame.get_column("__row__").to_list() == [1, 2]


def test_quoted_field_with_embedded_newline_is_one_cell(tmp_path: Path) -> None:
    data = b'supplier,note,qty\r\nS1,"first line\r\nsecond line",3\r\nS2,"said ""ok""",4\r\n'
    table = read_csv(write(tmp_path / "s.csv", data))
    assert table.frame.rows() == [
        ("S1", "first line\r\nsecond line", "3", "s.csv", 1),
        ("S2", 'said "ok"', "4", "s.csv", 2),
    ]


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","], ids=["semicolon", "tab", "pipe", "comma"])
def test_delimiter_is_detected_from_the_header(tmp_path: Path, delimiter: str) -> None:
    data = TEXT.replace(",", delimiter).encode()
    assert_frame_equal(source_columns(read_csv(write(tmp_path / "s.csv", data))), EXPECTED)


def test_delimiter_by_setting_and_by_name(tmp_path: Path) -> None:
    path = write(tmp_path / "s.tsv", TEXT.replace(",", "\t").encode())
    assert_frame_equal(source_columns(read_csv(path, delimiter="tab")), EXPECTED)
    assert_frame_equal(source_columns(read_csv(path, delimiter="\t")), EXPECTED)


def test_header_names_are_stripped_and_columns_chosen_by_stripped_name(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", b" Supplier ID ;Qty  ;Note\nS1;3;x\n")
    assert source_columns(read_csv(path)).columns == ["Supplier ID", "Qty", "Note"]
    table = read_csv(path, columns=["Qty", "Supplier ID"])
    assert table.frame.columns == ["Qty", "Supplier ID", "__file__", "__row__"]
    assert table.frame.row(0) == ("3", "S1", "s.csv", 1)


def test_header_on_line_3_skips_the_lines_above_and_numbers_rows_after_it(tmp_path: Path) -> None:
    data = b'Shipments export "all plants"\r\nrun 2026-06-30; user qm\r\nsupplier;qty\r\nS1;3\r\nS2;4\r\n'
    table = read_csv(write(tmp_path / "s.csv", data), header_row=3)
    assert table.frame.rows() == [("S1", "3", "s.csv", 1), ("S2", "4", "s.csv", 2)]


def test_blank_and_delimiter_only_lines_do_not_become_rows(tmp_path: Path) -> None:
    data = b"supplier;qty\nS1;3\n\nS3;5\n;\n  \n\n\x1a"
    table = read_csv(write(tmp_path / "s.csv", data))
    assert table.frame.select("supplier", "__row__").rows() == [("S1", 1), ("S3", 3)]  # numbers count the blank


def test_rows_ending_in_one_delimiter_more_than_the_header_lose_nothing(tmp_path: Path) -> None:
    table = read_csv(write(tmp_path / "s.csv", b"supplier;qty\r\nS1;3;\r\nS2;4;\r\n"))
    assert source_columns(table).rows() == [("S1", "3"), ("S2", "4")]


def test_empty_cells_are_null_and_a_header_only_file_has_no_rows(tmp_path: Path) -> None:
    table = read_csv(write(tmp_path / "s.csv", b"a,b,c\n1,,3\n"))
    assert table.frame.row(0) == ("1", None, "3", "s.csv", 1)
    assert read_csv(write(tmp_path / "h.csv", b"a,b\n")).frame.height == 0


def test_a_trailing_delimiter_in_the_header_adds_no_column(tmp_path: Path) -> None:
    table = read_csv(write(tmp_path / "s.csv", b"a;b;\n1;2;\n"))
    assert source_columns(table).columns == ["a", "b"]
    kept = read_csv(write(tmp_path / "k.csv", b"a;;c\n1;2;3\n"))  # a nameless column with data is kept
    assert source_columns(kept).rows(named=True) == [{"a": "1", "column_2": "2", "c": "3"}]


def test_glob_reads_every_file_in_order_with_its_own_row_numbers(tmp_path: Path) -> None:
    first = write(tmp_path / "shipments_2026-01.csv", b"supplier,qty\nS1,1\nS2,2\n")
    second = write(tmp_path / "shipments_2026-02.csv", b"qty;supplier\r\n3;S3\r\n")  # other order, delimiter
    write(tmp_path / "other.csv", b"x\n1\n")
    table = read_csv(tmp_path / "shipments_*.csv")
    assert table.frame.rows() == [
        ("S1", "1", "shipments_2026-01.csv", 1),
        ("S2", "2", "shipments_2026-01.csv", 2),
        ("S3", "3", "shipments_2026-02.csv", 1),
    ]
    assert table.label == f"2 files matching {tmp_path / 'shipments_*.csv'}"
    assert table.fingerprint not in {hashlib.sha256(p.read_bytes()).hexdigest() for p in (first, second)}
    second.write_bytes(b"qty;supplier\r\n4;S3\r\n")
    assert read_csv(tmp_path / "shipments_*.csv").fingerprint != table.fingerprint


def test_a_file_whose_name_looks_like_a_pattern_is_read_as_itself(tmp_path: Path) -> None:
    # "x[1].csv" as a pattern would mean x1.csv: each file a glob finds is read by its name as it is.
    write(tmp_path / "x[1].csv", b"supplier,qty\nS1,1\n")
    write(tmp_path / "x1.csv", b"supplier,qty\nS2,2\n")
    table = read_csv(tmp_path / "x*.csv")
    assert table.frame.rows() == [("S2", "2", "x1.csv", 1), ("S1", "1", "x[1].csv", 1)]  # in name order


def test_glob_of_files_with_different_headers_names_the_odd_one(tmp_path: Path) -> None:
    write(tmp_path / "s1.csv", b"supplier,qty\nS1,1\n")
    write(tmp_path / "s2.csv", b"supplier,amount\nS1,1\n")
    message = error_of(tmp_path / "s*.csv")
    assert message.startswith("s2.csv: ") and "'amount'" in message and "'qty'" in message


# --- CSV errors: each says what the file looks like and which setting to change


def test_missing_file_and_glob_matching_nothing(tmp_path: Path) -> None:
    assert "file not found" in error_of(tmp_path / "nope.csv")
    message = error_of(tmp_path / "exports" / "*.csv")
    assert "no file matches" in message and "path:" in message


def test_empty_file(tmp_path: Path) -> None:
    assert "empty" in error_of(write(tmp_path / "s.csv", b""))
    assert "empty" in error_of(write(tmp_path / "s.csv", codecs.BOM_UTF8 + b"\r\n\r\n"))


def test_a_csv_rewritten_while_it_is_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A CSV is parsed from the file mapped into memory, not from a copy: a new export landing in it meanwhile must
    # not give a fingerprint of other bytes than those parsed.
    path = write(tmp_path / "shipments.csv", TEXT.encode())
    hash_of = readers._sha256

    def hash_while_the_export_writes(data: object) -> str:
        digest = hash_of(data)
        with path.open("ab") as export:
            export.write(b"Late Ltd,1\n")
        return digest

    monkeypatch.setattr(readers, "_sha256", hash_while_the_export_writes)
    message = error_of(path)
    assert "changed while it was read" in message and "shipments.csv" in message and "Run again" in message


def test_xlsx_given_as_csv_says_it_is_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "shipments.csv"
    EXPECTED.write_excel(path)
    message = error_of(path)
    assert "looks like an Excel workbook" in message and "format: excel" in message


def test_a_csv_on_a_file_system_that_cannot_map_files_is_read_from_a_copy(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import mmap

    class Unmappable(mmap.mmap):
        def __new__(cls, *args: object, **kwargs: object) -> Unmappable:
            raise OSError(19, "No such device")

    monkeypatch.setattr(readers.mmap, "mmap", Unmappable)
    data = TEXT.encode()
    table = read_csv(write(tmp_path / "shipments.csv", data))
    assert_frame_equal(source_columns(table), EXPECTED)
    assert table.fingerprint == hashlib.sha256(data).hexdigest()


def test_a_bad_file_found_while_it_is_still_hashed_gets_its_own_message(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # The file is hashed beside the parse: telling the user what is wrong must not wait on, or trip over, the hash.
    path = tmp_path / "shipments.csv"
    EXPECTED.write_excel(path)
    hash_of = readers._sha256

    def slow_hash(data: bytes) -> str:
        with memoryview(data) as held:  # held as hashlib holds it while it works
            time.sleep(0.2)
            return hash_of(held)

    monkeypatch.setattr(readers, "_sha256", slow_hash)
    assert "looks like an Excel workbook" in error_of(path)


def test_zip_and_binary_files_are_not_text(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "s.csv", "w") as archive:
        archive.writestr("shipments.csv", TEXT)
    assert "looks like a ZIP archive" in error_of(tmp_path / "s.csv")
    assert "NUL bytes" in error_of(write(tmp_path / "b.csv", bytes(range(256)) * 4))


@pytest.mark.parametrize(("codec", "setting"), [("utf-16-le", None), ("utf-16-be", "utf-8"), ("utf-16-le", "cp1252")])
def test_utf16_without_bom_read_as_8bit_says_which_encoding_to_set(tmp_path: Path, codec: str,
                                                                  setting: str | None) -> None:
    message = error_of(write(tmp_path / "s.csv", TEXT.encode(codec)), ["supplier"], encoding=setting)
    assert "looks like UTF-16" in message and f"encoding: {codec}" in message
    assert "no column" not in message


def test_utf16_setting_on_8bit_text_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "s.csv", TEXT.encode()), encoding="utf-16-le")
    assert "looks like 8-bit text" in message


def test_a_bom_that_contradicts_the_setting(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "s.csv", codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le")), encoding="utf-8")
    assert "UTF-16 LE byte-order mark" in message and "encoding: utf-16" in message


@pytest.mark.parametrize(("delimiter", "looks", "setting"), [
    ("\t", "looks tab-separated", "Set delimiter: tab"),
    (";", "looks semicolon-separated", "Set delimiter: ';'"),
], ids=["tab", "semicolon"])
def test_wrong_delimiter_setting_is_named_not_a_missing_column(tmp_path: Path, delimiter: str, looks: str,
                                                              setting: str) -> None:
    data = TEXT.replace(",", delimiter).encode()
    message = error_of(write(tmp_path / "s.csv", data), ["supplier", "qty"], delimiter=",")
    assert looks in message and setting in message
    assert "no column" not in message


def test_windows_text_read_as_utf8_gives_offset_line_and_encodings_to_try(tmp_path: Path) -> None:
    data = TEXT.encode("cp1252")
    message = error_of(write(tmp_path / "s.csv", data))
    offset = data.index("ü".encode("cp1252"))
    assert f"byte 0xfc at offset {offset} (line 2)" in message and "encoding: cp1252" in message
    assert "latin-1" in message


def test_undecodable_byte_in_the_configured_encoding(tmp_path: Path) -> None:
    data = b"supplier,qty\nS1,3\nS\x81,4\n"  # 0x81 is undefined in cp1252
    message = error_of(write(tmp_path / "s.csv", data), encoding="cp1252")
    assert "not valid cp1252" in message and "byte 0x81 at offset 19 (line 3)" in message
    assert "latin-1" in message


def test_utf8_text_with_a_cp1252_setting_is_refused(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "s.csv", TEXT.encode()), encoding="cp1252")
    assert "is UTF-8 text" in message and "encoding: utf-8" in message


def test_repeated_header_column(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", b"supplier,qty,supplier \nS1,3,S2\n")
    message = error_of(path)
    assert "'supplier' appears more than once" in message
    assert read_csv(path, columns=["qty"]).frame.get_column("qty").to_list() == ["3"]  # not read: no matter


def test_missing_column_names_the_closest_header_and_the_file(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "s.csv", b"Supplier ID,Qty\nS1,3\n"), ["supplier_id", "Qty"])
    assert message.startswith("s.csv: no column 'supplier_id' (closest: 'Supplier ID') in the header (line 1)")
    assert "'Supplier ID', 'Qty'" in message


def test_header_on_another_line_says_which_header_row_to_set(tmp_path: Path) -> None:
    data = b"Shipments export\nplant 1000\nsupplier;qty\nS1;3\n"
    message = error_of(write(tmp_path / "s.csv", data), ["supplier", "qty"])
    assert "line 3 holds all of them" in message and "header_row: 3" in message
    message = error_of(write(tmp_path / "b.csv", b"\r\n\r\nsupplier,qty\r\n"))
    assert "line 1 (header_row: 1) is blank" in message and "Set header_row: 3" in message


def test_a_row_with_more_fields_than_the_header(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "s.csv", b"a,b\n1,2\n3,4,5\n"))
    assert "row 2 after the header has more fields than the header's 2 columns" in message


def test_unterminated_quote(tmp_path: Path) -> None:
    assert "cannot be read as CSV" in error_of(write(tmp_path / "s.csv", b'a,b\n1,"2\n3,4\n'))


def test_incomplete_or_wrong_specs_are_config_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", TEXT.encode())
    with pytest.raises(ConfigError, match="unsupported encoding 'ebcdic'"):
        read_csv(path, encoding="ebcdic")
    with pytest.raises(ConfigError, match="unsupported delimiter"):
        read_csv(path, delimiter=":")
    with pytest.raises(ConfigError, match="header_row"):
        read_csv(path, header_row=0)
    with pytest.raises(ConfigError, match="needs both url: and query:"):
        read_table(SourceSpec(name="s", format="sql", url="sqlite:///x.db"))


# --- Parquet


def test_parquet_file_and_glob_read_only_the_requested_columns_typed(tmp_path: Path) -> None:
    frame = pl.DataFrame({"supplier ": ["S1", "S2"], "qty": [3.0, 4.5], "when": [dt.date(2026, 1, 2)] * 2,
                          "unused": [1, 2]})
    frame.write_parquet(tmp_path / "r_1.parquet")
    frame.head(1).write_parquet(tmp_path / "r_2.parquet")
    spec = SourceSpec(name="receipts", format="parquet", path=tmp_path / "r_1.parquet")

    table = read_table(spec, columns=["qty", "supplier"])
    assert table.frame.schema == pl.Schema({"qty": pl.Float64, "supplier": pl.String, "__file__": pl.String,
                                            "__row__": pl.Int64})
    assert table.frame.rows() == [(3.0, "S1", "r_1.parquet", 1), (4.5, "S2", "r_1.parquet", 2)]
    assert table.fingerprint == hashlib.sha256((tmp_path / "r_1.parquet").read_bytes()).hexdigest()
    assert read_table(spec).frame.schema["when"] == pl.Date

    both = read_table(SourceSpec(name="receipts", format="parquet", path=tmp_path / "r_*.parquet"),
                      columns=["supplier"])
    assert both.frame.rows() == [("S1", "r_1.parquet", 1), ("S2", "r_1.parquet", 2), ("S1", "r_2.parquet", 1)]

    with pytest.raises(SourceError, match=r"no column 'quantity' \(closest: 'qty'\)"):
        read_table(spec, columns=["quantity"])


def test_csv_given_as_parquet(tmp_path: Path) -> None:
    spec = SourceSpec(name="r", format="parquet", path=write(tmp_path / "r.parquet", TEXT.encode()))
    with pytest.raises(SourceError, match="is not a Parquet file: it looks like text"):
        read_table(spec)


# --- Excel


def _workbook(path: Path) -> pl.DataFrame:
    """A workbook as an ERP writes it: a summary sheet first, the data two rows below a title."""
    import xlsxwriter

    frame = pl.DataFrame({
        "Receipt ": ["R1", "R2", "R3"],
        "Qty": [3.0, 4.5, None],
        "Received": [dt.date(2026, 1, 2), dt.date(2026, 1, 3), None],
        "Note": ["ok", None, None],
    })
    with xlsxwriter.Workbook(path) as workbook:
        workbook.add_worksheet("Summary").write(0, 0, "nothing here")
        sheet = workbook.add_worksheet("Deliveries")
        sheet.write(0, 0, "Deliveries, plant 1000")
        sheet.write(1, 0, "exported 2026-06-30")
        frame.write_excel(workbook, worksheet="Deliveries", position="A3")  # the header on row 3
    return frame


def test_excel_sheet_by_name_header_on_row_3_all_text(tmp_path: Path) -> None:
    path = tmp_path / "deliveries.xlsx"
    _workbook(path)
    spec = SourceSpec(name="receipts", format="excel", path=path, sheet="Deliveries", header_row=3)

    table = read_table(spec)
    assert table.frame.schema == pl.Schema({"Receipt": pl.String, "Qty": pl.String, "Received": pl.String,
                                            "Note": pl.String, "__file__": pl.String, "__row__": pl.Int64})
    assert table.frame.rows() == [  # the third row has only a receipt number: kept, for validation to judge
        ("R1", "3", "2026-01-02", "ok", "deliveries.xlsx", 1),
        ("R2", "4.5", "2026-01-03", None, "deliveries.xlsx", 2),
        ("R3", None, None, None, "deliveries.xlsx", 3),
    ]
    assert table.fingerprint == hashlib.sha256(path.read_bytes()).hexdigest()
    assert read_table(spec, columns=["Received", "Receipt"]).frame.columns == ["Received", "Receipt", "__file__",
                                                                               "__row__"]


def test_excel_repeated_header_is_refused_but_a_numbered_name_is_not(tmp_path: Path) -> None:
    import xlsxwriter

    with xlsxwriter.Workbook(tmp_path / "r.xlsx") as workbook:
        sheet = workbook.add_worksheet()
        sheet.write_row(0, 0, ["qty", "qty_1", "note", "note "])
        sheet.write_row(1, 0, ["1", "2", "x", "y"])
    spec = SourceSpec(name="r", format="excel", path=tmp_path / "r.xlsx")
    with pytest.raises(SourceError, match="column 'note' appears more than once in the header"):
        read_table(spec)
    assert read_table(spec, columns=["qty", "qty_1"]).frame.row(0) == ("1", "2", "r.xlsx", 1)
    with xlsxwriter.Workbook(tmp_path / "d.xlsx") as workbook:
        workbook.add_worksheet().write_row(0, 0, ["qty", "qty"])
    with pytest.raises(SourceError, match="column 'qty' appears more than once in the header"):
        read_table(SourceSpec(name="r", format="excel", path=tmp_path / "d.xlsx"), columns=["qty"])


def test_excel_errors_name_the_sheets_and_the_header_row(tmp_path: Path) -> None:
    path = tmp_path / "deliveries.xlsx"
    _workbook(path)
    with pytest.raises(SourceError, match=r"no sheet 'Delivery' \(closest: 'Deliveries'\).*'Summary', 'Deliveries'"):
        read_table(SourceSpec(name="r", format="excel", path=path, sheet="Delivery", header_row=3))
    with pytest.raises(SourceError, match="row 3 holds all of them.*Set header_row: 3"):
        read_table(SourceSpec(name="r", format="excel", path=path, sheet="Deliveries"), columns=["Receipt", "Qty"])
    csv = write(tmp_path / "r.xlsx", TEXT.encode())
    with pytest.raises(SourceError, match="is not an Excel workbook: it looks like text"):
        read_table(SourceSpec(name="r", format="excel", path=csv))


# --- SQL


def test_sqlite_query_keeps_types_and_numbers_rows(tmp_path: Path) -> None:
    database = tmp_path / "erp.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE receipts (receipt_id TEXT, qty REAL, line_no INTEGER)")
        connection.executemany("INSERT INTO receipts VALUES (?, ?, ?)", [("R1", 3.0, 1), ("R2", 4.5, 2)])
    connection.close()
    spec = SourceSpec(name="receipts", format="sql", url=f"sqlite:///{database}",
                      query="SELECT receipt_id AS \"Receipt \", qty, line_no FROM receipts ORDER BY receipt_id")

    table = read_table(spec, columns=["Receipt", "line_no"])
    assert table.frame.schema == pl.Schema({"Receipt": pl.String, "line_no": pl.Int64, "__file__": pl.String,
                                            "__row__": pl.Int64})
    assert table.frame.select("Receipt", "line_no", "__row__").rows() == [("R1", 1, 1), ("R2", 2, 2)]
    assert table.label == f"query on sqlite:///{database}"
    assert read_table(spec, columns=["Receipt", "line_no"]).fingerprint == table.fingerprint
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE receipts SET line_no = 7 WHERE receipt_id = 'R2'")
    connection.close()
    assert read_table(spec, columns=["Receipt", "line_no"]).fingerprint != table.fingerprint

    with pytest.raises(SourceError, match="database file not found"):
        read_table(SourceSpec(name="r", format="sql", url=f"sqlite:///{tmp_path / 'nope.db'}", query="SELECT 1"))
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(SourceError, match=r"the query failed \(.*no such table: receipt\b.*Check query:"):
        read_table(SourceSpec(name="r", format="sql", url=f"sqlite:///{database}", query="SELECT * FROM receipt"))


def test_postgresql_query_through_adbc(postgres_url: str) -> None:
    import psycopg

    with psycopg.connect(postgres_url.replace("+psycopg", ""), autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS readers_receipts")
        connection.execute("CREATE TABLE readers_receipts (receipt_id text, received date, qty numeric(12, 3))")
        connection.execute("INSERT INTO readers_receipts VALUES ('R1', '2026-01-02', 3.5), ('R2', NULL, NULL)")
    spec = SourceSpec(name="receipts", format="sql", url=postgres_url,
                      query="SELECT * FROM readers_receipts ORDER BY receipt_id")

    table = read_table(spec)
    assert table.frame.schema == pl.Schema({"receipt_id": pl.String, "received": pl.Date, "qty": pl.String,
                                            "__file__": pl.String, "__row__": pl.Int64})
    assert table.frame.rows() == [("R1", dt.date(2026, 1, 2), "3.500", table.label, 1),
                                  ("R2", None, None, table.label, 2)]
    assert table.label == f"query on {postgres_url}"

    closed = postgres_url.replace("postgres@", "postgres:s3cret@").rsplit(":", 1)[0] + ":1/postgres"
    with pytest.raises(SourceError) as caught:
        read_table(SourceSpec(name="r", format="sql", url=closed, query="SELECT 1"))
    assert "s3cret" not in str(caught.value) and "***" in str(caught.value) and "\n" not in str(caught.value)

"""The mapping file: checked like the rule file, and one wide export becoming three record kinds."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from flows.cli import main
from suppliers.errors import MappingError
from suppliers.mapping import load_mapping, read_mapped_sources
from suppliers.validate import validate_inputs

# A shipment export in the shape real ERPs give: the order and its delivery on one row, orders repeating
# without line numbers, a warehouse that is not a supplier, three date spellings, money as text.
EXPORT = (
    "id,PO Number ,Vendor,Item,Ordered On,Promised,Delivered,Qty,Unit Price\n"
    "7,PO-1,Acme Ltd,bolts,1/5/2026,20-Jan-26,19-Jan-26,100,\"$1,250.50\"\n"
    "3,PO-1,Acme Ltd,nuts,1/5/2026,20-Jan-26,25-Jan-26,50,$2.00\n"
    "9,PO-2,Internal Warehouse,bolts,Date Not Captured,1-Feb-26,1-Feb-26,10,$1.00\n"
    "4,PO-3,Tardy & Co,washers,Date Not Captured,3-Sept-26,30-Sep-26,5,$0.10\n"
    "5,PO-3,Tardy & Co,washers,2/1/2026,not a date,30-Sep-26,5,$0.10\n"
)

MAPPING = """\
sources:
  shipments:
    path: export.csv
    missingValues: ["Date Not Captured"]
records:
  suppliers:
    from: shipments
    where: &outside
      - {column: Vendor, not_in: ["Internal Warehouse"]}
    one_row_per: [supplier_id]
    fields:
      supplier_id: Vendor
      name: Vendor
      category: {constant: hardware}
      criticality: {constant: major}
      status: {constant: approved}
      active: {constant: true}
  purchase_order_lines:
    from: shipments
    where: *outside
    fields:
      po_id: PO Number
      line_no: {number_within: [PO Number], order_by: [id]}
      supplier_id: Vendor
      item_id: Item
      order_date: {column: Ordered On, format: "%m/%d/%Y"}
      promised_date: {column: Promised, format: ["%d-%b-%y"]}
      quantity_ordered: Qty
      unit_price: {column: Unit Price, bareNumber: false, groupChar: ","}
      currency: {constant: USD}
  receipts:
    from: shipments
    where: *outside
    fields:
      receipt_id: {join: [PO Number, id], separator: "/"}
      po_id: PO Number
      line_no: {number_within: [PO Number], order_by: [id]}
      received_date: {column: Delivered, format: "%d-%b-%y"}
      quantity_received: Qty
"""


def write(folder: Path, mapping: str = MAPPING, export: str = EXPORT) -> Path:
    (folder / "export.csv").write_text(export, encoding="utf-8")
    path = folder / "mapping.yaml"
    path.write_text(mapping, encoding="utf-8")
    return path


def test_one_wide_export_becomes_suppliers_lines_and_receipts(tmp_path: Path) -> None:
    loaded = read_mapped_sources(load_mapping(write(tmp_path)))
    result = validate_inputs(loaded.raw, formats=loaded.formats, max_quarantine_share=1.0)
    suppliers = result.suppliers.select("supplier_id", "name", "criticality", "active", "contact_email")
    assert suppliers.rows() == [("Acme Ltd", "Acme Ltd", "major", True, None), ("Tardy & Co", "Tardy & Co", "major",
                                                                                True, None)]
    lines = result.purchase_order_lines.sort("po_id", "line_no")
    # PO-1's rows are ids 7 and 3: numbered in id order, so id 3 (nuts) is line 1.
    assert lines.select("po_id", "line_no", "item_id", "order_date", "promised_date", "unit_price").rows() == [
        ("PO-1", 1, "nuts", dt.date(2026, 1, 5), dt.date(2026, 1, 20), 2.0),
        ("PO-1", 2, "bolts", dt.date(2026, 1, 5), dt.date(2026, 1, 20), 1250.5),
        ("PO-3", 1, "washers", None, dt.date(2026, 9, 3), 0.1),  # "Sept" read; "Date Not Captured" is empty
    ]
    receipts = result.receipts.sort("receipt_id")
    assert receipts.select("receipt_id", "po_id", "line_no", "received_date", "quantity_accepted").rows() == [
        ("PO-1/3", "PO-1", 1, dt.date(2026, 1, 25), None),  # no inspection results: not invented
        ("PO-1/7", "PO-1", 2, dt.date(2026, 1, 19), None),
        ("PO-3/4", "PO-3", 1, dt.date(2026, 9, 30), None),
    ]
    # The bad date is quarantined at its row in the export (row 5 after the header), with its text as written;
    # its receipt then refers to a quarantined line.
    quarantine = result.quarantine.select("source", "kind", "row", "column", "value").rows()
    assert ("export.csv", "purchase_order_lines", 5, "promised_date", "not a date") in quarantine
    assert {(kind, row) for _, kind, row, _, _ in quarantine} == {("purchase_order_lines", 5), ("receipts", 5)}


def test_the_mapping_and_the_data_are_both_in_the_input_fingerprint(tmp_path: Path) -> None:
    first = read_mapped_sources(load_mapping(write(tmp_path))).fingerprint
    assert read_mapped_sources(load_mapping(write(tmp_path))).fingerprint == first
    changed_mapping = read_mapped_sources(load_mapping(write(tmp_path, MAPPING.replace("major", "minor")))).fingerprint
    changed_data = read_mapped_sources(load_mapping(write(tmp_path, export=EXPORT.replace("100", "101")))).fingerprint
    assert len({first, changed_mapping, changed_data}) == 3


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("  purchase_order_lines:\n", "  purchase_order_line:\n"), 18,
         "unknown record kind 'purchase_order_line' (did you mean 'purchase_order_lines'?)"),
        (("      item_id: Item\n", "      item_code: Item\n"), 25,
         "purchase_order_lines has no field 'item_code'"),
        (("      received_date: {column: Delivered, format: \"%d-%b-%y\"}\n", ""), 34,
         "required field 'received_date' is not mapped"),
        (("    from: shipments\n    where: *outside\n    fields:\n      receipt_id",
          "    from: shipment\n    where: *outside\n    fields:\n      receipt_id"), 32,
         "unknown source 'shipment' (did you mean 'shipments'?)"),
        (("      quantity_ordered: Qty\n", "      quantity_ordered: {column: Qty, format: \"%d\"}\n"), 28,
         "format applies to dates only"),
        (("      po_id: PO Number\n", "      po_id: {colum: PO Number}\n"), 22,
         "unknown key 'colum'; allowed here: column, constant"),
    ],
)
def test_a_mistake_in_the_mapping_is_named_at_its_line(tmp_path: Path, change: tuple[str, str], line: int,
                                                       message: str) -> None:
    old, new = change
    assert old in MAPPING
    path = write(tmp_path, MAPPING.replace(old, new, 1))
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    problems = [f"{caught.value.where}: {caught.value.what}", *caught.value.details]
    assert [p for p in problems if p.startswith(f"{path}:{line}: ") and message in p], problems
    assert "supplier-eval mapping check" in caught.value.fix


def test_mapping_check_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = write(tmp_path)
    assert main(["mapping", "check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "is valid" in out and "receipts <- shipments, 1 filter" in out
    bad = write(tmp_path, MAPPING.replace("      item_id: Item\n", "      item_code: Item\n").replace(
        "    from: shipments\n    where: *outside\n    fields:\n      receipt_id",
        "    from: shipment\n    where: *outside\n    fields:\n      receipt_id"))
    assert main(["mapping", "check", str(bad)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"error: {bad}:25:") and "(1 more problem below)" in err[0]
    assert err[1].startswith(f"  {bad}:32:") and "Traceback" not in "\n".join(err)


def test_a_column_the_export_lacks_is_named_with_the_closest_header(tmp_path: Path) -> None:
    from suppliers.errors import SourceError

    path = write(tmp_path, MAPPING.replace("quantity_ordered: Qty", "quantity_ordered: Quantity"))
    with pytest.raises(SourceError, match="Quantity.*Qty"):
        read_mapped_sources(load_mapping(path))


def test_generated_line_numbers_follow_numbers_as_numbers_not_as_text(tmp_path: Path) -> None:
    export = "id,PO,Vendor,Promised,Delivered,Qty\n10,P,A,1-Jan-26,1-Jan-26,1\n9,P,A,1-Jan-26,1-Jan-26,2\n"
    mapping = MAPPING.replace("PO Number", "PO").replace("Ordered On", "id")
    mapping = "\n".join(line for line in mapping.splitlines()
                        if not any(word in line for word in ("Item", "Unit Price", "order_date"))) + "\n"
    loaded = read_mapped_sources(load_mapping(write(tmp_path, mapping, export)))
    lines = loaded.raw["purchase_order_lines"][1]
    assert lines.select("line_no", "quantity_ordered").rows() == [("2", "1"), ("1", "2")]  # id 9 before id 10
    assert pl.Series(lines["__row__"]).to_list() == [1, 2]


def test_a_utf16_tab_separated_export_loads_through_a_mapping_alone(tmp_path: Path) -> None:
    """The shape of a second real export: UTF-16LE, tabs, CRLF, headers with trailing spaces, three date
    spellings in one column, "Sept", money as "$244,000.00", order numbers repeating across rows."""
    rows = [
        ["ID ", "Order No ", "Supplier Name  ", "Scheduled ", "Delivered ", "Line Value ", "Qty "],
        ["1", "SO-9", "Kemri Labs", "2-Jun-14", "3-Jun-14", "$244,000.00", "40"],
        ["2", "SO-9", "Kemri Labs", "6/23/14", "6/20/14", "$1,000.50", "2"],
        ["3", "SO-7", "Nairobi Med", "2014-09-01", "5-Sept-14", "$12.00", "1"],
    ]
    export = "\r\n".join("\t".join(row) for row in rows) + "\r\n"
    (tmp_path / "export.txt").write_bytes(export.encode("utf-16-le"))
    mapping = """\
sources:
  deliveries: {path: export.txt, format: csv, encoding: utf-16-le, delimiter: tab}
records:
  suppliers:
    from: deliveries
    one_row_per: [supplier_id]
    fields:
      supplier_id: Supplier Name
      name: Supplier Name
      category: {constant: lab supplies}
      criticality: {constant: critical}
      status: {constant: approved}
      active: {constant: true}
  purchase_order_lines:
    from: deliveries
    fields:
      po_id: Order No
      line_no: {number_within: [Order No], order_by: [ID]}
      supplier_id: Supplier Name
      promised_date: {column: Scheduled, format: ["%d-%b-%y", "%m/%d/%y", "%Y-%m-%d"]}
      quantity_ordered: Qty
      unit_price: {column: Line Value, bareNumber: false, groupChar: ","}
  receipts:
    from: deliveries
    fields:
      receipt_id: ID
      po_id: Order No
      line_no: {number_within: [Order No], order_by: [ID]}
      received_date: {column: Delivered, format: ["%d-%b-%y", "%m/%d/%y"]}
      quantity_received: Qty
"""
    (tmp_path / "mapping.yaml").write_text(mapping, encoding="utf-8")
    loaded = read_mapped_sources(load_mapping(tmp_path / "mapping.yaml"))
    result = validate_inputs(loaded.raw, formats=loaded.formats, as_of=dt.date(2014, 12, 31))
    assert result.quarantine.is_empty()
    assert result.suppliers["supplier_id"].to_list() == ["Kemri Labs", "Nairobi Med"]
    assert result.purchase_order_lines.select("po_id", "line_no", "promised_date", "unit_price").rows() == [
        ("SO-9", 1, dt.date(2014, 6, 2), 244000.0),
        ("SO-9", 2, dt.date(2014, 6, 23), 1000.5),
        ("SO-7", 1, dt.date(2014, 9, 1), 12.0),
    ]
    assert result.receipts.select("receipt_id", "line_no", "received_date").rows() == [
        ("1", 1, dt.date(2014, 6, 3)), ("2", 2, dt.date(2014, 6, 20)), ("3", 1, dt.date(2014, 9, 5))]


def test_a_glob_of_several_files_names_each_bad_row_by_its_file_and_row(tmp_path: Path) -> None:
    header = EXPORT.splitlines()[0]
    rows = EXPORT.splitlines()[1:]
    (tmp_path / "part-1.csv").write_text("\n".join([header, *rows[:2]]) + "\n", encoding="utf-8")
    (tmp_path / "part-2.csv").write_text("\n".join([header, *rows[2:]]) + "\n", encoding="utf-8")
    path = tmp_path / "mapping.yaml"
    path.write_text(MAPPING.replace("path: export.csv", "path: part-*.csv"), encoding="utf-8")
    loaded = read_mapped_sources(load_mapping(path))
    result = validate_inputs(loaded.raw, formats=loaded.formats, max_quarantine_share=1.0)
    # the bad date is the third data row of part-2.csv (row 5 of the export as one file)
    assert ("part-2.csv", "purchase_order_lines", 3, "promised_date") in result.quarantine.select(
        "source", "kind", "row", "column").rows()


def test_line_numbers_are_made_before_each_kinds_filter(tmp_path: Path) -> None:
    """Receipts keep only delivered rows, lines keep all: a receipt still belongs to its own line."""
    export = ("id,PO Number ,Vendor,Item,Ordered On,Promised,Delivered,Qty,Unit Price\n"
              "1,P1,Acme Ltd,a,1/5/2026,20-Jan-26,,10,$1.00\n"
              "2,P1,Acme Ltd,b,1/5/2026,20-Jan-26,25-Jan-26,30,$1.00\n")
    mapping = MAPPING.replace("""  receipts:
    from: shipments
    where: *outside""", """  receipts:
    from: shipments
    where: [{column: Delivered, empty: false}]""")
    loaded = read_mapped_sources(load_mapping(write(tmp_path, mapping, export)))
    receipts = loaded.raw["receipts"][1]
    assert receipts.select("receipt_id", "line_no").rows() == [("P1/2", "2")]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("unit_price: {column: Unit Price, bareNumber: false, groupChar: \",\"}",
         "unit_price: {column: Unit Price, groupChar: \".\"}", "groupChar and decimalChar are both '.'"),
        ("currency: {constant: USD}", "currency: {constant: }", "constant is empty"),
        ('missingValues: ["Date Not Captured"]', "missingValues: [null]", "put it in quotes"),
    ],
)
def test_a_mapping_that_would_read_numbers_or_words_wrongly_is_refused(tmp_path: Path, old: str, new: str,
                                                                       message: str) -> None:
    assert old in MAPPING
    with pytest.raises(MappingError, match=message):
        load_mapping(write(tmp_path, MAPPING.replace(old, new)))


def test_a_date_constant_is_read_as_a_date(tmp_path: Path) -> None:
    mapping = MAPPING.replace('order_date: {column: Ordered On, format: "%m/%d/%Y"}',
                              "order_date: {constant: 2026-01-02}")
    loaded = read_mapped_sources(load_mapping(write(tmp_path, mapping)))
    result = validate_inputs(loaded.raw, formats=loaded.formats, max_quarantine_share=1.0)
    assert set(result.purchase_order_lines["order_date"].to_list()) == {dt.date(2026, 1, 2)}


def test_a_comment_in_the_mapping_changes_no_run_key(tmp_path: Path) -> None:
    first = read_mapped_sources(load_mapping(write(tmp_path))).fingerprint
    commented = "# how our ERP's shipment export maps\n" + MAPPING.replace("records:", "records:   # three kinds")
    assert read_mapped_sources(load_mapping(write(tmp_path, commented))).fingerprint == first


def test_a_default_fills_an_empty_typed_cell_of_a_parquet_source(tmp_path: Path) -> None:
    write(tmp_path)
    typed = pl.read_csv(tmp_path / "export.csv", infer_schema=False).with_columns(
        pl.when(pl.col("id") == "3").then(None).otherwise(pl.col("Qty").cast(pl.Int64)).alias("Qty"))
    typed.write_parquet(tmp_path / "export.parquet")
    mapping = MAPPING.replace("path: export.csv", "path: export.parquet").replace(
        "quantity_ordered: Qty", "quantity_ordered: {column: Qty, default: 1}").replace(
        "quantity_received: Qty", "quantity_received: {column: Qty, default: 1}")
    loaded = read_mapped_sources(load_mapping(write(tmp_path, mapping)))
    result = validate_inputs(loaded.raw, formats=loaded.formats, max_quarantine_share=1.0)
    quantities = dict(result.purchase_order_lines.select("item_id", "quantity_ordered").rows())
    assert quantities["nuts"] == 1.0 and quantities["bolts"] == 100.0


def test_one_row_per_vendor_takes_each_fields_first_value_that_is_not_empty(tmp_path: Path) -> None:
    mapping = MAPPING.replace("      category: {constant: hardware}\n", "      category: Item\n")
    export = EXPORT.replace("7,PO-1,Acme Ltd,bolts,", "7,PO-1,Acme Ltd,,")  # Acme's first row has no item
    loaded = read_mapped_sources(load_mapping(write(tmp_path, mapping, export)))
    suppliers = loaded.raw["suppliers"][1]
    assert suppliers.select("__row__", "supplier_id", "category").rows() == [
        (1, "Acme Ltd", "nuts"), (4, "Tardy & Co", "washers")]
